//! The chapter-6 classifier: the GPT with its output head replaced by a small `Linear(emb, 2)`,
//! most of it frozen, reading the prediction at each text's **last real token**.
//!
//! Why the last real token and not the last position (the book's choice): with causal attention,
//! position t has seen tokens 0..=t, so the last real token is the first position that has read
//! the whole message. Positions after it have also read padding (`<|endoftext|>` repeated), which
//! changes the prediction with the amount of padding — readers showed this on the book's code
//! (rasbt/LLMs-from-scratch issues 566 and 990). Reading at `length − 1` makes the prediction
//! independent of padding (a test checks it is bit-identical with and without).

use super::spam_data::SpamDataset;
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::gpt::GptModel;
use crate::nn::{ForwardCtx, Linear};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

/// Which parameters fine-tuning trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trainable {
    /// The new head, the final LayerNorm and the last `n` transformer blocks (the book: n = 1).
    LastBlocks(usize),
    /// Everything.
    All,
}

/// A GPT with a classification head.
pub struct Classifier {
    pub model: GptModel,
    pub num_classes: usize,
}

impl Classifier {
    /// Wrap a model that already has a classification head (e.g. loaded from a checkpoint
    /// written by `finetune classify`).
    pub fn from_trained(model: GptModel) -> Result<Self> {
        match model.cfg.num_classes {
            Some(num_classes) => Ok(Classifier { model, num_classes }),
            None => Err(Error::invalid(
                "Classifier",
                "this model has a language-model head, not a classification head (was it fine-tuned with `finetune classify`?)",
            )),
        }
    }

    /// Replace `model`'s output head with `Linear(emb_dim, num_classes)` (PyTorch's default
    /// initialisation, from `seed`), then freeze all but `trainable`.
    pub fn new(
        mut model: GptModel,
        num_classes: usize,
        trainable: Trainable,
        seed: u64,
    ) -> Result<Self> {
        if num_classes < 2 {
            return Err(Error::invalid(
                "Classifier",
                format!("{num_classes} classes: need at least 2"),
            ));
        }
        let mut rng = Rng::new(seed);
        model.out_head = Linear::new(model.cfg.emb_dim, num_classes, true, &mut rng);
        model.cfg.tie_weights = false; // the new head is its own parameter
        model.cfg.num_classes = Some(num_classes);
        let layers = model.cfg.n_layers;
        match trainable {
            Trainable::All => {
                for (_, p) in model.named_parameters() {
                    let _ = p.requires_grad_(true);
                }
            }
            Trainable::LastBlocks(n) => {
                if n > layers {
                    return Err(Error::invalid(
                        "Classifier",
                        format!("{n} trainable blocks, the model has {layers}"),
                    ));
                }
                model.freeze_all();
                for l in layers - n..layers {
                    model.unfreeze(&format!("trf_blocks.{l}."));
                }
                model.unfreeze("final_norm.");
                model.unfreeze("out_head.");
            }
        }
        Ok(Classifier { model, num_classes })
    }

    /// Number of parameters that will be trained.
    pub fn trainable_parameters(&self) -> usize {
        self.model.num_trainable_parameters()
    }

    /// Class logits `(B, num_classes)` of a batch of padded rows, read at each row's last real
    /// token (`lengths[b] − 1`).
    pub fn logits(&self, rows: &[Vec<u32>], lengths: &[usize], ctx: &ForwardCtx) -> Result<Tensor> {
        let b = rows.len();
        if b == 0 || lengths.len() != b {
            return Err(Error::invalid(
                "Classifier",
                format!("{b} rows and {} lengths", lengths.len()),
            ));
        }
        let t = rows[0].len();
        if rows.iter().any(|r| r.len() != t) {
            return Err(Error::invalid(
                "Classifier",
                "rows of a batch must have the same (padded) length",
            ));
        }
        if let Some(&bad) = lengths.iter().find(|&&l| l == 0 || l > t) {
            return Err(Error::invalid(
                "Classifier",
                format!("length {bad} outside 1..={t}"),
            ));
        }
        let ids = Ids::new(rows.iter().flatten().map(|&v| v as i64).collect(), &[b, t])?;
        let all = self.model.forward(&ids, ctx)?; // (B, T, C)
        let picked: Vec<Tensor> = (0..b)
            .map(|i| all.select(0, i)?.select(0, lengths[i] - 1)?.unsqueeze(0))
            .collect::<Result<_>>()?;
        Tensor::concat(&picked.iter().collect::<Vec<_>>(), 0)
    }

    /// Mean cross-entropy of a batch.
    pub fn loss(
        &self,
        rows: &[Vec<u32>],
        lengths: &[usize],
        labels: &[u8],
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        let targets = Ids::new(labels.iter().map(|&l| l as i64).collect(), &[labels.len()])?;
        self.logits(rows, lengths, ctx)?.cross_entropy(&targets)
    }

    /// Predicted class of each row (eval mode, no graph).
    pub fn predict(&self, rows: &[Vec<u32>], lengths: &[usize]) -> Result<Vec<usize>> {
        let logits = no_grad(|| self.logits(rows, lengths, &ForwardCtx::eval()))?;
        let v = logits.to_vec()?;
        Ok(v.chunks(self.num_classes)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0, |best, (i, &x)| if x > c[best] { i } else { best })
            })
            .collect())
    }

    /// Accuracy over the first `num_batches` batches of `batch_size` (all if None) — the book's
    /// `calc_accuracy_loader`, in data order.
    pub fn accuracy(
        &self,
        data: &SpamDataset,
        batch_size: usize,
        num_batches: Option<usize>,
    ) -> Result<f64> {
        if data.is_empty() {
            return Err(Error::invalid("accuracy", "the dataset is empty"));
        }
        let n = num_batches.map_or(data.len(), |k| (k * batch_size).min(data.len()));
        let mut correct = 0;
        for start in (0..n).step_by(batch_size.max(1)) {
            let end = (start + batch_size).min(n);
            let pred = self.predict(&data.ids[start..end], &data.lengths[start..end])?;
            correct += pred
                .iter()
                .zip(&data.labels[start..end])
                .filter(|(p, &l)| **p == l as usize)
                .count();
        }
        Ok(correct as f64 / n as f64)
    }
}
