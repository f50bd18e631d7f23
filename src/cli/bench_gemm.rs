//! `scratchgpt bench gemm`: the machine's FMA peak, measured, and every GEMM of a gpt2-small
//! training step (batch 2, context 256) through the engine's matmul path, with our kernel and
//! with matrixmultiply's — GFLOP/s and the share of the peak measured in the same run; on a CPU
//! with AVX-512 BF16 also the `vdpbf16ps` peak and the bf16 kernel of `--precision bf16`.

use std::process::ExitCode;
use std::time::Instant;

use ndarray::Array2;
use scratchgpt::backend::cpu::gemm;
use scratchgpt::backend::gemm::{dpbf16_peak, fma_peak, select, selected, Kernel};

#[derive(clap::Args)]
pub struct GemmBenchArgs {
    /// Sequences × context = the rows of every activation matrix.
    #[arg(long, default_value_t = 512)]
    tokens: usize,
    /// Seconds per measurement (at least two products each).
    #[arg(long, default_value_t = 0.5)]
    secs: f64,
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    })
}

/// GFLOP/s of `f` (one product of `flops`), best of the runs that fill `secs`.
fn time(flops: f64, secs: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: packing buffers, page faults
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 2 || start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    flops / best / 1e9
}

pub fn run(a: &GemmBenchArgs) -> anyhow::Result<ExitCode> {
    let threads = rayon::current_num_threads();
    let (isa, one, all) = fma_peak(0.3);
    println!(
        "FMA peak ({isa}, independent chains): {one:.0} GFLOP/s on 1 thread, {all:.0} GFLOP/s on {threads} threads"
    );
    let bf16_peak = dpbf16_peak(0.3);
    match bf16_peak {
        Some((one, all)) => println!(
            "bf16 peak (vdpbf16ps, independent chains): {one:.0} GFLOP/s on 1 thread, {all:.0} GFLOP/s on {threads} threads"
        ),
        None => println!("bf16: this CPU lacks AVX-512 BF16 (no --precision bf16)"),
    }
    // Our widest kernel this CPU runs, against matrixmultiply's (the default for now).
    let before = selected();
    let ours = Kernel::available()[0];
    let m = a.tokens;
    // (name, out features, in features) of gpt2-small's linear layers; the head has 50,257.
    let layers = [
        ("qkv 768→2304", 2304, 768),
        ("attn proj 768→768", 768, 768),
        ("mlp fc 768→3072", 3072, 768),
        ("mlp proj 3072→768", 768, 3072),
        ("head 768→50257", 50257, 768),
    ];
    print!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "product (M = tokens)",
        ours.name(),
        "% peak",
        "mm",
        "% peak",
        "ours/mm"
    );
    if bf16_peak.is_some() {
        print!(" {:>8} {:>9} {:>9}", "bf16", "% bf16pk", "bf16/f32");
    }
    println!();
    for (name, out_f, in_f) in layers {
        let x = random(m, in_f, 1);
        let w = random(out_f, in_f, 2);
        let g = random(m, out_f, 3);
        let flops = 2.0 * (m * in_f * out_f) as f64;
        let mut y = Array2::<f32>::zeros((m, out_f));
        let mut dx = Array2::<f32>::zeros((m, in_f));
        let mut dw = Array2::<f32>::zeros((out_f, in_f));
        let cases: [(&str, &mut dyn FnMut()); 3] = [
            ("fwd  Y = X·Wᵀ", &mut || {
                gemm(1.0, x.view(), w.t(), 0.0, y.view_mut(), true)
            }),
            ("dX = G·W", &mut || {
                gemm(1.0, g.view(), w.view(), 0.0, dx.view_mut(), true)
            }),
            ("dW += Gᵀ·X", &mut || {
                gemm(1.0, g.t(), x.view(), 1.0, dw.view_mut(), true)
            }),
        ];
        for (what, f) in cases {
            let mut rates = [0.0; 2];
            for (i, k) in [ours, Kernel::MatrixMultiply].into_iter().enumerate() {
                select(k);
                rates[i] = time(flops, a.secs, &mut *f);
            }
            print!(
                "{:<34} {:>8.0} {:>7.0}% {:>8.0} {:>7.0}% {:>7.2}",
                format!("{name} {what}"),
                rates[0],
                100.0 * rates[0] / all,
                rates[1],
                100.0 * rates[1] / all,
                rates[0] / rates[1]
            );
            if let Some((_, bf16_all)) = bf16_peak {
                select(Kernel::Avx512Bf16);
                let r = time(flops, a.secs, &mut *f);
                // Against the faster f32 kernel: what --precision bf16 gains over the default.
                print!(
                    " {r:>8.0} {:>8.0}% {:>9.2}",
                    100.0 * r / bf16_all,
                    r / rates[0].max(rates[1])
                );
            }
            println!();
        }
    }
    select(before);
    println!(
        "(GFLOP/s in {threads} threads through the engine's GEMM split; \"% peak\" of the {all:.0} GFLOP/s measured above; dW accumulates into an existing gradient{})",
        if bf16_peak.is_some() {
            "; bf16/f32 against the faster f32 kernel"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
