//! The loop every fine-tuning command shares. The book's `train_classifier_simple`, its
//! `train_model_simple` on instruction batches and `train_model_dpo_simple` have one skeleton:
//! epochs of shuffled drop-last batches drawn from one `Rng::new(seed)` stream; an evaluation
//! every `eval_freq` steps from step 0, which — as iterating the book's training loader afresh
//! does — draws a new shuffle of the training set; and something at each epoch's end. Here it is
//! written once, with what the book leaves out: the position kept in a [`TrainState`], periodic
//! checkpoints, and a stop flag, so a run can end anywhere and continue exactly.
//!
//! **Why a resume is exact.** Everything random is a function of the seed and the position. The
//! dropout masks of step `s` come from `(seed, s)`. The shuffles come from one stream whose
//! state at the start of each epoch is saved (`epoch_rng_state`); resuming mid-epoch restores
//! it, draws the epoch's order again, and replays the evaluation shuffles that the epoch's
//! finished steps drew. Then every later draw, step and evaluation is the one the uninterrupted
//! run makes.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::data::dataset::batch_order;
use crate::error::{Error, Result};
use crate::tensor::rng::{mix64, Rng};
use crate::train::checkpoint::RunInfo;
use crate::train::periodic::{stop_requested, PeriodicSaver};
use crate::train::{PeriodicSave, RunEnd, TrainState};

/// What stops or checkpoints a run from outside its loop. The default does neither.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Periodic checkpoints (`checkpoint-stepNNNNNNNN.safetensors`, resumable).
    pub save: Option<PeriodicSave>,
    /// Raised by a Ctrl-C handler: the step in progress finishes, then the run returns
    /// [`RunEnd::Stopped`].
    pub stop: Option<Arc<AtomicBool>>,
}

/// The shape of a run: what every fine-tuning command's options share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EpochPlan {
    pub num_epochs: usize,
    pub batch_size: usize,
    pub eval_freq: usize,
    pub max_steps: Option<usize>,
    pub seed: u64,
    /// Examples in the training set.
    pub train_len: usize,
}

/// What one optimizer step measured.
pub(crate) struct StepResult {
    pub loss: f64,
    /// The global gradient norm (NaN or infinite stops the run; the update must not have been
    /// applied then).
    pub grad_norm: f64,
    /// Tokens the step trained on.
    pub tokens: usize,
}

/// What a command does at each point of the shared loop.
pub(crate) trait EpochHooks {
    /// What the step's loss is called in errors ("training loss", "DPO loss").
    fn loss_name(&self) -> &'static str;
    /// One optimizer step on the training examples `idx`, dropout seeded by `dropout_seed`.
    /// A non-finite loss may return early (no backward, no update).
    fn step(&mut self, idx: &[usize], dropout_seed: u64) -> Result<StepResult>;
    /// After a finite step's bookkeeping (for progress events).
    fn stepped(&mut self, epoch: usize, step: usize, result: &StepResult, step_secs: f64);
    /// The evaluation after step `step`, given the fresh training shuffle it drew; records its
    /// metrics in `state`.
    fn eval(
        &mut self,
        epoch: usize,
        step: usize,
        shuffled: Vec<Vec<usize>>,
        state: &mut TrainState,
    ) -> Result<()>;
    /// After an epoch's last step; `rng` is the shuffling stream (a classifier's accuracy draws
    /// one more shuffle from it).
    fn epoch_end(&mut self, epoch: usize, rng: &mut Rng, state: &mut TrainState) -> Result<()>;
    /// Writes a resumable checkpoint of the run at `state` to `path`, with the run's metadata
    /// `info` (the periodic save's).
    fn save(&mut self, path: &Path, info: &RunInfo, state: &TrainState) -> Result<()>;
    /// A periodic checkpoint was written.
    fn saved(&mut self, _step: usize, _path: &Path) {}
}

/// The dropout seed of step `step` (the same on every device and after a resume).
pub(crate) fn step_dropout_seed(seed: u64, step: usize) -> u64 {
    mix64(seed ^ mix64(step as u64 + 1))
}

/// Runs `plan` from `state` (fresh: `TrainState::default()`; resumed: a checkpoint's) until all
/// epochs are done, `max_steps` is reached or the stop flag is raised, leaving `state` at the
/// position reached. A non-finite loss or gradient norm is an error naming the step; the newest
/// periodic checkpoint, if it holds the weights that diverged, is removed first.
pub(crate) fn run_epochs(
    plan: &EpochPlan,
    control: &RunControl,
    state: &mut TrainState,
    hooks: &mut dyn EpochHooks,
) -> Result<RunEnd> {
    let mut saver = PeriodicSaver::new(control.save.as_ref());
    let shuffle = |rng: &mut Rng| batch_order(plan.train_len, plan.batch_size, Some(rng), true);
    let fresh = state.global_step == 0 && state.epoch == 0 && state.batch_in_epoch == 0;
    let mut rng = if fresh {
        Rng::new(plan.seed)
    } else {
        Rng::from_state(state.epoch_rng_state)
    };
    while state.epoch < plan.num_epochs {
        let epoch = state.epoch;
        state.epoch_rng_state = rng.state();
        let order = shuffle(&mut rng);
        if state.batch_in_epoch > order.len() {
            return Err(Error::invalid(
                "resume",
                format!(
                    "the run is at step {} of epoch {}, which has only {} steps of {} examples: resume with the settings it was trained with",
                    state.batch_in_epoch,
                    epoch + 1,
                    order.len(),
                    plan.batch_size
                ),
            ));
        }
        // Resuming mid-epoch: replay the evaluation shuffles of the epoch's finished steps.
        let first_step = state
            .global_step
            .checked_sub(state.batch_in_epoch)
            .ok_or_else(|| {
                Error::invalid(
                    "resume",
                    format!(
                        "the position is inconsistent: step {} of the epoch after {} steps in all",
                        state.batch_in_epoch, state.global_step
                    ),
                )
            })?;
        for step in first_step..state.global_step {
            if step.is_multiple_of(plan.eval_freq) {
                shuffle(&mut rng);
            }
        }
        for idx in &order[state.batch_in_epoch..] {
            if plan.max_steps.is_some_and(|m| state.global_step >= m) {
                saver.proven();
                return Ok(RunEnd::MaxSteps);
            }
            if stop_requested(&control.stop) {
                saver.proven();
                return Ok(RunEnd::Stopped);
            }
            let step = state.global_step;
            let t0 = Instant::now();
            let result = hooks.step(idx, step_dropout_seed(plan.seed, step))?;
            for (what, value) in [
                (hooks.loss_name(), result.loss),
                ("gradient norm", result.grad_norm),
            ] {
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        what: format!("the {what} at step {step} (epoch {})", epoch + 1),
                        value,
                        note: saver.discard_unproven(),
                    });
                }
            }
            saver.proven();
            let step_secs = t0.elapsed().as_secs_f64();
            state.train_secs += step_secs;
            state.tokens_seen += result.tokens;
            state.session_tokens += result.tokens;
            state.examples_seen += idx.len();
            state.global_step += 1;
            state.batch_in_epoch += 1;
            hooks.stepped(epoch, step, &result, step_secs);
            if step.is_multiple_of(plan.eval_freq) {
                hooks.eval(epoch, step, shuffle(&mut rng), state)?;
                check_evaluation(state, step, epoch)?;
            }
            let saved: Option<PathBuf> = saver.save_if_due(state.global_step, |path, info| {
                hooks.save(path, info, state)
            })?;
            if let Some(path) = saved {
                hooks.saved(state.global_step, &path);
            }
        }
        hooks.epoch_end(epoch, &mut rng, state)?;
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.epoch_rng_state = rng.state();
    }
    saver.proven();
    Ok(RunEnd::Finished)
}

/// An evaluation that is not finite stops the run (and is never written into a checkpoint's
/// history, where it would not survive the JSON).
fn check_evaluation(state: &TrainState, step: usize, epoch: usize) -> Result<()> {
    let latest = [
        ("training loss", state.train_losses.last()),
        ("validation loss", state.val_losses.last()),
    ]
    .into_iter()
    .chain(state.metrics.iter().map(|(k, v)| (k.as_str(), v.last())));
    for (what, value) in latest {
        if let Some(&v) = value {
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    what: format!(
                        "the {what} evaluated after step {step} (epoch {})",
                        epoch + 1
                    ),
                    value: v,
                    note: String::new(),
                });
            }
        }
    }
    Ok(())
}

/// Checks what every command's options must satisfy before a run starts.
pub(crate) fn check_plan(
    who: &'static str,
    plan: &EpochPlan,
    eval_iter: usize,
    val_len: usize,
    what: &str,
) -> Result<()> {
    if plan.batch_size == 0 || plan.eval_freq == 0 || eval_iter == 0 {
        return Err(Error::invalid(
            who,
            "batch size, eval_freq and eval_iter must be at least 1",
        ));
    }
    if plan.train_len < plan.batch_size {
        return Err(Error::invalid(
            who,
            format!(
                "{} training {what} make no complete batch of {}",
                plan.train_len, plan.batch_size
            ),
        ));
    }
    if val_len == 0 {
        return Err(Error::invalid(who, "the validation split is empty"));
    }
    Ok(())
}
