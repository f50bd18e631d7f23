//! The bf16 micro-kernel (AVX-512 BF16): a 12 × 32 tile of C in 24 zmm accumulators, as the f32
//! AVX-512 kernel, but each step takes a *pair* of inner indices. Per pair: two loads of 16 packed
//! words of the B sliver (32 columns × 2 values of `l`), twelve broadcasts of one A word (a row's
//! two values), and 24 `vdpbf16ps`, each adding `a.lo·b.lo + a.hi·b.hi` into 16 f32 lanes:
//! 1,536 flops per 14 reads, twice the f32 kernel's work per instruction.
//!
//! `vdpbf16ps` treats bf16 denormals as zero and flushes denormal results; the rounding of its
//! additions is the hardware's (round to nearest even). Operands were rounded when packed
//! ([`super::pack_bf16`]).

use super::Tile;

pub(super) const MR: usize = super::avx512::MR;
pub(super) const NR: usize = super::avx512::NR;

/// C tile (`tile`) ← alpha · (A sliver · B sliver) + beta · C tile, over `pairs` packed pairs.
///
/// # Safety
/// The CPU supports AVX-512F and AVX-512 BF16; `a` holds `pairs·MR` and `b` `pairs·NR` packed
/// words; `tile` describes a valid part of C.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn kernel(pairs: usize, a: &[u32], b: &[u32], tile: &Tile) {
    assert!(a.len() >= pairs * MR && b.len() >= pairs * NR);
    // SAFETY: the CPU supports the instructions (the caller's contract); the slices are long
    // enough (asserted); the caller's contract on `tile`. The tile is the f32 AVX-512 kernel's,
    // so its way of writing C serves.
    unsafe { super::avx512::write(accumulate(pairs, a.as_ptr(), b.as_ptr()), tile) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel(_pairs: usize, _a: &[u32], _b: &[u32], _tile: &Tile) {
    unreachable!("AVX-512 BF16 is x86-64 only")
}

/// The tile's accumulators, `acc[r][h] = Σ_l A[r, l]·B[l, 16h .. 16h + 16]` over the packed
/// pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn accumulate(
    pairs: usize,
    a: *const u32,
    b: *const u32,
) -> [[std::arch::x86_64::__m512; 2]; MR] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..pairs {
        // SAFETY: p < pairs, so the reads stay inside the packed slivers (pairs·NR and pairs·MR
        // words). A bf16 vector is 32 packed 16-bit values: the same 512 bits as 16 words.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
            let ar = a.add(p * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ar.add(r) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
    }
    acc
}
