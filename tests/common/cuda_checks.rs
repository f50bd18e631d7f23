//! Every GPU op compared with the CPU engine (f64, whose gradients are gradchecked), on random
//! inputs with odd sizes that are not multiples of any block or tile size. Each check takes the
//! backend, so the same checks run under the CPU emulator (always) and on a real GPU (when present).
#![allow(dead_code)]

use ndarray::ArrayD;
use scratchgpt::backend::cuda::launch::{self as ops, AttentionShape, Gemm, LayerNormStats};
use scratchgpt::backend::cuda::{DeviceBuffer, Gpu};
use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{Ids, Tensor};

/// Relative error: max |got − want| / max |want|. Normalising by the largest reference value keeps
/// it meaningful for elements near zero.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| {
        if g.is_nan() {
            f64::INFINITY
        } else {
            m.max((g as f64 - w).abs())
        }
    });
    diff / scale
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

pub const TOL: f64 = 1e-5;

/// Deterministic pseudo-random numbers in (−1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn t64(data: &[f32], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.iter().map(|&v| v as f64).collect(), shape).unwrap()
}

fn leaf(data: &[f32], shape: &[usize]) -> Tensor<f64> {
    t64(data, shape).requires_grad_(true)
}

fn arr64(data: &[f32], shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(shape.to_vec(), data.iter().map(|&v| v as f64).collect()).unwrap()
}

fn vec64(t: &Tensor<f64>) -> Vec<f64> {
    t.to_vec().unwrap()
}

fn grad64(t: &Tensor<f64>) -> Vec<f64> {
    t.grad()
        .expect("a gradient")
        .value()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn up(gpu: &Gpu, data: &[f32]) -> DeviceBuffer<f32> {
    DeviceBuffer::from_slice(gpu, data).unwrap()
}

fn uninit(gpu: &Gpu, n: usize) -> DeviceBuffer<f32> {
    DeviceBuffer::uninit(gpu, n).unwrap()
}

pub fn check_elementwise(gpu: &Gpu) {
    let n = 1001;
    let (a, b) = (random(n, 1), random(n, 2));
    let (da, db) = (up(gpu, &a), up(gpu, &b));
    let out = uninit(gpu, n);
    ops::add(&da, &db, &out).unwrap();
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| *x as f64 + *y as f64)
        .collect();
    assert_close("add", &out.to_vec().unwrap(), &want, TOL);
    ops::accumulate(&out, &da).unwrap();
    let want2: Vec<f64> = want.iter().zip(&a).map(|(w, x)| w + *x as f64).collect();
    assert_close("accumulate", &out.to_vec().unwrap(), &want2, TOL);
    ops::scale(&da, &out, -2.5).unwrap();
    let want3: Vec<f64> = a.iter().map(|x| -2.5 * *x as f64).collect();
    assert_close("scale", &out.to_vec().unwrap(), &want3, TOL);
    ops::fill(&out, 3.25).unwrap();
    assert!(out.to_vec().unwrap().iter().all(|&v| v == 3.25));
}

pub fn check_gelu(gpu: &Gpu) {
    let n = 1001;
    let x: Vec<f32> = random(n, 5).iter().map(|v| v * 4.0).collect();
    let dy = random(n, 6);
    let xt = leaf(&x, &[n]);
    let y = xt.gelu().unwrap();
    y.backward_with(&scratchgpt::Tensor::from_array(
        arr64(&dy, &[n]).into_shared(),
    ))
    .unwrap();
    let (dx_d, out) = (up(gpu, &x), uninit(gpu, n));
    ops::gelu_forward(&dx_d, &out).unwrap();
    assert_close("gelu forward", &out.to_vec().unwrap(), &vec64(&y), TOL);
    let g = uninit(gpu, n);
    ops::gelu_backward(&dx_d, &up(gpu, &dy), &g, false).unwrap();
    assert_close("gelu backward", &g.to_vec().unwrap(), &grad64(&xt), TOL);
    // accumulate = true adds onto what is there.
    ops::gelu_backward(&dx_d, &up(gpu, &dy), &g, true).unwrap();
    let twice: Vec<f64> = grad64(&xt).iter().map(|v| 2.0 * v).collect();
    assert_close(
        "gelu backward (accumulate)",
        &g.to_vec().unwrap(),
        &twice,
        TOL,
    );
}

pub fn check_dropout(gpu: &Gpu) {
    let n = 20_011;
    let p = 0.3f32;
    let x: Vec<f32> = random(n, 7).iter().map(|v| v + 2.0).collect(); // never zero
    let (xd, out, out2) = (up(gpu, &x), uninit(gpu, n), uninit(gpu, n));
    ops::dropout_forward(&xd, &out, p, 42).unwrap();
    ops::dropout_forward(&xd, &out2, p, 42).unwrap();
    let (o, o2) = (out.to_vec().unwrap(), out2.to_vec().unwrap());
    assert_eq!(o, o2, "same seed, same mask");
    let dropped = o.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    assert!(
        (dropped - p as f64).abs() < 0.02,
        "dropped fraction {dropped} for p = {p}"
    );
    for (i, (&y, &xv)) in o.iter().zip(&x).enumerate() {
        if y != 0.0 {
            assert!(
                (y - xv / (1.0 - p)).abs() <= 1e-6 * y.abs(),
                "kept element {i} must be x/(1-p)"
            );
        }
    }
    // The backward regenerates the same mask.
    let ones = up(gpu, &vec![1.0; n]);
    let g = uninit(gpu, n);
    ops::dropout_backward(&ones, &g, p, 42).unwrap();
    for (gv, y) in g.to_vec().unwrap().iter().zip(&o) {
        assert_eq!(*gv == 0.0, *y == 0.0, "backward mask differs from forward");
    }
    ops::dropout_forward(&xd, &out2, p, 43).unwrap();
    assert_ne!(o, out2.to_vec().unwrap(), "another seed, another mask");
    assert!(ops::dropout_forward(&xd, &out2, 1.0, 1).is_err());
}

/// Reference GEMM in f64 with the same storage conventions as the kernel.
fn gemm_ref(
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    bias: Option<&[f32]>,
    g: Gemm,
    alpha: f64,
    beta: f64,
) -> Vec<f64> {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
        batch,
    } = g;
    let mut out = vec![0.0; batch * m * n];
    for z in 0..batch {
        let (a, b) = (&a[z * m * k..], &b[z * k * n..]);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if trans_a { a[p * m + i] } else { a[i * k + p] } as f64;
                    let bv = if trans_b { b[j * k + p] } else { b[p * n + j] } as f64;
                    s += av * bv;
                }
                let idx = z * m * n + i * n + j;
                let mut r = alpha * s;
                if beta != 0.0 {
                    r += beta * c0[idx] as f64;
                }
                if let Some(bias) = bias {
                    r += bias[j] as f64;
                }
                out[idx] = r;
            }
        }
    }
    out
}

pub fn check_matmul(gpu: &Gpu) {
    let (m, n, k, batch) = (67, 131, 45, 2);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut g = Gemm::new(m, n, k).batched(batch);
        g.trans_a = ta;
        g.trans_b = tb;
        let a = random(batch * m * k, 10);
        let b = random(batch * k * n, 11);
        let c0 = random(batch * m * n, 12);
        let bias = random(n, 13);
        let (da, db) = (up(gpu, &a), up(gpu, &b));
        // beta = 0 on a NaN-filled output: C must not be read.
        let c = uninit(gpu, batch * m * n);
        ops::fill(&c, f32::NAN).unwrap();
        ops::matmul(&da, &db, &c, None, g, 1.0, 0.0).unwrap();
        assert_close(
            &format!("matmul ta={ta} tb={tb}"),
            &c.to_vec().unwrap(),
            &gemm_ref(&a, &b, &c0, None, g, 1.0, 0.0),
            TOL,
        );
        // alpha, beta and bias.
        let c = up(gpu, &c0);
        let bd = up(gpu, &bias);
        ops::matmul(&da, &db, &c, Some(&bd), g, 0.5, 1.0).unwrap();
        assert_close(
            &format!("matmul ta={ta} tb={tb} alpha/beta/bias"),
            &c.to_vec().unwrap(),
            &gemm_ref(&a, &b, &c0, Some(&bias), g, 0.5, 1.0),
            TOL,
        );
    }
    // Against the CPU engine's matmul on a Linear-layer-like product (x · Wᵀ).
    let (rows, fin, fout) = (37, 50, 29);
    let x = random(rows * fin, 14);
    let w = random(fout * fin, 15);
    let want = vec64(
        &t64(&x, &[rows, fin])
            .matmul(&t64(&w, &[fout, fin]).transpose(0, 1).unwrap())
            .unwrap(),
    );
    let c = uninit(gpu, rows * fout);
    ops::matmul(
        &up(gpu, &x),
        &up(gpu, &w),
        &c,
        None,
        Gemm::new(rows, fout, fin).trans_b(),
        1.0,
        0.0,
    )
    .unwrap();
    assert_close("matmul vs Tensor::matmul", &c.to_vec().unwrap(), &want, TOL);
    // A length mismatch is an error, not a kernel running off the end.
    assert!(ops::matmul(
        &up(gpu, &x),
        &up(gpu, &w),
        &c,
        None,
        Gemm::new(rows, fout, fin + 1),
        1.0,
        0.0
    )
    .is_err());
}

pub fn check_reductions(gpu: &Gpu) {
    let (rows, cols) = (300, 45);
    let x = random(rows * cols, 20);
    let out = up(gpu, &random(cols, 21));
    ops::column_sum(&up(gpu, &x), &out, rows, cols, false).unwrap();
    let want = vec64(&t64(&x, &[rows, cols]).sum(&[0], false).unwrap());
    assert_close("column_sum", &out.to_vec().unwrap(), &want, TOL);
    ops::column_sum(&up(gpu, &x), &out, rows, cols, true).unwrap();
    let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
    assert_close(
        "column_sum (accumulate)",
        &out.to_vec().unwrap(),
        &twice,
        TOL,
    );
    let n = 100_003;
    let y = random(n, 22);
    let s = uninit(gpu, 1);
    ops::sum(&up(gpu, &y), &s).unwrap();
    let want: f64 = y.iter().map(|&v| v as f64).sum();
    let got = s.to_vec().unwrap()[0] as f64;
    assert!(
        (got - want).abs() <= 1e-5 * y.iter().map(|v| v.abs() as f64).sum::<f64>(),
        "sum {got} vs {want}"
    );
    ops::sum_squares(&up(gpu, &y), &s).unwrap();
    let want: f64 = y.iter().map(|&v| v as f64 * v as f64).sum();
    assert_close("sum_squares", &s.to_vec().unwrap(), &[want], TOL);
}

pub fn check_softmax(gpu: &Gpu) {
    for (rows, cols) in [(5, 77), (3, 1500)] {
        let x: Vec<f32> = random(rows * cols, 30).iter().map(|v| v * 5.0).collect();
        let dy = random(rows * cols, 31);
        for log in [false, true] {
            let xt = leaf(&x, &[rows, cols]);
            let y = if log { xt.log_softmax() } else { xt.softmax() }.unwrap();
            y.backward_with(&scratchgpt::Tensor::from_array(
                arr64(&dy, &[rows, cols]).into_shared(),
            ))
            .unwrap();
            let (xd, yd, dxd) = (
                up(gpu, &x),
                uninit(gpu, rows * cols),
                uninit(gpu, rows * cols),
            );
            let name = if log { "log_softmax" } else { "softmax" };
            if log {
                ops::log_softmax_forward(&xd, &yd, rows, cols).unwrap();
                ops::log_softmax_backward(&yd, &up(gpu, &dy), &dxd, rows, cols).unwrap();
            } else {
                ops::softmax_forward(&xd, &yd, rows, cols).unwrap();
                ops::softmax_backward(&yd, &up(gpu, &dy), &dxd, rows, cols).unwrap();
            }
            assert_close(
                &format!("{name} forward {rows}x{cols}"),
                &yd.to_vec().unwrap(),
                &vec64(&y),
                TOL,
            );
            assert_close(
                &format!("{name} backward {rows}x{cols}"),
                &dxd.to_vec().unwrap(),
                &grad64(&xt),
                TOL,
            );
        }
    }
}

/// Masked (−∞) entries, as causal scores have, anywhere in a row — also before the first finite
/// value — get probability 0 and leave the rest a proper softmax.
pub fn check_softmax_masked(gpu: &Gpu) {
    let ninf = f32::NEG_INFINITY;
    let x = vec![ninf, 1.0, 2.0, ninf, ninf, ninf, 0.5, ninf];
    let y = uninit(gpu, 8);
    ops::softmax_forward(&up(gpu, &x), &y, 2, 4).unwrap();
    let (e1, e2) = (1f64.exp(), 2f64.exp());
    let want = [0.0, e1 / (e1 + e2), e2 / (e1 + e2), 0.0, 0.0, 0.0, 1.0, 0.0];
    assert_close(
        "softmax with -inf entries",
        &y.to_vec().unwrap(),
        &want,
        TOL,
    );
    ops::log_softmax_forward(&up(gpu, &x), &y, 2, 4).unwrap();
    let got = y.to_vec().unwrap();
    assert!(
        (got[1] as f64 - (e1 / (e1 + e2)).ln()).abs() < 1e-6 && got[6].abs() < 1e-6,
        "{got:?}"
    );
    // A row longer than a block (1024 threads): a thread meets −∞ first and a finite value later.
    let cols = 1100;
    let x: Vec<f32> = (0..cols)
        .map(|j| if j < 1030 { ninf } else { (j % 7) as f32 * 0.3 })
        .collect();
    let y = uninit(gpu, cols);
    ops::softmax_forward(&up(gpu, &x), &y, 1, cols).unwrap();
    let z: f64 = x[1030..].iter().map(|&v| (v as f64).exp()).sum();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| if v == ninf { 0.0 } else { (v as f64).exp() / z })
        .collect();
    assert_close(
        "softmax, long row with leading -inf",
        &y.to_vec().unwrap(),
        &want,
        TOL,
    );
}

pub fn check_layer_norm(gpu: &Gpu) {
    let (rows, cols) = (37, 70);
    let x: Vec<f32> = random(rows * cols, 40)
        .iter()
        .map(|v| v * 3.0 + 0.5)
        .collect();
    let scale: Vec<f32> = random(cols, 41).iter().map(|v| 1.0 + v * 0.5).collect();
    let shift = random(cols, 42);
    let dy = random(rows * cols, 43);
    let (xt, st, sh) = (
        leaf(&x, &[rows, cols]),
        leaf(&scale, &[cols]),
        leaf(&shift, &[cols]),
    );
    let y = xt.layer_norm(&st, &sh, 1e-5).unwrap();
    y.backward_with(&scratchgpt::Tensor::from_array(
        arr64(&dy, &[rows, cols]).into_shared(),
    ))
    .unwrap();
    let stats = LayerNormStats {
        mean: uninit(gpu, rows),
        rstd: uninit(gpu, rows),
    };
    let (xd, sd, shd, yd) = (
        up(gpu, &x),
        up(gpu, &scale),
        up(gpu, &shift),
        uninit(gpu, rows * cols),
    );
    ops::layer_norm_forward(&xd, &sd, &shd, &yd, &stats, rows, cols, 1e-5).unwrap();
    assert_close("layer_norm forward", &yd.to_vec().unwrap(), &vec64(&y), TOL);
    let prior = random(rows * cols, 44);
    let dxd = up(gpu, &prior);
    let (dsd, dbd) = (
        DeviceBuffer::zeros(gpu, cols).unwrap(),
        DeviceBuffer::zeros(gpu, cols).unwrap(),
    );
    ops::layer_norm_backward(
        &xd,
        &sd,
        &stats,
        &up(gpu, &dy),
        &dxd,
        &dsd,
        &dbd,
        rows,
        cols,
        true,
    )
    .unwrap();
    let want_dx: Vec<f64> = grad64(&xt)
        .iter()
        .zip(&prior)
        .map(|(g, p)| g + *p as f64)
        .collect();
    assert_close(
        "layer_norm backward dx (accumulated)",
        &dxd.to_vec().unwrap(),
        &want_dx,
        TOL,
    );
    assert_close(
        "layer_norm backward dscale",
        &dsd.to_vec().unwrap(),
        &grad64(&st),
        TOL,
    );
    assert_close(
        "layer_norm backward dshift",
        &dbd.to_vec().unwrap(),
        &grad64(&sh),
        TOL,
    );
}

pub fn check_cross_entropy(gpu: &Gpu) {
    let (rows, vocab) = (9, 1003);
    let logits: Vec<f32> = random(rows * vocab, 50).iter().map(|v| v * 6.0).collect();
    let targets: Vec<i32> = vec![3, -100, 1002, 0, 500, -100, 77, 999, 1];
    let counted = targets.iter().filter(|&&t| t >= 0).count();
    let lt = leaf(&logits, &[rows, vocab]);
    let ids = Ids::new(targets.iter().map(|&t| t as i64).collect(), &[rows]).unwrap();
    let loss = lt.cross_entropy_with(&ids, -100).unwrap();
    loss.backward().unwrap();
    let want_loss = loss.item().unwrap();
    let (ld, td) = (
        up(gpu, &logits),
        DeviceBuffer::from_slice(gpu, &targets).unwrap(),
    );
    let losses = uninit(gpu, rows);
    ops::cross_entropy_forward(&ld, &td, &losses, rows, vocab).unwrap();
    let l = losses.to_vec().unwrap();
    assert_eq!(l[1], 0.0, "ignored rows have loss 0");
    let mean = l.iter().map(|&v| v as f64).sum::<f64>() / counted as f64;
    assert!(
        (mean - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "loss {mean} vs {want_loss}"
    );
    // The backward reads the upstream gradient (here 1) on the device.
    let dlogits = uninit(gpu, rows * vocab);
    ops::cross_entropy_backward(
        &ld,
        &td,
        &up(gpu, &[1.0]),
        &dlogits,
        rows,
        vocab,
        1.0 / counted as f32,
    )
    .unwrap();
    assert_close(
        "cross_entropy dlogits",
        &dlogits.to_vec().unwrap(),
        &grad64(&lt),
        TOL,
    );
}

pub fn check_embedding(gpu: &Gpu) {
    let (vocab, rows, cols) = (50, 21, 19);
    let ids: Vec<i32> = (0..rows).map(|i| ((i * 7 + 3) % 11) as i32).collect(); // repeats
    let w = random(vocab * cols, 60);
    let dout = random(rows * cols, 62);
    let idd = DeviceBuffer::from_slice(gpu, &ids).unwrap();
    let out = uninit(gpu, rows * cols);
    ops::embedding_gather(&idd, &up(gpu, &w), &out, vocab, cols).unwrap();
    let ids64 = Ids::new(ids.iter().map(|&i| i as i64).collect(), &[rows]).unwrap();
    let w_t = leaf(&w, &[vocab, cols]);
    let y = w_t.embedding(&ids64).unwrap();
    y.backward_with(&scratchgpt::Tensor::from_array(
        arr64(&dout, &[rows, cols]).into_shared(),
    ))
    .unwrap();
    assert_close("embedding forward", &out.to_vec().unwrap(), &vec64(&y), TOL);
    let dw = DeviceBuffer::zeros(gpu, vocab * cols).unwrap();
    ops::embedding_scatter_add(&ids, &up(gpu, &dout), &dw, vocab, cols).unwrap();
    assert_close(
        "embedding backward (scatter-add)",
        &dw.to_vec().unwrap(),
        &grad64(&w_t),
        TOL,
    );
    assert!(ops::check_token_ids(&[0, 50], vocab).is_err());
}

/// [B, T, H·D] data as a (B, H, T, D) CPU tensor (a permuted view of a [B, T, H, D] leaf).
fn bthd(data: &[f32], s: AttentionShape, heads: usize) -> (Tensor<f64>, Tensor<f64>) {
    let leaf = leaf(data, &[s.batch, s.seq, heads, s.head_dim]);
    let view = leaf.permute(&[0, 2, 1, 3]).unwrap();
    (leaf, view)
}

pub fn check_attention(gpu: &Gpu) {
    // Multi-head, then grouped-query (2 query heads per KV head) and multi-query attention.
    for (head_dim, seq, heads, kv_heads) in [
        (12, 70, 3, 3),
        (32, 33, 3, 3),
        (64, 130, 3, 3),
        (16, 70, 4, 2),
        (64, 33, 3, 1),
    ] {
        let s = AttentionShape {
            batch: 2,
            seq,
            heads,
            kv_heads,
            head_dim,
        };
        let n = s.batch * s.seq * s.heads * s.head_dim;
        let nkv = s.batch * s.seq * s.kv_heads * s.head_dim;
        let (q, k, v) = (random(n, 70), random(nkv, 71), random(nkv, 72));
        let q: Vec<f32> = q.iter().map(|x| x * 3.0).collect(); // peakier softmax
        let dout = random(n, 73);
        let ((ql, qv), (kl, kv), (vl, vv)) = (
            bthd(&q, s, heads),
            bthd(&k, s, kv_heads),
            bthd(&v, s, kv_heads),
        );
        let o = Tensor::attention(&qv, &kv, &vv, &AttentionOptions::default()).unwrap();
        let o_bthd = o.permute(&[0, 2, 1, 3]).unwrap().contiguous().unwrap();
        o_bthd
            .backward_with(&scratchgpt::Tensor::from_array(
                arr64(&dout, &[s.batch, s.seq, s.heads, s.head_dim]).into_shared(),
            ))
            .unwrap();
        let (qd, kd, vd) = (up(gpu, &q), up(gpu, &k), up(gpu, &v));
        let (od, lse) = (uninit(gpu, n), uninit(gpu, s.batch * s.heads * s.seq));
        ops::attention_forward(&qd, &kd, &vd, &od, &lse, s, 0.0, 0).unwrap();
        let what = format!("attention D={head_dim} T={seq} H={heads} KV={kv_heads}");
        assert_close(
            &format!("{what} forward"),
            &od.to_vec().unwrap(),
            &vec64(&o_bthd),
            TOL,
        );
        let (dq, dk, dv) = (uninit(gpu, n), uninit(gpu, nkv), uninit(gpu, nkv));
        ops::attention_backward(
            &qd,
            &kd,
            &vd,
            &od,
            &lse,
            &up(gpu, &dout),
            &dq,
            &dk,
            &dv,
            s,
            0.0,
            0,
        )
        .unwrap();
        assert_close(
            &format!("{what} dq"),
            &dq.to_vec().unwrap(),
            &grad64(&ql),
            TOL,
        );
        assert_close(
            &format!("{what} dk"),
            &dk.to_vec().unwrap(),
            &grad64(&kl),
            TOL,
        );
        assert_close(
            &format!("{what} dv"),
            &dv.to_vec().unwrap(),
            &grad64(&vl),
            TOL,
        );
        if kv_heads != heads {
            continue; // the naive baseline is multi-head only
        }
        // The naive kernels agree too.
        let scores = uninit(gpu, s.batch * s.heads * s.seq * s.seq);
        let on = uninit(gpu, n);
        ops::attention_naive_forward(&qd, &kd, &vd, &on, &scores, s).unwrap();
        assert_close(
            &format!("{what} naive forward"),
            &on.to_vec().unwrap(),
            &vec64(&o_bthd),
            TOL,
        );
    }
    let bad = AttentionShape::mha(1, 4, 1, 65);
    let b = uninit(gpu, 4 * 65);
    let l = uninit(gpu, 4);
    assert!(ops::attention_forward(&b, &b, &b, &b, &l, bad, 0.0, 0).is_err());
}

/// With dropout on the attention weights, the backward must differentiate the very function the
/// forward computed (same regenerated mask): a directional derivative of L = Σ o ⊙ w agrees with
/// central differences of the GPU forward itself.
pub fn check_attention_dropout(gpu: &Gpu) {
    let s = AttentionShape::mha(1, 40, 2, 16);
    let n = s.batch * s.seq * s.heads * s.head_dim;
    let (q, k, v, w) = (random(n, 80), random(n, 81), random(n, 82), random(n, 83));
    let dir = random(n, 84);
    let (p, seed) = (0.25f32, 9);
    let forward = |qq: &[f32]| -> f64 {
        let (od, lse) = (uninit(gpu, n), uninit(gpu, s.batch * s.heads * s.seq));
        ops::attention_forward(
            &up(gpu, qq),
            &up(gpu, &k),
            &up(gpu, &v),
            &od,
            &lse,
            s,
            p,
            seed,
        )
        .unwrap();
        od.to_vec()
            .unwrap()
            .iter()
            .zip(&w)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let (qd, kd, vd) = (up(gpu, &q), up(gpu, &k), up(gpu, &v));
    let (od, lse) = (uninit(gpu, n), uninit(gpu, s.batch * s.heads * s.seq));
    ops::attention_forward(&qd, &kd, &vd, &od, &lse, s, p, seed).unwrap();
    let o1 = od.to_vec().unwrap();
    let (od2, lse2) = (uninit(gpu, n), uninit(gpu, s.batch * s.heads * s.seq));
    ops::attention_forward(&qd, &kd, &vd, &od2, &lse2, s, 0.0, seed).unwrap();
    assert_ne!(o1, od2.to_vec().unwrap(), "dropout changes the output");
    let (dq, dk, dv) = (uninit(gpu, n), uninit(gpu, n), uninit(gpu, n));
    ops::attention_backward(
        &qd,
        &kd,
        &vd,
        &od,
        &lse,
        &up(gpu, &w),
        &dq,
        &dk,
        &dv,
        s,
        p,
        seed,
    )
    .unwrap();
    let analytic: f64 = dq
        .to_vec()
        .unwrap()
        .iter()
        .zip(&dir)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let eps = 1e-2f32;
    let plus: Vec<f32> = q.iter().zip(&dir).map(|(a, d)| a + eps * d).collect();
    let minus: Vec<f32> = q.iter().zip(&dir).map(|(a, d)| a - eps * d).collect();
    let numeric = (forward(&plus) - forward(&minus)) / (2.0 * eps as f64);
    assert!(
        (analytic - numeric).abs() <= 2e-3 * analytic.abs().max(1.0),
        "dropout attention: analytic {analytic} vs numeric {numeric}"
    );
    // dv under dropout: L is linear in v, so dv·dir equals L(v + dir) − L(v) exactly (up to rounding).
    let vplus: Vec<f32> = v.iter().zip(&dir).map(|(a, d)| a + d).collect();
    let (od3, lse3) = (uninit(gpu, n), uninit(gpu, s.batch * s.heads * s.seq));
    ops::attention_forward(&qd, &kd, &up(gpu, &vplus), &od3, &lse3, s, p, seed).unwrap();
    let l0: f64 = o1.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
    let l1: f64 = od3
        .to_vec()
        .unwrap()
        .iter()
        .zip(&w)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let dv_dir: f64 = dv
        .to_vec()
        .unwrap()
        .iter()
        .zip(&dir)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    assert!(
        (dv_dir - (l1 - l0)).abs() <= 1e-4 * dv_dir.abs().max(1.0),
        "dv {dv_dir} vs {}",
        l1 - l0
    );
}

pub fn check_adamw(gpu: &Gpu) {
    use scratchgpt::optim::{AdamW, AdamWConfig};
    // Two tensors in one launch (the table's offsets), one exempt from weight decay.
    let sizes = [517usize, 33];
    let cfg = AdamWConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        exempt_biases_and_norms: true,
        ..AdamWConfig::default()
    };
    let p0: Vec<Vec<f32>> = sizes.iter().map(|&n| random(n, 90 + n as u64)).collect();
    let params: Vec<Tensor> = p0
        .iter()
        .map(|p| {
            Tensor::from_vec(p.clone(), &[p.len()])
                .unwrap()
                .requires_grad_(true)
        })
        .collect();
    let names = ["w.weight", "w.bias"];
    let mut opt = AdamW::new(
        names
            .iter()
            .map(|n| n.to_string())
            .zip(params.iter().cloned())
            .collect(),
        cfg.clone(),
    );
    let dev: Vec<[DeviceBuffer<f32>; 3]> = p0
        .iter()
        .map(|p| {
            [
                up(gpu, p),
                DeviceBuffer::zeros(gpu, p.len()).unwrap(),
                DeviceBuffer::zeros(gpu, p.len()).unwrap(),
            ]
        })
        .collect();
    for step in 1..=3 {
        let grads: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| random(n, 100 + step + n as u64))
            .collect();
        for (p, g) in params.iter().zip(&grads) {
            // CPU: L = Σ p ⊙ g has gradient g.
            p.zero_grad();
            p.mul(&Tensor::from_vec(g.clone(), &[g.len()]).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        }
        opt.step().unwrap();
        let (b1, b2) = cfg.betas;
        let t = step as i32;
        let step_size = (cfg.lr / (1.0 - b1.powi(t))) as f32;
        let decay = (1.0 - cfg.lr * cfg.weight_decay) as f32;
        let bc2 = ((1.0 - b2.powi(t)).sqrt()) as f32;
        let g_dev: Vec<DeviceBuffer<f32>> = grads.iter().map(|g| up(gpu, g)).collect();
        let tensors: Vec<ops::AdamwTensor<'_>> = dev
            .iter()
            .zip(&g_dev)
            .zip([decay, 1.0])
            .map(|(([p, m, v], g), decay)| ops::AdamwTensor {
                param: p,
                grad: g,
                m,
                v,
                decay,
            })
            .collect();
        ops::adamw_update_multi(
            &tensors,
            step_size,
            (b1 as f32, b2 as f32),
            cfg.eps as f32,
            bc2,
        )
        .unwrap();
    }
    for ((p, [pd, ..]), name) in params.iter().zip(&dev).zip(names) {
        let want: Vec<f64> = p.to_vec().unwrap().iter().map(|&v| v as f64).collect();
        assert_close(
            &format!("adamw {name} (3 steps vs src/optim)"),
            &pd.to_vec().unwrap(),
            &want,
            1e-6,
        );
    }
}
