//! The machine's fused-multiply-add peak, measured: independent chains of FMAs at the widest
//! vector width the CPU has, so nothing waits on a previous result and only the FMA units limit
//! the rate. It is the roof a GEMM's GFLOP/s is compared with (a GEMM is FMAs plus the loads and
//! packing around them).

use std::hint::black_box;
use std::time::Instant;

/// Chains per thread: more than an FMA's latency (4 cycles) × units (2) needs, on any current
/// x86 core.
const CHAINS: usize = 12;

/// The vector width used and GFLOP/s of `iters` rounds of [`CHAINS`] FMAs on one thread.
fn run(iters: u64) -> (&'static str, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked on the line above).
            let flops = unsafe { avx512(iters) };
            return ("avx512", flops);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA are present (checked on the line above).
            let flops = unsafe { avx2(iters) };
            return ("avx2+fma", flops);
        }
    }
    ("scalar", scalar(iters))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(black_box(0.999_999));
    let y = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    sink512(&acc);
    (iters * CHAINS as u64 * 16 * 2) as f64
}

/// Keeps the chains' results alive, so the loop is not optimised away.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sink512(acc: &[std::arch::x86_64::__m512; CHAINS]) {
    use std::arch::x86_64::*;
    let mut out = [0.0f32; 16];
    let sum = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
    // SAFETY: `out` holds 16 floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
    black_box(out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    black_box(out);
    (iters * CHAINS as u64 * 8 * 2) as f64
}

fn scalar(iters: u64) -> f64 {
    let (x, y) = (black_box(0.999_999f32), black_box(1e-7f32));
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = a.mul_add(x, y);
        }
    }
    black_box(acc);
    (iters * CHAINS as u64 * 2) as f64
}

/// The FMA peak in GFLOP/s on one thread and on every thread of the rayon pool at once, and
/// the instruction set used. Each measurement runs about `secs` seconds.
pub fn fma_peak(secs: f64) -> (&'static str, f64, f64) {
    let (isa, _) = run(1);
    let (one, all) = measure(secs, |iters| run(iters).1);
    (isa, one, all)
}

/// The `vdpbf16ps` peak (each instruction: 16 lanes × 2 products, 64 flops) in GFLOP/s on one
/// thread and on all; `None` on a CPU without AVX-512 BF16.
pub fn dpbf16_peak(secs: f64) -> Option<(f64, f64)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            // SAFETY: both features are present (checked above).
            return Some(measure(secs, |iters| unsafe { dpbf16(iters) }));
        }
    }
    let _ = secs;
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dpbf16(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    // SAFETY: a bf16 vector is 512 bits, as is an i32 vector.
    let (x, y): (__m512bh, __m512bh) = unsafe {
        (
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(black_box(0x3f80_3f80))),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(black_box(0x3380_3380))),
        )
    };
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm512_dpbf16_ps(*a, x, y);
        }
    }
    sink512(&acc);
    (iters * CHAINS as u64 * 16 * 4) as f64
}

/// GFLOP/s of `run` (which does `iters` rounds and returns its flops) on one thread and on
/// every thread of the rayon pool at once, each for about `secs` seconds.
fn measure(secs: f64, run: impl Fn(u64) -> f64 + Sync) -> (f64, f64) {
    // Calibrate: how many rounds take `secs`.
    let mut iters = 1u64 << 16;
    let rounds_per_sec = loop {
        let t = Instant::now();
        run(iters);
        let dt = t.elapsed().as_secs_f64();
        if dt > 0.05 {
            break iters as f64 / dt;
        }
        iters *= 4;
    };
    let iters = ((secs * rounds_per_sec) as u64).max(1);
    let one = {
        let t = Instant::now();
        let flops = run(iters);
        flops / t.elapsed().as_secs_f64() / 1e9
    };
    let all = {
        let t = Instant::now();
        let total: f64 = rayon::broadcast(|_| run(iters)).into_iter().sum();
        total / t.elapsed().as_secs_f64() / 1e9
    };
    (one, all)
}
