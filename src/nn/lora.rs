//! LoRA (book appendix E): a low-rank update `ΔW = scale·(A·B)ᵀ` learned beside a frozen weight.
//!
//! `LoRALayer(in, out, rank, alpha)` holds `A: (in, rank)` and `B: (rank, out)`, and
//! `LinearWithLoRA` adds its output to the frozen layer's:
//!
//! ```text
//! y = x·Wᵀ + b  +  s·(x·A)·B,        s = alpha / rank
//! ```
//!
//! **Gradients.** The forward and backward are one fused op, [`Tensor::linear`] in
//! `src/ops/linear` (so the graph keeps no `(rows, out)` intermediates): with `g = ∂L/∂y` and
//! `h = x·A`,
//!
//! ```text
//! ∂L/∂B = s·hᵀ·g        ∂L/∂A = s·xᵀ·(g·Bᵀ)        ∂L/∂x = g·W + s·(g·Bᵀ)·Aᵀ
//! ```
//!
//! `W` and `b` are frozen, so no gradient is computed or stored for them (the op computes only
//! the gradients its inputs need). The gradcheck suite checks the path in f64 (family `linear`).
//!
//! **Initialisation.** `B = 0`, so before training the adapted model is exactly the base model.
//! `A` is `kaiming_uniform_(a=√5)` as in the book. PyTorch computes fan_in of a 2-D tensor as its
//! second size, which for `A: (in, rank)` is `rank`: bound = gain·√(3/fan_in) with
//! gain = √(2/(1+a²)) = √(1/3), i.e. **A ~ U(±1/√rank)**.
//!
//! **Scale.** The issue and the later book errata use `alpha / rank` (the first printing
//! multiplied by `alpha` alone); rank 16, alpha 16 gives scale 1.
//!
//! **Merging** folds the update into the weight: `W ← W + s·(A·B)ᵀ` — after which the model is
//! a plain GPT again (same outputs, no extra matmuls), which is what export and `chat` load.

use crate::error::{Error, Result};
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// The adapter of one linear layer.
#[derive(Clone, Debug)]
pub struct LoRA<T: Element = f32> {
    /// `(in_features, rank)`.
    pub a: Tensor<T>,
    /// `(rank, out_features)`.
    pub b: Tensor<T>,
    pub alpha: f64,
}

impl<T: Element> LoRA<T> {
    /// A fresh adapter: A ~ U(±1/√rank) (kaiming-uniform, a = √5), B = 0.
    pub fn new(
        in_features: usize,
        out_features: usize,
        rank: usize,
        alpha: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        if rank == 0 {
            return Err(Error::invalid("LoRA", "rank must be at least 1"));
        }
        if !alpha.is_finite() {
            return Err(Error::invalid(
                "LoRA",
                format!("alpha must be finite, got {alpha}"),
            ));
        }
        let bound = 1.0 / (rank as f64).sqrt();
        Ok(LoRA {
            a: Tensor::uniform_from(&[in_features, rank], -bound, bound, rng).requires_grad_(true),
            b: Tensor::zeros(&[rank, out_features]).requires_grad_(true),
            alpha,
        })
    }

    pub fn rank(&self) -> usize {
        self.a.shape()[1]
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank() as f64
    }

    /// `s·(A·B)ᵀ`, shaped like the base weight `(out, in)` (no graph).
    pub fn delta_weight(&self) -> Result<Tensor<T>> {
        crate::autograd::no_grad(|| {
            self.a
                .detach()
                .matmul(&self.b.detach())?
                .mul_scalar(self.scale())?
                .transpose(0, 1)?
                .contiguous()
        })
    }

    /// `prefix.lora.A`, `prefix.lora.B`.
    pub fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}.lora.A"), self.a.clone()));
        out.push((format!("{prefix}.lora.B"), self.b.clone()));
    }
}
