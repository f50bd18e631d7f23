//! Packing f32 operands: each MR-row sliver of A and NR-column sliver of B copied into the order
//! the micro-kernel reads it (see the module above), zero-padded at the edges.

/// Packs `rows × kc` of A (at `a`, strides `rsa`, `csa`) into MR-row slivers: sliver s holds,
/// for each `l`, the MR values `A[s·MR + r, l]` (zero beyond `rows`).
///
/// # Safety
/// Every `a + i·rsa + l·csa` for `i < rows, l < kc` is readable.
pub(super) unsafe fn pack_a(
    dst: &mut [f32],
    a: *const f32,
    rsa: isize,
    csa: isize,
    rows: usize,
    kc: usize,
    mr: usize,
) {
    for (s, sliver) in dst.chunks_exact_mut(kc * mr).enumerate() {
        let r0 = s * mr;
        let live = mr.min(rows - r0);
        if csa == 1 {
            // Rows of A are contiguous: 16 at a time, transposed in registers (AVX-512), or
            // each read along l and written with stride mr.
            // SAFETY: rows r0..r0 + live < rows, each readable for kc values.
            let first = unsafe { a.offset(r0 as isize * rsa) };
            // SAFETY: as above; live ≤ mr, and the sliver holds kc·mr values.
            if !unsafe { transposed_lines(first, rsa, live, kc, sliver, mr) } {
                for r in 0..live {
                    // SAFETY: row r0 + r < rows, columns < kc.
                    let src = unsafe {
                        std::slice::from_raw_parts(a.offset((r0 + r) as isize * rsa), kc)
                    };
                    for (l, &v) in src.iter().enumerate() {
                        sliver[l * mr + r] = v;
                    }
                }
            }
        } else {
            for l in 0..kc {
                for r in 0..live {
                    // SAFETY: as above.
                    sliver[l * mr + r] =
                        unsafe { *a.offset((r0 + r) as isize * rsa + l as isize * csa) };
                }
            }
        }
        if live < mr {
            for l in 0..kc {
                sliver[l * mr + live..(l + 1) * mr].fill(0.0);
            }
        }
    }
}

/// Packs `kc × cols` of B (at `b`, strides `rsb`, `csb`) into NR-column slivers: sliver t holds,
/// for each `l`, the NR values `B[l, t·NR + x]` (zero beyond `cols`).
///
/// # Safety
/// Every `b + l·rsb + j·csb` for `l < kc, j < cols` is readable.
pub(super) unsafe fn pack_b(
    dst: &mut [f32],
    b: *const f32,
    rsb: isize,
    csb: isize,
    kc: usize,
    cols: usize,
    nr: usize,
) {
    for (t, sliver) in dst.chunks_exact_mut(kc * nr).enumerate() {
        let j0 = t * nr;
        let live = nr.min(cols - j0);
        if csb == 1 {
            for l in 0..kc {
                // SAFETY: row l < kc, columns j0..j0+live < cols.
                let src = unsafe {
                    std::slice::from_raw_parts(b.offset(l as isize * rsb + j0 as isize), live)
                };
                sliver[l * nr..l * nr + live].copy_from_slice(src);
                sliver[l * nr + live..(l + 1) * nr].fill(0.0);
            }
        } else if rsb == 1 {
            // Columns of B are contiguous (B is a transposed row-major matrix, e.g. Wᵀ): 16 at a
            // time transposed in registers (AVX-512), or one at a time written with stride nr.
            // SAFETY: columns j0..j0 + live < cols, each readable for kc values; live ≤ nr, and
            // the sliver holds kc·nr values.
            let first = unsafe { b.offset(j0 as isize * csb) };
            // SAFETY: as above.
            if !unsafe { transposed_lines(first, csb, live, kc, sliver, nr) } {
                for x in 0..live {
                    // SAFETY: column j0 + x < cols, rows < kc.
                    let src = unsafe {
                        std::slice::from_raw_parts(b.offset((j0 + x) as isize * csb), kc)
                    };
                    for (l, &v) in src.iter().enumerate() {
                        sliver[l * nr + x] = v;
                    }
                }
            }
            if live < nr {
                for l in 0..kc {
                    sliver[l * nr + live..(l + 1) * nr].fill(0.0);
                }
            }
        } else {
            for l in 0..kc {
                for x in 0..nr {
                    sliver[l * nr + x] = if x < live {
                        // SAFETY: as above.
                        unsafe { *b.offset(l as isize * rsb + (j0 + x) as isize * csb) }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `count` contiguous lines of `len` values (line i at `first + i·step`: rows of A, or columns
/// of B = Wᵀ) written transposed — value `l` of line `i` to `dst[l·stride + i]` — sixteen lines
/// at a time by a 16 × 16 register transpose, where the scalar loop makes one strided store per
/// value. Returns false (writing nothing) on a CPU without AVX-512F.
///
/// # Safety
/// Every `first + i·step .. + len` for `i < count` is readable; `count ≤ stride` and
/// `dst.len() ≥ (len − 1)·stride + count`.
unsafe fn transposed_lines(
    first: *const f32,
    step: isize,
    count: usize,
    len: usize,
    dst: &mut [f32],
    stride: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for i0 in (0..count).step_by(16) {
            let width = (count - i0).min(16);
            let mut lines = [std::ptr::null(); 16];
            for (i, line) in lines.iter_mut().enumerate().take(width) {
                // SAFETY: line i0 + i < count starts inside the operand (the caller's promise).
                *line = unsafe { first.offset((i0 + i) as isize * step) };
            }
            // SAFETY: the CPU has AVX-512F (checked); the lines are readable for len values;
            // dst from i0 holds (len − 1)·stride + width values since i0 + width ≤ count.
            unsafe { lines_16(&lines[..width], len, &mut dst[i0..], stride) };
        }
        return true;
    }
    let _ = (first, step, count, len, dst, stride);
    false
}

/// Up to 16 lines of `len` values, value `l` of line `i` to `dst[l·stride + i]`.
///
/// # Safety
/// The CPU has AVX-512F; every `lines[i] .. + len` is readable; `lines.len() ≤ stride`, and
/// `dst.len() ≥ (len − 1)·stride + lines.len()` when `len > 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lines_16(lines: &[*const f32], len: usize, dst: &mut [f32], stride: usize) {
    use std::arch::x86_64::*;
    let live = lines.len();
    assert!(live <= 16 && live <= stride);
    assert!(len == 0 || dst.len() >= (len - 1) * stride + live);
    let store = ((1u32 << live) - 1) as u16;
    let mut l = 0;
    while l < len {
        let n = (len - l).min(16);
        let load = ((1u32 << n) - 1) as u16;
        let mut r = [_mm512_setzero_si512(); 16];
        for (v, &line) in r.iter_mut().zip(lines) {
            // SAFETY: a masked load of line[l..l + n], inside the line.
            *v = _mm512_castps_si512(unsafe { _mm512_maskz_loadu_ps(load, line.add(l)) });
        }
        let w = super::pack_bf16::transpose16(r);
        for (q, v) in w.iter().enumerate().take(n) {
            // SAFETY: (l + q)·stride + live ≤ dst.len() (asserted: l + q < len); the store
            // writes the first `live` words only.
            unsafe {
                _mm512_mask_storeu_epi32(dst.as_mut_ptr().add((l + q) * stride).cast(), store, *v)
            };
        }
        l += 16;
    }
}
