//! The portable micro-kernel: a 4 × 8 tile in plain loops, for CPUs without AVX2 (or other
//! architectures). Multiply and add are separate roundings here (no FMA is assumed), so its
//! results differ from the vector kernels' in the last bits.

use super::Tile;

pub(super) const MR: usize = 4;
pub(super) const NR: usize = 8;

/// C tile (`tile`) ← alpha · (A sliver · B sliver) + beta · C tile.
///
/// # Safety
/// `tile` describes a valid part of C.
pub(super) unsafe fn kernel(kc: usize, a: &[f32], b: &[f32], tile: &Tile) {
    let mut t = [0.0f32; MR * NR];
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for r in 0..MR {
            for x in 0..NR {
                t[r * NR + x] += av[r] * bv[x];
            }
        }
    }
    // SAFETY: the caller's contract on `tile`.
    unsafe { tile.merge(&t, NR) }
}
