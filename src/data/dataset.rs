//! Sliding-window next-token data (book §2.6, `GPTDatasetV1` and `create_dataloader_v1`).
//!
//! From a token sequence, window i is `input = ids[s·i .. s·i + L]` and
//! `target = ids[s·i + 1 .. s·i + L + 1]` (the input shifted by one: every position predicts the
//! next token), with L = `max_length` and s = `stride`.

use std::sync::Arc;

use super::shards::ShardSet;
use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;

/// Where a dataset's tokens live: in memory (a text tokenized at start-up) or in memory-mapped
/// shards (`prepare-data`). Both feed the same windows, loader and training loop.
#[derive(Clone, Debug)]
pub enum TokenSource {
    Memory(Arc<[u32]>),
    Shards(Arc<ShardSet>),
}

impl TokenSource {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            TokenSource::Memory(ids) => ids.len(),
            TokenSource::Shards(s) => s.len() as usize,
        }
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies tokens `start .. start + out.len()` into `out`.
    pub fn read(&self, start: usize, out: &mut [i64]) -> Result<()> {
        match self {
            TokenSource::Memory(ids) => {
                let src = ids
                    .get(start..start + out.len())
                    .ok_or(Error::IndexOutOfRange {
                        op: "TokenSource::read",
                        index: (start + out.len()) as i64,
                        size: ids.len(),
                    })?;
                for (d, &t) in out.iter_mut().zip(src) {
                    *d = t as i64;
                }
                Ok(())
            }
            TokenSource::Shards(s) => s.read(start as u64, out),
        }
    }
}

/// The windows of one token sequence. Windows are read from the source when a batch is made,
/// never stored: a corpus costs its tokens (or, from shards, nothing) rather than
/// 2 · max_length · 8 bytes per window.
#[derive(Clone, Debug)]
pub struct GptDataset {
    tokens: TokenSource,
    max_length: usize,
    stride: usize,
    windows: usize,
}

impl GptDataset {
    /// Windows of `max_length` tokens every `stride` tokens, as the book:
    /// `for i in range(0, len(ids) - max_length, stride)`. A sequence of `max_length` tokens or
    /// fewer has no window with a target and is an error giving both numbers.
    pub fn new(token_ids: &[u32], max_length: usize, stride: usize) -> Result<Self> {
        Self::from_source(TokenSource::Memory(token_ids.into()), max_length, stride)
    }

    /// [`GptDataset::new`] over any token source.
    pub fn from_source(tokens: TokenSource, max_length: usize, stride: usize) -> Result<Self> {
        if max_length == 0 || stride == 0 {
            return Err(Error::invalid(
                "GptDataset",
                "max_length and stride must be at least 1",
            ));
        }
        if tokens.len() <= max_length {
            return Err(Error::invalid(
                "GptDataset",
                format!(
                    "the text has {} tokens, but a window needs max_length + 1 = {} (use a longer text or a shorter context)",
                    tokens.len(),
                    max_length + 1
                ),
            ));
        }
        // range(0, n - L, stride) has ceil((n - L) / stride) elements.
        let windows = (tokens.len() - max_length).div_ceil(stride);
        Ok(GptDataset {
            tokens,
            max_length,
            stride,
            windows,
        })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.windows
    }

    /// Whether there are no windows (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.windows == 0
    }

    /// Window `i`: (input, target) — the target is the input shifted by one token.
    pub fn get(&self, i: usize) -> Option<(Vec<i64>, Vec<i64>)> {
        if i >= self.windows {
            return None;
        }
        let (mut inputs, mut targets) = (vec![0; self.max_length], vec![0; self.max_length]);
        self.fill(i, &mut inputs, &mut targets).ok()?;
        Some((inputs, targets))
    }

    /// The window length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The tokens the windows are cut from.
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Writes window `i`'s input and target rows into `inputs` and `targets` (each `max_length`
    /// long): the input is read from the source, the target is the input shifted by one plus
    /// the token after it — no buffer per window.
    fn fill(&self, i: usize, inputs: &mut [i64], targets: &mut [i64]) -> Result<()> {
        let (l, start) = (self.max_length, i * self.stride);
        self.tokens.read(start, inputs)?;
        targets[..l - 1].copy_from_slice(&inputs[1..]);
        self.tokens.read(start + l, &mut targets[l - 1..])
    }
}

/// One batch: inputs and targets, both `(batch, max_length)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Ids,
    pub targets: Ids,
}

/// Batches of windows, optionally shuffled (seeded, a new order each epoch) and dropping the last
/// incomplete batch (the book's `DataLoader(dataset, batch_size, shuffle, drop_last)`).
#[derive(Clone, Debug)]
pub struct DataLoader {
    dataset: GptDataset,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    rng: Rng,
    /// Data-parallel training: this process is rank `.0` of `.1` and reads only its stripe.
    stripe: (usize, usize),
}

impl DataLoader {
    /// A loader over `dataset`; `seed` fixes the shuffling.
    pub fn new(
        dataset: GptDataset,
        batch_size: usize,
        shuffle: bool,
        drop_last: bool,
        seed: u64,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "DataLoader",
                "batch_size must be at least 1",
            ));
        }
        let loader = DataLoader {
            dataset,
            batch_size,
            shuffle,
            drop_last,
            rng: Rng::new(seed),
            stripe: (0, 1),
        };
        if loader.num_batches() == 0 {
            return Err(Error::invalid(
                "DataLoader",
                format!(
                    "{} windows make no complete batch of {} with drop_last",
                    loader.dataset.len(),
                    batch_size
                ),
            ));
        }
        Ok(loader)
    }

    /// This loader as rank `rank` of `world` in data-parallel training (PyTorch's
    /// `DistributedSampler`): each pass's order (shuffled with the shared seed, so the same on
    /// every rank) is cut to a multiple of `world` when dropping the last batch, and rank r
    /// takes positions r, r + world, r + 2·world, … of it, then batches them. Global batch i —
    /// rank 0's batch i, rank 1's batch i, … — then holds exactly the windows of batch i of one
    /// process with batch `world·batch_size`, so N ranks of batch B train as one of batch N·B.
    /// An error if a rank would get no batch.
    pub fn striped(mut self, rank: usize, world: usize) -> Result<Self> {
        if world == 0 || rank >= world {
            return Err(Error::invalid(
                "DataLoader",
                format!("rank {rank} of a world of {world}"),
            ));
        }
        self.stripe = (rank, world);
        // Training (drop_last) needs a batch on every rank; an evaluation loader may leave a
        // rank without one (its share of the last, short batch is empty).
        if self.drop_last && self.num_batches() == 0 {
            return Err(Error::invalid(
                "DataLoader",
                format!(
                    "{} windows make no batch of {} for rank {rank} of {world} (each rank reads every {world}th window)",
                    self.dataset.len(),
                    self.batch_size
                ),
            ));
        }
        Ok(self)
    }

    /// Batches per pass of one process with every rank's batches as one (`world × batch_size`):
    /// the number of global batches, the same on every rank (rank r's batch i is its share of
    /// global batch i, possibly empty for the last one).
    pub fn global_num_batches(&self) -> usize {
        let (len, big) = (self.dataset.len(), self.batch_size * self.stripe.1);
        if self.drop_last {
            len / big
        } else {
            len.div_ceil(big)
        }
    }

    /// The windows this rank reads per pass (all of them in one process).
    fn stripe_len(&self) -> usize {
        let (rank, world) = self.stripe;
        let len = self.dataset.len();
        if world == 1 {
            len
        } else if self.drop_last {
            len / world
        } else {
            // Positions r, r + world, … below len.
            (len + world - 1 - rank) / world
        }
    }

    /// This rank's positions of a pass's order (see [`DataLoader::striped`]).
    fn take_stripe(&self, mut order: Vec<usize>) -> Vec<usize> {
        let (rank, world) = self.stripe;
        if world == 1 {
            return order;
        }
        if self.drop_last {
            order.truncate(order.len() / world * world);
        }
        order.into_iter().skip(rank).step_by(world).collect()
    }

    /// Batches per epoch (of this rank, in data-parallel training: the same on every rank when
    /// the last batch is dropped).
    pub fn num_batches(&self) -> usize {
        let len = self.stripe_len();
        if self.drop_last {
            len / self.batch_size
        } else {
            len.div_ceil(self.batch_size)
        }
    }

    /// The underlying dataset.
    pub fn dataset(&self) -> &GptDataset {
        &self.dataset
    }

    /// The shuffling stream's state (saved by checkpoints).
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    /// Restores the shuffling stream (resuming a run).
    pub fn set_rng_state(&mut self, state: u64) {
        self.rng = Rng::from_state(state);
    }

    /// The first `n` batches in dataset order, unshuffled and without drawing from the shuffling
    /// stream — what evaluation uses, so that evaluating does not change the training order (and
    /// a resumed run replays it exactly).
    pub fn eval_batches(&self, n: usize) -> Vec<Batch> {
        let idx = self.take_stripe((0..self.dataset.len()).collect());
        idx.chunks(self.batch_size)
            .take(self.num_batches().min(n))
            .map(|idx| self.make_batch(idx))
            .collect()
    }

    /// The batches of one epoch (reshuffled on every call when shuffling).
    pub fn epoch(&mut self) -> Vec<Batch> {
        let order = self.epoch_order();
        (0..order.len())
            .map(|i| self.make_batch(order.batch(i)))
            .collect()
    }

    /// The windows at `idx` stacked into a batch.
    fn make_batch(&self, idx: &[usize]) -> Batch {
        self.batch(idx)
            .expect("window indices come from this dataset")
    }

    /// The windows at `idx` stacked into a batch (an index beyond the dataset, or a shard that
    /// cannot be read, is an error).
    pub fn batch(&self, idx: &[usize]) -> Result<Batch> {
        let l = self.dataset.max_length;
        let mut inputs = vec![0i64; idx.len() * l];
        let mut targets = vec![0i64; idx.len() * l];
        for ((&i, inp), tgt) in idx
            .iter()
            .zip(inputs.chunks_exact_mut(l))
            .zip(targets.chunks_exact_mut(l))
        {
            if i >= self.dataset.len() {
                return Err(Error::IndexOutOfRange {
                    op: "DataLoader::batch",
                    index: i as i64,
                    size: self.dataset.len(),
                });
            }
            self.dataset.fill(i, inp, tgt)?;
        }
        Ok(Batch {
            inputs: Ids::new(inputs, &[idx.len(), l])?,
            targets: Ids::new(targets, &[idx.len(), l])?,
        })
    }

    /// One pass's window order in batches, drawing a new shuffle from the stream when shuffling
    /// (what [`DataLoader::epoch`] does, without making the batches: a large corpus makes them
    /// one at a time with [`DataLoader::batch`]).
    pub fn epoch_order(&mut self) -> EpochOrder {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            self.rng.shuffle(&mut order);
        }
        EpochOrder {
            order: self.take_stripe(order),
            batch_size: self.batch_size,
            num_batches: self.num_batches(),
        }
    }
}

/// The order of one pass over a loader's windows, in batches.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    order: Vec<usize>,
    batch_size: usize,
    num_batches: usize,
}

impl EpochOrder {
    /// Batches in the pass.
    pub fn len(&self) -> usize {
        self.num_batches
    }

    /// Whether the pass has no batches.
    pub fn is_empty(&self) -> bool {
        self.num_batches == 0
    }

    /// The window indices of batch `i` (the last may be short without drop_last).
    pub fn batch(&self, i: usize) -> &[usize] {
        let start = i * self.batch_size;
        &self.order[start..(start + self.batch_size).min(self.order.len())]
    }
}

/// The item indices `0..len` of one pass in batches of `batch_size` (the book's
/// `DataLoader` order): shuffled by `rng` if given (Fisher–Yates over the whole pass), the last
/// short batch dropped if `drop_last`. Every loader here — text windows, spam messages,
/// instructions — batches through this one function.
pub fn batch_order(
    len: usize,
    batch_size: usize,
    rng: Option<&mut Rng>,
    drop_last: bool,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(rng) = rng {
        rng.shuffle(&mut order);
    }
    let size = batch_size.max(1);
    order
        .chunks(size)
        .filter(|c| !drop_last || c.len() == size)
        .map(<[usize]>::to_vec)
        .collect()
}

/// Splits a text into training and validation parts by characters, as the book
/// (`split_idx = int(train_ratio * len(text))`).
pub fn split_train_val(text: &str, train_ratio: f64) -> Result<(&str, &str)> {
    if !(0.0..=1.0).contains(&train_ratio) {
        return Err(Error::invalid(
            "split_train_val",
            format!("train_ratio must be in [0, 1], got {train_ratio}"),
        ));
    }
    let n_chars = text.chars().count();
    let split_chars = (train_ratio * n_chars as f64) as usize;
    let byte = text
        .char_indices()
        .nth(split_chars)
        .map_or(text.len(), |(b, _)| b);
    Ok(text.split_at(byte))
}
