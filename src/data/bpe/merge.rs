//! Byte-pair merging of one pre-token, and a fast hasher for the rank table.
//!
//! Given a piece's bytes and the rank of every token (lower rank = merged earlier in training),
//! BPE repeatedly merges the adjacent pair whose concatenation has the lowest rank, until no
//! adjacent pair is a token. This is tiktoken's formulation: the rank of a merge *is* the rank of
//! the token it produces, so one table (bytes → rank) drives both merging and the final ids.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiplicative hasher (the "Fx" hash of rustc): byte slices hash several times faster
/// than with the default SipHash, and the keys here are not attacker-chosen.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The token ids of one piece: merges by lowest rank, then maps each part to its rank.
/// Every single byte must have a rank (true of any byte-level vocabulary).
pub fn byte_pair_encode(piece: &[u8], ranks: &FxHashMap<Vec<u8>, u32>, out: &mut Vec<u32>) {
    if piece.len() == 1 {
        out.push(ranks[piece]);
        return;
    }
    if let Some(&r) = ranks.get(piece) {
        out.push(r);
        return;
    }
    // parts[i] = (start of part i, rank of part i merged with part i+1)
    let rank_of = |parts: &[(usize, u32)], i: usize| -> u32 {
        if i + 2 < parts.len() {
            *ranks
                .get(&piece[parts[i].0..parts[i + 2].0])
                .unwrap_or(&u32::MAX)
        } else {
            u32::MAX
        }
    };
    let mut parts: Vec<(usize, u32)> = (0..=piece.len()).map(|i| (i, u32::MAX)).collect();
    for i in 0..parts.len().saturating_sub(2) {
        parts[i].1 = rank_of(&parts, i);
    }
    loop {
        // The lowest-ranked adjacent pair (the first one on ties, as tiktoken).
        let (mut best, mut best_i) = (u32::MAX, 0);
        for (i, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
            if r < best {
                best = r;
                best_i = i;
            }
        }
        if best == u32::MAX {
            break;
        }
        parts.remove(best_i + 1);
        parts[best_i].1 = rank_of(&parts, best_i);
        if best_i > 0 {
            parts[best_i - 1].1 = rank_of(&parts, best_i - 1);
        }
    }
    for w in parts.windows(2) {
        out.push(ranks[&piece[w[0].0..w[1].0]]);
    }
}
