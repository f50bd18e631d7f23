//! The AVX2 + FMA micro-kernel: a 6 × 16 tile of C in 12 of the 16 ymm registers. Per step of the
//! inner index: two 8-float loads of the B sliver, six broadcasts of the A sliver, 12 fused
//! multiply-adds.

use super::Tile;

pub(super) const MR: usize = 6;
pub(super) const NR: usize = 16;

/// C tile (`tile`) ← alpha · (A sliver · B sliver) + beta · C tile.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a` holds `kc·MR` and `b` `kc·NR` packed values; `tile`
/// describes a valid part of C.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn kernel(kc: usize, a: &[f32], b: &[f32], tile: &Tile) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    // SAFETY: the CPU supports AVX2 + FMA (the caller's contract); the slices are long enough.
    let t = unsafe { compute(kc, a.as_ptr(), b.as_ptr()) };
    // SAFETY: the caller's contract on `tile`.
    unsafe { tile.merge(&t, NR) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel(_kc: usize, _a: &[f32], _b: &[f32], _tile: &Tile) {
    unreachable!("AVX2 is x86-64 only")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn compute(kc: usize, a: *const f32, b: *const f32) -> [f32; MR * NR] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for l in 0..kc {
        // SAFETY: l < kc, so the reads stay inside the packed slivers.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(l * NR));
            let b1 = _mm256_loadu_ps(b.add(l * NR + 8));
            let ar = a.add(l * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*ar.add(r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    let mut t = [0.0f32; MR * NR];
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r's 16 floats are t[r·16 .. r·16 + 16].
        unsafe {
            _mm256_storeu_ps(t.as_mut_ptr().add(r * NR), row[0]);
            _mm256_storeu_ps(t.as_mut_ptr().add(r * NR + 8), row[1]);
        }
    }
    t
}
