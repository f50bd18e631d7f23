//! The same inputs give bit-identical results with 1 and 2 threads (and from run to run):
//! parallel work is split by problem size, never by thread count, and partial results are
//! combined in a fixed order.

use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{Ids, Tensor};

/// Forward and backward of ops big enough to take their parallel paths; returns every output
/// and gradient, flattened.
fn run() -> Vec<f32> {
    let x = Tensor::<f32>::randn(&[4, 128, 256], 1).requires_grad_(true);
    let w = Tensor::<f32>::randn(&[256, 512], 2).requires_grad_(true);
    let g = Tensor::<f32>::ones(&[256]).requires_grad_(true);
    let b = Tensor::<f32>::zeros(&[256]).requires_grad_(true);
    let ln = x.layer_norm(&g, &b, 1e-5).unwrap();
    let h = ln.matmul(&w).unwrap().gelu().unwrap(); // (4,128,512)
    let q = h
        .reshape(&[4, 128, 8, 64])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let a = Tensor::attention(
        &q,
        &q,
        &q,
        &AttentionOptions {
            causal: true,
            dropout_p: 0.1,
            seed: 3,
        },
    )
    .unwrap();
    let logits = a
        .transpose(1, 2)
        .unwrap()
        .reshape(&[4, 128, 512])
        .unwrap()
        .dropout(0.2, 9)
        .unwrap();
    let targets = Ids::new((0..512).map(|i| (i * 31 % 512) as i64).collect(), &[4, 128]).unwrap();
    let loss = logits
        .cross_entropy(&targets)
        .unwrap()
        .add(&logits.softmax().unwrap().sum_all().unwrap())
        .unwrap();
    loss.backward().unwrap();
    let mut out = loss.to_vec().unwrap();
    for p in [&x, &w, &g, &b] {
        out.extend(p.grad().unwrap().to_vec().unwrap());
    }
    out
}

fn with_threads(n: usize) -> Vec<f32> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(run)
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let one = with_threads(1);
    let two = with_threads(2);
    let again = with_threads(2);
    assert!(one.iter().all(|v| v.is_finite()));
    assert_eq!(two, again, "two runs with the same seed differ");
    let diff = one
        .iter()
        .zip(&two)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        diff,
        0,
        "{diff} of {} values differ between 1 and 2 threads",
        one.len()
    );
}
