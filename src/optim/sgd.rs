//! SGD as `torch.optim.SGD` (weight decay added to the gradient, optional momentum without
//! dampening): `g ← g + λp; b ← μb + g (b = g at the first step); p ← p − lr·b`.

use ndarray::{ArrayD, IxDyn, Zip};

use crate::error::Result;
use crate::tensor::Tensor;

/// Stochastic gradient descent with optional momentum.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    params: Vec<Tensor>,
    buffers: Vec<Option<ArrayD<f32>>>,
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
        let (lr, mu, wd) = (
            self.lr as f32,
            self.momentum as f32,
            self.weight_decay as f32,
        );
        for (p, buf) in self.params.iter().zip(&mut self.buffers) {
            let Some(g) = p.grad_storage() else { continue };
            let mut d: ArrayD<f32> = g.cpu("sgd")?.to_owned();
            let pv = p.value()?;
            if wd != 0.0 {
                Zip::from(&mut d).and(&pv).for_each(|d, &p| *d += wd * p);
            }
            if mu != 0.0 {
                let b = buf.get_or_insert_with(|| ArrayD::zeros(IxDyn(&[0])));
                if b.len() != d.len() {
                    *b = d.clone(); // first step: b = g
                } else {
                    Zip::from(&mut *b)
                        .and(&d)
                        .for_each(|b, &d| *b = mu * *b + d);
                }
                d = b.clone();
            }
            p.update_value(|pv| {
                Zip::from(pv.view_mut())
                    .and(&d)
                    .for_each(|p, &d| *p -= lr * d)
            })?;
        }
        Ok(())
    }
}
