//! Pretraining (book §5.1–5.2): the loss of a batch and of a loader, and `train_model_simple` —
//! the book's loop with evaluation every `eval_freq` steps and a greedy sample after each epoch.
//! The loop reports through a callback, so the CLI can draw a progress bar and print the book's
//! lines without the library knowing about terminals.

use std::time::Instant;

pub mod checkpoint;
pub mod engine;
pub mod plot;

pub use engine::{engine_for, Engine, StepEngine};

use crate::autograd::no_grad;
use crate::data::dataset::Batch;
use crate::data::{BpeTokenizer, DataLoader};
use crate::error::{Error, Result};
use crate::gpt::{generate_text_simple, GptModel};
use crate::nn::ForwardCtx;
use crate::optim::{AdamW, LrSchedule};
use crate::tensor::Tensor;

/// The mean cross-entropy of the model's next-token predictions on one batch.
pub fn calc_loss_batch(model: &GptModel, batch: &Batch, ctx: &ForwardCtx) -> Result<Tensor> {
    model
        .forward(&batch.inputs, ctx)?
        .cross_entropy(&batch.targets)
}

/// The average batch loss over the first `num_batches` batches (all if `None`), in eval mode
/// and under `no_grad` (the book's `calc_loss_loader`).
pub fn calc_loss_loader(
    model: &GptModel,
    batches: &[Batch],
    num_batches: Option<usize>,
) -> Result<f64> {
    if batches.is_empty() {
        return Err(Error::invalid(
            "calc_loss_loader",
            "the loader has no batches",
        ));
    }
    let n = num_batches.unwrap_or(batches.len()).min(batches.len());
    let ctx = ForwardCtx::eval();
    let mut total = 0.0;
    for b in &batches[..n] {
        total += no_grad(|| calc_loss_batch(model, b, &ctx))?.item()? as f64;
    }
    Ok(total / n as f64)
}

/// What `train_model_simple` reports as it goes.
#[derive(Clone, Debug)]
pub enum TrainEvent {
    /// After each optimizer step.
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        lr: f64,
        step_secs: f64,
    },
    /// Every `eval_freq` steps (the book's `Ep 1 (Step 000000): ...` line).
    Eval {
        epoch: usize,
        step: usize,
        train_loss: f64,
        val_loss: f64,
        tokens_seen: usize,
    },
    /// After each epoch: a greedy continuation of the start context.
    Sample { epoch: usize, text: String },
}

impl TrainEvent {
    /// The book's printed line for an eval or sample event.
    pub fn book_line(&self) -> Option<String> {
        match self {
            TrainEvent::Eval {
                epoch,
                step,
                train_loss,
                val_loss,
                ..
            } => Some(format!(
                "Ep {} (Step {step:06}): Train loss {train_loss:.3}, Val loss {val_loss:.3}",
                epoch + 1
            )),
            TrainEvent::Sample { text, .. } => Some(text.clone()),
            TrainEvent::Step { .. } => None,
        }
    }
}

/// Settings of `train_model_simple` (the book's arguments, plus a step cap, a schedule, clipping).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub num_epochs: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub start_context: String,
    /// Stop after this many optimizer steps (None = all epochs).
    pub max_steps: Option<usize>,
    /// Seeds the dropout masks (initialisation and shuffling have their own seeds).
    pub seed: u64,
    pub schedule: LrSchedule,
    /// Global gradient-norm clipping (None = off, as the book's ch05).
    pub clip: Option<f64>,
    /// Tokens to generate in each epoch's sample.
    pub sample_tokens: usize,
}

/// Where a run is, and what it measured: the book's three lists, plus the position a checkpoint
/// needs to resume exactly (the epoch, the batch within it, and the shuffling stream's state at
/// the start of that epoch).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainState {
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    pub track_tokens_seen: Vec<usize>,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already trained on.
    pub batch_in_epoch: usize,
    /// The training loader's shuffling state when the current epoch began.
    pub epoch_rng_state: u64,
    pub tokens_seen: usize,
    /// Seconds spent in training steps (forward, backward, update), this process only.
    pub train_secs: f64,
}

/// The book's `train_model_simple`: for each epoch, for each batch: zero grads, loss, backward,
/// step; every `eval_freq` steps evaluate train and validation loss on `eval_iter` batches; after
/// each epoch generate a sample. Starts from `state` (fresh: `TrainState::default()`; resumed:
/// from a checkpoint) and leaves it where the run stopped. A non-finite loss stops the run with an
/// error naming the step, leaving `state` at the last good step.
///
/// Evaluation follows the book: it iterates the shuffled training loader afresh (drawing a new
/// order from the shuffling stream) and averages its first `eval_iter` batches. A resumed run
/// replays those draws, so it continues exactly.
#[allow(clippy::too_many_arguments)] // the book's arguments plus the resumable state and the event sink
pub fn train_model_simple(
    model: &GptModel,
    optimizer: &mut AdamW,
    train_loader: &mut DataLoader,
    val_loader: &mut DataLoader,
    opts: &TrainOptions,
    tokenizer: &BpeTokenizer,
    state: &mut TrainState,
    on_event: impl FnMut(&TrainEvent),
) -> Result<()> {
    let mut engine = Engine::new(model, optimizer);
    train_with_engine(
        &mut engine,
        model,
        train_loader,
        val_loader,
        opts,
        tokenizer,
        state,
        on_event,
    )
}

/// The average eval-mode loss of the first `num_batches` batches, through an engine.
pub fn engine_loss_loader(
    engine: &mut dyn StepEngine,
    batches: &[Batch],
    num_batches: usize,
) -> Result<f64> {
    if batches.is_empty() {
        return Err(Error::invalid(
            "calc_loss_loader",
            "the loader has no batches",
        ));
    }
    let n = num_batches.min(batches.len());
    let mut total = 0.0;
    for b in &batches[..n] {
        total += engine.eval_loss(b)?;
    }
    Ok(total / n as f64)
}

/// [`train_model_simple`] on any [`StepEngine`] (the CPU autograd or a GPU). `model` is the CPU
/// copy used for the per-epoch samples; the engine syncs it before each sample and before
/// returning, so a checkpoint saved afterwards holds the trained weights and optimizer state.
#[allow(clippy::too_many_arguments)]
pub fn train_with_engine(
    engine: &mut dyn StepEngine,
    model: &GptModel,
    train_loader: &mut DataLoader,
    val_loader: &mut DataLoader,
    opts: &TrainOptions,
    tokenizer: &BpeTokenizer,
    state: &mut TrainState,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<()> {
    let result = train_loop(
        engine,
        model,
        train_loader,
        val_loader,
        opts,
        tokenizer,
        state,
        &mut on_event,
    );
    // Weights that gave a non-finite loss were never applied (the engine skips that update), so
    // syncing is safe on every path.
    engine.sync_to_cpu()?;
    result
}

#[allow(clippy::too_many_arguments)]
fn train_loop(
    engine: &mut dyn StepEngine,
    model: &GptModel,
    train_loader: &mut DataLoader,
    val_loader: &mut DataLoader,
    opts: &TrainOptions,
    tokenizer: &BpeTokenizer,
    state: &mut TrainState,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<()> {
    let context_size = model.cfg.context_length;
    let start_ids = tokenizer.encode_with_special(&opts.start_context, &["<|endoftext|>"])?;
    while state.epoch < opts.num_epochs {
        if state.batch_in_epoch == 0 {
            state.epoch_rng_state = train_loader.rng_state();
        } else {
            train_loader.set_rng_state(state.epoch_rng_state);
        }
        let epoch = state.epoch;
        let batches = train_loader.epoch();
        if state.batch_in_epoch > 0 {
            // Resuming mid-epoch: replay the shuffles that the evaluations of this epoch's
            // finished steps drew, so the shuffling stream is exactly where it was.
            let first_step = state.global_step - state.batch_in_epoch;
            for step in first_step..state.global_step {
                if step.is_multiple_of(opts.eval_freq) {
                    train_loader.epoch();
                }
            }
        }
        for batch in batches.iter().skip(state.batch_in_epoch) {
            if opts.max_steps.is_some_and(|m| state.global_step >= m) {
                return Ok(());
            }
            let step = state.global_step;
            let t0 = Instant::now();
            let lr = opts.schedule.lr_at(step);
            let dropout_seed = crate::tensor::rng::mix64(opts.seed ^ step as u64);
            let loss_value = engine.train_step(batch, dropout_seed, opts.clip, lr)?;
            if !loss_value.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("the training loss at step {step} (epoch {})", epoch + 1),
                    value: loss_value,
                });
            }
            let step_secs = t0.elapsed().as_secs_f64();
            state.train_secs += step_secs;
            state.tokens_seen += batch.inputs.len();
            state.global_step += 1;
            state.batch_in_epoch += 1;
            on_event(&TrainEvent::Step {
                epoch,
                step,
                loss: loss_value,
                lr,
                step_secs,
            });
            if step.is_multiple_of(opts.eval_freq) {
                // As the book: iterate the (shuffled) training loader afresh, which draws a new
                // order, and take its first `eval_iter` batches; the validation loader is not
                // shuffled.
                let train_loss = engine_loss_loader(engine, &train_loader.epoch(), opts.eval_iter)?;
                let val_loss = engine_loss_loader(engine, &val_loader.epoch(), opts.eval_iter)?;
                state.train_losses.push(train_loss);
                state.val_losses.push(val_loss);
                state.track_tokens_seen.push(state.tokens_seen);
                on_event(&TrainEvent::Eval {
                    epoch,
                    step,
                    train_loss,
                    val_loss,
                    tokens_seen: state.tokens_seen,
                });
            }
        }
        engine.sync_to_cpu()?;
        let ids = generate_text_simple(model, &start_ids, opts.sample_tokens, context_size)?;
        let text = tokenizer.decode(&ids)?.replace('\n', " ");
        on_event(&TrainEvent::Sample { epoch, text });
        state.epoch += 1;
        state.batch_in_epoch = 0;
    }
    Ok(())
}
