//! A packing-free matrix multiply for the small, oddly masked products inside fused attention.
//!
//! `matrixmultiply` is built for large products: every call first copies ("packs") panels of A
//! and B into aligned buffers laid out in the order its micro-kernel reads them. For attention's
//! block products (64×64·64×256 and the like, a few hundred thousand multiply-adds each) that
//! packing was a quarter of the op's time, and a causal block product computes the masked half
//! of every block on the diagonal. Here both costs go (the second mostly):
//!
//! - **No packing.** B must have contiguous rows (a row-major matrix, or Kᵀ/Vᵀ transposed once
//!   per head), so a micro-kernel loads `NR` consecutive elements of one B row per step; A is
//!   read in place with any strides (P or Pᵀ). A block's B panel (k × `NR`) and A rows stay in
//!   L1 across the micro-tiles that reuse them.
//! - **Masks skip work.** A caller-supplied [`Live`] function says, for each band of `MR` rows
//!   of C, which columns to compute and which range of the inner index can be non-zero. A causal
//!   product's inner loop stops at the last key (or starts at the first query) the band can see,
//!   exactly; its columns stop at the band's last visible key rounded up to half a tile
//!   (`NR/2` = 32 columns), so of a 64-key diagonal block the first half of the bands compute
//!   half of it. (Narrower tiles would waste less but run slower per FLOP: fewer accumulators
//!   per broadcast.)
//!
//! **The micro-kernel.** C is cut into `MR × NR` tiles held in registers
//! (`acc[r][x] = Σ_l A[i0 + r, l]·B[l, j0 + x]`, one fused multiply-add per element per `l`),
//! written as fixed-size array loops that LLVM turns into vector FMAs. For f32 with AVX-512
//! (this project's machine) a 4 × 64 tile is 16 accumulator registers plus 4 for the B row, of
//! 32; with AVX2 only (16 registers) or in f64 LLVM spills some accumulators to the stack — still
//! correct, slower. Tiles at the right and bottom edges run the same loop with run-time bounds.
//!
//! Results are deterministic: each element's sum runs over `l` in order, whatever the thread.

use std::ops::Range;

use crate::tensor::Element;

/// Rows of C per micro-tile.
pub const MR: usize = 4;
/// Columns of C per micro-tile.
pub const NR: usize = 64;
/// Columns of the half-width tiles that finish a band whose live columns end mid-tile.
const HALF: usize = NR / 2;

/// A matrix read in place: element `(i, l)` is `data[i·row_stride + l·col_stride]`.
#[derive(Clone, Copy)]
pub struct Strided<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    /// A row-major `rows × cols` matrix with row stride `ld`.
    pub fn rows(data: &'a [T], ld: usize) -> Self {
        Strided {
            data,
            row_stride: ld,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`: element `(i, l)` is the
    /// stored `(l, i)`.
    pub fn transposed(data: &'a [T], ld: usize) -> Self {
        Strided {
            data,
            row_stride: 1,
            col_stride: ld,
        }
    }
}

/// For the band of C rows `i0..i1`: (columns `0..n_end` of C to compute, range of the inner
/// index `l` whose terms can be non-zero). Tiles are the unit of work, so columns up to `n_end`
/// rounded up to a multiple of `NR/2` (capped at n) are computed (the caller ignores or
/// overwrites the extra ones) and the rest are left untouched; terms outside the inner range are
/// taken to be zero (the caller guarantees it, e.g. masked attention weights).
pub trait Live: Fn(usize, usize) -> (usize, Range<usize>) {}
impl<F: Fn(usize, usize) -> (usize, Range<usize>)> Live for F {}

/// `C ← α·A·B + β·C` on the live part of C (see [`Live`]), with `A: m × k` read through its
/// strides, `B: k × n` row-major with row stride `ldb`, and `C: m × n` row-major with row stride
/// `ldc`. When `β = 0`, C is only written (never read), so it may hold anything beforehand.
///
/// # Panics
/// If a slice is too short for the shape and strides it is given (a caller bug).
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm<T: Element>(
    (m, n, k): (usize, usize, usize),
    alpha: T,
    a: Strided<'_, T>,
    (b, ldb): (&[T], usize),
    beta: T,
    (c, ldc): (&mut [T], usize),
    live: impl Live,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        let last_a = (m - 1) * a.row_stride + (k - 1) * a.col_stride;
        assert!(last_a < a.data.len(), "tile_gemm: A too short");
        assert!((k - 1) * ldb + n <= b.len(), "tile_gemm: B too short");
    }
    assert!((m - 1) * ldc + n <= c.len(), "tile_gemm: C too short");
    let mut out = Out {
        c,
        ldc,
        alpha,
        beta,
    };
    for i0 in (0..m).step_by(MR) {
        let i1 = (i0 + MR).min(m);
        let (n_end, inner) = live(i0, i1);
        // Tiles are the unit of work: the live columns are rounded up to a half tile.
        let stop = n_end.next_multiple_of(HALF).min(n);
        let inner = inner.start.min(k)..inner.end.min(k);
        let rows = i1 - i0;
        let mut j0 = 0;
        while j0 < stop {
            let want = stop - j0;
            let tile = Tile {
                i0,
                j0,
                inner: inner.clone(),
            };
            let cols = if rows == MR && want >= NR {
                out.store(&tile.full::<T, NR>(a, b, ldb), (i0, j0), rows, NR);
                NR
            } else if rows == MR && want >= HALF {
                out.store(&tile.full::<T, HALF>(a, b, ldb), (i0, j0), rows, HALF);
                HALF
            } else {
                let cols = want.min(NR);
                out.store(&tile.edge(a, b, ldb, rows, cols), (i0, j0), rows, cols);
                cols
            };
            j0 += cols;
        }
    }
}

/// C and how tile sums are written into it.
struct Out<'c, T> {
    c: &'c mut [T],
    ldc: usize,
    alpha: T,
    beta: T,
}

impl<T: Element> Out<'_, T> {
    /// Writes `rows × cols` of a tile's sums into C at `(i0, j0)`: `C ← α·acc + β·C` (C not
    /// read when β = 0).
    #[inline(always)]
    fn store<const W: usize>(
        &mut self,
        acc: &[[T; W]; MR],
        (i0, j0): (usize, usize),
        rows: usize,
        cols: usize,
    ) {
        let (alpha, beta) = (self.alpha, self.beta);
        for (r, acc_row) in acc.iter().enumerate().take(rows) {
            let c_row = &mut self.c[(i0 + r) * self.ldc + j0..][..cols];
            if beta == T::zero() {
                for (cv, &s) in c_row.iter_mut().zip(acc_row) {
                    *cv = alpha * s;
                }
            } else {
                for (cv, &s) in c_row.iter_mut().zip(acc_row) {
                    *cv = alpha * s + beta * *cv;
                }
            }
        }
    }
}

/// `a·b + c`, fused (one rounding, one instruction) where the CPU has FMA; otherwise a multiply
/// and an add (`mul_add` without hardware FMA is a slow library call).
#[inline(always)]
fn madd<T: Element>(a: T, b: T, c: T) -> T {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// One micro-tile's position and inner range.
struct Tile {
    i0: usize,
    j0: usize,
    inner: Range<usize>,
}

impl Tile {
    /// A full `MR × W` tile: constant trip counts, so the accumulators live in registers and
    /// the `x` loop is vector FMAs. The B row is copied into a local array first: read through a
    /// reference, LLVM folded its loads into every row's FMAs, reloading it `MR` times per `l`
    /// (20 loads per 16 FMAs, bound by the load ports): attention forward + backward took
    /// 8.3–8.8 ms that way against 5.7–6.8 ms with the copy (best of 100, `examples/profile_op`).
    #[inline(always)]
    fn full<T: Element, const W: usize>(
        &self,
        a: Strided<'_, T>,
        b: &[T],
        ldb: usize,
    ) -> [[T; W]; MR] {
        let mut acc = [[T::zero(); W]; MR];
        for l in self.inner.clone() {
            let b_row: [T; W] = b[l * ldb + self.j0..][..W].try_into().expect("W long");
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = a.data[(self.i0 + r) * a.row_stride + l * a.col_stride];
                for x in 0..W {
                    acc_row[x] = madd(av, b_row[x], acc_row[x]);
                }
            }
        }
        acc
    }

    /// An edge tile of `rows × cols` (≤ `MR × NR`).
    #[inline(never)]
    fn edge<T: Element>(
        &self,
        a: Strided<'_, T>,
        b: &[T],
        ldb: usize,
        rows: usize,
        cols: usize,
    ) -> [[T; NR]; MR] {
        let mut acc = [[T::zero(); NR]; MR];
        for l in self.inner.clone() {
            let b_row = &b[l * ldb + self.j0..][..cols];
            for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
                let av = a.data[(self.i0 + r) * a.row_stride + l * a.col_stride];
                for (s, &bv) in acc_row.iter_mut().zip(b_row) {
                    *s = madd(av, bv, *s);
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference on the live part; untouched elsewhere.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        (m, n, k): (usize, usize, usize),
        alpha: f64,
        a: Strided<'_, f64>,
        (b, ldb): (&[f64], usize),
        beta: f64,
        (c, ldc): (&mut [f64], usize),
        live: impl Live,
    ) {
        for i0 in (0..m).step_by(MR) {
            let i1 = (i0 + MR).min(m);
            let (n_end, inner) = live(i0, i1);
            for i in i0..i1 {
                for j in 0..n_end.next_multiple_of(HALF).min(n) {
                    let s: f64 = inner
                        .clone()
                        .filter(|&l| l < k)
                        .map(|l| a.data[i * a.row_stride + l * a.col_stride] * b[l * ldb + j])
                        .sum();
                    let old = if beta == 0.0 {
                        0.0
                    } else {
                        beta * c[i * ldc + j]
                    };
                    c[i * ldc + j] = alpha * s + old;
                }
            }
        }
    }

    fn fill(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1000) as f64) / 250.0 - 2.0)
            .collect()
    }

    /// Every combination of full and edge tiles, both A layouts, β = 0 over garbage (NaN) and
    /// β ≠ 0, padded leading dimensions, and a causal-style live function, against the naive sum.
    #[test]
    fn matches_the_naive_product() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (4, 32, 8),
            (8, 64, 64),
            (7, 45, 13),
            (13, 70, 1),
            (3, 5, 0),
        ] {
            for transposed_a in [false, true] {
                for (alpha, beta) in [(1.0, 0.0), (0.125, 1.0), (-2.0, 0.5)] {
                    for causal in [false, true] {
                        let (lda, ldb, ldc) =
                            (if transposed_a { m + 3 } else { k + 2 }, n + 1, n + 5);
                        let a_data = fill(
                            if transposed_a {
                                k.max(1) * lda
                            } else {
                                m * lda
                            },
                            1,
                        );
                        let a = if transposed_a {
                            Strided::transposed(&a_data, lda)
                        } else {
                            Strided::rows(&a_data, lda)
                        };
                        let b = fill(k.max(1) * ldb, 2);
                        let start = if beta == 0.0 { f64::NAN } else { 0.75 };
                        let mut got = vec![start; m * ldc];
                        let mut want = got.clone();
                        // Causal style: band i0..i1 sees columns ≤ i1 + 2 and inner l < i1 + 1.
                        let live = move |i0: usize, i1: usize| {
                            if causal {
                                (i1 + 2, i0 / 2..i1 + 1)
                            } else {
                                (n, 0..k)
                            }
                        };
                        tile_gemm((m, n, k), alpha, a, (&b, ldb), beta, (&mut got, ldc), live);
                        reference((m, n, k), alpha, a, (&b, ldb), beta, (&mut want, ldc), live);
                        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                            let same = (g.is_nan() && w.is_nan())
                                || (g - w).abs() <= 1e-12 * (1.0 + w.abs());
                            assert!(same, "m{m} n{n} k{k} tA{transposed_a} α{alpha} β{beta} causal{causal} at {idx}: {g} vs {w}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "B too short")]
    fn short_operand_is_a_panic_not_a_wrong_answer() {
        let a = vec![1.0f32; 16];
        let mut c = vec![0.0f32; 16];
        tile_gemm(
            (4, 4, 4),
            1.0,
            Strided::rows(&a, 4),
            (&a[..15], 4),
            0.0,
            (&mut c, 4),
            |_, _| (4, 0..4),
        );
    }
}
