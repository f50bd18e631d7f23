//! What a training run steps: [`StepEngine`]. The book's loop (`train_model_simple`) only needs
//! "take a step on this batch", "the loss of this batch" and "make the CPU model current".
//! [`Engine`] provides them over the autograd model on whichever device its tensors live — the
//! same code on the CPU, a GPU or the emulator — so one loop (evaluation, samples, checkpoints,
//! resume) serves every device. On a device a step copies one scalar per micro-batch (its loss)
//! and one for the gradient norm to the host.
//!
//! In data-parallel training ([`crate::dist`]) the engine is one rank's: after the last
//! micro-batch's backward it averages the gradients over the ranks, before clipping and the
//! update, so every rank takes the same step.

use crate::autograd::no_grad;
use crate::data::dataset::Batch;
use crate::dist::{grads, Collective};
use crate::error::{Error, Result};
use crate::gpt::GptModel;
use crate::nn::ForwardCtx;
use crate::optim::{clip_grad_norm, grad_norm, AdamW};
use crate::tensor::{Device, Tensor};

/// What one optimizer step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The mean loss over the step's micro-batches.
    pub loss: f64,
    /// The global gradient norm before clipping (NaN when the loss was not finite and no
    /// backward ran).
    pub grad_norm: f64,
}

/// One optimizer step, one evaluation, and syncing back to the CPU model.
pub trait StepEngine {
    /// zero_grad → for each micro-batch: loss / N → backward (gradients add up) → (clip) →
    /// AdamW at `lr`, micro-batch k with dropout masks from `dropout_seeds[k]`. Each
    /// micro-batch's graph is freed by its backward before the next forward, so the peak memory
    /// is one micro-batch's. If a loss or the gradient norm is not finite, no update is applied
    /// and the stats are returned for the caller to report.
    fn train_step(
        &mut self,
        micro_batches: &[Batch],
        dropout_seeds: &[u64],
        clip: Option<f64>,
        lr: f64,
    ) -> Result<StepStats>;

    /// The batch's mean loss in eval mode (no dropout, nothing recorded).
    fn eval_loss(&mut self, batch: &Batch) -> Result<f64>;

    /// Eval-mode output rows (logits over the head's classes) at one position per sequence:
    /// `positions[b]` in row b — what a classifier's accuracy needs.
    fn logits_at(&mut self, inputs: &crate::Ids, positions: &[usize]) -> Result<Vec<Vec<f32>>>;

    /// Make the CPU model's weights and the optimizer's state current (before sampling or saving).
    fn sync_to_cpu(&mut self) -> Result<()>;

    /// Where the steps run, for the log.
    fn describe(&self) -> String;

    /// The model being trained (its weights where the engine keeps them).
    fn model(&self) -> &GptModel;

    /// The optimizer and its state (what a checkpoint saves).
    fn optimizer(&self) -> &AdamW;

    /// The ranks this engine trains with (one process unless data-parallel).
    fn collective(&self) -> &dyn Collective {
        &crate::dist::SOLO
    }
}

/// The engine over `model` and `optimizer` on `device`: moves the model's parameters (in place)
/// and the optimizer's moments there first — what every command that trains builds.
pub fn engine_for<'a>(
    device: Device,
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
) -> Result<Box<dyn StepEngine + 'a>> {
    distributed_engine_for(device, model, optimizer, &crate::dist::SOLO)
}

/// [`engine_for`] as one rank of data-parallel training over `group`: also checks that every
/// rank starts from the same weights.
pub fn distributed_engine_for<'a>(
    device: Device,
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
    group: &'a dyn Collective,
) -> Result<Box<dyn StepEngine + 'a>> {
    model.to_device(device)?;
    optimizer.follow_params()?;
    crate::dist::check_in_sync(group, &model.parameters(), "at the start")?;
    Ok(Box::new(
        Engine::new(model, optimizer).with_collective(group),
    ))
}

/// The engine: the autograd model and AdamW, on the model's device.
pub struct Engine<'a> {
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
    params: Vec<Tensor>,
    group: &'a dyn Collective,
    /// Average each gradient bucket as backward finishes it (else: after the whole backward).
    overlap: bool,
    /// The size of a gradient bucket.
    bucket_bytes: usize,
}

impl<'a> Engine<'a> {
    pub fn new(model: &'a GptModel, optimizer: &'a mut AdamW) -> Self {
        Engine {
            params: model.parameters(),
            model,
            optimizer,
            group: &crate::dist::SOLO,
            overlap: true,
            bucket_bytes: grads::DEFAULT_BUCKET_BYTES,
        }
    }

    /// Data-parallel: gradient buckets of about `bytes` (default 25 MiB, PyTorch DDP's).
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes;
        self
    }

    /// Data-parallel: average the gradients after the whole backward instead of bucket by
    /// bucket as backward finishes them (the same numbers; `bench ddp --after-backward`
    /// compares the two).
    pub fn reduce_after_backward(mut self) -> Self {
        self.overlap = false;
        self
    }

    /// This engine as one rank of `group`: gradients are averaged over the ranks every step.
    pub fn with_collective(mut self, group: &'a dyn Collective) -> Self {
        self.group = group;
        self
    }
}

impl Engine<'_> {
    /// Data-parallel: sums `[total, flag]` over the ranks (one small all-reduce every rank makes
    /// once per step) and says whether no rank saw a non-finite loss; `total` becomes the big
    /// batch's (the mean over ranks of their micro-batch loss sums).
    fn agree_finite(&self, total: &mut f64, bad: bool) -> Result<bool> {
        let mut status = [*total, bad as u8 as f64];
        self.group.all_reduce_sum_f64(&mut status)?;
        *total = status[0] / self.group.world_size() as f64;
        Ok(status[1] == 0.0)
    }

    /// A step that applies no update: the gradients are dropped and the stats report `loss`.
    fn skip(&mut self, loss: f64) -> StepStats {
        self.optimizer.zero_grad();
        StepStats {
            loss,
            grad_norm: f64::NAN,
        }
    }
}

impl StepEngine for Engine<'_> {
    fn train_step(
        &mut self,
        micro_batches: &[Batch],
        dropout_seeds: &[u64],
        clip: Option<f64>,
        lr: f64,
    ) -> Result<StepStats> {
        if micro_batches.is_empty() || micro_batches.len() != dropout_seeds.len() {
            return Err(Error::invalid(
                "train_step",
                format!(
                    "{} micro-batches with {} dropout seeds",
                    micro_batches.len(),
                    dropout_seeds.len()
                ),
            ));
        }
        self.optimizer.zero_grad();
        // d(mean of N micro-batch means)/dθ = Σ_k (1/N)·d(mean_k)/dθ: scaling each micro-batch's
        // loss by 1/N before its backward makes the accumulated gradient the big batch's
        // (micro-batches of equal size; with N = 1 nothing is scaled).
        let n = micro_batches.len();
        let world = self.group.world_size();
        let mut total = 0.0;
        let mut bad = None;
        let mut agreed = false;
        for (k, (batch, &seed)) in micro_batches.iter().zip(dropout_seeds).enumerate() {
            let ctx = ForwardCtx::train(seed);
            let loss = super::calc_loss_batch(self.model, batch, &ctx)?;
            let value = loss.item()? as f64;
            if !value.is_finite() {
                bad = Some(value);
                break;
            }
            total += value;
            let loss = if n == 1 {
                loss
            } else {
                loss.div_scalar(n as f64)?
            };
            if world > 1 && k == n - 1 {
                // The last micro-batch: agree that every rank's losses were finite before its
                // backward (which sums gradients as they finish: a rank that skipped it must
                // not leave the others waiting), then average each bucket the moment backward
                // completes it.
                if !self.agree_finite(&mut total, false)? {
                    return Ok(self.skip(f64::NAN));
                }
                agreed = true;
                let mut buckets = grads::Buckets::new(&self.params, self.bucket_bytes);
                let (group, params) = (self.group, &self.params);
                if self.overlap {
                    loss.backward_hooked(&mut |p| buckets.finished(group, params, p))?;
                } else {
                    loss.backward()?;
                }
                buckets.finish(group, params)?;
            } else {
                loss.backward()?;
            }
        }
        if world > 1 && !agreed {
            // This rank met a non-finite loss before its last micro-batch: it still takes part
            // in the agreement the others reach, which then fails on every rank.
            self.agree_finite(&mut total, true)?;
            return Ok(self.skip(bad.unwrap_or(f64::NAN)));
        }
        if let Some(value) = bad {
            return Ok(self.skip(value));
        }
        let grad_norm = match clip {
            Some(max_norm) => clip_grad_norm(&self.params, max_norm)?,
            None => grad_norm(&self.params)?,
        };
        if grad_norm.is_finite() {
            self.optimizer.step_with_lr(lr)?;
        }
        Ok(StepStats {
            loss: total / n as f64,
            grad_norm,
        })
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<f64> {
        let ctx = ForwardCtx::eval();
        Ok(no_grad(|| super::calc_loss_batch(self.model, batch, &ctx))?.item()? as f64)
    }

    fn logits_at(&mut self, inputs: &crate::Ids, positions: &[usize]) -> Result<Vec<Vec<f32>>> {
        let (b, t) = batch_shape(inputs)?;
        check_positions(positions, b, t)?;
        no_grad(|| {
            let logits = self.model.forward(inputs, &ForwardCtx::eval())?;
            // Only the wanted rows leave the device.
            positions
                .iter()
                .enumerate()
                .map(|(row, &p)| logits.select(0, row)?.select(0, p)?.to_vec())
                .collect::<Result<Vec<_>>>()
        })
    }

    fn sync_to_cpu(&mut self) -> Result<()> {
        // Checkpoints, samples and evaluation read device tensors where they are.
        Ok(())
    }

    fn model(&self) -> &GptModel {
        self.model
    }

    fn optimizer(&self) -> &AdamW {
        self.optimizer
    }

    fn collective(&self) -> &dyn Collective {
        self.group
    }

    fn describe(&self) -> String {
        match self.model.device() {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            d => match crate::backend::cuda::device(match d {
                Device::Cuda(o) => o,
                Device::Cpu => unreachable!(),
            }) {
                Ok(g) => format!("{d} — {}", g.describe()),
                Err(_) => d.to_string(),
            },
        }
    }
}

fn batch_shape(inputs: &crate::Ids) -> Result<(usize, usize)> {
    match inputs.shape() {
        [b, t] => Ok((*b, *t)),
        s => Err(Error::invalid(
            "batch",
            format!("inputs must be (batch, seq), got {s:?}"),
        )),
    }
}

fn check_positions(positions: &[usize], b: usize, t: usize) -> Result<()> {
    if positions.len() != b {
        return Err(Error::invalid(
            "logits_at",
            format!("{} positions for {b} rows", positions.len()),
        ));
    }
    if let Some(&p) = positions.iter().find(|&&p| p >= t) {
        return Err(Error::IndexOutOfRange {
            op: "logits_at",
            index: p as i64,
            size: t,
        });
    }
    Ok(())
}
