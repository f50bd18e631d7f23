//! Our packed GEMM (`backend::gemm`): every micro-kernel this CPU supports — forced, not only the
//! one dispatch picks — against a naive f64 product, over ragged shapes that exercise every edge
//! tile and block boundary, every operand layout the engine uses (transposes are strides), alpha
//! and beta (accumulate into an existing C; overwrite a C full of NaN without reading it); and the
//! engine's parallel split bit-identical on 1 and 2 threads.

use ndarray::{Array2, ShapeBuilder};
use scratchgpt::backend::cpu::gemm;
use scratchgpt::backend::gemm::{round_to_bf16, select, selected, sgemm_with, Kernel};

fn filled(rows: usize, cols: usize, seed: u64, col_major: bool) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let shape = (rows, cols).set_f(col_major);
    Array2::from_shape_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// `alpha·A·B + beta·C` in f64, and the bound on f32 rounding for each element:
/// `(k + 2)·ε·(|alpha|·Σ|a||b| + |beta·c|)`.
fn reference(
    alpha: f32,
    a: &Array2<f32>,
    b: &Array2<f32>,
    beta: f32,
    c: &Array2<f32>,
) -> (Array2<f64>, Array2<f64>) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let mut want = Array2::zeros((m, n));
    let mut tol = Array2::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0.0f64, 0.0f64);
            for l in 0..k {
                s += a[(i, l)] as f64 * b[(l, j)] as f64;
                mag += (a[(i, l)] as f64 * b[(l, j)] as f64).abs();
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[(i, j)] as f64
            };
            want[(i, j)] = alpha as f64 * s + old;
            tol[(i, j)] =
                (k as f64 + 2.0) * f32::EPSILON as f64 * (alpha.abs() as f64 * mag + old.abs())
                    + 1e-30;
        }
    }
    (want, tol)
}

/// The values rounded to bfloat16 (and back to f32).
fn bf16(x: &Array2<f32>) -> Array2<f32> {
    x.mapv(|v| f32::from_bits((round_to_bf16(v) as u32) << 16))
}

/// Every kernel to check: the f32 ones this CPU runs, and the bf16 one where it has AVX-512 BF16
/// (`SCRATCHGPT_REQUIRE_BF16=1` makes its absence a failure, for machines known to have it).
fn kernels() -> Vec<Kernel> {
    let mut all = Kernel::available();
    if Kernel::Avx512Bf16.supported() {
        all.push(Kernel::Avx512Bf16);
    } else {
        assert!(
            std::env::var("SCRATCHGPT_REQUIRE_BF16").is_err(),
            "SCRATCHGPT_REQUIRE_BF16 is set but this CPU lacks AVX-512 BF16"
        );
        eprintln!("this CPU lacks AVX-512 BF16: the bf16 kernel is not checked here");
    }
    all
}

/// Runs `kernel` on views with the given layouts and checks every element.
#[allow(clippy::too_many_arguments)]
fn check(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
    c_t: bool,
    alpha: f32,
    beta: f32,
) {
    let a = filled(m, k, (m * 31 + k) as u64, a_t);
    let b = filled(k, n, (k * 17 + n) as u64, b_t);
    let mut c = filled(m, n, 99, c_t);
    if beta == 0.0 {
        c.fill(f32::NAN); // must never be read
    }
    // The bf16 kernel multiplies the operands rounded to bf16, exactly, and sums in f32: the
    // reference is the f64 product of the rounded operands, with the same f32 rounding bound.
    let (want, tol) = if kernel.is_f32() {
        reference(alpha, &a, &b, beta, &c)
    } else {
        reference(alpha, &bf16(&a), &bf16(&b), beta, &c)
    };
    let s = |x: &Array2<f32>| [x.strides()[0], x.strides()[1]];
    let ([rsa, csa], [rsb, csb], [rsc, csc]) = (s(&a), s(&b), s(&c));
    // SAFETY: pointers and strides of arrays of shapes (m,k), (k,n), (m,n); C is distinct.
    unsafe {
        sgemm_with(
            kernel,
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
    for ((idx, &got), (&w, &t)) in c.indexed_iter().zip(want.iter().zip(tol.iter())) {
        assert!(
            (got as f64 - w).abs() <= t,
            "{kernel:?} {m}×{k}·{k}×{n} (A{} B{} C{}) alpha {alpha} beta {beta}: C{idx:?} = {got}, want {w} ± {t:e}",
            if a_t { "ᵀ" } else { "" },
            if b_t { "ᵀ" } else { "" },
            if c_t { "ᵀ" } else { "" },
        );
    }
}

#[test]
fn every_kernel_matches_a_naive_product_on_ragged_shapes_and_layouts() {
    let kernels = kernels();
    assert!(kernels.contains(&Kernel::Portable));
    eprintln!("kernels on this CPU: {kernels:?}");
    // Sizes around every kernel's tile (4×8, 6×16, 12×32), the row block (240 rows), the inner
    // slice (128 for f32, 256 for bf16) — so full tiles, edge tiles, several row blocks and
    // k-slices all occur.
    let shapes = [
        (1, 1, 1),
        (1, 7, 33),
        (5, 3, 2),
        (12, 256, 32),
        (13, 257, 33),
        (25, 100, 17),
        (121, 513, 47),
        (64, 64, 64),
        (130, 40, 200),
        (7, 600, 97),
        (9, 45, 23), // an odd inner dimension over two vectors of a contiguous run
        (250, 300, 40),
    ];
    for kernel in kernels {
        for &(m, k, n) in &shapes {
            for layout in 0..8 {
                let (a_t, b_t, c_t) = (layout & 1 != 0, layout & 2 != 0, layout & 4 != 0);
                check(kernel, m, k, n, a_t, b_t, c_t, 1.0, 0.0);
            }
            check(kernel, m, k, n, false, true, false, 0.5, 1.0); // accumulate into a gradient
            check(kernel, m, k, n, true, false, false, -1.25, 0.75);
        }
        // Wider than one column block of B (3072) and an empty inner dimension.
        check(kernel, 3, 5, 3100, false, false, false, 1.0, 0.0);
        check(kernel, 4, 0, 9, false, false, false, 1.0, 0.5);
    }
}

#[test]
fn general_strides_on_every_operand() {
    // Neither stride 1: every third row and every second column of larger arrays.
    for kernel in kernels() {
        let (m, k, n) = (19, 45, 37);
        let a_big = filled(3 * m, 2 * k, 1, false);
        let b_big = filled(3 * k, 2 * n, 2, true);
        let a = a_big.slice(ndarray::s![..;3, ..;2]);
        let b = b_big.slice(ndarray::s![..;3, ..;2]);
        let mut c_big = Array2::<f32>::from_elem((2 * m, 3 * n), f32::NAN);
        let (a_ref, b_ref) = if kernel.is_f32() {
            (a.to_owned(), b.to_owned())
        } else {
            (bf16(&a.to_owned()), bf16(&b.to_owned()))
        };
        let (want, tol) = reference(1.0, &a_ref, &b_ref, 0.0, &Array2::zeros((m, n)));
        {
            let mut c = c_big.slice_mut(ndarray::s![..;2, ..;3]);
            let [rsc, csc] = [c.strides()[0], c.strides()[1]];
            // SAFETY: views of shapes (m,k), (k,n), (m,n) over live arrays; C distinct.
            unsafe {
                sgemm_with(
                    kernel,
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    a.strides()[0],
                    a.strides()[1],
                    b.as_ptr(),
                    b.strides()[0],
                    b.strides()[1],
                    0.0,
                    c.as_mut_ptr(),
                    rsc,
                    csc,
                );
            }
        }
        let c = c_big.slice(ndarray::s![..;2, ..;3]);
        for ((&got, &w), &t) in c.iter().zip(&want).zip(&tol) {
            assert!((got as f64 - w).abs() <= t, "{kernel:?}: {got} vs {w}");
        }
        // The elements between the strided ones were never written.
        assert!(c_big[(1, 0)].is_nan() && c_big[(0, 1)].is_nan());
    }
}

#[test]
fn the_engines_parallel_split_gives_the_same_bits_on_one_and_two_threads() {
    let a = filled(300, 700, 5, false);
    let b = filled(700, 900, 6, true);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut c = Array2::<f32>::zeros((300, 900));
            gemm(1.0, a.view(), b.view(), 0.0, c.view_mut(), true);
            c
        })
    };
    assert_eq!(run(1), run(2));
    // The same for the bf16 kernel (selected for the whole process, so checked here, in the
    // one test of this file that goes through the selection).
    if Kernel::Avx512Bf16.supported() {
        let before = selected();
        assert!(select(Kernel::Avx512Bf16));
        let (one, two) = (run(1), run(2));
        select(before);
        assert_eq!(one, two);
        assert_ne!(one, run(1), "bf16 rounding changes the result");
    }
}

#[test]
fn bench_gemm_reports_the_peak_and_every_product() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["bench", "gemm", "--tokens", "32", "--secs", "0.01"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("FMA peak ("), "{out}");
    // 5 layers × (forward, dX, dW), each with ours, matrixmultiply and their ratio.
    let rows = out
        .lines()
        .filter(|l| {
            ["qkv", "attn", "mlp", "head"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        // Ours and matrixmultiply's, and the bf16 kernel's where the CPU has it.
        .filter(|l| {
            let shares = l.split_whitespace().filter(|w| w.ends_with('%')).count();
            shares == 2 + usize::from(out.contains("bf16 peak ("))
        })
        .count();
    assert_eq!(rows, 15, "{out}");
}

#[test]
fn a_bad_scratchgpt_gemm_is_one_clear_error() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["tokenize", "hi"])
        .env("SCRATCHGPT_GEMM", "avx513")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown GEMM kernel \"avx513\"") && err.contains("portable"),
        "{err}"
    );
}
