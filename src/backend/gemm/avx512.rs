//! The AVX-512 micro-kernel: a 12 × 32 tile of C in 24 of the 32 zmm registers. Per step of the
//! inner index: two 16-float loads of the B sliver, twelve broadcasts of the A sliver, 24 fused
//! multiply-adds (768 flops per 14 memory reads, all from L1).

use super::Tile;

pub(super) const MR: usize = 12;
pub(super) const NR: usize = 32;

/// C tile (`tile`) ← alpha · (A sliver · B sliver) + beta · C tile.
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `kc·MR` and `b` `kc·NR` packed values; `tile` describes
/// a valid part of C.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn kernel(kc: usize, a: &[f32], b: &[f32], tile: &Tile) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    // SAFETY: the CPU supports AVX-512F (the caller's contract); the slices are long enough;
    // the caller's contract on `tile`.
    unsafe { write(accumulate(kc, a.as_ptr(), b.as_ptr()), tile) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel(_kc: usize, _a: &[f32], _b: &[f32], _tile: &Tile) {
    unreachable!("AVX-512 is x86-64 only")
}

/// The tile's 24 accumulators: `acc[r][h] = Σ_l A[r, l]·B[l, 16h .. 16h + 16]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn accumulate(
    kc: usize,
    a: *const f32,
    b: *const f32,
) -> [[std::arch::x86_64::__m512; 2]; MR] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for l in 0..kc {
        // SAFETY: l < kc, so the reads stay inside the packed slivers (kc·NR and kc·MR floats).
        unsafe {
            let b0 = _mm512_loadu_ps(b.add(l * NR));
            let b1 = _mm512_loadu_ps(b.add(l * NR + 16));
            let ar = a.add(l * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ar.add(r));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    acc
}

/// The 12 × 32 accumulators (this kernel's, and the bf16 kernel's, whose tile is the same) into
/// C: a full tile with unit column stride straight from the registers (`alpha·acc + beta·C`, C
/// unread when beta is 0); an edge tile through a row-major copy and [`Tile::merge`].
///
/// # Safety
/// The CPU supports AVX-512F; `tile` describes a valid part of C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn write(acc: [[std::arch::x86_64::__m512; 2]; MR], tile: &Tile) {
    use std::arch::x86_64::*;
    if tile.rows == MR && tile.cols == NR && tile.csc == 1 {
        let alpha = _mm512_set1_ps(tile.alpha);
        let beta = _mm512_set1_ps(tile.beta);
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: row r < MR of a full tile: NR contiguous floats of C (checked above).
            unsafe {
                let c = tile.c.offset(r as isize * tile.rsc);
                for (h, v) in row.iter().enumerate() {
                    let p = c.add(16 * h);
                    let out = if tile.beta == 0.0 {
                        _mm512_mul_ps(alpha, *v)
                    } else {
                        _mm512_fmadd_ps(beta, _mm512_loadu_ps(p), _mm512_mul_ps(alpha, *v))
                    };
                    _mm512_storeu_ps(p, out);
                }
            }
        }
        return;
    }
    let mut t = [0.0f32; MR * NR];
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r's 32 floats are t[r·32 .. r·32 + 32].
        unsafe {
            _mm512_storeu_ps(t.as_mut_ptr().add(r * NR), row[0]);
            _mm512_storeu_ps(t.as_mut_ptr().add(r * NR + 16), row[1]);
        }
    }
    // SAFETY: the caller's contract on `tile`.
    unsafe { tile.merge(&t, NR) }
}
