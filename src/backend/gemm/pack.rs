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
            // Rows of A are contiguous: read each along l, write with stride mr.
            for r in 0..live {
                // SAFETY: row r0 + r < rows, columns < kc.
                let src =
                    unsafe { std::slice::from_raw_parts(a.offset((r0 + r) as isize * rsa), kc) };
                for (l, &v) in src.iter().enumerate() {
                    sliver[l * mr + r] = v;
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
            // Columns of B are contiguous (B is a transposed row-major matrix, e.g. Wᵀ).
            for x in 0..live {
                // SAFETY: column j0 + x < cols, rows < kc.
                let src =
                    unsafe { std::slice::from_raw_parts(b.offset((j0 + x) as isize * csb), kc) };
                for (l, &v) in src.iter().enumerate() {
                    sliver[l * nr + x] = v;
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
