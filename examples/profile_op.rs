//! One fused op in a tight loop, for `perf record` and for best-of-N timings that the shared
//! machine's noise blurs less than criterion's medians (docs/performance.md quotes both).
//!
//! ```sh
//! cargo run --release --example profile_op -- softmax            # forward only (no_grad)
//! cargo run --release --example profile_op -- gelu --backward     # forward + backward
//! perf record -g ./target/release/examples/profile_op layer_norm --backward
//! ```
//!
//! Ops and shapes are the ops bench's (GPT-2 small, B=2, T=256): softmax, log_softmax,
//! layer_norm, gelu, cross_entropy, attention. Prints the best time over the runs.

use std::process::ExitCode;
use std::time::Instant;

use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{no_grad, Ids, Tensor};

const OPS: &str = "softmax, log_softmax, layer_norm, gelu, cross_entropy, attention";

fn main() -> ExitCode {
    scratchgpt::backend::cpu::keep_freed_memory_for_reuse();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backward = args.iter().any(|a| a == "--backward");
    let op = match args.iter().find(|a| !a.starts_with("--")) {
        Some(op) => op.clone(),
        None => {
            eprintln!("usage: profile_op OP [--backward]   (OP: {OPS})");
            return ExitCode::FAILURE;
        }
    };
    let leaf = |shape: &[usize], seed| Tensor::<f32>::randn(shape, seed).requires_grad_(true);
    let (b, t, c, h) = (2, 256, 768, 12);
    let targets = Ids::new(
        (0..b * t).map(|i| (i * 7919 % 50257) as i64).collect(),
        &[b, t],
    )
    .expect("valid ids");
    type OpFn = Box<dyn Fn(&[Tensor<f32>]) -> Tensor<f32>>;
    let (inputs, f, runs): (Vec<Tensor<f32>>, OpFn, usize) = match op.as_str() {
        "softmax" => (
            vec![leaf(&[b, h, t, t], 1)],
            Box::new(|x| x[0].softmax().unwrap()),
            2000,
        ),
        "log_softmax" => (
            vec![leaf(&[b, h, t, t], 1)],
            Box::new(|x| x[0].log_softmax().unwrap()),
            2000,
        ),
        "layer_norm" => (
            vec![leaf(&[b, t, c], 2), leaf(&[c], 3), leaf(&[c], 4)],
            Box::new(|x| x[0].layer_norm(&x[1], &x[2], 1e-5).unwrap()),
            2000,
        ),
        "gelu" => (
            vec![leaf(&[b, t, 4 * c], 5)],
            Box::new(|x| x[0].gelu().unwrap()),
            2000,
        ),
        "cross_entropy" => (
            vec![leaf(&[b, t, 50257], 6)],
            Box::new(move |x| x[0].cross_entropy(&targets).unwrap()),
            100,
        ),
        "attention" => (
            (7..10).map(|s| leaf(&[b, h, t, c / h], s)).collect(),
            Box::new(|x| {
                Tensor::attention(&x[0], &x[1], &x[2], &AttentionOptions::default()).unwrap()
            }),
            100,
        ),
        other => {
            eprintln!("unknown op {other:?}; one of: {OPS}");
            return ExitCode::FAILURE;
        }
    };
    let out_shape = no_grad(|| f(&inputs)).shape();
    let upstream = ndarray::ArrayD::ones(ndarray::IxDyn(&out_shape)).into_shared();
    let mut best = f64::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        if backward {
            inputs.iter().for_each(|x| x.zero_grad());
            f(&inputs)
                .backward_with(&scratchgpt::Tensor::from_array(upstream.clone()))
                .unwrap();
        } else {
            no_grad(|| std::hint::black_box(f(&inputs)));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    let what = if backward { "fwd+bwd" } else { "fwd" };
    println!("{op} {what}: best of {runs} runs {:.3} ms", best * 1e3);
    ExitCode::SUCCESS
}
