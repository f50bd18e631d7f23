//! Out-of-place matrix transpose, for the few places that need a transposed copy rather than a
//! transposed view: fused attention reads Kᵀ and Vᵀ by contiguous rows (see `tile_gemm`).
//!
//! A transpose does no arithmetic, so its speed is all in how it touches memory. Element by
//! element, either the reads or the writes stride through memory (and LLVM keeps the loop
//! scalar); at attention's 256 × 64 per head that was ≈ 0.6 ns per element, 10 % of attention's
//! time. Here the matrix is cut into 8 × 8 squares: eight 8-element row pieces are loaded, the
//! square is transposed in registers, and eight 8-element pieces of destination rows are
//! stored. For f32 on x86-64 with AVX the in-register step is the classic three-stage shuffle
//! (below); elsewhere (f64, other CPUs) it is a plain array transpose.

use crate::tensor::Element;

/// Side of the squares.
const SQ: usize = 8;

/// The `cols × rows` row-major transpose of a `rows × cols` row-major matrix.
pub fn transposed<T: Element>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(
        m.len(),
        rows * cols,
        "transposed: {rows}×{cols} needs that many elements"
    );
    let mut t = vec![T::zero(); rows * cols];
    let (full_r, full_c) = (rows - rows % SQ, cols - cols % SQ);
    for r0 in (0..full_r).step_by(SQ) {
        for c0 in (0..full_c).step_by(SQ) {
            T::transpose_square8(m, cols, (r0, c0), &mut t, rows);
        }
    }
    // The ragged right and bottom strips, element by element.
    for r in 0..rows {
        let c_start = if r < full_r { full_c } else { 0 };
        for c in c_start..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// The 8 × 8 square of `src` (row stride `lds`) at `(r0, c0)` written transposed into `dst`
/// (row stride `ldd`) at `(c0, r0)`, with arrays: [`Element::transpose_square8`]'s portable form.
pub fn transpose_square8_portable<T: Copy>(
    src: &[T],
    lds: usize,
    (r0, c0): (usize, usize),
    dst: &mut [T],
    ldd: usize,
) {
    let rows: [&[T]; SQ] = std::array::from_fn(|x| &src[(r0 + x) * lds + c0..][..SQ]);
    for y in 0..SQ {
        let out = &mut dst[(c0 + y) * ldd + r0..][..SQ];
        for (o, row) in out.iter_mut().zip(&rows) {
            *o = row[y];
        }
    }
}

/// [`transpose_square8_portable`] for f32, with AVX shuffles where the CPU has them.
pub fn transpose_square8_f32(
    src: &[f32],
    lds: usize,
    at: (usize, usize),
    dst: &mut [f32],
    ldd: usize,
) {
    assert!(
        lds >= SQ && ldd >= SQ,
        "transpose_square8: row strides below 8"
    );
    // `cfg!` first: with AVX enabled at compile time (target-cpu=native here) no run-time probe.
    #[cfg(target_arch = "x86_64")]
    if cfg!(target_feature = "avx") || std::arch::is_x86_feature_detected!("avx") {
        let (r0, c0) = at;
        let rows: [&[f32; SQ]; SQ] = std::array::from_fn(|x| {
            src[(r0 + x) * lds + c0..][..SQ]
                .try_into()
                .expect("SQ long")
        });
        // The eight destination pieces, bounds-checked here so the kernel gets whole arrays.
        let mut outs: [&mut [f32]; SQ] = Default::default();
        let mut rest = &mut dst[c0 * ldd + r0..];
        for (y, out) in outs.iter_mut().enumerate() {
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(SQ);
            *out = piece;
            if y + 1 < SQ {
                rest = &mut tail[ldd - SQ..];
            }
        }
        // SAFETY: AVX is present (checked just above), which is all `avx8x8` requires; its
        // loads read the eight 8-element arrays `rows` and its stores write the eight
        // 8-element slices `outs`, all bounds-checked above.
        unsafe { avx::avx8x8(&rows, &mut outs) };
        return;
    }
    transpose_square8_portable(src, lds, at, dst, ldd)
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Transposes the 8 × 8 f32 square whose rows are `rows` into the eight rows `outs`
    /// (each exactly 8 long), in registers. With rows `a..h` (elements `a0..a7`, …):
    /// 1. `unpacklo/hi` interleave row pairs: `a0 b0 a1 b1 | a4 b4 a5 b5` and
    ///    `a2 b2 a3 b3 | a6 b6 a7 b7` (AVX works within each 128-bit half);
    /// 2. `shuffle` pairs those: `a0 b0 c0 d0 | a4 b4 c4 d4`, `a1 b1 c1 d1 | a5 b5 c5 d5`, …;
    /// 3. `permute2f128` joins the halves of the a–d and e–h results: `a0 … h0`, `a1 … h1`, ….
    ///
    /// # Safety
    /// The CPU must support AVX; every `outs[y]` must be at least 8 long.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn avx8x8(rows: &[&[f32; 8]; 8], outs: &mut [&mut [f32]; 8]) {
        // SAFETY (loads): each `rows[x]` is a reference to 8 f32s, so 32 readable bytes;
        // `loadu` has no alignment requirement.
        let r: [__m256; 8] = std::array::from_fn(|x| unsafe { _mm256_loadu_ps(rows[x].as_ptr()) });
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        // 0x44 = lanes (0, 1) of each; 0xEE = lanes (2, 3) of each.
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        // 0x20 = low halves of both; 0x31 = high halves of both.
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (dst, v) in outs.iter_mut().zip(out) {
            assert!(dst.len() >= 8);
            // SAFETY: `dst` is a unique slice of at least 8 f32s (asserted), so 32 writable
            // bytes; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive<T: Copy + Default>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
        let mut t = vec![T::default(); rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = m[r * cols + c];
            }
        }
        t
    }

    /// Both element types (f32 takes the AVX squares where present, f64 the portable ones) over
    /// shapes with whole squares, ragged strips on either side, and fewer than 8 rows or columns.
    #[test]
    fn matches_the_naive_transpose() {
        for (rows, cols) in [
            (8, 8),
            (256, 64),
            (16, 24),
            (9, 8),
            (8, 13),
            (21, 35),
            (3, 5),
            (1, 1),
            (0, 4),
        ] {
            let m32: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(
                transposed(&m32, rows, cols),
                naive(&m32, rows, cols),
                "{rows}×{cols} f32"
            );
            let m64: Vec<f64> = m32.iter().map(|&v| v as f64).collect();
            assert_eq!(
                transposed(&m64, rows, cols),
                naive(&m64, rows, cols),
                "{rows}×{cols} f64"
            );
        }
    }

    #[test]
    fn the_portable_square_matches_the_f32_one() {
        let src: Vec<f32> = (0..12 * 20).map(|i| i as f32).collect();
        let (mut a, mut b) = (vec![0.0f32; 20 * 12], vec![0.0f32; 20 * 12]);
        transpose_square8_f32(&src, 20, (3, 9), &mut a, 12);
        transpose_square8_portable(&src, 20, (3, 9), &mut b, 12);
        assert_eq!(a, b);
        assert!(a.iter().any(|&v| v != 0.0));
    }
}
