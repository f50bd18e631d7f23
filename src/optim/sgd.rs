//! SGD as `torch.optim.SGD` (weight decay added to the gradient, optional momentum without
//! dampening): `g ← g + λp; b ← μb + g (b = g at the first step); p ← p − lr·b`.
//!
//! Written once, on the engine's ops (under `no_grad`), so it runs wherever the parameters live:
//! on a device each line is a kernel (`mul_scalar`, `add`), and the momentum buffer stays there.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::tensor::Tensor;

/// Stochastic gradient descent with optional momentum.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    params: Vec<Tensor>,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// SGD over `params`.
    pub fn new(params: Vec<Tensor>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        let n = params.len();
        Sgd {
            lr,
            momentum,
            weight_decay,
            params,
            buffers: vec![None; n],
        }
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Tensor::zero_grad);
    }

    /// One update; parameters without a gradient are skipped.
    pub fn step(&mut self) -> Result<()> {
        let (lr, mu, wd) = (self.lr, self.momentum, self.weight_decay);
        no_grad(|| {
            for (p, buf) in self.params.iter().zip(&mut self.buffers) {
                let Some(g) = p.grad() else { continue };
                let value = p.detach();
                let mut d = g;
                if wd != 0.0 {
                    d = d.add(&value.mul_scalar(wd)?)?;
                }
                if mu != 0.0 {
                    let b = match buf.take() {
                        None => d, // first step: b = g
                        Some(b) => b.mul_scalar(mu)?.add(&d)?,
                    };
                    *buf = Some(b.clone());
                    d = b;
                }
                let updated = value.sub(&d.mul_scalar(lr)?)?;
                p.set_storage(updated.storage().clone())?;
            }
            Ok(())
        })
    }
}
