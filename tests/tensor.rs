//! Tensor basics: creation, seeding, views sharing data, Display/Debug, device and dtype.

use scratchgpt::tensor::rng::Rng;
use scratchgpt::{DType, Device, Tensor};

#[test]
fn creation() {
    assert_eq!(
        Tensor::<f32>::zeros(&[2, 3]).to_vec().unwrap(),
        vec![0.0; 6]
    );
    assert_eq!(Tensor::<f32>::ones(&[2]).to_vec().unwrap(), vec![1.0; 2]);
    assert_eq!(
        Tensor::<f64>::full(&[1, 2], 7.5).to_vec().unwrap(),
        vec![7.5, 7.5]
    );
    assert_eq!(Tensor::<f32>::scalar(3.0).shape(), Vec::<usize>::new());
    assert_eq!(Tensor::<f32>::scalar(3.0).item().unwrap(), 3.0);
    let a = Tensor::<f64>::arange(0.0, 2.0, 0.5).unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![0.0, 0.5, 1.0, 1.5]);
    assert!(Tensor::<f64>::arange(0.0, 1.0, 0.0).is_err());
    let t = Tensor::<f32>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
    assert_eq!(t.get(&[1, 2]).unwrap(), 6.0);
    assert!(t.get(&[2, 0]).is_err());
    assert_eq!(t.dim(-1).unwrap(), 3);
    assert_eq!(t.numel(), 6);
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.device(), Device::Cpu);
}

#[test]
fn seeded_random_tensors_are_reproducible() {
    assert_eq!(
        Tensor::<f32>::randn(&[4, 4], 7).to_vec().unwrap(),
        Tensor::<f32>::randn(&[4, 4], 7).to_vec().unwrap()
    );
    assert_ne!(
        Tensor::<f32>::randn(&[4, 4], 7).to_vec().unwrap(),
        Tensor::<f32>::randn(&[4, 4], 8).to_vec().unwrap()
    );
    let u = Tensor::<f64>::uniform(&[1000], -2.0, 3.0, 1)
        .to_vec()
        .unwrap();
    assert!(u.iter().all(|&v| (-2.0..3.0).contains(&v)));
    let n = Tensor::<f64>::randn(&[20000], 3).to_vec().unwrap();
    let mean = n.iter().sum::<f64>() / n.len() as f64;
    let var = n.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.len() as f64;
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "mean {mean} var {var}"
    );
    let mut r1 = Rng::new(5);
    let mut r2 = Rng::new(5);
    let a = Tensor::<f32>::normal_from(&[8], 0.0, 0.02, &mut r1);
    let b = Tensor::<f32>::normal_from(&[8], 0.0, 0.02, &mut r2);
    assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
}

#[test]
fn views_share_data_and_transposes_are_strided() {
    let t = Tensor::<f32>::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    let tt = t.transpose(0, 1).unwrap();
    assert_eq!(tt.shape(), vec![3, 2]);
    assert_eq!(tt.to_vec().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
    assert!(
        !tt.value().unwrap().is_standard_layout(),
        "transpose must be a strided view"
    );
    assert_eq!(
        tt.value().unwrap().as_ptr(),
        t.value().unwrap().as_ptr(),
        "no copy"
    );
    let n = t.narrow(1, 1, 2).unwrap();
    assert_eq!(n.to_vec().unwrap(), vec![1., 2., 4., 5.]);
    let parts = t.split(&[1, 2], 1).unwrap();
    assert_eq!(parts[1].to_vec().unwrap(), vec![1., 2., 4., 5.]);
    let c = Tensor::concat(&[&parts[0], &parts[1]], 1).unwrap();
    assert_eq!(c.to_vec().unwrap(), t.to_vec().unwrap());
    assert_eq!(t.select(0, 1).unwrap().to_vec().unwrap(), vec![3., 4., 5.]);
    assert_eq!(t.unsqueeze(0).unwrap().shape(), vec![1, 2, 3]);
    assert_eq!(t.reshape(&[3, 2]).unwrap().get(&[2, 1]).unwrap(), 5.0);
}

#[test]
fn display_and_debug_show_shape_and_dtype() {
    let t = Tensor::<f32>::ones(&[2, 2]).requires_grad_(true);
    let s = format!("{t}");
    assert!(
        s.contains("shape=[2, 2]") && s.contains("dtype=f32") && s.contains("requires_grad"),
        "{s}"
    );
    let y = t.exp().unwrap();
    assert!(format!("{y}").contains("grad_fn=exp"));
    let d = format!("{y:?}");
    assert!(
        d.contains("shape") && d.contains("F32") && d.contains("exp"),
        "{d}"
    );
}

#[test]
fn matmul_matches_a_naive_product() {
    let a = Tensor::<f64>::randn(&[2, 3, 5, 7], 1);
    let b = Tensor::<f64>::randn(&[3, 7, 4], 2);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), vec![2, 3, 5, 4]);
    let (av, bv, cv) = (a.value().unwrap(), b.value().unwrap(), c.value().unwrap());
    for i in 0..2 {
        for h in 0..3 {
            for m in 0..5 {
                for n in 0..4 {
                    let want: f64 = (0..7).map(|k| av[[i, h, m, k]] * bv[[h, k, n]]).sum();
                    assert!((cv[[i, h, m, n]] - want).abs() < 1e-12);
                }
            }
        }
    }
}

/// The book's unfused attention, `dropout(softmax(QKᵀ/√d [+ causal mask]))·V`, from ops that are
/// each gradient-checked on their own.
fn unfused_attention(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    causal: bool,
    p: f64,
    seed: u64,
) -> Tensor<f64> {
    use scratchgpt::ops::masked_fill::causal_mask;
    let (tq, tk, d) = (q.shape()[2], k.shape()[2], q.shape()[3]);
    let mut scores = q
        .matmul(&k.transpose(-1, -2).unwrap())
        .unwrap()
        .div_scalar((d as f64).sqrt())
        .unwrap();
    if causal {
        scores = scores
            .masked_fill(&causal_mask(tq, tk), f64::NEG_INFINITY)
            .unwrap();
    }
    let w = scores.softmax().unwrap().dropout(p, seed).unwrap();
    w.matmul(v).unwrap()
}

/// Shapes for the fused-vs-unfused checks: (Tq, Tk, head dim, causal, dropout p). Head dim 4
/// keeps the output product on the tile GEMM's edge tiles; 64 (GPT-2's) and 80 run its full 4×64
/// tiles everywhere. Tq < Tk (a KV cache's case) with an offset that is not a multiple of 64
/// makes causal bands skip score columns; T = 130 spans three 64-row blocks (dP and P buffers
/// reused across blocks); non-causal and dropout at full tiles too.
const ATTENTION_CASES: [(usize, usize, usize, bool, f64); 11] = [
    (5, 5, 4, true, 0.0),
    (3, 7, 4, true, 0.0),
    (6, 6, 4, true, 0.25),
    (70, 70, 4, true, 0.1),
    (70, 70, 64, true, 0.0),
    (9, 133, 64, true, 0.2),
    (130, 150, 64, true, 0.0),
    (130, 130, 80, true, 0.15),
    (70, 70, 64, false, 0.1),
    (9, 133, 64, false, 0.0),
    (130, 150, 64, false, 0.0),
];

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn fused_attention_equals_the_unfused_book_formula() {
    use scratchgpt::ops::attention::AttentionOptions;
    for (tq, tk, d, causal, p) in ATTENTION_CASES {
        let q = Tensor::<f64>::randn(&[2, 3, tq, d], 1);
        let k = Tensor::<f64>::randn(&[2, 3, tk, d], 2);
        let v = Tensor::<f64>::randn(&[2, 3, tk, d], 3);
        let opts = AttentionOptions {
            causal,
            dropout_p: p,
            seed: 11,
        };
        let fused = Tensor::attention(&q, &k, &v, &opts).unwrap();
        let unfused = unfused_attention(&q, &k, &v, causal, p, 11);
        let err = max_abs_diff(&fused.to_vec().unwrap(), &unfused.to_vec().unwrap());
        assert!(
            err < 1e-12,
            "tq {tq} tk {tk} d {d} causal {causal} p {p}: max err {err}"
        );
    }
}

/// The fused backward (recomputed P, tile products restricted to the live keys and queries)
/// against autograd through the unfused formula, for ∂L/∂Q, ∂L/∂K and ∂L/∂V with a random
/// upstream gradient, on the same shapes (too large for a numeric gradcheck at head dim 64).
#[test]
fn fused_attention_gradients_equal_the_unfused_formula() {
    use scratchgpt::ops::attention::AttentionOptions;
    for (tq, tk, d, causal, p) in ATTENTION_CASES {
        let upstream = Tensor::<f64>::randn(&[1, 2, tq, d], 4);
        let grads = |fused: bool| {
            let q = Tensor::<f64>::randn(&[1, 2, tq, d], 1).requires_grad_(true);
            let k = Tensor::<f64>::randn(&[1, 2, tk, d], 2).requires_grad_(true);
            let v = Tensor::<f64>::randn(&[1, 2, tk, d], 3).requires_grad_(true);
            let out = if fused {
                let opts = AttentionOptions {
                    causal,
                    dropout_p: p,
                    seed: 5,
                };
                Tensor::attention(&q, &k, &v, &opts).unwrap()
            } else {
                unfused_attention(&q, &k, &v, causal, p, 5)
            };
            out.mul(&upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            [q, k, v].map(|x| {
                x.grad()
                    .expect("grad")
                    .value()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect::<Vec<f64>>()
            })
        };
        let (got, want) = (grads(true), grads(false));
        for (name, (g, w)) in ["dQ", "dK", "dV"].iter().zip(got.iter().zip(&want)) {
            let err = max_abs_diff(g, w);
            assert!(
                err < 1e-11,
                "{name} tq {tq} tk {tk} d {d} causal {causal} p {p}: max err {err}"
            );
        }
    }
}

#[test]
fn nan_propagates_through_fused_row_ops() {
    let x = Tensor::<f32>::from_vec(vec![1.0, f32::NAN, 2.0, 0.5, 0.1, 0.2], &[2, 3]).unwrap();
    let s = x.softmax().unwrap().to_vec().unwrap();
    assert!(s[..3].iter().all(|v| v.is_nan()), "{s:?}");
    assert!(s[3..].iter().all(|v| v.is_finite()), "{s:?}");
    let loss = x
        .cross_entropy(&scratchgpt::Ids::from_vec(vec![0, 1]))
        .unwrap();
    assert!(loss.item().unwrap().is_nan());
    assert!(!loss.all_finite().unwrap());
    let big = Tensor::<f32>::from_vec(vec![1000.0, -1000.0, 0.0], &[1, 3]).unwrap();
    let s = big.softmax().unwrap().to_vec().unwrap();
    assert_eq!(s, vec![1.0, 0.0, 0.0], "stable for large logits");
}
