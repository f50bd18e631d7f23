//! Our single-precision GEMM for the training hot path: `C = alpha·A·B + beta·C` over operands of
//! any strides, the way BLIS and every fast BLAS organise it, with a micro-kernel per instruction
//! set chosen at run time.
//!
//! **Blocking.** The product is cut three ways so each operand is read from the cache level that
//! can hold it:
//!
//! ```text
//! for jc in 0..n step NC            // a panel of B's columns   (stays in L3)
//!   for pc in 0..k step KC          // a slice of the inner dim
//!     pack B[pc.., jc..] → Bp       // KC × NC, in NR-column slivers
//!     for ic in 0..m step MC        // a block of A's rows      (stays in L2)
//!       pack A[ic.., pc..] → Ap     // MC × KC, in MR-row slivers
//!       for each NR-sliver of Bp, each MR-sliver of Ap:
//!         micro-kernel: an MR × NR tile of C += Ap sliver · Bp sliver   (registers, L1)
//! ```
//!
//! **Packing** copies each sliver into the exact order the micro-kernel reads it — for every
//! `l` the MR values `A[i.., l]`, and the NR values `B[l, j..]` — contiguous, zero-padded at the
//! edges. So any layout costs the same (a transposed operand is only other strides: the linear
//! layer's `X·Wᵀ`, `G·W` and `Gᵀ·X` never materialise a transpose), and edge tiles run the same
//! kernel as full ones.
//!
//! **The micro-kernel** keeps the MR × NR tile in vector registers: per `l`, load NR values of
//! B (one or two vectors), broadcast each of the MR values of A, and fuse-multiply-add — MR·NR/W
//! FMAs for NR/W loads and MR broadcasts. AVX-512: 12 × 32 (24 accumulators of 32 registers);
//! AVX2 + FMA: 6 × 16 (12 of 16); a portable 4 × 8 loop for anything else. The tile is then
//! merged into C with alpha and beta (`beta = 0` never reads C, which may be uninitialised).
//!
//! **bf16** (`--precision bf16`, [`Precision`]): the same loops with another packing — operands
//! rounded to bfloat16 and paired along the inner index ([`pack_bf16`]) — and a 12 × 32
//! `vdpbf16ps` micro-kernel that does two products per f32 lane per instruction; the
//! [`Packing`] trait is what differs between the two.
//!
//! **Determinism.** Every element of C is the same sequence of operations — its KC-slices in
//! order, each summed over `l` in order — whatever tile, block or thread computes it, so results
//! do not depend on the thread count (the caller's split) or on where the edges fall.

mod avx2;
mod avx512;
mod avx512_bf16;
mod pack;
mod pack_bf16;
mod peak;
mod portable;

pub use pack_bf16::round_to_bf16;
pub use peak::{dpbf16_peak, fma_peak};

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

/// Inner-dimension slice: the two slivers, KC·(MR + NR) floats (22 KB for AVX-512's 12 × 32),
/// stay in a 32 KB L1. (At 256 the B sliver alone filled it; 128 measured faster on the AVX-512
/// kernel's `G·W` and no slower elsewhere.)
const KC: usize = 128;
/// Rows of A packed at once (a multiple of every kernel's MR): MC·KC·4 = 120 KB, in L2.
const MC: usize = 240;
/// Columns of B packed at once (a multiple of every kernel's NR): KC·NC·4 = 3 MB.
const NC: usize = 3072;

/// The micro-kernels: ours, widest vectors first, then matrixmultiply's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 12 × 32 tiles in 512-bit registers.
    Avx512,
    /// 6 × 16 tiles in 256-bit registers with fused multiply-add.
    Avx2Fma,
    /// 4 × 8 tiles in plain loops: any CPU.
    Portable,
    /// `matrixmultiply::sgemm`, the reference: for comparison and benchmarks.
    MatrixMultiply,
    /// 12 × 32 tiles in 512-bit registers, operands rounded to bfloat16 while they are packed and
    /// multiplied by `vdpbf16ps` (two products per f32 lane per instruction, summed in f32): the
    /// GEMM of `--precision bf16`. Not a plain f32 product — see [`round_to_bf16`].
    Avx512Bf16,
}

impl Kernel {
    /// Its name, as `SCRATCHGPT_GEMM` and the benchmarks spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2Fma => "avx2",
            Kernel::Portable => "portable",
            Kernel::MatrixMultiply => "matrixmultiply",
            Kernel::Avx512Bf16 => "avx512-bf16",
        }
    }

    /// Every kernel, the f32 ones first.
    const ALL: [Kernel; 5] = [
        Kernel::Avx512,
        Kernel::Avx2Fma,
        Kernel::Portable,
        Kernel::MatrixMultiply,
        Kernel::Avx512Bf16,
    ];

    fn from_name(s: &str) -> Option<Kernel> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether it multiplies f32 operands as they are (every kernel but the bf16 one).
    pub fn is_f32(self) -> bool {
        self != Kernel::Avx512Bf16
    }

    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 | Kernel::Avx2Fma | Kernel::Avx512Bf16 => false,
            Kernel::Portable | Kernel::MatrixMultiply => true,
        }
    }

    /// Every f32 kernel this CPU can run (what the tests force one by one), widest first.
    pub fn available() -> Vec<Kernel> {
        Self::ALL
            .into_iter()
            .filter(|k| k.is_f32() && k.supported())
            .collect()
    }

    /// Micro-tile rows and columns.
    fn tile(self) -> (usize, usize) {
        match self {
            Kernel::Avx512 => (avx512::MR, avx512::NR),
            Kernel::Avx2Fma => (avx2::MR, avx2::NR),
            Kernel::Portable | Kernel::MatrixMultiply => (portable::MR, portable::NR),
            Kernel::Avx512Bf16 => (avx512_bf16::MR, avx512_bf16::NR),
        }
    }
}

/// 0 = not chosen yet; otherwise 1 + index in the order of [`Kernel`]'s variants.
static SELECTED: AtomicU8 = AtomicU8::new(0);

fn encode(k: Kernel) -> u8 {
    match k {
        Kernel::Avx512 => 1,
        Kernel::Avx2Fma => 2,
        Kernel::Portable => 3,
        Kernel::MatrixMultiply => 4,
        Kernel::Avx512Bf16 => 5,
    }
}

/// The kernel `f32` products use: `SCRATCHGPT_GEMM` (avx512, avx2, portable, matrixmultiply) if
/// set to one this CPU runs, else matrixmultiply's; chosen once.
///
/// Ours is not the default yet: on this project's AMD EPYC (Zen 4, whose AVX-512 units are 256
/// bits wide) matrixmultiply already reaches 75–90 % of the FMA peak and ours 0.7–1.1× its
/// GFLOP/s (`scratchgpt bench gemm`, docs/performance.md). It becomes the default where and when
/// it measures faster.
pub fn selected() -> Kernel {
    match SELECTED.load(Ordering::Relaxed) {
        1 => Kernel::Avx512,
        2 => Kernel::Avx2Fma,
        3 => Kernel::Portable,
        4 => Kernel::MatrixMultiply,
        5 => Kernel::Avx512Bf16,
        _ => {
            // First use: the default, unless a `select` got here first.
            let k = default_f32_kernel();
            match SELECTED.compare_exchange(0, encode(k), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => k,
                Err(_) => selected(),
            }
        }
    }
}

/// `SCRATCHGPT_GEMM`'s f32 kernel if set to one this CPU runs, else matrixmultiply's.
fn default_f32_kernel() -> Kernel {
    std::env::var("SCRATCHGPT_GEMM")
        .ok()
        .and_then(|s| Kernel::from_name(&s))
        .filter(|k| k.is_f32() && k.supported())
        .unwrap_or(Kernel::MatrixMultiply)
}

/// Checks `SCRATCHGPT_GEMM`: unset is fine; a name this build does not know, or a kernel this
/// CPU cannot run, is an error saying which (the CLI calls this first, so a typo does not
/// silently leave the default in place).
pub fn check_env() -> crate::error::Result<()> {
    let Ok(name) = std::env::var("SCRATCHGPT_GEMM") else {
        return Ok(());
    };
    match Kernel::from_name(&name) {
        Some(Kernel::Avx512Bf16) => Err(crate::error::Error::invalid(
            "SCRATCHGPT_GEMM",
            "bf16 products change the numbers, not only the speed: ask for them with --precision bf16",
        )),
        None => Err(crate::error::Error::invalid(
            "SCRATCHGPT_GEMM",
            format!(
                "unknown GEMM kernel {name:?}; expected avx512, avx2, portable or matrixmultiply"
            ),
        )),
        Some(k) if !k.supported() => Err(crate::error::Error::invalid(
            "SCRATCHGPT_GEMM",
            format!(
                "this CPU cannot run the {name} kernel; it runs {:?}",
                Kernel::available()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Makes every later `f32` product use `k` (benchmarks compare kernels through the same engine
/// code); returns false, changing nothing, if this CPU cannot run it.
pub fn select(k: Kernel) -> bool {
    if !k.supported() {
        return false;
    }
    SELECTED.store(encode(k), Ordering::Relaxed);
    true
}

thread_local! {
    /// Packing buffers, reused across calls on a thread (3 MB for B, 120 KB for A).
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The same for bf16 pairs (half the bytes per value of the inner dimension).
    static PACKED_BF16: RefCell<(Vec<u32>, Vec<u32>)> =
        const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C = alpha·A·B + beta·C` with the [`selected`] kernel, on the calling thread.
///
/// # Safety
/// As `matrixmultiply::sgemm`: for every `i < m, l < k, j < n` the addresses `a + i·rsa + l·csa`
/// and `b + l·rsb + j·csb` are valid for reads, `c + i·rsc + j·csc` valid for writes (and reads
/// unless `beta == 0`), distinct for distinct `(i, j)`, and not overlapping A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe {
        sgemm_with(
            selected(),
            m,
            k,
            n,
            alpha,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            c,
            rsc,
            csc,
        )
    }
}

/// [`sgemm`] with a given kernel (tests force each one the CPU supports).
///
/// # Safety
/// As [`sgemm`]; and `kernel` must be [`Kernel::supported`] (checked: an unsupported one panics
/// rather than executing instructions the CPU lacks).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_with(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    assert!(
        kernel.supported(),
        "the {} GEMM kernel needs instructions this CPU lacks",
        kernel.name()
    );
    if m == 0 || n == 0 {
        return;
    }
    if kernel == Kernel::MatrixMultiply {
        // SAFETY: the caller's guarantees are matrixmultiply's contract.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        };
        return;
    }
    if k == 0 {
        // An empty sum: C = beta·C (C unread when beta is 0).
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) is inside C's shape; see the contract.
                unsafe {
                    let p = c.offset(i as isize * rsc + j as isize * csc);
                    *p = if beta == 0.0 { 0.0 } else { beta * *p };
                }
            }
        }
        return;
    }
    match kernel {
        Kernel::Avx512Bf16 => {
            // SAFETY: forwarded with the caller's guarantees; the CPU runs the kernel (asserted).
            unsafe {
                blocked(
                    &Bf16Pairs, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
                )
            }
        }
        // SAFETY: as above.
        f32_kernel => unsafe {
            blocked(
                &F32Values(f32_kernel),
                m,
                k,
                n,
                alpha,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                beta,
                c,
                rsc,
                csc,
            )
        },
    }
}

/// How a family of micro-kernels wants its operands packed: f32 values as they are, or rounded
/// to bf16 and paired along the inner index.
trait Packing {
    /// One packed value: an `f32`, or two bf16 (consecutive `l`) in a `u32`.
    type Packed: Copy + Default;
    /// The micro-tile, rows × columns.
    fn tile(&self) -> (usize, usize);
    /// Packed values per row or column of a `kc`-deep slice (kc, or ⌈kc/2⌉ pairs).
    fn depth(kc: usize) -> usize;
    /// The inner-dimension slice: as deep as keeps the two slivers in L1.
    const KC: usize;
    /// The thread's two reusable packing buffers (for A and for B).
    fn with_buffers<R>(f: impl FnOnce(&mut Vec<Self::Packed>, &mut Vec<Self::Packed>) -> R) -> R;
    /// Packs `rows × kc` of A into MR-row slivers of `depth(kc)·MR` values.
    ///
    /// # Safety
    /// Every `a + i·rsa + l·csa` for `i < rows, l < kc` is readable.
    #[allow(clippy::too_many_arguments)]
    unsafe fn pack_a(
        dst: &mut [Self::Packed],
        a: *const f32,
        rsa: isize,
        csa: isize,
        rows: usize,
        kc: usize,
        mr: usize,
    );
    /// Packs `kc × cols` of B into NR-column slivers of `depth(kc)·NR` values.
    ///
    /// # Safety
    /// Every `b + l·rsb + j·csb` for `l < kc, j < cols` is readable.
    #[allow(clippy::too_many_arguments)]
    unsafe fn pack_b(
        dst: &mut [Self::Packed],
        b: *const f32,
        rsb: isize,
        csb: isize,
        kc: usize,
        cols: usize,
        nr: usize,
    );
    /// The tile ← alpha · (A sliver · B sliver) + beta · tile.
    ///
    /// # Safety
    /// The CPU runs the kernel; the slivers hold `depth(kc)` rows of packed values; `tile`
    /// describes a valid part of C.
    unsafe fn kernel(&self, kc: usize, a: &[Self::Packed], b: &[Self::Packed], tile: &Tile);
}

/// f32 operands, for the FMA micro-kernels.
struct F32Values(Kernel);

impl Packing for F32Values {
    type Packed = f32;

    fn tile(&self) -> (usize, usize) {
        self.0.tile()
    }

    fn depth(kc: usize) -> usize {
        kc
    }

    const KC: usize = KC;

    fn with_buffers<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
        PACKED.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (pa, pb) = &mut *bufs;
            f(pa, pb)
        })
    }

    unsafe fn pack_a(
        dst: &mut [f32],
        a: *const f32,
        rsa: isize,
        csa: isize,
        rows: usize,
        kc: usize,
        mr: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { pack::pack_a(dst, a, rsa, csa, rows, kc, mr) }
    }

    unsafe fn pack_b(
        dst: &mut [f32],
        b: *const f32,
        rsb: isize,
        csb: isize,
        kc: usize,
        cols: usize,
        nr: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { pack::pack_b(dst, b, rsb, csb, kc, cols, nr) }
    }

    unsafe fn kernel(&self, kc: usize, a: &[f32], b: &[f32], tile: &Tile) {
        // SAFETY: the caller's contract; the kernel matches the CPU (asserted at entry).
        unsafe {
            match self.0 {
                Kernel::Avx512 => avx512::kernel(kc, a, b, tile),
                Kernel::Avx2Fma => avx2::kernel(kc, a, b, tile),
                _ => portable::kernel(kc, a, b, tile),
            }
        }
    }
}

/// bf16 pairs, for the `vdpbf16ps` micro-kernel.
struct Bf16Pairs;

impl Packing for Bf16Pairs {
    type Packed = u32;

    fn tile(&self) -> (usize, usize) {
        (avx512_bf16::MR, avx512_bf16::NR)
    }

    fn depth(kc: usize) -> usize {
        kc.div_ceil(2)
    }

    /// Pairs take the bytes of f32 values: twice the f32 depth fits the same L1, and halves how
    /// often the tile of C is read and written back.
    const KC: usize = 2 * KC;

    fn with_buffers<R>(f: impl FnOnce(&mut Vec<u32>, &mut Vec<u32>) -> R) -> R {
        PACKED_BF16.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (pa, pb) = &mut *bufs;
            f(pa, pb)
        })
    }

    unsafe fn pack_a(
        dst: &mut [u32],
        a: *const f32,
        rsa: isize,
        csa: isize,
        rows: usize,
        kc: usize,
        mr: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { pack_bf16::pack_a(dst, a, rsa, csa, rows, kc, mr) }
    }

    unsafe fn pack_b(
        dst: &mut [u32],
        b: *const f32,
        rsb: isize,
        csb: isize,
        kc: usize,
        cols: usize,
        nr: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { pack_bf16::pack_b(dst, b, rsb, csb, kc, cols, nr) }
    }

    unsafe fn kernel(&self, kc: usize, a: &[u32], b: &[u32], tile: &Tile) {
        // SAFETY: the caller's contract.
        unsafe { avx512_bf16::kernel(kc.div_ceil(2), a, b, tile) }
    }
}

/// The blocked loops of the module's documentation, for one packing scheme.
///
/// # Safety
/// As [`sgemm`], with `m, n, k > 0`; the CPU runs `packing`'s kernel.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked<P: Packing>(
    packing: &P,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    let (mr, nr) = packing.tile();
    P::with_buffers(|pa, pb| {
        let nc_max = NC.min(n.div_ceil(nr) * nr);
        let mc_max = MC.min(m.div_ceil(mr) * mr);
        let kc_max = P::depth(P::KC.min(k));
        pb.resize(kc_max * nc_max, P::Packed::default());
        pa.resize(kc_max * mc_max, P::Packed::default());
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(P::KC) {
                let kc = P::KC.min(k - pc);
                let depth = P::depth(kc);
                // SAFETY: rows pc..pc+kc and columns jc..jc+nc lie inside B's shape.
                unsafe {
                    P::pack_b(
                        &mut pb[..depth * nc.div_ceil(nr) * nr],
                        b.offset(pc as isize * rsb + jc as isize * csb),
                        rsb,
                        csb,
                        kc,
                        nc,
                        nr,
                    )
                };
                // After the first slice of the inner dimension, C already holds the partial sum.
                let beta_here = if pc == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(MC) {
                    let mcb = MC.min(m - ic);
                    // SAFETY: rows ic..ic+mcb and columns pc..pc+kc lie inside A's shape.
                    unsafe {
                        P::pack_a(
                            &mut pa[..depth * mcb.div_ceil(mr) * mr],
                            a.offset(ic as isize * rsa + pc as isize * csa),
                            rsa,
                            csa,
                            mcb,
                            kc,
                            mr,
                        )
                    };
                    for (jt, jr) in (0..nc).step_by(nr).enumerate() {
                        let cols = nr.min(nc - jr);
                        let bs = &pb[jt * depth * nr..(jt + 1) * depth * nr];
                        for (it, ir) in (0..mcb).step_by(mr).enumerate() {
                            let rows = mr.min(mcb - ir);
                            let as_ = &pa[it * depth * mr..(it + 1) * depth * mr];
                            let tile = Tile {
                                // SAFETY: (ic+ir, jc+jr) is inside C's shape.
                                c: unsafe {
                                    c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc)
                                },
                                rsc,
                                csc,
                                rows,
                                cols,
                                alpha,
                                beta: beta_here,
                            };
                            // SAFETY: the slivers hold depth·mr and depth·nr packed values; the
                            // tile's rows × cols elements of C are inside C (checked above);
                            // the kernel matches the CPU (the caller's contract).
                            unsafe { packing.kernel(kc, as_, bs, &tile) }
                        }
                    }
                }
            }
        }
    });
}

/// Where a micro-kernel's tile goes: the top-left element of C, its strides, how many of the
/// MR × NR computed values are inside C, and the merge `C = alpha·tile + beta·C`.
pub(crate) struct Tile {
    c: *mut f32,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
}

impl Tile {
    /// Merges a computed `mr × nr` tile (row-major in `t`) into C.
    ///
    /// # Safety
    /// `self` describes a valid part of C (see [`sgemm`]'s contract).
    #[inline(always)]
    unsafe fn merge(&self, t: &[f32], nr: usize) {
        for r in 0..self.rows {
            let row = &t[r * nr..r * nr + self.cols];
            // SAFETY: row r < rows, columns < cols: inside C.
            unsafe {
                let c = self.c.offset(r as isize * self.rsc);
                if self.csc == 1 {
                    let out = std::slice::from_raw_parts_mut(c, self.cols);
                    if self.beta == 0.0 {
                        for (o, &v) in out.iter_mut().zip(row) {
                            *o = self.alpha * v;
                        }
                    } else {
                        for (o, &v) in out.iter_mut().zip(row) {
                            *o = self.alpha * v + self.beta * *o;
                        }
                    }
                } else {
                    for (x, &v) in row.iter().enumerate() {
                        let p = c.offset(x as isize * self.csc);
                        *p = if self.beta == 0.0 {
                            self.alpha * v
                        } else {
                            self.alpha * v + self.beta * *p
                        };
                    }
                }
            }
        }
    }
}

/// The number format of the CPU's matrix products (`--precision`): `F32`, the default, which
/// reproduces the book's numbers, or `Bf16` — operands rounded to bfloat16, products summed in
/// f32 ([`Kernel::Avx512Bf16`]) — on CPUs with AVX-512 BF16. Everything else (weights and their
/// optimizer state, normalisation and softmax statistics, the loss) stays f32 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// `f32` or `bf16`, as the flag and checkpoints spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Precision::F32, Precision::Bf16]
            .into_iter()
            .find(|p| p.name() == s)
    }

    /// Makes every later `f32` product of the process use this precision: bf16 selects the
    /// bf16 kernel (an error naming the missing instructions on a CPU without them); f32 keeps
    /// the f32 kernel already chosen (by default or `SCRATCHGPT_GEMM`).
    pub fn apply(self) -> crate::error::Result<()> {
        match self {
            Precision::F32 => {
                if !selected().is_f32() {
                    select(default_f32_kernel());
                }
                Ok(())
            }
            Precision::Bf16 if select(Kernel::Avx512Bf16) => Ok(()),
            Precision::Bf16 => Err(crate::error::Error::invalid(
                "--precision bf16",
                "this CPU lacks the AVX-512 BF16 instructions (avx512_bf16) that bf16 products use; train in f32",
            )),
        }
    }

    /// What the products use now.
    pub fn current() -> Self {
        if selected().is_f32() {
            Precision::F32
        } else {
            Precision::Bf16
        }
    }
}
