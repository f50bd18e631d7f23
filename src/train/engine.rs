//! What a training run steps: [`StepEngine`]. The book's loop (`train_model_simple`) only needs
//! "take a step on this batch", "the loss of this batch" and "make the CPU model current"; the
//! CPU autograd ([`CpuEngine`]) and the GPU's explicit forward/backward ([`GpuEngine`]) both
//! provide them, so one loop — evaluation, samples, checkpoints, resume — serves both devices.

use crate::autograd::no_grad;
use crate::backend::cuda::Gpu;
use crate::cuda::GpuGpt;
use crate::data::dataset::Batch;
use crate::error::{Error, Result};
use crate::gpt::GptModel;
use crate::nn::ForwardCtx;
use crate::optim::{clip_grad_norm, AdamW};
use crate::tensor::Tensor;

/// One optimizer step, one evaluation, and syncing back to the CPU model.
pub trait StepEngine {
    /// zero_grad → loss → backward → (clip) → AdamW at `lr`, with dropout masks from
    /// `dropout_seed`. Returns the batch loss. If the loss is not finite, no update is applied
    /// and the loss is returned for the caller to report.
    fn train_step(
        &mut self,
        batch: &Batch,
        dropout_seed: u64,
        clip: Option<f64>,
        lr: f64,
    ) -> Result<f64>;

    /// The batch's mean loss in eval mode (no dropout, nothing recorded).
    fn eval_loss(&mut self, batch: &Batch) -> Result<f64>;

    /// Eval-mode output rows (logits over the head's classes) at one position per sequence:
    /// `positions[b]` in row b — what a classifier's accuracy needs.
    fn logits_at(&mut self, inputs: &crate::Ids, positions: &[usize]) -> Result<Vec<Vec<f32>>>;

    /// Make the CPU model's weights and the optimizer's state current (before sampling or saving).
    fn sync_to_cpu(&mut self) -> Result<()>;

    /// Where the steps run, for the log.
    fn describe(&self) -> String;
}

/// The engine for `gpu` (a [`GpuEngine`]) or, without one, the CPU ([`CpuEngine`]), over
/// `model` and `optimizer` — what every command that trains builds.
pub fn engine_for<'a>(
    gpu: Option<&Gpu>,
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
) -> Result<Box<dyn StepEngine + 'a>> {
    Ok(match gpu {
        Some(g) => Box::new(GpuEngine::new(g, model, optimizer)?),
        None => Box::new(CpuEngine::new(model, optimizer)),
    })
}

/// The CPU engine: the autograd model and the CPU AdamW.
pub struct CpuEngine<'a> {
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
    params: Vec<Tensor>,
}

impl<'a> CpuEngine<'a> {
    pub fn new(model: &'a GptModel, optimizer: &'a mut AdamW) -> Self {
        CpuEngine {
            params: model.parameters(),
            model,
            optimizer,
        }
    }
}

impl StepEngine for CpuEngine<'_> {
    fn train_step(
        &mut self,
        batch: &Batch,
        dropout_seed: u64,
        clip: Option<f64>,
        lr: f64,
    ) -> Result<f64> {
        self.optimizer.zero_grad();
        let ctx = ForwardCtx::train(dropout_seed);
        let loss = super::calc_loss_batch(self.model, batch, &ctx)?;
        let value = loss.item()? as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        loss.backward()?;
        if let Some(max_norm) = clip {
            clip_grad_norm(&self.params, max_norm)?;
        }
        self.optimizer.step_with_lr(lr)?;
        Ok(value)
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<f64> {
        let ctx = ForwardCtx::eval();
        Ok(no_grad(|| super::calc_loss_batch(self.model, batch, &ctx))?.item()? as f64)
    }

    fn logits_at(&mut self, inputs: &crate::Ids, positions: &[usize]) -> Result<Vec<Vec<f32>>> {
        let (b, t) = batch_shape(inputs)?;
        check_positions(positions, b, t)?;
        let logits = no_grad(|| self.model.forward(inputs, &ForwardCtx::eval()))?.to_vec()?;
        let k = self.model.cfg.out_dim();
        Ok(positions
            .iter()
            .enumerate()
            .map(|(row, &p)| logits[(row * t + p) * k..][..k].to_vec())
            .collect())
    }

    fn sync_to_cpu(&mut self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
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

/// The GPU engine: a [`GpuGpt`] copy of the model with the AdamW moments on the device. The CPU
/// model and optimizer are updated only by [`StepEngine::sync_to_cpu`].
pub struct GpuEngine<'a> {
    model: &'a GptModel,
    optimizer: &'a mut AdamW,
    gpu: GpuGpt,
}

fn ids_i32(ids: &crate::Ids) -> Result<Vec<i32>> {
    ids.data()
        .iter()
        .map(|&v| {
            i32::try_from(v).map_err(|_| Error::IndexOutOfRange {
                op: "GPU batch",
                index: v,
                size: i32::MAX as usize,
            })
        })
        .collect()
}

impl<'a> GpuEngine<'a> {
    /// Upload the model, and the optimizer's moments if it has taken steps (a resumed run).
    pub fn new(gpu: &Gpu, model: &'a GptModel, optimizer: &'a mut AdamW) -> Result<Self> {
        let mut g = GpuGpt::from_model(gpu, model)?;
        if optimizer.t > 0 {
            g.load_adam_state(optimizer)?;
        }
        Ok(GpuEngine {
            model,
            optimizer,
            gpu: g,
        })
    }

    fn shape(batch: &Batch) -> Result<(usize, usize)> {
        batch_shape(&batch.inputs)
    }
}

impl StepEngine for GpuEngine<'_> {
    fn train_step(
        &mut self,
        batch: &Batch,
        dropout_seed: u64,
        clip: Option<f64>,
        lr: f64,
    ) -> Result<f64> {
        let (b, t) = Self::shape(batch)?;
        let (x, y) = (ids_i32(&batch.inputs)?, ids_i32(&batch.targets)?);
        self.gpu.zero_grad()?;
        let loss = match self.gpu.forward_backward(&x, &y, b, t, Some(dropout_seed)) {
            Ok(l) => l as f64,
            Err(Error::NonFinite { value, .. }) => return Ok(value),
            Err(e) => return Err(e),
        };
        if let Some(max_norm) = clip {
            self.gpu.clip_grad_norm(max_norm)?;
        }
        let cfg = self.optimizer.cfg.clone();
        self.gpu.adamw_step(&cfg, lr)?;
        Ok(loss)
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<f64> {
        let (b, t) = Self::shape(batch)?;
        Ok(self
            .gpu
            .eval_loss(&ids_i32(&batch.inputs)?, &ids_i32(&batch.targets)?, b, t)?
            as f64)
    }

    fn logits_at(&mut self, inputs: &crate::Ids, positions: &[usize]) -> Result<Vec<Vec<f32>>> {
        let (b, t) = batch_shape(inputs)?;
        check_positions(positions, b, t)?;
        self.gpu.logits_at(&ids_i32(inputs)?, b, t, positions)
    }

    fn sync_to_cpu(&mut self) -> Result<()> {
        self.gpu.write_to_model(self.model)?;
        self.gpu.store_adam_state(self.optimizer)
    }

    fn describe(&self) -> String {
        self.gpu.gpu().describe()
    }
}
