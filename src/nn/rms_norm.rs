//! `RMSNorm` (Llama's and Qwen3's): a learnable `scale` (ones) and no shift, over the last axis —
//! one fused op (`ops::rms_norm`, where the gradient is derived).

use crate::error::Result;
use crate::tensor::{Element, Tensor};

/// Root-mean-square normalisation with a scale.
#[derive(Clone, Debug)]
pub struct RmsNorm<T: Element = f32> {
    /// `(dim,)`, HF's `weight`.
    pub scale: Tensor<T>,
    pub eps: f64,
}

impl<T: Element> RmsNorm<T> {
    /// Scale 1 (as PyTorch's `nn.RMSNorm` and transformers initialise it).
    pub fn new(dim: usize, eps: f64) -> Self {
        RmsNorm {
            scale: Tensor::ones(&[dim]).requires_grad_(true),
            eps,
        }
    }

    /// Normalises the last axis.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.rms_norm(&self.scale, self.eps)
    }

    /// Named parameters (`prefix.scale`).
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}.scale"), self.scale.clone()));
    }
}
