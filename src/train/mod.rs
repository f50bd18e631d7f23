//! Pretraining (book §5.1–5.2): the loss of a batch and of a loader, and `train_model_simple` —
//! the book's loop with evaluation every `eval_freq` steps and a greedy sample after each epoch.
//! The loop reports through a callback, so the CLI can draw a progress bar and print the book's
//! lines without the library knowing about terminals.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub mod checkpoint;
pub mod data;
pub mod engine;
pub(crate) mod periodic;
pub mod plot;

pub use engine::{distributed_engine_for, engine_for, Engine, StepEngine, StepStats};
use periodic::{stop_requested, PeriodicSaver};

use crate::autograd::no_grad;
use crate::data::dataset::{Batch, EpochOrder};
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

/// [`calc_loss_loader`] over `batches` split across data-parallel ranks: each rank passes its
/// share of the first `slots` batches (`slots` the same on every rank) and gets the loss one
/// process would compute over the whole batches (in one process: `calc_loss_loader`'s).
pub fn loader_loss(
    model: &GptModel,
    batches: &[Batch],
    group: &dyn crate::dist::Collective,
    slots: usize,
) -> Result<f64> {
    if group.world_size() == 1 {
        return calc_loss_loader(model, batches, Some(slots));
    }
    let ctx = ForwardCtx::eval();
    let per_batch = batches
        .iter()
        .take(slots)
        .map(|b| {
            let loss = no_grad(|| calc_loss_batch(model, b, &ctx))?.item()? as f64;
            Ok((loss, b.inputs.shape()[0]))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::dist::mean_of_batch_means(group, &per_batch, slots)
}

/// What `train_model_simple` reports as it goes.
#[derive(Clone, Debug)]
pub enum TrainEvent {
    /// After each optimizer step.
    Step {
        epoch: usize,
        step: usize,
        /// The step's loss (the mean over its micro-batches).
        loss: f64,
        lr: f64,
        /// The global L2 norm of the gradients, before clipping.
        grad_norm: f64,
        step_secs: f64,
        /// Tokens the step trained on (all its micro-batches).
        tokens: usize,
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
    /// A periodic checkpoint was written.
    Saved { step: usize, path: PathBuf },
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
            TrainEvent::Step { .. } | TrainEvent::Saved { .. } => None,
        }
    }
}

/// Periodic checkpoints: every `every` optimizer steps, `dir/checkpoint-step00000100.safetensors`
/// (written atomically, after that step's evaluation), keeping the newest `keep_last`.
#[derive(Clone, Debug)]
pub struct PeriodicSave {
    pub dir: PathBuf,
    pub every: usize,
    /// Older periodic checkpoints beyond this many are deleted (None = keep all).
    pub keep_last: Option<usize>,
    /// Metadata written into every checkpoint (seed, tokenizer, data; see `checkpoint`).
    pub info: checkpoint::RunInfo,
}

impl PeriodicSave {
    /// The file of the periodic checkpoint after `step` optimizer steps.
    pub fn path_at(&self, steps_done: usize) -> PathBuf {
        self.dir
            .join(format!("checkpoint-step{steps_done:08}.safetensors"))
    }

    /// The periodic checkpoints in `dir`, oldest first.
    pub fn existing(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name().is_some_and(|n| {
                            let n = n.to_string_lossy();
                            n.starts_with("checkpoint-step") && n.ends_with(".safetensors")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }
}

/// Settings of `train_model_simple` (the book's arguments, plus a step cap, a schedule, clipping,
/// gradient accumulation, periodic checkpoints and a stop flag).
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
    /// Micro-batches per optimizer step (1 = the book's loop). Their gradients add up, each
    /// scaled by 1/N, so N micro-batches of B train as one batch of B·N would.
    pub grad_accum: usize,
    /// Periodic checkpoints (None = only what the caller saves at the end).
    pub save: Option<PeriodicSave>,
    /// Set from outside (a Ctrl-C handler) to stop after the step in progress.
    pub stop: Option<Arc<AtomicBool>>,
}

impl TrainOptions {
    /// The book's loop with these settings and everything added since switched off.
    pub fn book(
        num_epochs: usize,
        eval_freq: usize,
        eval_iter: usize,
        start_context: &str,
        seed: u64,
        schedule: LrSchedule,
    ) -> Self {
        TrainOptions {
            num_epochs,
            eval_freq,
            eval_iter,
            start_context: start_context.to_string(),
            max_steps: None,
            seed,
            schedule,
            clip: None,
            sample_tokens: 50,
            grad_accum: 1,
            save: None,
            stop: None,
        }
    }

    /// Optimizer steps in one epoch of `loader`: its batches, grouped by `grad_accum`.
    pub fn steps_per_epoch(&self, loader: &DataLoader) -> usize {
        loader.num_batches() / self.grad_accum.max(1)
    }
}

/// The dropout seed of micro-batch `micro` of optimizer step `step` on data-parallel rank
/// `rank`: a pure function of the run's seed, the rank and the position, so a resumed run (or
/// another device) draws the same masks, and each rank draws its own (rank 0's are the
/// single process's).
pub fn dropout_seed(seed: u64, rank: usize, step: usize, micro: usize) -> u64 {
    use crate::tensor::rng::mix64;
    let mut base = mix64(seed ^ step as u64);
    if rank > 0 {
        base = mix64(base ^ mix64(0x5241_4e4b ^ rank as u64));
    }
    if micro == 0 {
        base
    } else {
        mix64(base.wrapping_add(micro as u64))
    }
}

/// How a training run ended (every way keeps `state` exact for a resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// All epochs done.
    Finished,
    /// `max_steps` reached.
    MaxSteps,
    /// The stop flag was raised (Ctrl-C); the step in progress finished first.
    Stopped,
}

/// Where a run is, and what it measured: the book's three lists, plus the position a checkpoint
/// needs to resume exactly (the epoch, the steps taken within it, and the shuffling stream's
/// state at the start of that epoch).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainState {
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    pub track_tokens_seen: Vec<usize>,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Optimizer steps of the current epoch already taken.
    pub batch_in_epoch: usize,
    /// The training loader's shuffling state when the current epoch began (or begins, once
    /// an epoch has finished: the run's end leaves it ready for the next epoch).
    pub epoch_rng_state: u64,
    pub tokens_seen: usize,
    /// Training examples (sequences) seen; fine-tuning reports it.
    pub examples_seen: usize,
    /// Further metric series a run records besides the book's two losses, by name
    /// (a classifier's accuracies, DPO's rewards), saved with the checkpoint.
    pub metrics: std::collections::BTreeMap<String, Vec<f64>>,
    /// Seconds spent in training steps (forward, backward, update), this process only.
    pub train_secs: f64,
    /// Tokens trained on by this process (not restored by a resume).
    pub session_tokens: usize,
}

impl TrainState {
    /// Whether nothing has been trained yet (a fresh run, not a resume).
    fn is_fresh(&self) -> bool {
        self.global_step == 0 && self.epoch == 0 && self.batch_in_epoch == 0
    }
}

/// The book's `train_model_simple`: for each epoch, for each batch: zero grads, loss, backward,
/// step; every `eval_freq` steps evaluate train and validation loss on `eval_iter` batches; after
/// each epoch generate a sample. Starts from `state` (fresh: `TrainState::default()`; resumed:
/// from a checkpoint) and leaves it where the run stopped. A non-finite loss or gradient stops
/// the run with an error naming the step and the quantity, leaving `state` at the last good
/// step and the weights unchanged by the bad one.
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
) -> Result<RunEnd> {
    let mut engine = Engine::new(model, optimizer);
    train_with_engine(
        &mut engine,
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

/// The mean eval loss of the first `n` batches of a fresh pass over `loader` (drawing a shuffle
/// when it shuffles, as the book's evaluation does), making only those batches. In data-parallel
/// training each rank evaluates its share of those batches and the shares are combined into the
/// whole batches' losses ([`crate::dist::mean_of_batch_means`]).
fn eval_pass(engine: &mut dyn StepEngine, loader: &mut DataLoader, n: usize) -> Result<f64> {
    let order = loader.epoch_order();
    // The same on every rank (the global batches), however many of them this rank holds.
    let slots = n.min(loader.global_num_batches());
    let n = n.min(order.len());
    if n == 0 && engine.collective().world_size() == 1 {
        return Err(Error::invalid(
            "calc_loss_loader",
            "the loader has no batches",
        ));
    }
    let mut per_batch = Vec::with_capacity(n);
    for i in 0..n {
        let idx = order.batch(i);
        per_batch.push((engine.eval_loss(&loader.batch(idx)?)?, idx.len()));
    }
    crate::dist::mean_of_batch_means(engine.collective(), &per_batch, slots)
}

/// [`train_model_simple`] on any [`StepEngine`]: the autograd model on whichever device it lives.
pub fn train_with_engine(
    engine: &mut dyn StepEngine,
    train_loader: &mut DataLoader,
    val_loader: &mut DataLoader,
    opts: &TrainOptions,
    tokenizer: &BpeTokenizer,
    state: &mut TrainState,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<RunEnd> {
    if opts.grad_accum == 0 || opts.eval_freq == 0 {
        return Err(Error::invalid(
            "train",
            "grad_accum and eval_freq must be at least 1",
        ));
    }
    let group = engine.collective();
    if group.world_size() > 1 {
        // Every rank must take every step: loaders that give ranks different step counts (not
        // dropping the last batch) would leave one waiting in the gradient sum.
        let steps = crate::dist::all_gather_f64(group, opts.steps_per_epoch(train_loader) as f64)?;
        if steps.iter().any(|&s| s != steps[0]) {
            return Err(Error::Distributed(format!(
                "the ranks' training loaders make different numbers of steps per epoch ({steps:?}): data-parallel training loaders must drop the last incomplete batch"
            )));
        }
    }
    if opts.steps_per_epoch(train_loader) == 0 {
        return Err(Error::invalid(
            "train",
            format!(
                "{} training batches make no optimizer step of {} micro-batches",
                train_loader.num_batches(),
                opts.grad_accum
            ),
        ));
    }
    let result = train_loop(
        engine,
        train_loader,
        val_loader,
        opts,
        tokenizer,
        state,
        &mut on_event,
    );
    engine.sync_to_cpu()?;
    result
}

fn non_finite(what: String, value: f64) -> Error {
    Error::NonFinite {
        what,
        value,
        note: String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn train_loop(
    engine: &mut dyn StepEngine,
    train_loader: &mut DataLoader,
    val_loader: &mut DataLoader,
    opts: &TrainOptions,
    tokenizer: &BpeTokenizer,
    state: &mut TrainState,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<RunEnd> {
    let context_size = engine.model().cfg.context_length;
    let start_ids = tokenizer.encode_with_special(&opts.start_context, &["<|endoftext|>"])?;
    let accum = opts.grad_accum;
    let (rank, world) = {
        let g = engine.collective();
        (g.rank(), g.world_size())
    };
    // Rank 0 alone samples and saves; every rank steps and evaluates.
    let mut saver = PeriodicSaver::new(opts.save.as_ref().filter(|_| rank == 0));
    if state.is_fresh() {
        state.epoch_rng_state = train_loader.rng_state();
    }
    while state.epoch < opts.num_epochs {
        // The stream is where this epoch began (a fresh run, the previous epoch's end, or a
        // checkpoint's saved state — which is why a resume after finished epochs is exact).
        train_loader.set_rng_state(state.epoch_rng_state);
        let epoch = state.epoch;
        let order: EpochOrder = train_loader.epoch_order();
        let steps = order.len() / accum;
        if state.batch_in_epoch > 0 {
            // Resuming mid-epoch: replay the shuffles that the evaluations of this epoch's
            // finished steps drew, so the shuffling stream is exactly where it was.
            let first_step = state.global_step - state.batch_in_epoch;
            for step in first_step..state.global_step {
                if step.is_multiple_of(opts.eval_freq) {
                    train_loader.epoch_order();
                }
            }
        }
        for step_in_epoch in state.batch_in_epoch..steps {
            if opts.max_steps.is_some_and(|m| state.global_step >= m) {
                saver.proven();
                return Ok(RunEnd::MaxSteps);
            }
            // A stop asked of any rank stops them all after the same step.
            if crate::dist::any_rank(engine.collective(), stop_requested(&opts.stop))? {
                saver.proven();
                return Ok(RunEnd::Stopped);
            }
            let step = state.global_step;
            let t0 = Instant::now();
            let lr = opts.schedule.lr_at(step);
            let micro = (0..accum)
                .map(|k| train_loader.batch(order.batch(step_in_epoch * accum + k)))
                .collect::<Result<Vec<_>>>()?;
            let seeds: Vec<u64> = (0..accum)
                .map(|k| dropout_seed(opts.seed, rank, step, k))
                .collect();
            let stats = engine.train_step(&micro, &seeds, opts.clip, lr)?;
            let at = format!("step {step} (epoch {})", epoch + 1);
            if !stats.loss.is_finite() || !stats.grad_norm.is_finite() {
                let note = saver.discard_unproven();
                let (what, value) = if stats.loss.is_finite() {
                    (
                        format!("the gradient norm at {at} (the update was not applied)"),
                        stats.grad_norm,
                    )
                } else {
                    (format!("the training loss at {at}"), stats.loss)
                };
                return Err(Error::NonFinite { what, value, note });
            }
            // A finite step proves the newest periodic checkpoint sound: older ones may go.
            saver.proven();
            let step_secs = t0.elapsed().as_secs_f64();
            // All ranks' tokens (every rank's micro-batches have the same size).
            let tokens: usize = micro.iter().map(|b| b.inputs.len()).sum::<usize>() * world;
            state.train_secs += step_secs;
            state.tokens_seen += tokens;
            state.session_tokens += tokens;
            state.global_step += 1;
            state.batch_in_epoch += 1;
            on_event(&TrainEvent::Step {
                epoch,
                step,
                loss: stats.loss,
                lr,
                grad_norm: stats.grad_norm,
                step_secs,
                tokens,
            });
            if step.is_multiple_of(opts.eval_freq) {
                // As the book: iterate the (shuffled) training loader afresh, which draws a new
                // order, and take its first `eval_iter` batches; the validation loader is not
                // shuffled.
                let train_loss = eval_pass(engine, train_loader, opts.eval_iter)?;
                let val_loss = eval_pass(engine, val_loader, opts.eval_iter)?;
                for (what, v) in [("training", train_loss), ("validation", val_loss)] {
                    if !v.is_finite() {
                        return Err(non_finite(
                            format!("the {what} loss evaluated after {at}"),
                            v,
                        ));
                    }
                }
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
            if world > 1
                && opts
                    .save
                    .as_ref()
                    .is_some_and(|s| state.global_step.is_multiple_of(s.every))
            {
                // Before rank 0 writes a checkpoint every rank will resume from.
                crate::dist::check_in_sync(
                    engine.collective(),
                    &engine.model().parameters(),
                    &format!("after {at}"),
                )?;
            }
            let saved = saver.save_if_due(state.global_step, |path, info| {
                engine.sync_to_cpu()?;
                checkpoint::save_run_checkpoint(
                    path,
                    engine.model(),
                    engine.optimizer(),
                    state,
                    info,
                )
            })?;
            if let Some(path) = saved {
                on_event(&TrainEvent::Saved {
                    step: state.global_step,
                    path,
                });
            }
        }
        engine.sync_to_cpu()?;
        if rank == 0 {
            let ids =
                generate_text_simple(engine.model(), &start_ids, opts.sample_tokens, context_size)?;
            let text = tokenizer.decode(&ids)?.replace('\n', " ");
            on_event(&TrainEvent::Sample { epoch, text });
        }
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.epoch_rng_state = train_loader.rng_state();
    }
    saver.proven();
    Ok(RunEnd::Finished)
}
