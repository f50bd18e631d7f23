//! Op throughput at GPT-2-small shapes, each beside a reference measured in the same run:
//!
//! - **matmul** (forward and the two transposed backward forms) beside a bare
//!   `matrixmultiply::sgemm` call on the same shapes, throughput in FLOP (criterion reports
//!   "elem/s": read it as FLOP/s);
//! - **fused ops** (softmax, layer_norm, gelu, cross_entropy, causal attention), forward and
//!   forward + backward, with throughput set to the bytes the op *must* move (each tensor it
//!   reads or writes, once: see `Case::units`), so criterion's GB/s is the op's effective
//!   bandwidth. Two yardsticks are measured in the same run:
//!   - `dram-copy 256 MiB` (beside each op; also alone as `memory/copy 256 MiB`): a parallel copy of a buffer eight times the size of the L3 cache,
//!     i.e. this machine's sustained memory (DRAM) bandwidth. Compulsory bytes ÷ this bandwidth
//!     is the op's **memory-bandwidth bound** (the roofline), the target's yardstick;
//!   - `copy` of the op's own input (6 MB or less, so it stays in cache — except cross-entropy's
//!     103 MB of logits, whose copy is a DRAM copy): the stricter in-cache bandwidth, which an op
//!     that is limited by arithmetic cannot approach.
//!
//! Run: `cargo bench --bench ops` (add `-- matmul`, `-- fused` or `-- memory` to pick a group).
//! Results and ratios are recorded in docs/performance.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{no_grad, Ids, Tensor};

/// One sgemm straight into matrixmultiply with row-major strides (and transposed operands given
/// as swapped strides, like ours).
#[allow(clippy::too_many_arguments)] // mirrors the sgemm call it wraps
fn bare_sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
) {
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: a holds m·k, b holds k·n, c holds m·n f32s, addressed within bounds by the strides
    // above; c does not alias a or b.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The bare sgemm split across `threads` scoped OS threads by blocks of C's columns (or rows):
/// the best a 2-core machine gives the same kernel, with no framework around it.
#[allow(clippy::too_many_arguments)] // mirrors the sgemm call it wraps
fn bare_sgemm_threads(
    threads: usize,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
) {
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let step = n.div_ceil(threads);
    let c_addr = c.as_mut_ptr() as usize;
    std::thread::scope(|s| {
        for t in 0..threads {
            let j0 = t * step;
            let nj = step.min(n.saturating_sub(j0));
            if nj == 0 {
                continue;
            }
            s.spawn(move || {
                // SAFETY: as in `bare_sgemm`; each thread writes only columns j0..j0+nj of C, so
                // the threads' writes are disjoint, and C outlives the scope.
                unsafe {
                    let bp = b.as_ptr().offset(j0 as isize * csb);
                    let cp = (c_addr as *mut f32).add(j0);
                    matrixmultiply::sgemm(
                        m,
                        k,
                        nj,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        csa,
                        bp,
                        rsb,
                        csb,
                        0.0,
                        cp,
                        n as isize,
                        1,
                    );
                }
            });
        }
    });
}

fn matmul(c: &mut Criterion) {
    scratchgpt::backend::cpu::keep_freed_memory_for_reuse();
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    // (label, m, k, n, A transposed, B transposed): C[m,n] = op(A)·op(B)
    let shapes = [
        ("fwd 512x768 @ 768x2304", 512, 768, 2304, false, false),
        ("dA  512x2304 @ (768x2304)T", 512, 2304, 768, false, true),
        ("dB  (512x768)T @ 512x2304", 768, 512, 2304, true, false),
        ("fwd 512x768 @ 768x50257", 512, 768, 50257, false, false),
        ("dA  512x50257 @ (768x50257)T", 512, 50257, 768, false, true),
        ("dB  (512x768)T @ 512x50257", 768, 512, 50257, true, false),
    ];
    for (label, m, k, n, ta, tb) in shapes {
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let a = Tensor::<f32>::randn(&a_shape, 1);
        let b = Tensor::<f32>::randn(&b_shape, 2);
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let mut cv = vec![0f32; m * n];
        g.bench_function(BenchmarkId::new("bare_sgemm_1thread", label), |bench| {
            bench.iter(|| bare_sgemm(m, k, n, &av, ta, &bv, tb, black_box(&mut cv)))
        });
        let threads = rayon::current_num_threads();
        g.bench_function(
            BenchmarkId::new(format!("bare_sgemm_{threads}threads"), label),
            |bench| {
                bench.iter(|| {
                    bare_sgemm_threads(threads, m, k, n, &av, ta, &bv, tb, black_box(&mut cv))
                })
            },
        );
        let a_op = if ta {
            a.transpose(0, 1).unwrap()
        } else {
            a.clone()
        };
        let b_op = if tb {
            b.transpose(0, 1).unwrap()
        } else {
            b.clone()
        };
        g.bench_function(BenchmarkId::new("scratchgpt", label), |bench| {
            bench.iter(|| no_grad(|| black_box(a_op.matmul(&b_op).unwrap())))
        });
    }
    g.finish();
}

/// Forward + backward of `f` from its leaves, with a given upstream gradient (made once, outside
/// the timed loop: filling it is not part of the op's cost).
fn fwd_bwd(
    inputs: &[Tensor<f32>],
    f: &dyn Fn(&[Tensor<f32>]) -> Tensor<f32>,
    upstream: &scratchgpt::tensor::CpuArray<f32>,
) {
    for x in inputs {
        x.zero_grad();
    }
    let y = f(inputs);
    y.backward_with(&scratchgpt::Tensor::from_array(upstream.clone()))
        .unwrap();
}

fn fused(c: &mut Criterion) {
    scratchgpt::backend::cpu::keep_freed_memory_for_reuse();
    let (b, t, ch, h) = (2, 256, 768, 12);
    let mut g = c.benchmark_group("fused");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let leaf = |shape: &[usize], seed| Tensor::<f32>::randn(shape, seed).requires_grad_(true);
    // (label, leaves, op, (fwd units, fwd+bwd units)). A unit is the byte size of the first
    // leaf: softmax and GELU read x and write y (2), and their backward reads g and the saved
    // y (or x) and writes dx (3 more); layer norm the same (γ, β and the per-row statistics are
    // a rounding error); cross-entropy reads the logits (1), and its backward reads them again
    // and writes dlogits (2 more); attention reads q, k, v and writes out (4), and its backward
    // reads g, q, k, v, out and writes dq, dk, dv (8 more).
    type Case = (
        &'static str,
        Vec<Tensor<f32>>,
        Box<dyn Fn(&[Tensor<f32>]) -> Tensor<f32>>,
        (u64, u64),
    );
    let targets = Ids::new(
        (0..b * t).map(|i| (i * 7919 % 50257) as i64).collect(),
        &[b, t],
    )
    .unwrap();
    let cases: Vec<Case> = vec![
        (
            "softmax (2,12,256,256)",
            vec![leaf(&[b, h, t, t], 1)],
            Box::new(|x| x[0].softmax().unwrap()),
            (2, 5),
        ),
        (
            "layer_norm (2,256,768)",
            vec![leaf(&[b, t, ch], 2), leaf(&[ch], 3), leaf(&[ch], 4)],
            Box::new(|x| x[0].layer_norm(&x[1], &x[2], 1e-5).unwrap()),
            (2, 5),
        ),
        (
            "gelu (2,256,3072)",
            vec![leaf(&[b, t, 4 * ch], 5)],
            Box::new(|x| x[0].gelu().unwrap()),
            (2, 5),
        ),
        (
            "cross_entropy (2,256,50257)",
            vec![leaf(&[b, t, 50257], 6)],
            Box::new(move |x| x[0].cross_entropy(&targets).unwrap()),
            (1, 3),
        ),
        (
            "attention (2,12,256,64)",
            vec![
                leaf(&[b, h, t, ch / h], 7),
                leaf(&[b, h, t, ch / h], 8),
                leaf(&[b, h, t, ch / h], 9),
            ],
            Box::new(|x| {
                Tensor::attention(&x[0], &x[1], &x[2], &AttentionOptions::default()).unwrap()
            }),
            (4, 12),
        ),
    ];
    let (dram_src, mut dram_dst) = dram_buffers();
    for (label, inputs, f, (fwd_units, total_units)) in &cases {
        // The memory-bandwidth yardstick right beside each op, so that both are measured within
        // seconds of each other (this shared machine's bandwidth drifts by ±30 % over minutes).
        g.throughput(Throughput::Bytes(2 * 4 * dram_src.len() as u64));
        g.bench_function(BenchmarkId::new("dram-copy 256 MiB", label), |bench| {
            bench.iter(|| dram_copy(&dram_src, &mut dram_dst))
        });
        let unit = (inputs[0].numel() * 4) as u64;
        let first = inputs[0].value().unwrap();
        g.throughput(Throughput::Bytes(2 * unit)); // a copy reads and writes the input once
        g.bench_function(BenchmarkId::new("copy", label), |bench| {
            bench.iter(|| black_box(first.to_owned()))
        });
        g.throughput(Throughput::Bytes(fwd_units * unit));
        g.bench_function(BenchmarkId::new("fwd", label), |bench| {
            bench.iter(|| no_grad(|| black_box(f(inputs))))
        });
        let out_shape = no_grad(|| f(inputs)).shape();
        let upstream = ndarray::ArrayD::ones(ndarray::IxDyn(&out_shape)).into_shared();
        g.throughput(Throughput::Bytes(total_units * unit));
        g.bench_function(BenchmarkId::new("fwd+bwd", label), |bench| {
            bench.iter(|| fwd_bwd(inputs, f.as_ref(), &upstream))
        });
    }
    g.finish();
}

/// Source and destination for [`dram_copy`]: 256 MiB each, eight times a 32 MiB L3 cache.
fn dram_buffers() -> (Vec<f32>, Vec<f32>) {
    let len = 256 << 20 >> 2; // f32s in 256 MiB
    ((0..len).map(|i| i as f32).collect(), vec![0f32; len])
}

/// This machine's sustained memory bandwidth: a copy far larger than the caches, split into
/// rayon tasks like our ops, so every core the ops may use streams at once. Throughput is read +
/// write bytes; an op's memory-bandwidth bound is its compulsory bytes divided by this figure.
fn dram_copy(src: &[f32], dst: &mut [f32]) {
    use rayon::prelude::*;
    dst.par_chunks_mut(1 << 20)
        .zip(src.par_chunks(1 << 20))
        .for_each(|(d, s)| d.copy_from_slice(s));
    black_box(dst);
}

/// The yardstick alone: `cargo bench --bench ops -- memory`.
fn memory(c: &mut Criterion) {
    let (src, mut dst) = dram_buffers();
    let mut g = c.benchmark_group("memory");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(2 * 4 * src.len() as u64));
    g.bench_function("copy 256 MiB", |bench| {
        bench.iter(|| dram_copy(&src, &mut dst))
    });
    g.finish();
}

criterion_group!(benches, matmul, fused, memory);
criterion_main!(benches);
