//! Optimizers and what goes with them: AdamW (torch-identical), gradient-norm clipping, and the
//! learning-rate schedule of the book's appendix D (linear warmup, cosine decay).

pub mod adamw;
pub mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use sgd::Sgd;

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::Result;
use crate::tensor::{CudaStorage, Storage, Tensor};

/// The global L2 norm of all gradients, √(Σ g²) over every parameter that has one. On a device
/// the squares are summed there and only the norm is copied back; on the CPU the sum runs in
/// parallel, in f64 (so a loop computing it every step costs a few milliseconds, not a pass in
/// f32 that could overflow to ∞ on large-but-finite gradients).
pub fn grad_norm(params: &[Tensor]) -> Result<f64> {
    use rayon::prelude::*;
    let mut total_sq = 0.0f64;
    let mut device_sq: Option<DeviceBuffer<f32>> = None;
    for g in params.iter().filter_map(Tensor::grad_storage) {
        match &g {
            Storage::Cpu(a) => {
                let sq = |xs: &[f32]| xs.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
                total_sq += match a.as_slice_memory_order() {
                    Some(xs) => xs.par_chunks(1 << 16).map(sq).sum::<f64>(),
                    None => a.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>(),
                }
            }
            Storage::Cuda(c) => {
                let part = DeviceBuffer::<f32>::uninit(c.gpu(), 1)?;
                launch::sum_squares(&*c.dense()?, &part)?;
                match &device_sq {
                    None => device_sq = Some(part),
                    Some(acc) => launch::accumulate(acc, &part)?,
                }
            }
        }
    }
    if let Some(acc) = device_sq {
        total_sq += acc.to_vec()?[0] as f64;
    }
    Ok(total_sq.sqrt())
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1); returns the norm before
/// clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    let total = grad_norm(params)?;
    let grads: Vec<(&Tensor, Storage<f32>)> = params
        .iter()
        .filter_map(|p| p.grad_storage().map(|g| (p, g)))
        .collect();
    let scale = max_norm / (total + 1e-6);
    if scale < 1.0 {
        for (p, g) in grads {
            let scaled = match g {
                Storage::Cpu(a) => Storage::Cpu(a.mapv(|x| x * scale as f32).into_shared()),
                Storage::Cuda(c) => {
                    let x = c.dense()?;
                    let out = DeviceBuffer::<f32>::uninit(c.gpu(), x.len())?;
                    launch::scale(&x, &out, scale as f32)?;
                    Storage::Cuda(CudaStorage::from_buffer(out, c.shape()))
                }
            };
            p.zero_grad();
            p.accumulate_grad(&scaled)?;
        }
    }
    Ok(total)
}

/// Appendix D's schedule: linear warmup from `initial_lr` to `peak_lr` over `warmup_steps`, then
/// (if `cosine`) cosine decay to `min_lr` at `total_steps`; else constant `peak_lr`.
#[derive(Clone, Debug)]
pub struct LrSchedule {
    pub peak_lr: f64,
    pub initial_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub cosine: bool,
}

impl LrSchedule {
    /// A constant learning rate.
    pub fn constant(lr: f64) -> Self {
        LrSchedule {
            peak_lr: lr,
            initial_lr: lr,
            min_lr: lr,
            warmup_steps: 0,
            total_steps: 0,
            cosine: false,
        }
    }

    /// The learning rate at step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            let inc = (self.peak_lr - self.initial_lr) / self.warmup_steps as f64;
            return self.initial_lr + step as f64 * inc;
        }
        if !self.cosine || self.total_steps <= self.warmup_steps {
            return self.peak_lr;
        }
        let progress = ((step - self.warmup_steps) as f64
            / (self.total_steps - self.warmup_steps) as f64)
            .min(1.0);
        self.min_lr
            + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}
