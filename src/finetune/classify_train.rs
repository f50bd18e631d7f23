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

use std::path::Path;

use super::epochs::{check_plan, run_epochs, EpochHooks, EpochPlan, RunControl, StepResult};
use super::instruction_data::IGNORE_INDEX;
use super::spam_data::SpamDataset;
use crate::data::dataset::{batch_order, Batch};
use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::train::checkpoint::{save_finetune_checkpoint, RunInfo, Task};
use crate::train::{engine_loss_loader, RunEnd, StepEngine, TrainState};

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
    /// A periodic checkpoint was written after `step` steps.
    Saved {
        step: usize,
        path: std::path::PathBuf,
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
            ClassifierEvent::Step { .. } | ClassifierEvent::Saved { .. } => None,
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

impl ClassifierRun {
    /// The run's measurements so far, from its state (accuracies under `train_accs` and
    /// `val_accs` in its metrics).
    pub fn from_state(state: &TrainState) -> Self {
        let series = |k: &str| state.metrics.get(k).cloned().unwrap_or_default();
        ClassifierRun {
            train_losses: state.train_losses.clone(),
            val_losses: state.val_losses.clone(),
            train_accs: series(TRAIN_ACCS),
            val_accs: series(VAL_ACCS),
            examples_seen: state.examples_seen,
            steps: state.global_step,
            train_secs: state.train_secs,
        }
    }
}

/// The metric series of a classifier run's accuracies in [`TrainState::metrics`].
const TRAIN_ACCS: &str = "train_accs";
const VAL_ACCS: &str = "val_accs";

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
    on_event: impl FnMut(&ClassifierEvent),
) -> Result<ClassifierRun> {
    let mut state = TrainState::default();
    train_classifier_from(
        engine,
        (train, val),
        opts,
        &RunControl::default(),
        &mut state,
        on_event,
    )?;
    Ok(ClassifierRun::from_state(&state))
}

/// [`train_classifier_simple`] on `(train, val)` from `state` (a fresh one, or a checkpoint's to
/// resume), with periodic checkpoints and a stop flag; leaves `state` where the run ended.
pub fn train_classifier_from(
    engine: &mut dyn StepEngine,
    (train, val): (&SpamDataset, &SpamDataset),
    opts: &ClassifierTrainOptions,
    control: &RunControl,
    state: &mut TrainState,
    on_event: impl FnMut(&ClassifierEvent),
) -> Result<RunEnd> {
    let plan = EpochPlan {
        num_epochs: opts.num_epochs,
        batch_size: opts.batch_size,
        eval_freq: opts.eval_freq,
        max_steps: opts.max_steps,
        seed: opts.seed,
        train_len: train.len(),
    };
    check_plan(
        "train_classifier_simple",
        &plan,
        opts.eval_iter,
        val.len(),
        "texts",
    )?;
    let val_batches: Vec<Vec<usize>> = val
        .batch_indices(opts.batch_size, None, false)
        .into_iter()
        .take(opts.eval_iter)
        .collect();
    let mut hooks = ClassifierHooks {
        engine,
        train,
        val,
        opts,
        val_batches,
        on_event,
    };
    let end = run_epochs(&plan, control, state, &mut hooks);
    hooks.engine.sync_to_cpu()?;
    end
}

/// Classification's part of the shared loop.
struct ClassifierHooks<'a, F> {
    engine: &'a mut dyn StepEngine,
    train: &'a SpamDataset,
    val: &'a SpamDataset,
    opts: &'a ClassifierTrainOptions,
    val_batches: Vec<Vec<usize>>,
    on_event: F,
}

impl<F: FnMut(&ClassifierEvent)> EpochHooks for ClassifierHooks<'_, F> {
    fn loss_name(&self) -> &'static str {
        "classification loss"
    }

    fn step(&mut self, idx: &[usize], dropout_seed: u64) -> Result<StepResult> {
        let batch = self.train.batch(idx);
        let stats = self
            .engine
            .train_step(&[batch], &[dropout_seed], None, self.opts.lr)?;
        Ok(StepResult {
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            tokens: idx.len() * self.train.max_length,
        })
    }

    fn stepped(&mut self, epoch: usize, step: usize, r: &StepResult, _step_secs: f64) {
        (self.on_event)(&ClassifierEvent::Step {
            epoch,
            step,
            loss: r.loss,
        });
    }

    fn eval(
        &mut self,
        epoch: usize,
        step: usize,
        shuffled: Vec<Vec<usize>>,
        state: &mut TrainState,
    ) -> Result<()> {
        let first: Vec<Vec<usize>> = shuffled.into_iter().take(self.opts.eval_iter).collect();
        let train_loss = mean_loss(self.engine, self.train, &first)?;
        let val_loss = mean_loss(self.engine, self.val, &self.val_batches)?;
        state.train_losses.push(train_loss);
        state.val_losses.push(val_loss);
        state.track_tokens_seen.push(state.tokens_seen);
        (self.on_event)(&ClassifierEvent::Eval {
            epoch,
            step,
            train_loss,
            val_loss,
        });
        Ok(())
    }

    fn epoch_end(&mut self, epoch: usize, rng: &mut Rng, state: &mut TrainState) -> Result<()> {
        let shuffled: Vec<Vec<usize>> =
            batch_order(self.train.len(), self.opts.batch_size, Some(rng), true)
                .into_iter()
                .take(self.opts.eval_iter)
                .collect();
        let train_accuracy = accuracy(self.engine, self.train, &shuffled)?;
        let val_accuracy = accuracy(self.engine, self.val, &self.val_batches)?;
        for (k, v) in [(TRAIN_ACCS, train_accuracy), (VAL_ACCS, val_accuracy)] {
            state.metrics.entry(k.to_string()).or_default().push(v);
        }
        (self.on_event)(&ClassifierEvent::EpochAccuracy {
            epoch,
            train_accuracy,
            val_accuracy,
        });
        Ok(())
    }

    fn save(&mut self, path: &Path, info: &RunInfo, state: &TrainState) -> Result<()> {
        self.engine.sync_to_cpu()?;
        save_finetune_checkpoint(
            path,
            self.engine.model(),
            self.engine.optimizer(),
            state,
            info,
            &spam_task(self.train.max_length),
            None,
        )
    }

    fn saved(&mut self, step: usize, path: &Path) {
        (self.on_event)(&ClassifierEvent::Saved {
            step,
            path: path.to_path_buf(),
        });
    }
}

/// The task a spam classifier's checkpoint records: the book's two labels and the padded
/// length of its training texts.
pub fn spam_task(max_length: usize) -> Task {
    Task::Classify {
        labels: SPAM_LABELS.iter().map(|s| s.to_string()).collect(),
        max_length: Some(max_length),
    }
}
