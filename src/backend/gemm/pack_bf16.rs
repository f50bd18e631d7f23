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
//!   memory, so a pair is two neighbours and 32 floats become 16 words in one instruction; 16
//!   such rows or columns are transposed in registers into the sliver's order —
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
                let mut rows = [std::ptr::null(); 16];
                for (r, row) in rows.iter_mut().enumerate().take(live) {
                    *row = a.offset((r0 + r) as isize * rsa);
                }
                along_pairs_lines(&rows[..live], kc, sliver, mr);
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
                // Sixteen columns at a time, transposed in registers.
                for x0 in (0..live).step_by(16) {
                    let width = (live - x0).min(16);
                    let mut cols = [std::ptr::null(); 16];
                    for (x, col) in cols.iter_mut().enumerate().take(width) {
                        *col = b.offset((j0 + x0 + x) as isize * csb);
                    }
                    along_pairs_lines(&cols[..width], kc, &mut sliver[x0..], nr);
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

/// Up to 16 contiguous runs ("lines": rows of A, or columns of B = Wᵀ) of `len` values each,
/// neighbours paired (lo = value 2p, hi = value 2p + 1, a zero after an odd last one), and
/// written transposed — word `p` of line
/// `i` to `dst[p·stride + i]` — by a 16 × 16 transpose in registers instead of one scalar store
/// per word.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; every `lines[i]..lines[i] + len` is readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn along_pairs_lines(lines: &[*const f32], len: usize, dst: &mut [u32], stride: usize) {
    use std::arch::x86_64::*;
    let live = lines.len();
    assert!(live <= 16 && stride >= live);
    let pairs = len.div_ceil(2);
    assert!(pairs == 0 || dst.len() >= (pairs - 1) * stride + live);
    let store = ((1u32 << live) - 1) as u16;
    let mut l = 0;
    while l < len {
        let n = (len - l).min(32);
        let mask = |from: usize| -> u16 {
            let k = n.saturating_sub(from).min(16);
            ((1u32 << k) - 1) as u16
        };
        let mut r = [_mm512_setzero_si512(); 16];
        for (v, &line) in r.iter_mut().zip(lines) {
            // SAFETY: masked loads of line[l..l + n] only, inside the run (the second address
            // formed with wrapping arithmetic, never dereferenced past the end).
            unsafe {
                let lo = _mm512_maskz_loadu_ps(mask(0), line.add(l));
                let hi = _mm512_maskz_loadu_ps(mask(16), line.wrapping_add(l + 16));
                *v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            }
        }
        let w = transpose16(r);
        let p0 = l / 2;
        for (q, v) in w.iter().enumerate().take(n.div_ceil(2)) {
            // SAFETY: (p0 + q)·stride + live ≤ dst.len() (asserted above: p0 + q < pairs); the
            // store writes the first `live` words only.
            unsafe {
                _mm512_mask_storeu_epi32(dst.as_mut_ptr().add((p0 + q) * stride).cast(), store, *v)
            };
        }
        l += 32;
    }
}

/// The 16 × 16 transpose of 32-bit words: `out[p]` lane `i` = `r[i]` lane `p` — interleaving
/// words, then pairs of words, then 128-bit quarters twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: [std::arch::x86_64::__m512i; 16]) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for g in (0..16).step_by(4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    let mut v = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        v[i] = _mm512_shuffle_i32x4::<0x88>(u[i], u[i + 4]);
        v[i + 4] = _mm512_shuffle_i32x4::<0xdd>(u[i], u[i + 4]);
        v[i + 8] = _mm512_shuffle_i32x4::<0x88>(u[i + 8], u[i + 12]);
        v[i + 12] = _mm512_shuffle_i32x4::<0xdd>(u[i + 8], u[i + 12]);
    }
    let mut w = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        w[i] = _mm512_shuffle_i32x4::<0x88>(v[i], v[i + 8]);
        w[i + 8] = _mm512_shuffle_i32x4::<0xdd>(v[i], v[i + 8]);
        w[i + 4] = _mm512_shuffle_i32x4::<0x88>(v[i + 4], v[i + 12]);
        w[i + 12] = _mm512_shuffle_i32x4::<0xdd>(v[i + 4], v[i + 12]);
    }
    w
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
