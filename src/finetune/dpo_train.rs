//! The book's DPO training (chapter 7 bonus): the preference dataset and its loaders, one DPO
//! step (policy forward on the chosen and the rejected answers, the frozen reference's under
//! `no_grad`, the loss, backward, AdamW), the book's evaluation of loss and rewards on a few
//! training and validation batches, and the reference model itself — a frozen copy, or with
//! LoRA the same base weights with the adapters switched off.

use std::time::Instant;

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
use crate::tensor::rng::{mix64, Rng};
use crate::tensor::Tensor;

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

/// The book's `compute_dpo_loss_batch`: the policy's log-probabilities of the chosen and the
/// rejected answers (with `ctx`'s dropout), the reference's under `no_grad`, and the loss.
pub fn dpo_batch_loss(
    policy: &GptModel,
    reference: &GptModel,
    batch: &PreferenceBatch,
    beta: f64,
    ctx: &ForwardCtx,
) -> Result<DpoBatchLoss> {
    let chosen = rows_to_ids(&batch.chosen)?;
    let rejected = rows_to_ids(&batch.rejected)?;
    let logprobs = |m: &GptModel, ids: &Ids, mask: &[Vec<bool>], ctx: &ForwardCtx| {
        m.forward(ids, ctx)?.sequence_logprobs(ids, Some(mask))
    };
    let pc = logprobs(policy, &chosen, &batch.chosen_mask, ctx)?;
    let pr = logprobs(policy, &rejected, &batch.rejected_mask, ctx)?;
    let eval = ForwardCtx::eval();
    let (rc, rr) = no_grad(|| -> Result<_> {
        Ok((
            logprobs(reference, &chosen, &batch.chosen_mask, &eval)?,
            logprobs(reference, &rejected, &batch.rejected_mask, &eval)?,
        ))
    })?;
    let out = dpo_loss(&pc, &pr, &rc, &rr, beta)?;
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
    if batches.is_empty() {
        return Err(Error::invalid("dpo_metrics", "no batches to evaluate"));
    }
    let mut m = DpoMetrics::default();
    for b in batches {
        let out = no_grad(|| dpo_batch_loss(policy, reference, b, beta, &ForwardCtx::eval()))?;
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
            DpoEvent::Step { .. } => None,
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
    mut on_event: impl FnMut(&DpoEvent),
) -> Result<DpoRun> {
    let DpoModels { policy, reference } = models;
    if opts.batch_size == 0 || opts.eval_freq == 0 || opts.eval_iter == 0 {
        return Err(Error::invalid(
            "train_dpo",
            "batch size, eval_freq and eval_iter must be at least 1",
        ));
    }
    if train.len() < opts.batch_size {
        return Err(Error::invalid(
            "train_dpo",
            format!(
                "{} training pairs make no complete batch of {}",
                train.len(),
                opts.batch_size
            ),
        ));
    }
    if val.is_empty() {
        return Err(Error::invalid("train_dpo", "the validation split is empty"));
    }
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
    let collated =
        |d: &PreferenceDataset, order: Vec<Vec<usize>>| -> Result<Vec<PreferenceBatch>> {
            order
                .into_iter()
                .take(opts.eval_iter)
                .map(|idx| d.batch(&idx, max_len))
                .collect()
        };
    let val_batches = collated(val, batch_order(val.len(), opts.batch_size, None, false))?;
    let params = policy.parameters();
    let mut rng = Rng::new(opts.seed);
    let mut run = DpoRun::default();
    'epochs: for epoch in 0..opts.num_epochs {
        for idx in batch_order(train.len(), opts.batch_size, Some(&mut rng), true) {
            if opts.max_steps.is_some_and(|m| run.steps >= m) {
                break 'epochs;
            }
            let step = run.steps;
            let batch = train.batch(&idx, max_len)?;
            let t0 = Instant::now();
            optimizer.zero_grad();
            let ctx = ForwardCtx::train(mix64(opts.seed ^ mix64(step as u64 + 1)));
            let out = dpo_batch_loss(policy, reference, &batch, opts.beta, &ctx)?;
            let loss = out.loss.item()? as f64;
            if !loss.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("the DPO loss at step {step} (epoch {})", epoch + 1),
                    value: loss,
                    note: String::new(),
                });
            }
            out.loss.backward()?;
            let norm = grad_norm(&params)?;
            if !norm.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("the gradient norm at step {step} (epoch {})", epoch + 1),
                    value: norm,
                    note: String::new(),
                });
            }
            optimizer.step_with_lr(opts.lr)?;
            let step_secs = t0.elapsed().as_secs_f64();
            run.train_secs += step_secs;
            run.tokens_seen += batch.chosen.iter().map(Vec::len).sum::<usize>();
            run.examples_seen += idx.len();
            run.steps += 1;
            on_event(&DpoEvent::Step {
                epoch,
                step,
                loss,
                step_secs,
            });
            if step.is_multiple_of(opts.eval_freq) {
                let shuffled = collated(
                    train,
                    batch_order(train.len(), opts.batch_size, Some(&mut rng), true),
                )?;
                let t = dpo_metrics(policy, reference, &shuffled, opts.beta)?;
                let v = dpo_metrics(policy, reference, &val_batches, opts.beta)?;
                run.evals.push(DpoEval {
                    step,
                    tokens_seen: run.tokens_seen,
                    train: t,
                    val: v,
                });
                on_event(&DpoEvent::Eval {
                    epoch,
                    step,
                    train: t,
                    val: v,
                });
            }
        }
        if let Some(entry) = &opts.sample_entry {
            if opts.sample_tokens > 0 {
                let text = respond(policy, tok, entry, opts.sample_tokens)?.replace('\n', " ");
                on_event(&DpoEvent::Sample { epoch, text });
            }
        }
    }
    Ok(run)
}
