//! The book's DPO training (chapter 7 bonus): the preference dataset and its loaders, one DPO
//! step (policy forward on the chosen and the rejected answers, the frozen reference's under
//! `no_grad`, the loss, backward, AdamW), the book's evaluation of loss and rewards on a few
//! training and validation batches, and the reference model itself — a frozen copy, or with
//! LoRA the same base weights with the adapters switched off.

use std::path::Path;

use super::epochs::{check_plan, run_epochs, EpochHooks, EpochPlan, RunControl, StepResult};
use super::instruct_format::InstructFormat;
use super::instruct_train::respond;
use super::instruction_data::InstructionEntry;
use super::preference_data::{
    collate_preferences, encode_preference, EncodedPreference, PreferenceBatch, PreferenceEntry,
};
use crate::autograd::no_grad;
use crate::data::dataset::batch_order;
use crate::data::BpeTokenizer;
use crate::error::{Error, Result};
use crate::gpt::GptModel;
use crate::nn::ForwardCtx;
use crate::ops::dpo::dpo_loss;
use crate::ops::embedding::Ids;
use crate::optim::{grad_norm, AdamW};
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;
use crate::train::checkpoint::{save_finetune_checkpoint, RunInfo, Task};
use crate::train::{RunEnd, TrainState};

/// The book's `PreferenceDataset`: every entry tokenized once.
#[derive(Clone, Debug)]
pub struct PreferenceDataset {
    pub items: Vec<EncodedPreference>,
}

impl PreferenceDataset {
    pub fn new(entries: &[PreferenceEntry], tok: &BpeTokenizer) -> Result<Self> {
        Ok(PreferenceDataset {
            items: entries
                .iter()
                .map(|e| encode_preference(e, tok))
                .collect::<Result<_>>()?,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items `idx` collated as the book's `custom_collate_fn` (prompt tokens masked).
    pub fn batch(&self, idx: &[usize], allowed_max_length: usize) -> Result<PreferenceBatch> {
        let items: Vec<EncodedPreference> = idx.iter().map(|&i| self.items[i].clone()).collect();
        collate_preferences(&items, Some(allowed_max_length), true)
    }

    /// How many entries leave no response token inside `allowed_max_length` (their prompt fills
    /// it): a batch holding one is refused, so a run checks this first.
    pub fn too_long(&self, allowed_max_length: usize) -> usize {
        self.items
            .iter()
            .filter(|e| {
                // The collate masks the first prompt_len + 2 positions; position 0 never counts.
                let first = (e.prompt.len() + 2).max(1);
                first >= allowed_max_length.min(e.chosen.len())
                    || first >= allowed_max_length.min(e.rejected.len())
            })
            .count()
    }
}

/// The frozen reference policy: with LoRA adapters, the same model with every adapter switched
/// off (a shallow copy: the base weights are shared, not copied); otherwise a copy of the
/// weights as they are now. Its parameters require no gradient either way.
pub fn reference_model(policy: &GptModel) -> Result<GptModel> {
    if policy.has_lora() {
        return Ok(policy.without_lora());
    }
    // Fresh tensors with the policy's values (read back from wherever they live), then moved to
    // the policy's device.
    let copy = GptModel::new_from(&policy.cfg, &mut Rng::new(0))?;
    let values: std::collections::HashMap<String, Tensor> =
        policy.named_parameters().into_iter().collect();
    copy.load_named(|name| {
        values
            .get(name)
            .and_then(|t| t.value().ok())
            .map(Tensor::from_array)
    })?;
    copy.to_device(policy.device())?;
    copy.freeze_all();
    Ok(copy)
}

/// One batch's DPO loss and rewards.
pub struct DpoBatchLoss {
    /// Differentiable in the policy (a scalar).
    pub loss: Tensor,
    pub chosen_rewards: f64,
    pub rejected_rewards: f64,
}

fn rows_to_ids(rows: &[Vec<i64>]) -> Result<Ids> {
    Ids::from_rows(rows)
}

/// A model's mean log-probabilities of a batch's chosen and rejected answers (`ctx`'s dropout).
fn answer_logprobs(
    m: &GptModel,
    batch: &PreferenceBatch,
    ctx: &ForwardCtx,
) -> Result<(Tensor, Tensor)> {
    let logprobs = |ids: &[Vec<i64>], mask: &[Vec<bool>]| {
        let ids = rows_to_ids(ids)?;
        m.forward(&ids, ctx)?.sequence_logprobs(&ids, Some(mask))
    };
    Ok((
        logprobs(&batch.chosen, &batch.chosen_mask)?,
        logprobs(&batch.rejected, &batch.rejected_mask)?,
    ))
}

/// The frozen reference's log-probabilities of a batch's answers (eval mode, under `no_grad`):
/// what a DPO loss compares the policy's with. They never change, so a fixed batch's can be
/// computed once ([`dpo_metrics_cached`]).
pub fn reference_logprobs(
    reference: &GptModel,
    batch: &PreferenceBatch,
) -> Result<(Tensor, Tensor)> {
    no_grad(|| answer_logprobs(reference, batch, &ForwardCtx::eval()))
}

/// The book's `compute_dpo_loss_batch`: the policy's log-probabilities of the chosen and the
/// rejected answers (with `ctx`'s dropout), the reference's under `no_grad`, and the loss.
pub fn dpo_batch_loss(
    policy: &GptModel,
    reference: &GptModel,
    batch: &PreferenceBatch,
    beta: f64,
    ctx: &ForwardCtx,
) -> Result<DpoBatchLoss> {
    let (rc, rr) = reference_logprobs(reference, batch)?;
    dpo_batch_loss_against(policy, (&rc, &rr), batch, beta, ctx)
}

/// [`dpo_batch_loss`] given the reference's log-probabilities of the batch.
fn dpo_batch_loss_against(
    policy: &GptModel,
    (rc, rr): (&Tensor, &Tensor),
    batch: &PreferenceBatch,
    beta: f64,
    ctx: &ForwardCtx,
) -> Result<DpoBatchLoss> {
    let (pc, pr) = answer_logprobs(policy, batch, ctx)?;
    let out = dpo_loss(&pc, &pr, rc, rr, beta)?;
    Ok(DpoBatchLoss {
        loss: out.loss,
        chosen_rewards: out.chosen_rewards,
        rejected_rewards: out.rejected_rewards,
    })
}

/// Mean loss and rewards over batches (the book's `compute_dpo_loss_loader`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DpoMetrics {
    pub loss: f64,
    pub chosen_rewards: f64,
    pub rejected_rewards: f64,
}

impl DpoMetrics {
    /// Chosen minus rejected reward: how much more the policy (relative to the reference) favours
    /// the preferred answers.
    pub fn margin(&self) -> f64 {
        self.chosen_rewards - self.rejected_rewards
    }
}

/// The policy's metrics (eval mode, nothing recorded) over `batches`.
pub fn dpo_metrics(
    policy: &GptModel,
    reference: &GptModel,
    batches: &[PreferenceBatch],
    beta: f64,
) -> Result<DpoMetrics> {
    let cached = batches
        .iter()
        .map(|b| reference_logprobs(reference, b))
        .collect::<Result<Vec<_>>>()?;
    dpo_metrics_cached(policy, batches, &cached, beta)
}

/// [`dpo_metrics`] with the reference's log-probabilities of each batch already computed (the
/// fixed validation batches': half of each evaluation's forward passes saved).
pub fn dpo_metrics_cached(
    policy: &GptModel,
    batches: &[PreferenceBatch],
    reference: &[(Tensor, Tensor)],
    beta: f64,
) -> Result<DpoMetrics> {
    if batches.is_empty() || batches.len() != reference.len() {
        return Err(Error::invalid(
            "dpo_metrics",
            "no batches to evaluate, or not one reference per batch",
        ));
    }
    let mut m = DpoMetrics::default();
    for (b, (rc, rr)) in batches.iter().zip(reference) {
        let eval = ForwardCtx::eval();
        let out = no_grad(|| dpo_batch_loss_against(policy, (rc, rr), b, beta, &eval))?;
        m.loss += out.loss.item()? as f64;
        m.chosen_rewards += out.chosen_rewards;
        m.rejected_rewards += out.rejected_rewards;
    }
    let n = batches.len() as f64;
    Ok(DpoMetrics {
        loss: m.loss / n,
        chosen_rewards: m.chosen_rewards / n,
        rejected_rewards: m.rejected_rewards / n,
    })
}

/// Settings of [`train_dpo`] (the book: 1 epoch, batch 8, β 0.1, AdamW lr 5e-6 wd 0.01, eval
/// every 5 steps on 5 batches).
#[derive(Clone, Debug)]
pub struct DpoTrainOptions {
    pub num_epochs: usize,
    pub batch_size: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub lr: f64,
    pub beta: f64,
    pub seed: u64,
    pub max_steps: Option<usize>,
    /// The book's `allowed_max_length` (1024), capped at the model's context.
    pub allowed_max_length: usize,
    /// The entry whose response is sampled after each epoch (the book: the first validation
    /// entry).
    pub sample_entry: Option<InstructionEntry>,
    pub sample_tokens: usize,
}

/// What a DPO run reports as it goes.
#[derive(Clone, Debug)]
pub enum DpoEvent {
    /// After each optimizer step.
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        step_secs: f64,
    },
    /// Every `eval_freq` steps, from step 0.
    Eval {
        epoch: usize,
        step: usize,
        train: DpoMetrics,
        val: DpoMetrics,
    },
    /// After each epoch: the policy's greedy response to the sample entry.
    Sample { epoch: usize, text: String },
    /// A periodic checkpoint was written after `step` steps.
    Saved {
        step: usize,
        path: std::path::PathBuf,
    },
}

impl DpoEvent {
    /// The book's printed line.
    pub fn book_line(&self) -> Option<String> {
        match self {
            DpoEvent::Eval {
                epoch,
                step,
                train,
                val,
            } => Some(format!(
                "Ep {} (Step {step:06}): Train loss {:.3}, Val loss {:.3}, Train reward margins {:.3}, Val reward margins {:.3}",
                epoch + 1,
                train.loss,
                val.loss,
                train.margin(),
                val.margin()
            )),
            DpoEvent::Sample { text, .. } => Some(text.clone()),
            DpoEvent::Step { .. } | DpoEvent::Saved { .. } => None,
        }
    }
}

/// One evaluation of a DPO run.
#[derive(Clone, Copy, Debug)]
pub struct DpoEval {
    pub step: usize,
    /// Tokens trained on so far (chosen sequences, padded, as the book counts).
    pub tokens_seen: usize,
    pub train: DpoMetrics,
    pub val: DpoMetrics,
}

/// What a DPO run measured.
#[derive(Clone, Debug, Default)]
pub struct DpoRun {
    /// Every evaluation.
    pub evals: Vec<DpoEval>,
    pub steps: usize,
    pub tokens_seen: usize,
    pub examples_seen: usize,
    pub train_secs: f64,
}

/// The metric series a DPO run keeps in [`TrainState::metrics`] besides the two losses (which
/// are the book's `train_losses`/`val_losses`).
const EVAL_STEPS: &str = "eval_steps";
const REWARDS: [&str; 4] = [
    "train_chosen_rewards",
    "train_rejected_rewards",
    "val_chosen_rewards",
    "val_rejected_rewards",
];

impl DpoRun {
    /// The run's measurements so far, from its state.
    pub fn from_state(state: &TrainState) -> Self {
        let series = |k: &str| state.metrics.get(k).cloned().unwrap_or_default();
        let steps = series(EVAL_STEPS);
        let [tc, tr, vc, vr] = REWARDS.map(series);
        let evals = (0..steps.len().min(state.train_losses.len()))
            .map(|i| DpoEval {
                step: steps[i] as usize,
                tokens_seen: state.track_tokens_seen.get(i).copied().unwrap_or(0),
                train: DpoMetrics {
                    loss: state.train_losses[i],
                    chosen_rewards: tc.get(i).copied().unwrap_or(f64::NAN),
                    rejected_rewards: tr.get(i).copied().unwrap_or(f64::NAN),
                },
                val: DpoMetrics {
                    loss: state.val_losses.get(i).copied().unwrap_or(f64::NAN),
                    chosen_rewards: vc.get(i).copied().unwrap_or(f64::NAN),
                    rejected_rewards: vr.get(i).copied().unwrap_or(f64::NAN),
                },
            })
            .collect();
        DpoRun {
            evals,
            steps: state.global_step,
            tokens_seen: state.tokens_seen,
            examples_seen: state.examples_seen,
            train_secs: state.train_secs,
        }
    }
}

/// The two models of a DPO run, on one device.
#[derive(Clone, Copy)]
pub struct DpoModels<'a> {
    /// The model being trained.
    pub policy: &'a GptModel,
    /// The frozen model it is measured against ([`reference_model`]).
    pub reference: &'a GptModel,
}

/// The book's `train_model_dpo_simple`: for each shuffled batch (drop_last), the DPO loss of the
/// policy against `reference`, backward, AdamW at `opts.lr`; every `eval_freq` steps (from step 0)
/// the mean loss and rewards of `eval_iter` training batches (a fresh shuffle) and validation
/// batches; after each epoch the policy's response to the sample entry. `policy` and `reference`
/// must live on one device, with `optimizer` following the policy's parameters there.
pub fn train_dpo(
    models: DpoModels<'_>,
    optimizer: &mut AdamW,
    train: &PreferenceDataset,
    val: &PreferenceDataset,
    tok: &BpeTokenizer,
    opts: &DpoTrainOptions,
    on_event: impl FnMut(&DpoEvent),
) -> Result<DpoRun> {
    let mut state = TrainState::default();
    let data = DpoData { train, val, tok };
    train_dpo_from(
        models,
        optimizer,
        data,
        opts,
        &RunControl::default(),
        &mut state,
        on_event,
    )?;
    Ok(DpoRun::from_state(&state))
}

/// The data of a DPO run: both splits and the tokenizer of the samples.
#[derive(Clone, Copy)]
pub struct DpoData<'a> {
    pub train: &'a PreferenceDataset,
    pub val: &'a PreferenceDataset,
    pub tok: &'a BpeTokenizer,
}

/// [`train_dpo`] from `state` (a fresh one, or a checkpoint's to resume), with periodic
/// checkpoints (holding the reference too, unless it is the policy's base under LoRA) and a stop
/// flag; leaves `state` where the run ended, and says how it ended.
pub fn train_dpo_from(
    models: DpoModels<'_>,
    optimizer: &mut AdamW,
    data: DpoData<'_>,
    opts: &DpoTrainOptions,
    control: &RunControl,
    state: &mut TrainState,
    on_event: impl FnMut(&DpoEvent),
) -> Result<RunEnd> {
    let DpoData { train, val, tok } = data;
    let plan = EpochPlan {
        num_epochs: opts.num_epochs,
        batch_size: opts.batch_size,
        eval_freq: opts.eval_freq,
        max_steps: opts.max_steps,
        seed: opts.seed,
        train_len: train.len(),
    };
    check_plan("train_dpo", &plan, opts.eval_iter, val.len(), "pairs")?;
    let policy = models.policy;
    let max_len = opts.allowed_max_length.min(policy.cfg.context_length);
    for (what, d) in [("training", train), ("validation", val)] {
        let n = d.too_long(max_len);
        if n > 0 {
            return Err(Error::invalid(
                "train_dpo",
                format!(
                    "{n} {what} pairs have prompts that fill the allowed length of {max_len} tokens, leaving no response to score; raise --allowed-max-length (at most the context, {}) or drop them",
                    policy.cfg.context_length
                ),
            ));
        }
    }
    let val_batches = batch_order(val.len(), opts.batch_size, None, false)
        .into_iter()
        .take(opts.eval_iter)
        .map(|idx| val.batch(&idx, max_len))
        .collect::<Result<Vec<_>>>()?;
    let val_reference = val_batches
        .iter()
        .map(|b| reference_logprobs(models.reference, b))
        .collect::<Result<Vec<_>>>()?;
    let mut hooks = DpoHooks {
        models,
        params: policy.parameters(),
        optimizer,
        train,
        tok,
        opts,
        max_len,
        val_batches,
        val_reference,
        on_event,
    };
    run_epochs(&plan, control, state, &mut hooks)
}

/// DPO's part of the shared loop.
struct DpoHooks<'a, F> {
    models: DpoModels<'a>,
    params: Vec<Tensor>,
    optimizer: &'a mut AdamW,
    train: &'a PreferenceDataset,
    tok: &'a BpeTokenizer,
    opts: &'a DpoTrainOptions,
    max_len: usize,
    val_batches: Vec<PreferenceBatch>,
    /// The reference's log-probabilities of the fixed validation batches, computed once.
    val_reference: Vec<(Tensor, Tensor)>,
    on_event: F,
}

impl<F: FnMut(&DpoEvent)> EpochHooks for DpoHooks<'_, F> {
    fn loss_name(&self) -> &'static str {
        "DPO loss"
    }

    fn step(&mut self, idx: &[usize], dropout_seed: u64) -> Result<StepResult> {
        let DpoModels { policy, reference } = self.models;
        let batch = self.train.batch(idx, self.max_len)?;
        let tokens = batch.chosen.iter().map(Vec::len).sum::<usize>();
        self.optimizer.zero_grad();
        let ctx = ForwardCtx::train(dropout_seed);
        let out = dpo_batch_loss(policy, reference, &batch, self.opts.beta, &ctx)?;
        let loss = out.loss.item()? as f64;
        if !loss.is_finite() {
            return Ok(StepResult {
                loss,
                grad_norm: f64::NAN,
                tokens,
            });
        }
        out.loss.backward()?;
        let grad_norm = grad_norm(&self.params)?;
        // A non-finite gradient stops the run with the update not applied.
        if grad_norm.is_finite() {
            self.optimizer.step_with_lr(self.opts.lr)?;
        }
        Ok(StepResult {
            loss,
            grad_norm,
            tokens,
        })
    }

    fn stepped(&mut self, epoch: usize, step: usize, r: &StepResult, step_secs: f64) {
        (self.on_event)(&DpoEvent::Step {
            epoch,
            step,
            loss: r.loss,
            step_secs,
        });
    }

    fn eval(
        &mut self,
        epoch: usize,
        step: usize,
        shuffled: Vec<Vec<usize>>,
        state: &mut TrainState,
    ) -> Result<()> {
        let DpoModels { policy, reference } = self.models;
        let train_batches = shuffled
            .iter()
            .take(self.opts.eval_iter)
            .map(|idx| self.train.batch(idx, self.max_len))
            .collect::<Result<Vec<_>>>()?;
        let t = dpo_metrics(policy, reference, &train_batches, self.opts.beta)?;
        let v = dpo_metrics_cached(
            policy,
            &self.val_batches,
            &self.val_reference,
            self.opts.beta,
        )?;
        state.train_losses.push(t.loss);
        state.val_losses.push(v.loss);
        state.track_tokens_seen.push(state.tokens_seen);
        let values = [
            (EVAL_STEPS, step as f64),
            (REWARDS[0], t.chosen_rewards),
            (REWARDS[1], t.rejected_rewards),
            (REWARDS[2], v.chosen_rewards),
            (REWARDS[3], v.rejected_rewards),
        ];
        for (k, x) in values {
            state.metrics.entry(k.to_string()).or_default().push(x);
        }
        (self.on_event)(&DpoEvent::Eval {
            epoch,
            step,
            train: t,
            val: v,
        });
        Ok(())
    }

    fn epoch_end(&mut self, epoch: usize, _rng: &mut Rng, _state: &mut TrainState) -> Result<()> {
        if let Some(entry) = &self.opts.sample_entry {
            if self.opts.sample_tokens > 0 {
                let text = respond(
                    self.models.policy,
                    self.tok,
                    &InstructFormat::book(),
                    entry,
                    self.opts.sample_tokens,
                )?
                .replace('\n', " ");
                (self.on_event)(&DpoEvent::Sample { epoch, text });
            }
        }
        Ok(())
    }

    fn save(&mut self, path: &Path, info: &RunInfo, state: &TrainState) -> Result<()> {
        save_finetune_checkpoint(
            path,
            self.models.policy,
            self.optimizer,
            state,
            info,
            &Task::INSTRUCT_ALPACA,
            Some(self.models.reference),
        )
    }

    fn saved(&mut self, step: usize, path: &Path) {
        (self.on_event)(&DpoEvent::Saved {
            step,
            path: path.to_path_buf(),
        });
    }
}
