//! Packing for the bf16 kernel: each operand value rounded to bfloat16 (the top 16 bits of an
//! f32, rounded to nearest even) as it is copied, and two consecutive values of the inner index
//! `l` paired in one 32-bit word — `lo = X[2p]`, `hi = X[2p + 1]` — the layout `vdpbf16ps` reads:
//! for every 32-bit lane it adds `a.lo·b.lo + a.hi·b.hi` to an f32 accumulator. An odd inner
//! dimension is padded with a zero `hi`.
//!
//! So an A sliver holds, for each pair `p`, the MR words `(A[r, 2p], A[r, 2p+1])`, and a B
//! sliver the NR words `(B[2p, j], B[2p+1, j])`. The rounding is the only change to the
//! numbers: a product of two bf16 values is exact in f32 (8 + 8 significant bits fit in 24), so
//! the kernel's result is the f32 sum of the rounded operands' exact products.
//!
//! Rounding is vectorised (`vcvtne2ps2bf16` / `vcvtneps2bf16`, which like `vdpbf16ps` treat
//! denormals as zero) for the two layouts the engine's operands have:
//! - **along the pairs**: the values of one packed row (of A) or column (of B) are contiguous in
//!   memory, so a pair is two neighbours and 32 floats become 16 words in one instruction —
//!   A = X or G (row-major), B = Wᵀ;
//! - **across the pairs**: the values of one pair index are contiguous across rows (of A) or
//!   columns (of B), so word `x` joins element `x` of two runs — B = W or X, A = Gᵀ.
//!
//! Any other strides fall back to [`round_to_bf16`] one value at a time.

/// f32 → bfloat16 bits, rounded to nearest even; a NaN stays a (quiet) NaN. The same rounding as
/// PyTorch's `.to(torch.bfloat16)` and `vcvtneps2bf16` (except that the instruction, and the
/// packing that uses it, flush f32 denormals, below 1.2·10⁻³⁸, to zero).
#[inline(always)]
pub fn round_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Two values as one packed word: `lo` in the low half.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    round_to_bf16(lo) as u32 | (round_to_bf16(hi) as u32) << 16
}

/// Packs `rows × kc` of A (at `a`, strides `rsa`, `csa`) into MR-row slivers of ⌈kc/2⌉ pairs.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; every `a + i·rsa + l·csa` for `i < rows, l < kc` is
/// readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pack_a(
    dst: &mut [u32],
    a: *const f32,
    rsa: isize,
    csa: isize,
    rows: usize,
    kc: usize,
    mr: usize,
) {
    let pairs = kc.div_ceil(2);
    for (s, sliver) in dst.chunks_exact_mut(pairs * mr).enumerate() {
        let r0 = s * mr;
        let live = mr.min(rows - r0);
        // SAFETY (every branch): rows r0..r0+live < rows and columns < kc lie inside A.
        unsafe {
            if csa == 1 {
                for r in 0..live {
                    along_pairs(a.offset((r0 + r) as isize * rsa), kc, &mut sliver[r..], mr);
                }
            } else if rsa == 1 {
                for p in 0..pairs {
                    let even = a.offset(r0 as isize + (2 * p) as isize * csa);
                    let odd = (2 * p + 1 < kc).then(|| even.offset(csa));
                    across_pairs(even, odd, &mut sliver[p * mr..p * mr + live]);
                }
            } else {
                for r in 0..live {
                    let at = |l: usize| *a.offset((r0 + r) as isize * rsa + l as isize * csa);
                    for p in 0..pairs {
                        let hi = if 2 * p + 1 < kc { at(2 * p + 1) } else { 0.0 };
                        sliver[p * mr + r] = pair(at(2 * p), hi);
                    }
                }
            }
        }
        if live < mr {
            for p in 0..pairs {
                sliver[p * mr + live..(p + 1) * mr].fill(0);
            }
        }
    }
}

/// Packs `kc × cols` of B (at `b`, strides `rsb`, `csb`) into NR-column slivers of ⌈kc/2⌉
/// pairs.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; every `b + l·rsb + j·csb` for `l < kc, j < cols` is
/// readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pack_b(
    dst: &mut [u32],
    b: *const f32,
    rsb: isize,
    csb: isize,
    kc: usize,
    cols: usize,
    nr: usize,
) {
    let pairs = kc.div_ceil(2);
    for (t, sliver) in dst.chunks_exact_mut(pairs * nr).enumerate() {
        let j0 = t * nr;
        let live = nr.min(cols - j0);
        // SAFETY (every branch): rows < kc and columns j0..j0+live < cols lie inside B.
        unsafe {
            if csb == 1 {
                for p in 0..pairs {
                    let even = b.offset((2 * p) as isize * rsb + j0 as isize);
                    let odd = (2 * p + 1 < kc).then(|| even.offset(rsb));
                    across_pairs(even, odd, &mut sliver[p * nr..p * nr + live]);
                }
            } else if rsb == 1 {
                for x in 0..live {
                    along_pairs(b.offset((j0 + x) as isize * csb), kc, &mut sliver[x..], nr);
                }
            } else {
                for x in 0..live {
                    let at = |l: usize| *b.offset(l as isize * rsb + (j0 + x) as isize * csb);
                    for p in 0..pairs {
                        let hi = if 2 * p + 1 < kc { at(2 * p + 1) } else { 0.0 };
                        sliver[p * nr + x] = pair(at(2 * p), hi);
                    }
                }
            }
        }
        if live < nr {
            for p in 0..pairs {
                sliver[p * nr + live..(p + 1) * nr].fill(0);
            }
        }
    }
}

/// `len` contiguous values as ⌈len/2⌉ words (neighbours paired, a zero after an odd last one),
/// word `p` written to `dst[p·stride]`.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; `src..src + len` is readable; `dst` holds
/// `(⌈len/2⌉ − 1)·stride + 1` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn along_pairs(src: *const f32, len: usize, dst: &mut [u32], stride: usize) {
    use std::arch::x86_64::*;
    let mut words = [0u32; 16];
    let mut l = 0;
    while l < len {
        let n = (len - l).min(32);
        // Lanes past the end load as zeros: a missing `hi` is the zero an odd length pads with.
        let mask = |from: usize| -> u16 {
            let k = n.saturating_sub(from).min(16);
            ((1u32 << k) - 1) as u16
        };
        // SAFETY: the masked loads read only src[l..l + n], inside the run (the second address
        // is formed with wrapping arithmetic: past the end it is never dereferenced); `words`
        // holds the 16 words of one vector.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(mask(0), src.add(l));
            let hi = _mm512_maskz_loadu_ps(mask(16), src.wrapping_add(l + 16));
            let w: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(words.as_mut_ptr().cast(), w);
        }
        let p0 = l / 2;
        for (q, &w) in words.iter().enumerate().take(n.div_ceil(2)) {
            dst[(p0 + q) * stride] = w;
        }
        l += 32;
    }
}

/// `dst[x] = pair(even[x], odd[x])` for `x < dst.len()` (zero `hi` words without `odd`).
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; `even` (and `odd`) are readable for `dst.len()`
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn across_pairs(even: *const f32, odd: Option<*const f32>, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let len = dst.len();
    let mut x = 0;
    while x < len {
        let n = (len - x).min(16);
        let mask = ((1u32 << n) - 1) as u16;
        // SAFETY: the masked loads and store touch elements x..x + n only, inside the runs and
        // `dst`.
        unsafe {
            let bf = |p: *const f32| {
                let v = _mm512_maskz_loadu_ps(mask, p.add(x));
                _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
                    _mm512_cvtneps_pbh(v),
                ))
            };
            let mut w = bf(even);
            if let Some(odd) = odd {
                w = _mm512_or_si512(w, _mm512_slli_epi32::<16>(bf(odd)));
            }
            _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(x).cast(), mask, w);
        }
        x += 16;
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn pack_a(
    _: &mut [u32],
    _: *const f32,
    _: isize,
    _: isize,
    _: usize,
    _: usize,
    _: usize,
) {
    unreachable!("AVX-512 BF16 is x86-64 only")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn pack_b(
    _: &mut [u32],
    _: *const f32,
    _: isize,
    _: isize,
    _: usize,
    _: usize,
    _: usize,
) {
    unreachable!("AVX-512 BF16 is x86-64 only")
}
