//! Host-side launchers: one function per GPU op, which checks every buffer's length against the
//! sizes it is given (so a kernel can never run off the end of a buffer), picks the launch shape
//! and passes the arguments in the kernel's order. The math lives in `kernels/*.cu`, next to each
//! kernel, and is the same as the CPU ops' (see `src/ops/*`, whose gradients are gradchecked); the
//! tests compare every launcher with the CPU op on random inputs.

use super::gpu::{DeviceBuffer, Gpu, KernelArg};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

fn blocks_for(n: usize, per_block: u32) -> Result<u32> {
    let b = n.div_ceil(per_block as usize).max(1);
    u32::try_from(b)
        .ok()
        .filter(|&b| b < (1 << 31))
        .ok_or_else(|| Error::invalid("cuda launch", format!("{n} elements need too many blocks")))
}

fn launch(
    gpu: &Gpu,
    name: &str,
    grid: [u32; 3],
    block: [u32; 3],
    args: &[KernelArg],
) -> Result<()> {
    if grid[1] > 65535 || grid[2] > 65535 {
        return Err(Error::invalid(
            "cuda launch",
            format!("{name}: grid {grid:?} exceeds the 65535 limit of the y/z dimensions"),
        ));
    }
    super::count_launch();
    // SAFETY: every public launcher below checks each buffer's length against the sizes that the
    // kernel derives its indices from before calling this, and passes arguments in the order and
    // types of the kernel's parameter list (the emulator tests run each launcher).
    unsafe { gpu.launch(name, grid, block, args) }
}

/// A size as a kernel's `int` parameter, or an error if it does not fit (a wrapped negative
/// size would make a kernel return at once and leave its output unwritten).
fn i32_arg(v: usize) -> Result<KernelArg> {
    i32::try_from(v)
        .map(KernelArg::I32)
        .map_err(|_| Error::invalid("cuda launch", format!("size {v} exceeds a kernel's int")))
}

fn elementwise(gpu: &Gpu, name: &str, n: usize, args: &[KernelArg]) -> Result<()> {
    launch(
        gpu,
        name,
        [blocks_for(n, THREADS)?, 1, 1],
        [THREADS, 1, 1],
        args,
    )
}

fn same_len(op: &'static str, n: usize, bufs: &[&DeviceBuffer<f32>]) -> Result<()> {
    bufs.iter().try_for_each(|b| b.check_len(op, n))
}

/// Threads per block for a kernel that strides a block over one row of `cols` values.
fn row_block(cols: usize) -> u32 {
    (cols.div_ceil(32) * 32).clamp(32, 1024) as u32
}

// ---- elementwise ------------------------------------------------------------------------------

/// out = a + b.
pub fn add(a: &DeviceBuffer<f32>, b: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>) -> Result<()> {
    let n = a.len();
    same_len("cuda add", n, &[b, out])?;
    elementwise(
        a.gpu(),
        "add_forward",
        n,
        &[a.arg(), b.arg(), out.arg(), KernelArg::I64(n as i64)],
    )
}

/// y += x.
pub fn accumulate(y: &DeviceBuffer<f32>, x: &DeviceBuffer<f32>) -> Result<()> {
    let n = y.len();
    same_len("cuda accumulate", n, &[x])?;
    elementwise(
        y.gpu(),
        "accumulate",
        n,
        &[y.arg(), x.arg(), KernelArg::I64(n as i64)],
    )
}

/// out = alpha · x.
pub fn scale(x: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>, alpha: f32) -> Result<()> {
    let n = x.len();
    same_len("cuda scale", n, &[out])?;
    elementwise(
        x.gpu(),
        "scale_forward",
        n,
        &[
            x.arg(),
            out.arg(),
            KernelArg::F32(alpha),
            KernelArg::I64(n as i64),
        ],
    )
}

/// Every element = value.
pub fn fill(x: &DeviceBuffer<f32>, value: f32) -> Result<()> {
    let n = x.len();
    elementwise(
        x.gpu(),
        "fill",
        n,
        &[x.arg(), KernelArg::F32(value), KernelArg::I64(n as i64)],
    )
}

/// GELU (tanh approximation).
pub fn gelu_forward(x: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>) -> Result<()> {
    let n = x.len();
    same_len("cuda gelu", n, &[out])?;
    elementwise(
        x.gpu(),
        "gelu_forward",
        n,
        &[x.arg(), out.arg(), KernelArg::I64(n as i64)],
    )
}

/// dx (+)= dout · GELU'(x).
pub fn gelu_backward(
    x: &DeviceBuffer<f32>,
    dout: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    accumulate: bool,
) -> Result<()> {
    let n = x.len();
    same_len("cuda gelu_backward", n, &[dout, dx])?;
    elementwise(
        x.gpu(),
        "gelu_backward",
        n,
        &[
            x.arg(),
            dout.arg(),
            dx.arg(),
            KernelArg::I64(n as i64),
            KernelArg::I32(accumulate as i32),
        ],
    )
}

fn check_p(op: &'static str, p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(
            op,
            format!("dropout probability {p} must be in [0, 1)"),
        ));
    }
    Ok(())
}

/// Inverted dropout with the counter-based mask of `seed`.
pub fn dropout_forward(
    x: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    p: f32,
    seed: u64,
) -> Result<()> {
    check_p("cuda dropout", p)?;
    let n = x.len();
    same_len("cuda dropout", n, &[out])?;
    elementwise(
        x.gpu(),
        "dropout_forward",
        n,
        &[
            x.arg(),
            out.arg(),
            KernelArg::I64(n as i64),
            KernelArg::F32(p),
            KernelArg::U64(seed),
        ],
    )
}

/// Dropout backward: the same mask, regenerated from `seed`.
pub fn dropout_backward(
    dout: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    p: f32,
    seed: u64,
) -> Result<()> {
    check_p("cuda dropout_backward", p)?;
    let n = dout.len();
    same_len("cuda dropout_backward", n, &[dx])?;
    elementwise(
        dout.gpu(),
        "dropout_backward",
        n,
        &[
            dout.arg(),
            dx.arg(),
            KernelArg::I64(n as i64),
            KernelArg::F32(p),
            KernelArg::U64(seed),
        ],
    )
}

// ---- matmul -----------------------------------------------------------------------------------

/// The shape of a (batched) GEMM C = alpha·op(A)·op(B) + beta·C, op(A): m×k, op(B): k×n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored k×m (use Aᵀ).
    pub trans_a: bool,
    /// B is stored n×k (use Bᵀ).
    pub trans_b: bool,
    /// Number of independent products, stored back to back.
    pub batch: usize,
}

impl Gemm {
    /// A plain m×k times k×n product.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            batch: 1,
        }
    }
    pub fn trans_a(mut self) -> Self {
        self.trans_a = true;
        self
    }
    pub fn trans_b(mut self) -> Self {
        self.trans_b = true;
        self
    }
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

/// C = alpha·op(A)·op(B) + beta·C (+ bias[n] on every row). With beta = 0, C is not read.
pub fn matmul(
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
    c: &DeviceBuffer<f32>,
    bias: Option<&DeviceBuffer<f32>>,
    g: Gemm,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let (sa, sb) = (g.m * g.k, g.k * g.n);
    a.check_len("cuda matmul (A)", g.batch * sa)?;
    b.check_len("cuda matmul (B)", g.batch * sb)?;
    matmul_strided(a, b, c, bias, g, alpha, beta, sa, sb)
}

/// [`matmul`] with explicit batch strides of A and B (in elements): 0 broadcasts one matrix
/// over the batch. C is dense, `batch·m·n`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
    c: &DeviceBuffer<f32>,
    bias: Option<&DeviceBuffer<f32>>,
    g: Gemm,
    alpha: f32,
    beta: f32,
    stride_a: usize,
    stride_b: usize,
) -> Result<()> {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
        batch,
    } = g;
    for (what, v) in [("m", m), ("n", n), ("k", k)] {
        if v > i32::MAX as usize {
            return Err(Error::invalid(
                "cuda matmul",
                format!("{what} = {v} exceeds i32"),
            ));
        }
    }
    if batch > 65535 {
        return Err(Error::invalid(
            "cuda matmul",
            format!("batch {batch} exceeds the 65535 grid limit"),
        ));
    }
    let need = |stride: usize, size: usize| batch.saturating_sub(1) * stride + size;
    if a.len() < need(stride_a, m * k) || b.len() < need(stride_b, k * n) {
        return Err(Error::invalid(
            "cuda matmul",
            format!(
                "operands of {} and {} elements are too small for {batch} products of {m}×{k}·{k}×{n} (batch strides {stride_a}, {stride_b})",
                a.len(),
                b.len()
            ),
        ));
    }
    c.check_len("cuda matmul (C)", batch * m * n)?;
    if let Some(bias) = bias {
        bias.check_len("cuda matmul (bias)", n)?;
    }
    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let grid = [blocks_for(n, 128)?, blocks_for(m, 128)?, batch as u32];
    launch(
        a.gpu(),
        "matmul",
        grid,
        [256, 1, 1],
        &[
            a.arg(),
            b.arg(),
            c.arg(),
            KernelArg::Ptr(bias.map_or(0, |b| b.ptr())),
            KernelArg::I32(m as i32),
            i32_arg(n)?,
            KernelArg::I32(k as i32),
            KernelArg::I32(trans_a as i32),
            KernelArg::I32(trans_b as i32),
            KernelArg::I64(stride_a as i64),
            KernelArg::I64(stride_b as i64),
            KernelArg::I64((m * n) as i64),
            KernelArg::F32(alpha),
            KernelArg::F32(beta),
        ],
    )
}

// ---- reductions -------------------------------------------------------------------------------

fn rows_per_chunk(rows: usize) -> usize {
    rows.div_ceil(65535).max(64)
}

/// out[c] (+)= Σ_r x[r, c] — a bias gradient. Deterministic (two fixed-order stages).
pub fn column_sum(
    x: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<()> {
    x.check_len("cuda column_sum", rows * cols)?;
    out.check_len("cuda column_sum (out)", cols)?;
    let gpu = x.gpu();
    let per = rows_per_chunk(rows);
    let chunks = rows.div_ceil(per).max(1);
    let partial = DeviceBuffer::<f32>::uninit(gpu, chunks * cols)?;
    launch(
        gpu,
        "column_sum_partial",
        [blocks_for(cols, THREADS)?, chunks as u32, 1],
        [THREADS, 1, 1],
        &[
            x.arg(),
            partial.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            i32_arg(per)?,
        ],
    )?;
    column_sum_finish(&partial, out, chunks, cols, accumulate)
}

fn column_sum_finish(
    partial: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    chunks: usize,
    cols: usize,
    accumulate: bool,
) -> Result<()> {
    launch(
        partial.gpu(),
        "column_sum_finish",
        [blocks_for(cols, THREADS)?, 1, 1],
        [THREADS, 1, 1],
        &[
            partial.arg(),
            out.arg(),
            i32_arg(chunks)?,
            i32_arg(cols)?,
            KernelArg::I32(accumulate as i32),
        ],
    )
}

fn sum_impl(x: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>, squares: bool) -> Result<()> {
    out.check_len("cuda sum (out)", 1)?;
    let gpu = x.gpu();
    let blocks = blocks_for(x.len(), THREADS)?.min(1024);
    let partial = DeviceBuffer::<f32>::uninit(gpu, blocks as usize)?;
    launch(
        gpu,
        "sum_partial",
        [blocks, 1, 1],
        [THREADS, 1, 1],
        &[
            x.arg(),
            partial.arg(),
            KernelArg::I64(x.len() as i64),
            KernelArg::I32(squares as i32),
        ],
    )?;
    launch(
        gpu,
        "sum_finish",
        [1, 1, 1],
        [1024, 1, 1],
        &[partial.arg(), out.arg(), KernelArg::I32(blocks as i32)],
    )
}

/// out[0] = Σ x. Deterministic.
pub fn sum(x: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>) -> Result<()> {
    sum_impl(x, out, false)
}

/// out[0] = Σ x². Deterministic.
pub fn sum_squares(x: &DeviceBuffer<f32>, out: &DeviceBuffer<f32>) -> Result<()> {
    sum_impl(x, out, true)
}

// ---- softmax ----------------------------------------------------------------------------------

fn row_op(
    name: &str,
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
    c: Option<&DeviceBuffer<f32>>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    a.check_len("cuda softmax", rows * cols)?;
    b.check_len("cuda softmax", rows * cols)?;
    let mut args = vec![a.arg(), b.arg()];
    if let Some(c) = c {
        c.check_len("cuda softmax", rows * cols)?;
        args.push(c.arg());
    }
    args.push(i32_arg(cols)?);
    if rows == 0 {
        return Ok(());
    }
    launch(
        a.gpu(),
        name,
        [blocks_for(rows, 1)?, 1, 1],
        [row_block(cols), 1, 1],
        &args,
    )
}

/// Row-wise softmax of an [rows, cols] matrix.
pub fn softmax_forward(
    x: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    row_op("softmax_forward", x, y, None, rows, cols)
}

/// dx = y ⊙ (dy − Σ dy ⊙ y).
pub fn softmax_backward(
    y: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    row_op("softmax_backward", y, dy, Some(dx), rows, cols)
}

/// Row-wise log-softmax.
pub fn log_softmax_forward(
    x: &DeviceBuffer<f32>,
    z: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    row_op("log_softmax_forward", x, z, None, rows, cols)
}

/// dx = dz − exp(z) · Σ dz.
pub fn log_softmax_backward(
    z: &DeviceBuffer<f32>,
    dz: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    row_op("log_softmax_backward", z, dz, Some(dx), rows, cols)
}

// ---- layer norm -------------------------------------------------------------------------------

/// The per-row statistics the forward saves for the backward.
pub struct LayerNormStats {
    pub mean: DeviceBuffer<f32>,
    pub rstd: DeviceBuffer<f32>,
}

const LN_ROWS_PER_BLOCK: u32 = 8;

/// y = scale ⊙ (x − μ)/√(σ² + eps) + shift over rows of `cols`; writes the statistics.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    x: &DeviceBuffer<f32>,
    scale: &DeviceBuffer<f32>,
    shift: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    stats: &LayerNormStats,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    same_len("cuda layer_norm", rows * cols, &[x, y])?;
    same_len("cuda layer_norm (params)", cols, &[scale, shift])?;
    same_len("cuda layer_norm (stats)", rows, &[&stats.mean, &stats.rstd])?;
    launch(
        x.gpu(),
        "layer_norm_forward",
        [blocks_for(rows, LN_ROWS_PER_BLOCK)?, 1, 1],
        [32 * LN_ROWS_PER_BLOCK, 1, 1],
        &[
            x.arg(),
            scale.arg(),
            shift.arg(),
            y.arg(),
            stats.mean.arg(),
            stats.rstd.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            KernelArg::F32(eps),
        ],
    )
}

/// Layer-norm backward: dx (+)= …, and dscale += Σ dy ⊙ x̂, dshift += Σ dy (accumulated, as
/// parameter gradients are).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    x: &DeviceBuffer<f32>,
    scale: &DeviceBuffer<f32>,
    stats: &LayerNormStats,
    dy: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    dscale: &DeviceBuffer<f32>,
    dshift: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
    accumulate_dx: bool,
) -> Result<()> {
    same_len("cuda layer_norm_backward", rows * cols, &[x, dy, dx])?;
    same_len(
        "cuda layer_norm_backward (params)",
        cols,
        &[scale, dscale, dshift],
    )?;
    same_len(
        "cuda layer_norm_backward (stats)",
        rows,
        &[&stats.mean, &stats.rstd],
    )?;
    let gpu = x.gpu();
    launch(
        gpu,
        "layer_norm_backward_input",
        [blocks_for(rows, LN_ROWS_PER_BLOCK)?, 1, 1],
        [32 * LN_ROWS_PER_BLOCK, 1, 1],
        &[
            x.arg(),
            scale.arg(),
            stats.mean.arg(),
            stats.rstd.arg(),
            dy.arg(),
            dx.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            KernelArg::I32(accumulate_dx as i32),
        ],
    )?;
    let per = rows_per_chunk(rows);
    let chunks = rows.div_ceil(per).max(1);
    let ps = DeviceBuffer::<f32>::uninit(gpu, chunks * cols)?;
    let pb = DeviceBuffer::<f32>::uninit(gpu, chunks * cols)?;
    launch(
        gpu,
        "layer_norm_backward_params_partial",
        [blocks_for(cols, THREADS)?, chunks as u32, 1],
        [THREADS, 1, 1],
        &[
            x.arg(),
            stats.mean.arg(),
            stats.rstd.arg(),
            dy.arg(),
            ps.arg(),
            pb.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            i32_arg(per)?,
        ],
    )?;
    column_sum_finish(&ps, dscale, chunks, cols, true)?;
    column_sum_finish(&pb, dshift, chunks, cols, true)
}

// ---- RMS norm ---------------------------------------------------------------------------------

/// y = weight ⊙ x/√(mean(x²) + eps) over rows of `cols`; writes 1/√(mean(x²) + eps) per row.
pub fn rms_norm_forward(
    x: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    rstd: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    same_len("cuda rms_norm", rows * cols, &[x, y])?;
    same_len("cuda rms_norm (weight)", cols, &[weight])?;
    same_len("cuda rms_norm (rstd)", rows, &[rstd])?;
    launch(
        x.gpu(),
        "rms_norm_forward",
        [blocks_for(rows, LN_ROWS_PER_BLOCK)?, 1, 1],
        [32 * LN_ROWS_PER_BLOCK, 1, 1],
        &[
            x.arg(),
            weight.arg(),
            y.arg(),
            rstd.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            KernelArg::F32(eps),
        ],
    )
}

/// RMS-norm backward: dx = …, and dweight += Σ_rows dy ⊙ x̂ (accumulated, as parameter
/// gradients are; fixed-order partial sums, so deterministic).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward(
    x: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    rstd: &DeviceBuffer<f32>,
    dy: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    dweight: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    same_len("cuda rms_norm_backward", rows * cols, &[x, dy, dx])?;
    same_len("cuda rms_norm_backward (weight)", cols, &[weight, dweight])?;
    same_len("cuda rms_norm_backward (rstd)", rows, &[rstd])?;
    let gpu = x.gpu();
    launch(
        gpu,
        "rms_norm_backward_input",
        [blocks_for(rows, LN_ROWS_PER_BLOCK)?, 1, 1],
        [32 * LN_ROWS_PER_BLOCK, 1, 1],
        &[
            x.arg(),
            weight.arg(),
            rstd.arg(),
            dy.arg(),
            dx.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
        ],
    )?;
    let per = rows_per_chunk(rows);
    let chunks = rows.div_ceil(per).max(1);
    let partial = DeviceBuffer::<f32>::uninit(gpu, chunks * cols)?;
    launch(
        gpu,
        "rms_norm_backward_weight_partial",
        [blocks_for(cols, THREADS)?, chunks as u32, 1],
        [THREADS, 1, 1],
        &[
            x.arg(),
            rstd.arg(),
            dy.arg(),
            partial.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
            i32_arg(per)?,
        ],
    )?;
    column_sum_finish(&partial, dweight, chunks, cols, true)
}

// ---- rotary position embedding -----------------------------------------------------------------

/// Rotates every pair (x[…, k], x[…, half + k]) of `x (rows, t_len, 2·half)` by the angle whose
/// cosine and sine are `cos[t, k]`, `sin[t, k]` — by minus that angle with `sign = −1` (the
/// backward).
#[allow(clippy::too_many_arguments)]
pub fn rope_rotate(
    x: &DeviceBuffer<f32>,
    cos: &DeviceBuffer<f32>,
    sin: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    rows: usize,
    t_len: usize,
    half: usize,
    sign: f32,
) -> Result<()> {
    same_len("cuda rope", rows * t_len * 2 * half, &[x, y])?;
    same_len("cuda rope (tables)", t_len * half, &[cos, sin])?;
    elementwise(
        x.gpu(),
        "rope_rotate",
        rows * t_len * half,
        &[
            x.arg(),
            cos.arg(),
            sin.arg(),
            y.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(t_len)?,
            i32_arg(half)?,
            KernelArg::F32(sign),
        ],
    )
}

// ---- cross-entropy ----------------------------------------------------------------------------

fn check_targets(targets: &DeviceBuffer<i32>, rows: usize) -> Result<()> {
    targets.check_len("cuda cross_entropy (targets)", rows)
}

/// losses[r] = −log softmax(logits[r])[targets[r]] (0 where the target is negative: ignored).
/// Targets must lie in 0..cols or be negative (the autograd op checks them on the host first).
pub fn cross_entropy_forward(
    logits: &DeviceBuffer<f32>,
    targets: &DeviceBuffer<i32>,
    losses: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    logits.check_len("cuda cross_entropy", rows * cols)?;
    check_targets(targets, rows)?;
    losses.check_len("cuda cross_entropy (losses)", rows)?;
    if rows == 0 {
        return Ok(());
    }
    launch(
        logits.gpu(),
        "cross_entropy_forward",
        [blocks_for(rows, 1)?, 1, 1],
        [row_block(cols), 1, 1],
        &[logits.arg(), targets.arg(), losses.arg(), i32_arg(cols)?],
    )
}

// ---- embeddings -------------------------------------------------------------------------------

/// An error unless every id is in 0..vocab.
pub fn check_token_ids(ids: &[i32], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
        Some(&bad) => Err(Error::IndexOutOfRange {
            op: "cuda embedding (token id)",
            index: bad as i64,
            size: vocab,
        }),
        None => Ok(()),
    }
}

// ---- attention --------------------------------------------------------------------------------

/// Shape of a causal multi-head attention over q [batch, seq, heads·head_dim] and k, v
/// [batch, seq, kv_heads·head_dim] (grouped-query attention when `kv_heads < heads`; it must
/// divide `heads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    /// Multi-head attention: as many KV heads as query heads.
    pub fn mha(batch: usize, seq: usize, heads: usize, head_dim: usize) -> Self {
        AttentionShape {
            batch,
            seq,
            heads,
            kv_heads: heads,
            head_dim,
        }
    }

    fn check(&self) -> Result<&'static str> {
        let AttentionShape {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = *self;
        if batch > 65535 || heads > 65535 || seq > i32::MAX as usize {
            return Err(Error::invalid(
                "cuda attention",
                format!("batch {batch} and heads {heads} must be ≤ 65535, seq {seq} fit an int"),
            ));
        }
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::invalid(
                "cuda attention",
                format!("{kv_heads} KV heads do not divide {heads} query heads"),
            ));
        }
        match head_dim {
            1..=16 => Ok("d16"),
            17..=32 => Ok("d32"),
            33..=64 => Ok("d64"),
            _ => Err(Error::invalid(
                "cuda attention",
                format!("head_dim {head_dim} is not supported by the fused kernel (1..=64; GPT-2 uses 64); seq {seq}"),
            )),
        }
    }
    fn numel(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }
    fn kv_numel(&self) -> usize {
        self.batch * self.seq * self.kv_heads * self.head_dim
    }
    fn rows(&self) -> usize {
        self.batch * self.heads * self.seq
    }
    /// One block per 64 rows of a (query or KV) head: `heads` of them.
    fn grid(&self, heads: usize) -> Result<[u32; 3]> {
        Ok([blocks_for(self.seq, 64)?, heads as u32, self.batch as u32])
    }
    fn ints(&self) -> [KernelArg; 4] {
        [
            // Bounded by `check` (seq ≤ i32::MAX, kv_heads ≤ heads ≤ 65535, head dim ≤ 64).
            KernelArg::I32(self.seq as i32),
            KernelArg::I32(self.heads as i32),
            KernelArg::I32(self.kv_heads as i32),
            KernelArg::I32(self.head_dim as i32),
        ]
    }
}

/// Fused causal attention: o = softmax(q kᵀ/√D + causal mask) (with dropout p on the weights) · v,
/// and lse [batch, heads, seq] (the log-sum-exp the backward needs).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    q: &DeviceBuffer<f32>,
    k: &DeviceBuffer<f32>,
    v: &DeviceBuffer<f32>,
    o: &DeviceBuffer<f32>,
    lse: &DeviceBuffer<f32>,
    s: AttentionShape,
    dropout_p: f32,
    seed: u64,
) -> Result<()> {
    let suffix = s.check()?;
    check_p("cuda attention", dropout_p)?;
    same_len("cuda attention", s.numel(), &[q, o])?;
    same_len("cuda attention (k, v)", s.kv_numel(), &[k, v])?;
    lse.check_len("cuda attention (lse)", s.rows())?;
    if s.numel() == 0 {
        return Ok(());
    }
    let [t, h, kvh, d] = s.ints();
    launch(
        q.gpu(),
        &format!("attention_forward_{suffix}"),
        s.grid(s.heads)?,
        [128, 1, 1],
        &[
            q.arg(),
            k.arg(),
            v.arg(),
            o.arg(),
            lse.arg(),
            t,
            h,
            kvh,
            d,
            KernelArg::F32(dropout_p),
            KernelArg::U64(seed),
        ],
    )
}

/// Backward of [`attention_forward`] by recomputation: writes dq, dk, dv (not accumulated).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &DeviceBuffer<f32>,
    k: &DeviceBuffer<f32>,
    v: &DeviceBuffer<f32>,
    o: &DeviceBuffer<f32>,
    lse: &DeviceBuffer<f32>,
    dout: &DeviceBuffer<f32>,
    dq: &DeviceBuffer<f32>,
    dk: &DeviceBuffer<f32>,
    dv: &DeviceBuffer<f32>,
    s: AttentionShape,
    dropout_p: f32,
    seed: u64,
) -> Result<()> {
    let suffix = s.check()?;
    check_p("cuda attention_backward", dropout_p)?;
    same_len("cuda attention_backward", s.numel(), &[q, o, dout, dq])?;
    same_len(
        "cuda attention_backward (k, v, dk, dv)",
        s.kv_numel(),
        &[k, v, dk, dv],
    )?;
    lse.check_len("cuda attention_backward (lse)", s.rows())?;
    if s.numel() == 0 {
        return Ok(());
    }
    let gpu = q.gpu();
    let delta = DeviceBuffer::<f32>::uninit(gpu, s.rows())?;
    let [t, h, kvh, d] = s.ints();
    elementwise(
        gpu,
        "attention_backward_delta",
        s.rows(),
        &[o.arg(), dout.arg(), delta.arg(), i32_arg(s.batch)?, t, h, d],
    )?;
    let common = [
        q.arg(),
        k.arg(),
        v.arg(),
        dout.arg(),
        lse.arg(),
        delta.arg(),
    ];
    let tail = [
        t,
        h,
        kvh,
        d,
        KernelArg::F32(dropout_p),
        KernelArg::U64(seed),
    ];
    let mut args: Vec<KernelArg> = common.to_vec();
    args.push(dq.arg());
    args.extend_from_slice(&tail);
    launch(
        gpu,
        &format!("attention_backward_dq_{suffix}"),
        s.grid(s.heads)?,
        [128, 1, 1],
        &args,
    )?;
    let mut args: Vec<KernelArg> = common.to_vec();
    args.push(dk.arg());
    args.push(dv.arg());
    args.extend_from_slice(&tail);
    launch(
        gpu,
        &format!("attention_backward_dkdv_{suffix}"),
        s.grid(s.kv_heads)?,
        [128, 1, 1],
        &args,
    )
}

/// The naive causal attention (scores matrix in memory): the baseline for the fused kernel.
/// `scores` is scratch of batch·heads·seq² values.
pub fn attention_naive_forward(
    q: &DeviceBuffer<f32>,
    k: &DeviceBuffer<f32>,
    v: &DeviceBuffer<f32>,
    o: &DeviceBuffer<f32>,
    scores: &DeviceBuffer<f32>,
    s: AttentionShape,
) -> Result<()> {
    if s.kv_heads != s.heads {
        return Err(Error::invalid(
            "cuda attention_naive",
            "the naive baseline is multi-head only (kv_heads = heads)",
        ));
    }
    same_len("cuda attention_naive", s.numel(), &[q, k, v, o])?;
    scores.check_len("cuda attention_naive (scores)", s.rows() * s.seq)?;
    let gpu = q.gpu();
    let [t, h, _, d] = s.ints();
    let b = i32_arg(s.batch)?;
    elementwise(
        gpu,
        "attention_naive_scores",
        s.rows() * s.seq,
        &[q.arg(), k.arg(), scores.arg(), b, t, h, d],
    )?;
    launch(
        gpu,
        "softmax_forward",
        [blocks_for(s.rows(), 1)?, 1, 1],
        [row_block(s.seq), 1, 1],
        &[scores.arg(), scores.arg(), i32_arg(s.seq)?],
    )?;
    elementwise(
        gpu,
        "attention_naive_output",
        s.numel(),
        &[scores.arg(), v.arg(), o.arg(), b, t, h, d],
    )
}

// ---- strided views ------------------------------------------------------------------------------

/// Row-major strides of `shape`, in elements.
pub fn standard_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        s[i] = acc;
        acc *= shape[i];
    }
    s
}

/// The most axes a strided kernel takes (view.cu, binary.cu).
pub const MAX_RANK: usize = 6;

/// Merges neighbouring axes that are contiguous with each other in every one of `strides` (and
/// drops size-1 axes), so a view of any rank whose irregular axes are few fits in [`MAX_RANK`].
pub fn merge_axes(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for ax in 0..shape.len() {
        let n = shape[ax];
        if n == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| {
                let last = *o.last().expect("same length as out_shape");
                last == s[ax] * n
            });
        if mergeable {
            *out_shape.last_mut().expect("non-empty") *= n;
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().expect("non-empty") = s[ax];
            }
        } else {
            out_shape.push(n);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[ax]);
            }
        }
    }
    (out_shape, out_strides)
}

/// The highest element a view reads (offset + Σ (n−1)·stride), for the bounds check.
fn view_end(offset: usize, shape: &[usize], strides: &[usize]) -> usize {
    offset
        + shape
            .iter()
            .zip(strides)
            .map(|(&n, &s)| n.saturating_sub(1) * s)
            .sum::<usize>()
}

fn check_view(
    op: &'static str,
    buf: &DeviceBuffer<f32>,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Result<()> {
    if shape.iter().product::<usize>() > 0 && view_end(offset, shape, strides) >= buf.len() {
        return Err(Error::invalid(
            op,
            format!(
                "view (offset {offset}, shape {shape:?}, strides {strides:?}) reaches past a buffer of {}",
                buf.len()
            ),
        ));
    }
    Ok(())
}

fn padded(v: &[usize], fill: usize) -> [KernelArg; MAX_RANK] {
    std::array::from_fn(|i| KernelArg::I64(v.get(i).copied().unwrap_or(fill) as i64))
}

fn too_many_axes(op: &'static str, shape: &[usize]) -> Error {
    Error::invalid(
        op,
        format!(
            "a strided view of shape {shape:?} has more than {MAX_RANK} irregular axes; make it contiguous in steps"
        ),
    )
}

/// Copies the view (`src_off`, `src_strides`) of `src` into the view (`dst_off`, `dst_strides`) of
/// `dst`, both of `shape` (strides in elements).
pub fn strided_copy(
    src: &DeviceBuffer<f32>,
    src_off: usize,
    src_strides: &[usize],
    dst: &DeviceBuffer<f32>,
    dst_off: usize,
    dst_strides: &[usize],
    shape: &[usize],
) -> Result<()> {
    check_view("cuda strided_copy (src)", src, src_off, shape, src_strides)?;
    check_view("cuda strided_copy (dst)", dst, dst_off, shape, dst_strides)?;
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let (m, s) = merge_axes(shape, &[src_strides, dst_strides]);
    if m.len() > MAX_RANK {
        return Err(too_many_axes("cuda strided_copy", shape));
    }
    let mut args = vec![
        src.arg(),
        KernelArg::I64(src_off as i64),
        dst.arg(),
        KernelArg::I64(dst_off as i64),
        KernelArg::I64(n as i64),
        KernelArg::I32(m.len() as i32),
    ];
    args.extend(padded(&m, 1));
    args.extend(padded(&s[0], 0));
    args.extend(padded(&s[1], 0));
    elementwise(src.gpu(), "strided_copy", n, &args)
}

/// The op of [`binary_broadcast`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
}

/// One operand of [`binary_broadcast`]: a buffer seen as a view of the output's shape (stride 0 on
/// broadcast axes).
pub struct Operand<'a> {
    pub buffer: &'a DeviceBuffer<f32>,
    pub offset: usize,
    pub strides: &'a [usize],
}

/// out (dense, `shape`) = a ∘ b elementwise.
pub fn binary_broadcast(
    op: BinaryOp,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &DeviceBuffer<f32>,
    shape: &[usize],
) -> Result<()> {
    check_view("cuda binary (a)", a.buffer, a.offset, shape, a.strides)?;
    check_view("cuda binary (b)", b.buffer, b.offset, shape, b.strides)?;
    let n: usize = shape.iter().product();
    out.check_len("cuda binary (out)", n)?;
    if n == 0 {
        return Ok(());
    }
    let dense = standard_strides(shape);
    let (m, s) = merge_axes(shape, &[a.strides, b.strides, &dense]);
    if m.len() > MAX_RANK {
        return Err(too_many_axes("cuda binary", shape));
    }
    let mut args = vec![
        KernelArg::I32(op as i32),
        a.buffer.arg(),
        KernelArg::I64(a.offset as i64),
        b.buffer.arg(),
        KernelArg::I64(b.offset as i64),
        out.arg(),
        KernelArg::I64(n as i64),
        KernelArg::I32(m.len() as i32),
    ];
    args.extend(padded(&m, 1));
    args.extend(padded(&s[0], 0));
    args.extend(padded(&s[1], 0));
    elementwise(out.gpu(), "binary_broadcast", n, &args)
}

// ---- unary --------------------------------------------------------------------------------------

/// y = f(x) for the op code of unary.cu.
pub fn unary_forward(
    code: i32,
    x: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    c: f32,
) -> Result<()> {
    let n = x.len();
    same_len("cuda unary", n, &[y])?;
    elementwise(
        x.gpu(),
        "unary_forward",
        n,
        &[
            KernelArg::I32(code),
            x.arg(),
            y.arg(),
            KernelArg::I64(n as i64),
            KernelArg::F32(c),
        ],
    )
}

/// dx = g ⊙ f'(s) for the op code of unary.cu (`s` the saved input or output).
pub fn unary_backward(
    code: i32,
    s: &DeviceBuffer<f32>,
    g: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
    c: f32,
) -> Result<()> {
    let n = s.len();
    same_len("cuda unary_backward", n, &[g, dx])?;
    elementwise(
        s.gpu(),
        "unary_backward",
        n,
        &[
            KernelArg::I32(code),
            s.arg(),
            g.arg(),
            dx.arg(),
            KernelArg::I64(n as i64),
            KernelArg::F32(c),
        ],
    )
}

// ---- gather, loss -------------------------------------------------------------------------------

/// out[p, :] = w[ids[p], :] for a (vocab, cols) table; ids checked on the host before upload.
pub fn embedding_gather(
    ids: &DeviceBuffer<i32>,
    w: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    vocab: usize,
    cols: usize,
) -> Result<()> {
    let rows = ids.len();
    w.check_len("cuda embedding_gather (table)", vocab * cols)?;
    out.check_len("cuda embedding_gather (out)", rows * cols)?;
    elementwise(
        w.gpu(),
        "embedding_gather",
        rows * cols,
        &[
            ids.arg(),
            w.arg(),
            out.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(cols)?,
        ],
    )
}

/// out[r, j] = x[r, idx[r, j]] for `rows` rows of `v` values and `k` indices each; the indices
/// were checked (0 ≤ idx < v) on the host.
pub fn gather_last(
    x: &DeviceBuffer<f32>,
    idx: &DeviceBuffer<i32>,
    out: &DeviceBuffer<f32>,
    rows: usize,
    v: usize,
    k: usize,
) -> Result<()> {
    x.check_len("cuda gather_last (x)", rows * v)?;
    idx.check_len("cuda gather_last (index)", rows * k)?;
    out.check_len("cuda gather_last (out)", rows * k)?;
    elementwise(
        x.gpu(),
        "gather_last",
        rows * k,
        &[
            x.arg(),
            idx.arg(),
            out.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(v)?,
            i32_arg(k)?,
        ],
    )
}

/// dx[r, idx[r, j]] += g[r, j] (dx zeroed by the caller), each row's indices in order.
pub fn gather_last_backward(
    g: &DeviceBuffer<f32>,
    idx: &DeviceBuffer<i32>,
    dx: &DeviceBuffer<f32>,
    rows: usize,
    v: usize,
    k: usize,
) -> Result<()> {
    g.check_len("cuda gather_last_backward (g)", rows * k)?;
    idx.check_len("cuda gather_last_backward (index)", rows * k)?;
    dx.check_len("cuda gather_last_backward (dx)", rows * v)?;
    elementwise(
        g.gpu(),
        "gather_last_backward",
        rows,
        &[
            g.arg(),
            idx.arg(),
            dx.arg(),
            KernelArg::I64(rows as i64),
            i32_arg(v)?,
            i32_arg(k)?,
        ],
    )
}

/// dw[v] += Σ_{p : ids[p] = v} dout[p] for a (vocab, cols) table, in a fixed order (no atomics):
/// the positions are grouped by id on the host, where the ids are.
pub fn embedding_scatter_add(
    ids: &[i32],
    dout: &DeviceBuffer<f32>,
    dw: &DeviceBuffer<f32>,
    vocab: usize,
    cols: usize,
) -> Result<()> {
    let rows = ids.len();
    check_token_ids(ids, vocab)?;
    dout.check_len("cuda embedding_scatter_add (dout)", rows * cols)?;
    dw.check_len("cuda embedding_scatter_add (dw)", vocab * cols)?;
    if rows == 0 {
        return Ok(());
    }
    let gpu = dout.gpu();
    // Counting sort of positions by id: unique ids ascending, positions ascending within each.
    let mut order: Vec<i32> = (0..rows as i32).collect();
    order.sort_by_key(|&p| (ids[p as usize], p));
    let mut uniq = Vec::new();
    let mut offsets = Vec::new();
    for (n, &p) in order.iter().enumerate() {
        let id = ids[p as usize];
        if uniq.last() != Some(&id) {
            uniq.push(id);
            offsets.push(n as i32);
        }
    }
    offsets.push(rows as i32);
    let uniq_d = DeviceBuffer::from_slice(gpu, &uniq)?;
    let off_d = DeviceBuffer::from_slice(gpu, &offsets)?;
    let pos_d = DeviceBuffer::from_slice(gpu, &order)?;
    launch(
        gpu,
        "embedding_backward_tokens",
        [uniq.len() as u32, 1, 1],
        [row_block(cols).min(THREADS), 1, 1],
        &[
            uniq_d.arg(),
            off_d.arg(),
            pos_d.arg(),
            dout.arg(),
            dw.arg(),
            i32_arg(cols)?,
        ],
    )
    // The small index buffers are freed when this function returns; a real GPU frees them only
    // after queued work that uses them, since `free` is stream-ordered (see driver.rs).
}

/// dlogits = dloss[0] · inv_count · (softmax − onehot) per row (0 where the target is negative).
pub fn cross_entropy_backward(
    logits: &DeviceBuffer<f32>,
    targets: &DeviceBuffer<i32>,
    dloss: &DeviceBuffer<f32>,
    dlogits: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
    inv_count: f32,
) -> Result<()> {
    same_len(
        "cuda cross_entropy_backward",
        rows * cols,
        &[logits, dlogits],
    )?;
    check_targets(targets, rows)?;
    dloss.check_len("cuda cross_entropy_backward (dloss)", 1)?;
    if rows == 0 {
        return Ok(());
    }
    launch(
        logits.gpu(),
        "cross_entropy_backward",
        [blocks_for(rows, 1)?, 1, 1],
        [row_block(cols), 1, 1],
        &[
            logits.arg(),
            targets.arg(),
            dloss.arg(),
            dlogits.arg(),
            i32_arg(cols)?,
            KernelArg::F32(inv_count),
        ],
    )
}

/// One tensor's buffers for [`adamw_update_multi`] (all of the same length).
pub struct AdamwTensor<'a> {
    pub param: &'a DeviceBuffer<f32>,
    pub grad: &'a DeviceBuffer<f32>,
    pub m: &'a DeviceBuffer<f32>,
    pub v: &'a DeviceBuffer<f32>,
    /// 1 − lr·λ, or 1 for a tensor exempt from weight decay.
    pub decay: f32,
}

/// The fused AdamW update (kernels/adamw.cu) of many tensors in one launch: `step_size` =
/// lr / (1 − β₁ᵗ), each tensor's `decay` = 1 − lr·λ (1 when exempt),
/// `bias_correction2_sqrt` = √(1 − β₂ᵗ). The table of addresses, offsets and decays is
/// three small copies to the device.
#[allow(clippy::too_many_arguments)]
pub fn adamw_update_multi(
    tensors: &[AdamwTensor<'_>],
    step_size: f32,
    betas: (f32, f32),
    eps: f32,
    bias_correction2_sqrt: f32,
) -> Result<()> {
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let gpu = first.param.gpu();
    let mut ptrs = Vec::with_capacity(4 * tensors.len());
    let mut offsets = vec![0i64];
    let mut decays = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n = t.param.len();
        same_len("cuda adamw_multi", n, &[t.grad, t.m, t.v])?;
        ptrs.extend([t.param.ptr(), t.grad.ptr(), t.m.ptr(), t.v.ptr()]);
        offsets.push(offsets.last().expect("non-empty") + n as i64);
        decays.push(t.decay);
    }
    let total = *offsets.last().expect("non-empty") as usize;
    if total == 0 {
        return Ok(());
    }
    let ptrs_d = DeviceBuffer::from_slice(gpu, &ptrs)?;
    let offsets_d = DeviceBuffer::from_slice(gpu, &offsets)?;
    let decays_d = DeviceBuffer::from_slice(gpu, &decays)?;
    elementwise(
        gpu,
        "adamw_update_multi",
        total,
        &[
            ptrs_d.arg(),
            offsets_d.arg(),
            decays_d.arg(),
            i32_arg(tensors.len())?,
            KernelArg::F32(step_size),
            KernelArg::F32(betas.0),
            KernelArg::F32(betas.1),
            KernelArg::F32(eps),
            KernelArg::F32(bias_correction2_sqrt),
        ],
    )
    // The table buffers are freed on return; on a GPU the stream-ordered free (or the caching
    // allocator's reuse on the same stream) waits for the launch.
}

// ---- max over an axis, masked_fill --------------------------------------------------------------

/// y[o, i] = max_j x[o, j, i] and index[o, i] = its first argmax (NaN maximal).
pub fn max_axis_forward(
    x: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    index: &DeviceBuffer<i32>,
    (outer, n, inner): (usize, usize, usize),
) -> Result<()> {
    x.check_len("cuda max (x)", outer * n * inner)?;
    y.check_len("cuda max (y)", outer * inner)?;
    index.check_len("cuda max (index)", outer * inner)?;
    if n == 0 || n > i32::MAX as usize {
        return Err(Error::invalid("cuda max", format!("axis of {n} elements")));
    }
    elementwise(
        x.gpu(),
        "max_axis_forward",
        outer * inner,
        &[
            x.arg(),
            y.arg(),
            index.arg(),
            KernelArg::I64(outer as i64),
            i32_arg(n)?,
            KernelArg::I64(inner as i64),
        ],
    )
}

/// dx[o, j, i] = g[o, i] where j = index[o, i], else 0.
pub fn max_axis_backward(
    g: &DeviceBuffer<f32>,
    index: &DeviceBuffer<i32>,
    dx: &DeviceBuffer<f32>,
    (outer, n, inner): (usize, usize, usize),
) -> Result<()> {
    g.check_len("cuda max_backward (g)", outer * inner)?;
    index.check_len("cuda max_backward (index)", outer * inner)?;
    dx.check_len("cuda max_backward (dx)", outer * n * inner)?;
    elementwise(
        g.gpu(),
        "max_axis_backward",
        outer * n * inner,
        &[
            g.arg(),
            index.arg(),
            dx.arg(),
            KernelArg::I64(outer as i64),
            i32_arg(n)?,
            KernelArg::I64(inner as i64),
        ],
    )
}

/// out = mask ? value : x (mask 1.0 / 0.0 per element).
pub fn masked_fill_forward(
    x: &DeviceBuffer<f32>,
    mask: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    value: f32,
) -> Result<()> {
    let n = x.len();
    same_len("cuda masked_fill", n, &[mask, out])?;
    elementwise(
        x.gpu(),
        "masked_fill_forward",
        n,
        &[
            x.arg(),
            mask.arg(),
            out.arg(),
            KernelArg::I64(n as i64),
            KernelArg::F32(value),
        ],
    )
}

/// dx = mask ? 0 : g.
pub fn masked_fill_backward(
    g: &DeviceBuffer<f32>,
    mask: &DeviceBuffer<f32>,
    dx: &DeviceBuffer<f32>,
) -> Result<()> {
    let n = g.len();
    same_len("cuda masked_fill_backward", n, &[mask, dx])?;
    elementwise(
        g.gpu(),
        "masked_fill_backward",
        n,
        &[g.arg(), mask.arg(), dx.arg(), KernelArg::I64(n as i64)],
    )
}
