//! Sliding-window next-token data (book §2.6, `GPTDatasetV1` and `create_dataloader_v1`).
//!
//! From a token sequence, window i is `input = ids[s·i .. s·i + L]` and
//! `target = ids[s·i + 1 .. s·i + L + 1]` (the input shifted by one: every position predicts the
//! next token), with L = `max_length` and s = `stride`.

use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;

/// The windows of one token sequence.
#[derive(Clone, Debug)]
pub struct GptDataset {
    inputs: Vec<Vec<i64>>,
    targets: Vec<Vec<i64>>,
    max_length: usize,
}

impl GptDataset {
    /// Windows of `max_length` tokens every `stride` tokens, as the book:
    /// `for i in range(0, len(ids) - max_length, stride)`. A sequence of `max_length` tokens or
    /// fewer has no window with a target and is an error giving both numbers.
    pub fn new(token_ids: &[u32], max_length: usize, stride: usize) -> Result<Self> {
        if max_length == 0 || stride == 0 {
            return Err(Error::invalid(
                "GptDataset",
                "max_length and stride must be at least 1",
            ));
        }
        if token_ids.len() <= max_length {
            return Err(Error::invalid(
                "GptDataset",
                format!(
                    "the text has {} tokens, but a window needs max_length + 1 = {} (use a longer text or a shorter context)",
                    token_ids.len(),
                    max_length + 1
                ),
            ));
        }
        let ids: Vec<i64> = token_ids.iter().map(|&t| t as i64).collect();
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for i in (0..ids.len() - max_length).step_by(stride) {
            inputs.push(ids[i..i + max_length].to_vec());
            targets.push(ids[i + 1..i + max_length + 1].to_vec());
        }
        Ok(GptDataset {
            inputs,
            targets,
            max_length,
        })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether there are no windows (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Window `i`: (input, target).
    pub fn get(&self, i: usize) -> Option<(&[i64], &[i64])> {
        Some((
            self.inputs.get(i)?.as_slice(),
            self.targets.get(i)?.as_slice(),
        ))
    }

    /// The window length.
    pub fn max_length(&self) -> usize {
        self.max_length
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

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.dataset.len() / self.batch_size
        } else {
            self.dataset.len().div_ceil(self.batch_size)
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
        let idx: Vec<usize> = (0..self.dataset.len()).collect();
        idx.chunks(self.batch_size)
            .take(self.num_batches().min(n))
            .map(|idx| self.make_batch(idx))
            .collect()
    }

    /// The batches of one epoch (reshuffled on every call when shuffling).
    pub fn epoch(&mut self) -> Vec<Batch> {
        let rng = self.shuffle.then_some(&mut self.rng);
        batch_order(self.dataset.len(), self.batch_size, rng, self.drop_last)
            .iter()
            .map(|idx| self.make_batch(idx))
            .collect()
    }

    /// The windows at `idx` stacked into a batch.
    fn make_batch(&self, idx: &[usize]) -> Batch {
        let l = self.dataset.max_length;
        let rows = |v: &Vec<Vec<i64>>| {
            idx.iter()
                .flat_map(|&i| v[i].iter().copied())
                .collect::<Vec<_>>()
        };
        Batch {
            inputs: Ids::new(rows(&self.dataset.inputs), &[idx.len(), l]).expect("sized"),
            targets: Ids::new(rows(&self.dataset.targets), &[idx.len(), l]).expect("sized"),
        }
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
