//! `Norm`: the normalisation a block uses — GPT-2's LayerNorm or Llama's and Qwen3's RMSNorm —
//! behind one type, so a block is written once for every family.

use super::{LayerNorm, RmsNorm};
use crate::error::Result;
use crate::tensor::{Element, Tensor};

/// LayerNorm or RMSNorm over the last axis.
#[derive(Clone, Debug)]
pub enum Norm<T: Element = f32> {
    Layer(LayerNorm<T>),
    Rms(RmsNorm<T>),
}

impl<T: Element> Norm<T> {
    /// Normalises the last axis.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }

    /// The learnable scale γ (both kinds have one).
    pub fn scale(&self) -> &Tensor<T> {
        match self {
            Norm::Layer(n) => &n.scale,
            Norm::Rms(n) => &n.scale,
        }
    }

    /// LayerNorm's shift β (`None` for RMSNorm, which has none).
    pub fn shift(&self) -> Option<&Tensor<T>> {
        match self {
            Norm::Layer(n) => Some(&n.shift),
            Norm::Rms(_) => None,
        }
    }

    /// ε.
    pub fn eps(&self) -> f64 {
        match self {
            Norm::Layer(n) => n.eps,
            Norm::Rms(n) => n.eps,
        }
    }

    /// Sets ε (a loaded model's value).
    pub fn set_eps(&mut self, eps: f64) {
        match self {
            Norm::Layer(n) => n.eps = eps,
            Norm::Rms(n) => n.eps = eps,
        }
    }

    /// Named parameters (`prefix.scale`, and `prefix.shift` for LayerNorm).
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        match self {
            Norm::Layer(n) => n.parameters(prefix, out),
            Norm::Rms(n) => n.parameters(prefix, out),
        }
    }
}
