//! `Linear` (PyTorch's `nn.Linear`): `y = x·Wᵀ + b` with W stored `(out_features, in_features)`.
//! With a LoRA adapter attached it is the book's `LinearWithLoRA`: `y = x·Wᵀ + b + s·(x·A)·B`
//! (see [`super::lora`]).

use super::lora::LoRA;
use crate::error::Result;
use crate::ops::linear::LoraOperands;
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// A fully connected layer.
#[derive(Clone, Debug)]
pub struct Linear<T: Element = f32> {
    /// `(out_features, in_features)`, PyTorch's layout.
    pub weight: Tensor<T>,
    /// `(out_features,)`, if the layer has a bias.
    pub bias: Option<Tensor<T>>,
    /// A LoRA adapter (appendix E's `LinearWithLoRA`), if attached.
    pub lora: Option<LoRA<T>>,
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
            lora: None,
        }
    }

    /// `x·Wᵀ + b (+ s·(x·A)·B)` for `x` of shape `(…, in_features)`: one fused op
    /// ([`Tensor::linear`], derivation in `src/ops/linear`), `Wᵀ` a strided view (no copy) and
    /// the batch folded into one GEMM.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let lora = self.lora.as_ref().map(|l| LoraOperands {
            a: &l.a,
            b: &l.b,
            scale: l.scale(),
        });
        x.linear(&self.weight, self.bias.as_ref(), lora)
    }

    /// Freezes the weight and bias and attaches a fresh adapter (`LinearWithLoRA`).
    pub fn attach_lora(&mut self, rank: usize, alpha: f64, rng: &mut Rng) -> Result<()> {
        let s = self.weight.shape();
        self.lora = Some(LoRA::new(s[1], s[0], rank, alpha, rng)?);
        let _ = self.weight.clone().requires_grad_(false);
        if let Some(b) = &self.bias {
            let _ = b.clone().requires_grad_(false);
        }
        Ok(())
    }

    /// Folds the adapter into the weight (`W ← W + s·(A·B)ᵀ`) and removes it; the layer computes
    /// the same function without the extra matmuls. The merged weight is trainable again.
    pub fn merge_lora(&mut self) -> Result<()> {
        if let Some(lora) = self.lora.take() {
            let merged =
                crate::autograd::no_grad(|| self.weight.detach().add(&lora.delta_weight()?))?;
            // A new parameter, not `set_value`: a cloned model shares this weight's storage,
            // and merging one copy must not change the other.
            self.weight = merged.detach().requires_grad_(true);
        }
        Ok(())
    }

    /// Named parameters under `prefix` (`prefix.weight`, `prefix.bias`).
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}.weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), b.clone()));
        }
        if let Some(lora) = &self.lora {
            lora.parameters(prefix, out);
        }
    }
}
