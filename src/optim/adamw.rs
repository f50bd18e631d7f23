//! AdamW, identical to `torch.optim.AdamW` (single-tensor implementation), step for step:
//!
//! ```text
//! p ← p·(1 − lr·λ)                          decoupled weight decay, before the moments
//! m ← m + (1 − β₁)(g − m)                   (torch's lerp; = β₁m + (1 − β₁)g)
//! v ← β₂v + (1 − β₂)g²
//! p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Weight decay applies to every parameter, as the book does; `exempt_biases_and_norms` skips
//! biases and LayerNorm scales/shifts (GPT-2's and nanoGPT's choice).
//!
//! **Devices.** The moments live on their parameter's device (they are tensors). The decision of
//! what to update — skip a parameter without a gradient (frozen, unused), exempt it from decay —
//! is made once, here, for every device; the arithmetic is the loop below on the CPU and the
//! `adamw_update_multi` kernel (kernels/adamw.cu, the same formula) on a device — one launch for
//! every tensor of the model, as PyTorch's multi-tensor ("foreach") AdamW.

use ndarray::Zip;

use crate::backend::cpu::should_par;
use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::{Error, Result};
use crate::tensor::{Device, Storage, Tensor};

/// AdamW hyperparameters.
#[derive(Clone, Debug)]
pub struct AdamWConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// No decay for parameters named `*.bias` or `*norm*.scale|shift`.
    pub exempt_biases_and_norms: bool,
}

impl Default for AdamWConfig {
    /// torch's defaults, with the book's weight decay 0.1 and lr 4e-4.
    fn default() -> Self {
        AdamWConfig {
            lr: 4e-4,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.1,
            exempt_biases_and_norms: false,
        }
    }
}

/// One parameter's optimizer state. `m` and `v` live on the parameter's device.
#[derive(Clone, Debug)]
pub struct ParamState {
    pub name: String,
    pub param: Tensor,
    pub m: Tensor,
    pub v: Tensor,
    pub decay: bool,
}

/// The AdamW optimizer over named parameters.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub state: Vec<ParamState>,
    /// Steps taken (t of the bias corrections).
    pub t: u64,
}

impl AdamW {
    /// An optimizer over the trainable ones of `params` (name, tensor), moments zero. Frozen
    /// parameters (`requires_grad = false`) get no moment buffers: fine-tuning the last block of
    /// gpt2-small does not hold 1 GB of zeros for the other 110 M weights.
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let state = params
            .into_iter()
            .filter(|(_, p)| p.requires_grad())
            .map(|(name, param)| {
                let shape = param.shape();
                let is_norm =
                    name.contains("norm") && (name.ends_with(".scale") || name.ends_with(".shift"));
                let decay = !(cfg.exempt_biases_and_norms && (name.ends_with(".bias") || is_norm));
                // On the parameter's backend (a `fill`, no copy). If the device has no room, they
                // start on the host and the first step's move reports the error as a `Result`.
                let zeros = || match param.cuda_storage() {
                    Some(c) => crate::ops::device_full(&c, &shape, 0.0)
                        .map(|z| Tensor::from_storage(Storage::Cuda(z)))
                        .unwrap_or_else(|_| Tensor::zeros(&shape)),
                    None => Tensor::zeros(&shape),
                };
                ParamState {
                    name,
                    m: zeros(),
                    v: zeros(),
                    param,
                    decay,
                }
            })
            .collect();
        AdamW { cfg, state, t: 0 }
    }

    /// Moves the moments to their parameters' devices (after `model.to_device`, or after
    /// loading a checkpoint's moments on the CPU).
    pub fn follow_params(&mut self) -> Result<()> {
        for s in &mut self.state {
            s.m = s.m.to_device_like(&s.param)?;
            s.v = s.v.to_device_like(&s.param)?;
        }
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for s in &self.state {
            s.param.zero_grad();
        }
    }

    /// One update with learning rate `lr` (the configured one unless a schedule overrides it).
    /// Parameters without a gradient (frozen, or unused) are skipped, as in torch.
    pub fn step_with_lr(&mut self, lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = self.cfg.betas;
        let t = self.t as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = (lr / bc1) as f32;
        let (b1f, b2f, eps) = (b1 as f32, b2 as f32, self.cfg.eps as f32);
        let bc2_sqrt = bc2_sqrt as f32;
        // Device tensors are gathered and updated in one launch per backend after the loop.
        type Bufs = [std::rc::Rc<DeviceBuffer<f32>>; 4];
        let mut on_device: Vec<(Bufs, f32)> = Vec::new();
        for s in &mut self.state {
            let Some(g) = s.param.grad_storage() else {
                continue;
            };
            let decay = if s.decay {
                (1.0 - lr * self.cfg.weight_decay) as f32
            } else {
                1.0
            };
            // The moments follow the parameter (to its device, or back to the CPU).
            s.m = s.m.to_device_like(&s.param)?;
            s.v = s.v.to_device_like(&s.param)?;
            let device = s.param.device();
            if device != Device::Cpu {
                let p = s.param.cuda_storage().expect("on a device");
                let g = match &g {
                    Storage::Cuda(c) if c.same_backend(&p) => c.dense()?,
                    other => return Err(device_mismatch(&s.param, other)),
                };
                let bufs = [
                    owned_dense(&s.param)?,
                    g,
                    owned_dense(&s.m)?,
                    owned_dense(&s.v)?,
                ];
                on_device.push((bufs, decay));
                continue;
            }
            let g = g.cpu("adamw")?.clone();
            // The three arrays are updated together, each in place (copy-on-write).
            let (mut r_v, mut r_p) = (Ok(()), Ok(()));
            s.m.update_value(|m| {
                r_v = s.v.update_value(|v| {
                    r_p = s.param.update_value(|p| {
                        let update = |p: &mut f32, m: &mut f32, v: &mut f32, &g: &f32| {
                            *p *= decay;
                            *m += (1.0 - b1f) * (g - *m);
                            *v = *v * b2f + (1.0 - b2f) * g * g;
                            let denom = v.sqrt() / bc2_sqrt + eps;
                            *p -= step_size * (*m / denom);
                        };
                        let z = Zip::from(p.view_mut()).and(m).and(v).and(&g);
                        if should_par(g.len()) {
                            z.par_for_each(update);
                        } else {
                            z.for_each(update);
                        }
                    });
                });
            })?;
            r_v?;
            r_p?;
        }
        let mut backends: Vec<&crate::backend::cuda::Gpu> = Vec::new();
        for ([p, ..], _) in &on_device {
            if !backends.iter().any(|b| std::rc::Rc::ptr_eq(b, p.gpu())) {
                backends.push(p.gpu());
            }
        }
        for backend in backends {
            let tensors: Vec<launch::AdamwTensor<'_>> = on_device
                .iter()
                .filter(|([p, ..], _)| std::rc::Rc::ptr_eq(p.gpu(), backend))
                .map(|([p, g, m, v], decay)| launch::AdamwTensor {
                    param: p,
                    grad: g,
                    m,
                    v,
                    decay: *decay,
                })
                .collect();
            launch::adamw_update_multi(&tensors, step_size, (b1f, b2f), eps, bc2_sqrt)?;
        }
        Ok(())
    }

    /// One update at the configured learning rate.
    pub fn step(&mut self) -> Result<()> {
        self.step_with_lr(self.cfg.lr)
    }
}

fn device_mismatch(p: &Tensor, g: &Storage<f32>) -> Error {
    crate::tensor::device_mismatch("optimizer step", p.device(), g.device())
}

/// The dense device buffer of `t` that only `t` holds, so a kernel may update it in place: the
/// buffer itself when nothing else (a live graph's saved value, a clone) shares it, else a copy
/// made on the device and swapped in (copy-on-write, as on the CPU).
pub(crate) fn owned_dense(
    t: &Tensor,
) -> Result<std::rc::Rc<crate::backend::cuda::DeviceBuffer<f32>>> {
    let c = t.cuda_storage().ok_or_else(|| Error::DeviceUnsupported {
        op: "owned_dense",
        device: t.device().to_string(),
    })?;
    // One handle in the tensor's storage and one in `c`.
    if c.writable_in_place(1) {
        return Ok(c.buffer.clone());
    }
    let fresh = c.fresh_copy()?;
    t.set_storage(Storage::Cuda(fresh.clone()))?;
    Ok(fresh.buffer)
}
