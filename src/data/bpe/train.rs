//! Training a byte-level BPE vocabulary (the book's "BPE from scratch" bonus, done with
//! incremental pair counts).
//!
//! 1. Split the text at special tokens (they are never merged), pre-tokenize each part with
//!    GPT-2's pattern, and count each distinct piece once: a "word" is a piece's symbol sequence
//!    with its frequency. Merges never cross a piece boundary, as in GPT-2.
//! 2. Count every adjacent symbol pair, weighted by word frequency, and remember which words
//!    contain it.
//! 3. Repeatedly merge the most frequent pair into a new token. Only the words that contain that
//!    pair change, so only their pairs' counts are updated (subtract the word's old pairs, add its
//!    new ones) — never a full recount. A max-heap with lazy invalidation finds the next pair.
//!
//! **Ties** between equally frequent pairs go to the pair with the smaller left id, then the
//! smaller right id. Ids are ranks (bytes first, then merges in order), so among equals the pair of
//! older tokens wins; the result depends only on the text, the target size and the specials.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::byte_unicode::bytes_in_rank_order;
use super::merge::FxHashMap;
use super::pretokenize::pre_tokenize;
use super::BpeTokenizer;
use crate::error::{Error, Result};

type Pair = (u32, u32);

/// Trains a vocabulary of (at most) `vocab_size` ids — 256 bytes, the merges, then `specials` —
/// on `text`. Stops early if no pair occurs any more (a tiny text); the returned tokenizer's
/// `vocab_size()` says how many ids it has.
pub fn train_bpe(text: &str, vocab_size: usize, specials: &[&str]) -> Result<BpeTokenizer> {
    if vocab_size < 256 + specials.len() {
        return Err(Error::invalid(
            "train_bpe",
            format!(
                "vocab_size {vocab_size} is smaller than the 256 byte tokens plus {} special tokens",
                specials.len()
            ),
        ));
    }
    if text.is_empty() {
        return Err(Error::invalid("train_bpe", "the training text is empty"));
    }
    for (i, s) in specials.iter().enumerate() {
        if s.is_empty() || specials[..i].contains(s) {
            return Err(Error::invalid(
                "train_bpe",
                format!("special token {s:?} is empty or listed twice"),
            ));
        }
    }
    let byte_id = {
        let mut t = [0u32; 256];
        for (rank, b) in bytes_in_rank_order().into_iter().enumerate() {
            t[b as usize] = rank as u32;
        }
        t
    };

    // 1. words
    let mut piece_counts: FxHashMap<&str, u64> = FxHashMap::default();
    for part in split_specials(text, specials) {
        pre_tokenize(part, |p| *piece_counts.entry(p).or_insert(0) += 1);
    }
    let mut pieces: Vec<(&str, u64)> = piece_counts.into_iter().collect();
    pieces.sort_unstable(); // deterministic word order, independent of hashing
    let mut words: Vec<Vec<u32>> = pieces
        .iter()
        .map(|(p, _)| p.bytes().map(|b| byte_id[b as usize]).collect())
        .collect();
    let freq: Vec<i64> = pieces.iter().map(|&(_, c)| c as i64).collect();

    // 2. pair counts and where they occur
    let mut counts: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut where_: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
    for (w, syms) in words.iter().enumerate() {
        for p in syms.windows(2) {
            let pair = (p[0], p[1]);
            *counts.entry(pair).or_insert(0) += freq[w];
            where_.entry(pair).or_default().push(w as u32);
        }
    }
    let mut heap: BinaryHeap<(i64, Reverse<Pair>)> =
        counts.iter().map(|(&p, &c)| (c, Reverse(p))).collect();

    // 3. merges
    let target_merges = vocab_size - 256 - specials.len();
    let mut merges: Vec<Pair> = Vec::with_capacity(target_merges);
    let mut changed: Vec<Pair> = Vec::new();
    while merges.len() < target_merges {
        let Some((c, Reverse(pair))) = heap.pop() else {
            break;
        };
        let actual = counts.get(&pair).copied().unwrap_or(0);
        if actual != c {
            if actual > 0 && actual < c {
                heap.push((actual, Reverse(pair)));
            }
            continue; // stale entry (a fresher one is in the heap, or the pair is gone)
        }
        if c <= 0 {
            break;
        }
        let new_id = (256 + merges.len()) as u32;
        merges.push(pair);
        let mut ws = where_.remove(&pair).unwrap_or_default();
        ws.sort_unstable();
        ws.dedup();
        changed.clear();
        for &w in &ws {
            let w = w as usize;
            let old = &words[w];
            if !old.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue; // stale: an earlier merge already rewrote this word
            }
            let mut new = Vec::with_capacity(old.len());
            let mut i = 0;
            while i < old.len() {
                if i + 1 < old.len() && (old[i], old[i + 1]) == pair {
                    new.push(new_id);
                    i += 2;
                } else {
                    new.push(old[i]);
                    i += 1;
                }
            }
            for p in old.windows(2) {
                *counts.get_mut(&(p[0], p[1])).expect("counted") -= freq[w];
            }
            for p in new.windows(2) {
                let np = (p[0], p[1]);
                *counts.entry(np).or_insert(0) += freq[w];
                if np.0 == new_id || np.1 == new_id {
                    where_.entry(np).or_default().push(w as u32);
                    changed.push(np);
                }
            }
            words[w] = new;
        }
        counts.remove(&pair);
        changed.sort_unstable();
        changed.dedup();
        for p in &changed {
            heap.push((counts[p], Reverse(*p)));
        }
    }
    BpeTokenizer::from_merges(merges, specials)
}

/// The parts of `text` between occurrences of the special tokens.
fn split_specials<'a>(text: &'a str, specials: &[&str]) -> Vec<&'a str> {
    let mut parts = vec![text];
    for s in specials.iter().filter(|s| !s.is_empty()) {
        parts = parts.into_iter().flat_map(|p| p.split(s)).collect();
    }
    parts
}
