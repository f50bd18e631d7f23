//! The book's `LayerNorm`: learnable `scale` (γ, ones) and `shift` (β, zeros), biased variance,
//! eps 1e-5, over the last axis — one fused op (`ops::layer_norm`).

use crate::error::Result;
use crate::tensor::{Element, Tensor};

/// Layer normalisation with scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNorm<T: Element = f32> {
    pub scale: Tensor<T>,
    pub shift: Tensor<T>,
    pub eps: f64,
}

impl<T: Element> LayerNorm<T> {
    /// γ = 1, β = 0, eps = 1e-5 (the book's values).
    pub fn new(dim: usize) -> Self {
        LayerNorm {
            scale: Tensor::ones(&[dim]).requires_grad_(true),
            shift: Tensor::zeros(&[dim]).requires_grad_(true),
            eps: 1e-5,
        }
    }

    /// Normalises the last axis.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.layer_norm(&self.scale, &self.shift, self.eps)
    }

    /// Named parameters (`prefix.scale`, `prefix.shift`).
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}.scale"), self.scale.clone()));
        out.push((format!("{prefix}.shift"), self.shift.clone()));
    }
}
