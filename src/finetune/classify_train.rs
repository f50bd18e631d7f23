//! The book's `train_classifier_simple` (§6.7) and `calc_accuracy_loader` (§6.6), on any
//! [`StepEngine`] (CPU autograd or GPU).
//!
//! **Classification as masked next-token loss.** The classifier's loss is the cross-entropy of
//! the head's logits at each text's last real token against its label. That is exactly the
//! language-model loss of [`crate::train::calc_loss_batch`] with a 2-"word" head and targets that
//! are `-100` (ignored) everywhere except at position `length − 1`, where the target is the
//! label: the mean over non-ignored targets is the mean over the batch's texts. So a batch is a
//! plain [`Batch`], and the same engines, kernels and gradients serve pretraining and chapter 6
//! — the GPU included — with nothing classifier-specific in the backward.

use std::time::Instant;

use super::instruction_data::IGNORE_INDEX;
use super::spam_data::SpamDataset;
use crate::data::dataset::{batch_order, Batch};
use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::tensor::rng::{mix64, Rng};
use crate::train::{engine_loss_loader, StepEngine};

/// Class names of the spam classifier, in label order (ham → 0, spam → 1).
pub const SPAM_LABELS: [&str; 2] = ["not spam", "spam"];

impl SpamDataset {
    /// Rows `idx` as a [`Batch`]: inputs `(B, max_length)`, targets `-100` except the label at
    /// each row's last real token (see the module comment).
    pub fn batch(&self, idx: &[usize]) -> Batch {
        let t = self.max_length;
        let mut inputs = Vec::with_capacity(idx.len() * t);
        let mut targets = vec![IGNORE_INDEX; idx.len() * t];
        for (row, &i) in idx.iter().enumerate() {
            inputs.extend(self.ids[i].iter().map(|&v| v as i64));
            targets[row * t + self.lengths[i] - 1] = self.labels[i] as i64;
        }
        Batch {
            inputs: Ids::new(inputs, &[idx.len(), t]).expect("sized"),
            targets: Ids::new(targets, &[idx.len(), t]).expect("sized"),
        }
    }

    /// Row indices of one pass in batches of `batch_size`: shuffled by `rng` if given, the last
    /// incomplete batch dropped if `drop_last` (the book's training loader) — or kept (its
    /// validation and test loaders).
    pub fn batch_indices(
        &self,
        batch_size: usize,
        rng: Option<&mut Rng>,
        drop_last: bool,
    ) -> Vec<Vec<usize>> {
        batch_order(self.len(), batch_size, rng, drop_last)
    }
}

/// The book's `calc_accuracy_loader`: the fraction of the given batches' texts whose predicted
/// class (argmax of the logits at the last real token) is the label.
pub fn accuracy(
    engine: &mut dyn StepEngine,
    data: &SpamDataset,
    batches: &[Vec<usize>],
) -> Result<f64> {
    let (mut correct, mut total) = (0usize, 0usize);
    for idx in batches {
        let b = data.batch(idx);
        let positions: Vec<usize> = idx.iter().map(|&i| data.lengths[i] - 1).collect();
        for (row, &i) in engine.logits_at(&b.inputs, &positions)?.iter().zip(idx) {
            let pred = row
                .iter()
                .enumerate()
                .fold(0, |best, (k, &x)| if x > row[best] { k } else { best });
            correct += usize::from(pred == data.labels[i] as usize);
            total += 1;
        }
    }
    if total == 0 {
        return Err(Error::invalid("accuracy", "no examples to score"));
    }
    Ok(correct as f64 / total as f64)
}

/// The book's `calc_loss_loader` over batches of row indices.
fn mean_loss(
    engine: &mut dyn StepEngine,
    data: &SpamDataset,
    batches: &[Vec<usize>],
) -> Result<f64> {
    let batches: Vec<Batch> = batches.iter().map(|idx| data.batch(idx)).collect();
    engine_loss_loader(engine, &batches, batches.len())
}

/// Settings of [`train_classifier_simple`] (book defaults: 5 epochs, eval every 50 steps on 5
/// batches, batch 8; the learning rate and weight decay live in the engine's optimizer).
#[derive(Clone, Debug)]
pub struct ClassifierTrainOptions {
    pub num_epochs: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub batch_size: usize,
    /// Fixes the shuffling and the dropout masks.
    pub seed: u64,
    /// Stop after this many optimizer steps (None = all epochs).
    pub max_steps: Option<usize>,
    pub lr: f64,
}

impl Default for ClassifierTrainOptions {
    fn default() -> Self {
        ClassifierTrainOptions {
            num_epochs: 5,
            eval_freq: 50,
            eval_iter: 5,
            batch_size: 8,
            seed: 123,
            max_steps: None,
            lr: 5e-5,
        }
    }
}

/// What [`train_classifier_simple`] reports as it goes.
#[derive(Clone, Debug)]
pub enum ClassifierEvent {
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    /// The book's `Ep 1 (Step 000000): Train loss …, Val loss …`.
    Eval {
        epoch: usize,
        step: usize,
        train_loss: f64,
        val_loss: f64,
    },
    /// After each epoch, on `eval_iter` batches: `Training accuracy: …% | Validation accuracy: …%`.
    EpochAccuracy {
        epoch: usize,
        train_accuracy: f64,
        val_accuracy: f64,
    },
}

impl ClassifierEvent {
    /// The book's printed line, for eval and accuracy events.
    pub fn book_line(&self) -> Option<String> {
        match self {
            ClassifierEvent::Eval {
                epoch,
                step,
                train_loss,
                val_loss,
            } => Some(format!(
                "Ep {} (Step {step:06}): Train loss {train_loss:.3}, Val loss {val_loss:.3}",
                epoch + 1
            )),
            ClassifierEvent::EpochAccuracy {
                train_accuracy,
                val_accuracy,
                ..
            } => Some(format!(
                "Training accuracy: {:.2}% | Validation accuracy: {:.2}%",
                train_accuracy * 100.0,
                val_accuracy * 100.0
            )),
            ClassifierEvent::Step { .. } => None,
        }
    }
}

/// What a run measured: the book's five lists, plus examples seen and the time spent stepping.
#[derive(Clone, Debug, Default)]
pub struct ClassifierRun {
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    pub train_accs: Vec<f64>,
    pub val_accs: Vec<f64>,
    pub examples_seen: usize,
    pub steps: usize,
    /// Seconds in optimizer steps (forward, backward, update), excluding evaluation.
    pub train_secs: f64,
}

/// The book's `train_classifier_simple`: for each epoch, for each shuffled batch (drop_last):
/// zero grads, loss, backward, AdamW step; every `eval_freq` steps (from step 0) the mean loss
/// of `eval_iter` batches of the training and validation loaders; after each epoch the accuracy
/// on `eval_iter` batches of each. As in the book, evaluating the training loader iterates it
/// afresh, which draws a new shuffle. A non-finite loss stops the run, naming the step.
pub fn train_classifier_simple(
    engine: &mut dyn StepEngine,
    train: &SpamDataset,
    val: &SpamDataset,
    opts: &ClassifierTrainOptions,
    mut on_event: impl FnMut(&ClassifierEvent),
) -> Result<ClassifierRun> {
    if opts.batch_size == 0 || opts.eval_freq == 0 || opts.eval_iter == 0 {
        return Err(Error::invalid(
            "train_classifier_simple",
            "batch size, eval_freq and eval_iter must be at least 1",
        ));
    }
    if train.len() < opts.batch_size {
        return Err(Error::invalid(
            "train_classifier_simple",
            format!(
                "{} training texts make no complete batch of {}",
                train.len(),
                opts.batch_size
            ),
        ));
    }
    if val.is_empty() {
        return Err(Error::invalid(
            "train_classifier_simple",
            "the validation split is empty",
        ));
    }
    let mut rng = Rng::new(opts.seed);
    let mut run = ClassifierRun::default();
    let val_batches = val.batch_indices(opts.batch_size, None, false);
    let first = |b: Vec<Vec<usize>>| b.into_iter().take(opts.eval_iter).collect::<Vec<_>>();
    'epochs: for epoch in 0..opts.num_epochs {
        for idx in train.batch_indices(opts.batch_size, Some(&mut rng), true) {
            if opts.max_steps.is_some_and(|m| run.steps >= m) {
                break 'epochs;
            }
            let step = run.steps;
            let t0 = Instant::now();
            let seed = mix64(opts.seed ^ mix64(step as u64 + 1));
            let stats = engine.train_step(&[train.batch(&idx)], &[seed], None, opts.lr)?;
            let loss = stats.loss;
            for (what, value) in [
                ("classification loss", loss),
                ("gradient norm", stats.grad_norm),
            ] {
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        what: format!("the {what} at step {step} (epoch {})", epoch + 1),
                        value,
                        note: String::new(),
                    });
                }
            }
            run.train_secs += t0.elapsed().as_secs_f64();
            run.examples_seen += idx.len();
            run.steps += 1;
            on_event(&ClassifierEvent::Step { epoch, step, loss });
            if step.is_multiple_of(opts.eval_freq) {
                let shuffled = first(train.batch_indices(opts.batch_size, Some(&mut rng), true));
                let train_loss = mean_loss(engine, train, &shuffled)?;
                let val_loss = mean_loss(engine, val, &first(val_batches.clone()))?;
                run.train_losses.push(train_loss);
                run.val_losses.push(val_loss);
                on_event(&ClassifierEvent::Eval {
                    epoch,
                    step,
                    train_loss,
                    val_loss,
                });
            }
        }
        let shuffled = first(train.batch_indices(opts.batch_size, Some(&mut rng), true));
        let train_accuracy = accuracy(engine, train, &shuffled)?;
        let val_accuracy = accuracy(engine, val, &first(val_batches.clone()))?;
        run.train_accs.push(train_accuracy);
        run.val_accs.push(val_accuracy);
        on_event(&ClassifierEvent::EpochAccuracy {
            epoch,
            train_accuracy,
            val_accuracy,
        });
    }
    engine.sync_to_cpu()?;
    Ok(run)
}
