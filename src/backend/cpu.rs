//! CPU helpers shared by the ops: when to go parallel, elementwise maps, reductions that LLVM can
//! vectorise, and the GEMM entry point.
//!
//! **One level of parallelism.** Everything parallel here runs on rayon's global pool (whose size
//! `RAYON_NUM_THREADS` sets). GEMM calls into `matrixmultiply` are single-threaded (its own
//! `threading` feature is off); large products are split into rayon tasks by [`gemm`]. Nothing
//! parallel is ever started from inside a parallel region.
//!
//! **Determinism.** Parallel reductions are split into chunks whose boundaries depend only on the
//! problem size (never on the thread count or on work stealing), and partial results are combined
//! in chunk order, so results are bit-identical from run to run and across thread counts.

use std::mem::MaybeUninit;

use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

use crate::tensor::{CpuArray, Element};

/// Below this many elements an elementwise op runs on the calling thread: spawning tasks costs
/// more than it saves.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Whether a loop over `n` elements should be split into rayon tasks.
pub fn should_par(n: usize) -> bool {
    n >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1
}

/// `acc += g`, elementwise (same shapes). Copy-on-write if `acc` is shared.
pub fn add_assign<T: Element>(acc: &mut CpuArray<T>, g: &CpuArray<T>) {
    if should_par(acc.len()) {
        Zip::from(acc.view_mut())
            .and(g)
            .par_for_each(|a, &b| *a += b);
    } else {
        Zip::from(acc.view_mut()).and(g).for_each(|a, &b| *a += b);
    }
}

/// `f` over every element.
pub fn map<T: Element>(a: &CpuArray<T>, f: impl Fn(T) -> T + Sync + Send) -> CpuArray<T> {
    if should_par(a.len()) {
        Zip::from(a).par_map_collect(|&x| f(x)).into_shared()
    } else {
        a.map(|&x| f(x)).into_shared()
    }
}

/// `f` over pairs of elements of two arrays already broadcast to the same shape.
pub fn zip_map<T: Element>(
    a: &CpuArray<T>,
    b: &CpuArray<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> CpuArray<T> {
    let av = a.broadcast(shape).expect("caller checked broadcast");
    let bv = b.broadcast(shape).expect("caller checked broadcast");
    let z = Zip::from(av).and(bv);
    if should_par(shape.iter().product()) {
        z.par_map_collect(|&x, &y| f(x, y)).into_shared()
    } else {
        z.map_collect(|&x, &y| f(x, y)).into_shared()
    }
}

/// `f` over triples (three arrays of one shape).
pub fn zip3_map<T: Element>(
    a: &CpuArray<T>,
    b: &CpuArray<T>,
    c: &CpuArray<T>,
    f: impl Fn(T, T, T) -> T + Sync + Send,
) -> CpuArray<T> {
    let z = Zip::from(a).and(b).and(c);
    if should_par(a.len()) {
        z.par_map_collect(|&x, &y, &w| f(x, y, w)).into_shared()
    } else {
        z.map_collect(|&x, &y, &w| f(x, y, w)).into_shared()
    }
}

/// Independent accumulators per reduction. A single running sum is a chain of dependent adds
/// (one every 3–4 cycles); with 32 lanes the loop becomes two (f32, AVX-512) to eight (f64,
/// AVX2) independent vector chains, and the rounding error grows more slowly than with one sum.
const LANES: usize = 32;

/// Lanes of the reductions that also compute an `exp` per element. Each element is ~20 vector
/// instructions of independent work, so one vector of accumulators hides the add latency; with
/// 32 lanes, the accumulators plus the polynomial's constants did not fit in the 32 vector
/// registers and LLVM kept the accumulators on the stack (a store and a reload per add).
const EXP_LANES: usize = 16;

/// Folds the lanes with `op` in a fixed tree order (lane i with lane i + w, w halving), so the
/// result does not depend on anything but the input.
#[inline(always)]
fn fold_lanes<T: Element, const N: usize>(mut acc: [T; N], op: impl Fn(T, T) -> T) -> T {
    const {
        assert!(
            N.is_power_of_two(),
            "the halving tree needs a power-of-two lane count"
        )
    };
    let mut w = N;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] = op(acc[i], acc[i + w]);
        }
    }
    acc[0]
}

/// Σ x, in [`LANES`] independent accumulators so the loop vectorises (float addition is not
/// associative, so LLVM may not reorder a single running sum by itself).
#[inline]
pub fn sum<T: Element>(x: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    fold_lanes(acc, |a, b| a + b)
}

/// Σ (x − c)², vectorised like [`sum`] (the variance of a layer-norm row).
#[inline]
pub fn sum_sq_dev<T: Element>(x: &[T], c: T) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for i in 0..LANES {
            let d = ch[i] - c;
            acc[i] += d * d;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += (v - c) * (v - c);
    }
    fold_lanes(acc, |a, b| a + b)
}

/// Σ x·y, vectorised like [`sum`].
#[inline]
pub fn dot<T: Element>(x: &[T], y: &[T]) -> T {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [T::zero(); LANES];
    let cx = x.chunks_exact(LANES);
    let cy = y.chunks_exact(LANES);
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    for ((s, &a), &b) in acc.iter_mut().zip(rx).zip(ry) {
        *s += a * b;
    }
    fold_lanes(acc, |a, b| a + b)
}

/// max over a slice (−∞ for an empty one), in lanes like [`sum`] so it vectorises. NaN elements
/// are skipped here; the row kernels that use it (softmax, cross-entropy, attention) still return
/// NaN for a row containing NaN, since `x − max` is then NaN and flows through the sum.
#[inline]
pub fn max<T: Element>(x: &[T]) -> T {
    let pick = |a: T, b: T| if b > a { b } else { a };
    let mut acc = [T::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = pick(acc[i], c[i]);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = pick(*a, v);
    }
    fold_lanes(acc, pick)
}

/// `x[i] ← exp(x[i] − shift)` over a slice, returning Σ exp(x[i] − shift): softmax's middle pass
/// (and cross-entropy's and attention's), one read and one write per element instead of a
/// subtract pass, an exp pass and a sum pass. `shift` is the row max (so every exponent is ≤ 0,
/// which the f32 `exp` exploits).
#[inline]
pub fn exp_shifted_sum<T: Element>(x: &mut [T], shift: T) -> T {
    let mut acc = [T::zero(); EXP_LANES];
    let mut chunks = x.chunks_exact_mut(EXP_LANES);
    for c in &mut chunks {
        for i in 0..EXP_LANES {
            let e = (c[i] - shift).exp_nonpositive_inline();
            c[i] = e;
            acc[i] += e;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
        *v = (*v - shift).exp_nonpositive_inline();
        *a += *v;
    }
    fold_lanes(acc, |a, b| a + b)
}

/// Σ exp(x[i] − shift) without writing anything: the log-sum-exp of a row that must stay
/// untouched and is already in cache (log-softmax's input; rows too long for cache use the
/// one-pass [`log_sum_exp`]). `shift` is the row max.
#[inline]
pub fn sum_exp_shifted<T: Element>(x: &[T], shift: T) -> T {
    let mut acc = [T::zero(); EXP_LANES];
    let chunks = x.chunks_exact(EXP_LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..EXP_LANES {
            acc[i] += (c[i] - shift).exp_nonpositive_inline();
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += (v - shift).exp_nonpositive_inline();
    }
    fold_lanes(acc, |a, b| a + b)
}

/// `ln Σ_j e^{x_j}` in **one pass** over `x` ("online" log-sum-exp, as in Milakov & Gimelshein's
/// online softmax), for rows too long to stay in cache (cross-entropy's vocabulary rows).
///
/// Each of the [`EXP_LANES`] lanes keeps a running max `m` and a running sum `s = Σ e^{x − m}` of
/// the elements it has seen. When an element exceeds its lane's max, the lane's sum is first
/// rescaled to the new max `m'`: `s ← s·e^{m − m'}` (so it is again `Σ e^{x − m'}`), and
/// `m ← m'`. The rescale is rare (a lane's max rises about ln n times over n random values), so
/// the steady state is one `exp` per element, in the same loop that streams `x` from memory: the
/// loads and the arithmetic overlap, where a max pass followed by an exp pass runs them one after
/// the other. At the end the lanes are merged the same way: `M = max_l m_l`,
/// `S = Σ_l s_l·e^{m_l − M}`, and the result is `M + ln S`.
///
/// The running maxes start at the most negative *finite* value, not −∞, so that a −∞ element
/// (a masked logit) adds `e^{−∞ − m} = 0` instead of `e^{−∞ − (−∞)} = NaN`. A row of only −∞
/// gives −∞ (its `S` is 0); a NaN anywhere gives NaN (`x − m` is NaN and flows into the sum).
pub fn log_sum_exp<T: Element>(x: &[T]) -> T {
    let mut m = [T::min_value(); EXP_LANES];
    let mut s = [T::zero(); EXP_LANES];
    let chunks = x.chunks_exact(EXP_LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let mut raised = false;
        for i in 0..EXP_LANES {
            raised |= c[i] > m[i];
        }
        if raised {
            for i in 0..EXP_LANES {
                let new_max = if c[i] > m[i] { c[i] } else { m[i] };
                s[i] *= (m[i] - new_max).exp_nonpositive_inline();
                m[i] = new_max;
            }
        }
        for i in 0..EXP_LANES {
            s[i] += (c[i] - m[i]).exp_nonpositive_inline();
        }
    }
    let big = fold_lanes(m, |a, b| if b > a { b } else { a });
    let big = rest.iter().fold(big, |a, &b| if b > a { b } else { a });
    let mut total = T::zero();
    for (&si, &mi) in s.iter().zip(&m) {
        total += si * (mi - big).exp_nonpositive_inline();
    }
    for &v in rest {
        total += (v - big).exp_nonpositive_inline();
    }
    big + total.ln()
}

/// `y += a·x` over slices.
#[inline]
pub fn axpy<T: Element>(a: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Minimum number of multiply-adds per rayon task in [`gemm`]; below it a product runs on the
/// calling thread.
const GEMM_MIN_WORK_PER_TASK: usize = 1 << 20;

/// `C = alpha·A·B + beta·C` for 2-D views of any strides (transposed operands are just swapped
/// strides — no copies). Large products are split into rayon tasks along the longer of C's two
/// sides, so the operand that must be re-packed by every task is the smaller one; each task calls
/// the single-threaded `matrixmultiply` kernel on its block. Every element of C is computed by the
/// same sequence of operations whatever the split (matrixmultiply's k-blocking does not depend on
/// n or m), so results do not depend on the thread count.
///
/// `parallel = false` keeps it on the calling thread (for callers already inside a rayon task).
pub fn gemm<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayViewMut2<'_, T>,
    parallel: bool,
) {
    gemm_split(alpha, a, b, beta, c, parallel);
}

/// `C = alpha·A·B` into uninitialised memory: `matrixmultiply` never reads C when beta is zero,
/// so a fresh output need not be zeroed first (for a 512×50257 logits matrix that saves writing
/// 100 MB). Every element of `c` is initialised on return.
pub fn gemm_uninit<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    mut c: ArrayViewMut2<'_, MaybeUninit<T>>,
    parallel: bool,
) {
    if a.dim().1 == 0 {
        // An empty sum: C = 0. (Written here rather than trusting the kernel with k = 0.)
        c.fill(MaybeUninit::new(T::zero()));
        return;
    }
    gemm_split(alpha, a, b, T::zero(), c, parallel);
}

/// The split behind [`gemm`] and [`gemm_uninit`]; `U` is `T` or `MaybeUninit<T>` (same layout).
fn gemm_split<T: Element, U: Send>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, U>,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "gemm: inner dimensions");
    assert_eq!(c.dim(), (m, n), "gemm: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if m == 1 && k > 0 && b.strides()[0] == 1 && a.row(0).as_slice().is_some() {
        gemv_rows(alpha, a, b, beta, c, parallel);
        return;
    }
    let work = m * n * k.max(1);
    let threads = rayon::current_num_threads();
    let tasks = if parallel && threads > 1 {
        (work / GEMM_MIN_WORK_PER_TASK).clamp(1, threads)
    } else {
        1
    };
    if tasks == 1 {
        gemm_block(alpha, a, b, beta, c.view_mut());
        return;
    }
    if n >= m {
        let step = n.div_ceil(tasks);
        let b_parts: Vec<_> = b.axis_chunks_iter(Axis(1), step).collect();
        let c_parts: Vec<_> = c.axis_chunks_iter_mut(Axis(1), step).collect();
        b_parts
            .into_par_iter()
            .zip(c_parts)
            .for_each(|(bp, cp)| gemm_block(alpha, a, bp, beta, cp));
    } else {
        let step = m.div_ceil(tasks);
        let a_parts: Vec<_> = a.axis_chunks_iter(Axis(0), step).collect();
        let c_parts: Vec<_> = c.axis_chunks_iter_mut(Axis(0), step).collect();
        a_parts
            .into_par_iter()
            .zip(c_parts)
            .for_each(|(ap, cp)| gemm_block(alpha, ap, b, beta, cp));
    }
}

/// One row times a matrix whose columns are contiguous — `y = x·Wᵀ` for a Linear layer's
/// `(out, in)` weight, the shape of every product when generating one token with a KV cache.
/// A GEMM kernel would first pack (copy) the whole weight matrix for a single row of output
/// (154 MB for GPT-2's head, per token); here each output is one dot product of contiguous rows,
/// read once. Split over output columns only, so results do not depend on the thread count.
fn gemv_rows<T: Element, U: Send>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, U>,
    parallel: bool,
) {
    assert_eq!(
        std::mem::size_of::<U>(),
        std::mem::size_of::<T>(),
        "U must be T or MaybeUninit<T>"
    );
    let x = a.row(0);
    let x = x.as_slice().expect("checked contiguous");
    let (k, n) = b.dim();
    let column = |j: usize| b.column(j);
    let one = |j: usize, out: &mut U| {
        let col = column(j);
        let v = match col.as_slice() {
            Some(w) => dot(x, w),
            None => x
                .iter()
                .zip(col.iter())
                .fold(T::zero(), |s, (&p, &q)| s + p * q),
        };
        let p = out as *mut U as *mut T;
        // SAFETY: U is T or MaybeUninit<T> (same size and layout, asserted above), so `p` points
        // at one element of C; when C is uninitialised beta is zero and the old value is not read.
        unsafe {
            let old = if beta == T::zero() {
                T::zero()
            } else {
                beta * p.read()
            };
            p.write(alpha * v + old);
        }
    };
    let mut row = c.row_mut(0);
    let chunk = 256;
    if parallel && n * k >= GEMM_MIN_WORK_PER_TASK && rayon::current_num_threads() > 1 {
        let parts: Vec<_> = row.axis_chunks_iter_mut(Axis(0), chunk).collect();
        parts
            .into_par_iter()
            .enumerate()
            .for_each(|(ci, mut part)| {
                for (i, out) in part.iter_mut().enumerate() {
                    one(ci * chunk + i, out);
                }
            });
    } else {
        for (j, out) in row.iter_mut().enumerate() {
            one(j, out);
        }
    }
}

/// One `matrixmultiply` call on the current thread.
pub fn gemm_serial<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) {
    gemm_block(alpha, a, b, beta, c);
}

/// One `matrixmultiply` call on the current thread; `U` is `T` or `MaybeUninit<T>`, and if it is
/// `MaybeUninit<T>` then `beta` is zero (so C is only written, never read).
fn gemm_block<T: Element, U>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, U>,
) {
    assert_eq!(
        std::mem::size_of::<U>(),
        std::mem::size_of::<T>(),
        "U must be T or MaybeUninit<T>"
    );
    let (m, k) = a.dim();
    let (_, n) = b.dim();
    if m == 0 || n == 0 {
        return;
    }
    let [rsa, csa] = [a.strides()[0], a.strides()[1]];
    let [rsb, csb] = [b.strides()[0], b.strides()[1]];
    let [rsc, csc] = [c.strides()[0], c.strides()[1]];
    // SAFETY: the pointers and strides come from ndarray views of shapes (m,k), (k,n), (m,n), so
    // every address gemm touches (base + i*rs + j*cs within those shapes) lies inside the viewed
    // arrays; `c` is a unique mutable view (distinct elements have distinct addresses, as ndarray
    // guarantees for mutable views) and cannot alias `a` or `b`, which are shared borrows. `U` has
    // T's size and is T or MaybeUninit<T> (repr(transparent)), so the cast pointer addresses the
    // same elements; when C is uninitialised, beta is zero and matrixmultiply does not read C.
    unsafe {
        T::gemm(
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
            c.as_mut_ptr() as *mut T,
            rsc,
            csc,
        );
    }
}

/// Asks glibc's allocator to keep freed large buffers for reuse instead of unmapping them.
///
/// A training step allocates the same big activations (logits alone are `B·T·50257` floats) every
/// step. By default glibc serves blocks above 32 MB with a fresh `mmap` and unmaps them on free,
/// so every step page-faults through hundreds of megabytes of newly zeroed pages — measured here
/// as 20–30 % of the LM-head matmul's time. Raising the mmap and trim thresholds makes freed
/// blocks return to the heap and be reused. One arena (instead of one per thread) keeps the
/// rayon workers' GEMM packing buffers in the same reused heap, and a 256 MB top pad grows the heap
/// in large steps: together 3.8 → 3.0 s per gpt2-small training step here (`bench train-step`),
/// for ≈ 5 % more peak memory. Process-wide, so the library never calls it on its own: the
/// `scratchgpt` binary and the benches opt in. A no-op off Linux/glibc.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc malloc's tuning parameters; glibc serialises it with the
    // allocator's own lock, and it does not touch any allocation made before.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-pass reference in f64: `m + ln Σ e^{x − m}`.
    fn two_pass(x: &[f64]) -> f64 {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    }

    /// The one-pass log-sum-exp against the two-pass formula in f64, with the maximum in the
    /// first chunk, a middle one, the last full one and the remainder, a max rising at every
    /// element (a rescale per chunk), and a spread wide enough that a missing rescale is far off.
    #[test]
    fn online_log_sum_exp_matches_the_two_pass_formula() {
        let n = 50 * EXP_LANES + 7;
        for peak in [0, 5, 17 * EXP_LANES + 3, 50 * EXP_LANES - 1, n - 1] {
            let row: Vec<f64> = (0..n)
                .map(|i| {
                    if i == peak {
                        40.0
                    } else {
                        ((i * 37 % 101) as f64) / 10.0 - 5.0
                    }
                })
                .collect();
            let (got, want) = (log_sum_exp(&row), two_pass(&row));
            assert!(
                (got - want).abs() < 1e-12,
                "peak at {peak}: {got} vs {want}"
            );
        }
        let rising: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
        assert!((log_sum_exp(&rising) - two_pass(&rising)).abs() < 1e-12);
        let falling: Vec<f64> = rising.iter().rev().cloned().collect();
        assert!((log_sum_exp(&falling) - two_pass(&falling)).abs() < 1e-12);
        // Shorter than one chunk: only the remainder path.
        let short = [0.5, -3.0, 2.25];
        assert!((log_sum_exp(&short) - two_pass(&short)).abs() < 1e-12);
        // f32 within a few ulps of the f64 answer.
        let row32: Vec<f32> = rising.iter().map(|&v| v as f32).collect();
        let got32 = log_sum_exp(&row32) as f64;
        assert!((got32 - two_pass(&rising)).abs() < 1e-5 * two_pass(&rising).abs());
    }

    /// −∞ entries (masked logits) add nothing and must not make NaN, even when a whole lane or
    /// the whole row is −∞; NaN and +∞ propagate as in the two-pass formula.
    #[test]
    fn online_log_sum_exp_handles_infinities_and_nan() {
        let n = 10 * EXP_LANES + 5;
        let masked: Vec<f64> = (0..n)
            .map(|i| {
                if i < 4 * EXP_LANES + 9 || i % 3 == 0 {
                    f64::NEG_INFINITY
                } else {
                    (i % 7) as f64
                }
            })
            .collect();
        assert!((log_sum_exp(&masked) - two_pass(&masked)).abs() < 1e-12);
        assert_eq!(log_sum_exp(&vec![f64::NEG_INFINITY; n]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
        // f32 takes the polynomial exp in the lanes: the same cases on rows longer than a chunk.
        let masked32: Vec<f32> = masked.iter().map(|&v| v as f32).collect();
        let got32 = log_sum_exp(&masked32) as f64;
        assert!((got32 - two_pass(&masked)).abs() < 1e-5, "{got32}");
        assert_eq!(log_sum_exp(&vec![f32::NEG_INFINITY; n]), f32::NEG_INFINITY);
        let mut nan32 = masked32.clone();
        nan32[EXP_LANES + 1] = f32::NAN;
        assert!(log_sum_exp(&nan32).is_nan());
        let mut inf32 = masked32;
        inf32[2 * EXP_LANES + 3] = f32::INFINITY;
        assert!(log_sum_exp(&inf32).is_nan());
        let mut with_nan = masked.clone();
        with_nan[n / 2] = f64::NAN;
        assert!(log_sum_exp(&with_nan).is_nan());
        let mut with_inf = masked;
        with_inf[7] = f64::INFINITY;
        assert!(log_sum_exp(&with_inf).is_nan(), "as two-pass: ∞ − ∞ = NaN");
    }
}
