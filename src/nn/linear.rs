//! `Linear` (PyTorch's `nn.Linear`): `y = x·Wᵀ + b` with W stored `(out_features, in_features)`.

use crate::error::{Error, Result};
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// A fully connected layer.
#[derive(Clone, Debug)]
pub struct Linear<T: Element = f32> {
    /// `(out_features, in_features)`, PyTorch's layout.
    pub weight: Tensor<T>,
    /// `(out_features,)`, if the layer has a bias.
    pub bias: Option<Tensor<T>>,
}

impl<T: Element> Linear<T> {
    /// PyTorch's default initialisation: weight and bias uniform in ±1/√in_features.
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Self {
        let bound = 1.0 / (in_features as f64).sqrt();
        Linear {
            weight: Tensor::uniform_from(&[out_features, in_features], -bound, bound, rng)
                .requires_grad_(true),
            bias: bias.then(|| {
                Tensor::uniform_from(&[out_features], -bound, bound, rng).requires_grad_(true)
            }),
        }
    }

    /// `x·Wᵀ + b` for `x` of shape `(…, in_features)`. `Wᵀ` is a strided view (no copy) and the
    /// batch is folded into one GEMM by `matmul`.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let in_features = self.weight.shape()[1];
        if x.shape().last() != Some(&in_features) {
            return Err(Error::ShapeMismatch {
                op: "Linear",
                lhs: x.shape(),
                rhs: self.weight.shape(),
                why: format!("the input's last axis must be in_features = {in_features}"),
            });
        }
        let y = x.matmul(&self.weight.transpose(0, 1)?)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// Named parameters under `prefix` (`prefix.weight`, `prefix.bias`).
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}.weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), b.clone()));
        }
    }
}
