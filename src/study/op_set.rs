//! The six ops a GPT is made of, as a trait, and two ways to compute them: the library's fused
//! ops ([`Fused`]) and the same math from elementary ops ([`Primitive`]).

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::ops::masked_fill::causal_mask;
use crate::tensor::Tensor;

/// The ops of the study GPT's forward ([`super::tiny_gpt::forward`]); everything else it does
/// (residual adds, the head split and merge) is plain glue shared by every op set.
pub trait OpSet {
    /// A short name for reports ("primitive", "fused", "your rules").
    fn name(&self) -> String;
    /// Rows of `weight (V, C)` picked by `ids`: shape `ids.shape() + [C]`.
    fn embedding(&self, weight: &Tensor<f64>, ids: &Ids) -> Result<Tensor<f64>>;
    /// `x·Wᵀ + b` for `x (…, in)`, `W (out, in)`, `b (out)`.
    fn linear(
        &self,
        x: &Tensor<f64>,
        w: &Tensor<f64>,
        b: Option<&Tensor<f64>>,
    ) -> Result<Tensor<f64>>;
    /// Layer norm over the last axis with scale γ and shift β (biased variance, as the book).
    fn layer_norm(
        &self,
        x: &Tensor<f64>,
        scale: &Tensor<f64>,
        shift: &Tensor<f64>,
        eps: f64,
    ) -> Result<Tensor<f64>>;
    /// GELU, tanh approximation.
    fn gelu(&self, x: &Tensor<f64>) -> Result<Tensor<f64>>;
    /// `softmax(Q·Kᵀ/√d + causal mask)·V` for `q, k, v (B, H, T, d)`.
    fn causal_attention(
        &self,
        q: &Tensor<f64>,
        k: &Tensor<f64>,
        v: &Tensor<f64>,
    ) -> Result<Tensor<f64>>;
    /// Mean cross-entropy of `logits (B, T, V)` against `targets (B, T)`.
    fn cross_entropy(&self, logits: &Tensor<f64>, targets: &Ids) -> Result<Tensor<f64>>;
}

/// The op names only the fused op set may record: a primitive graph contains none of them
/// (tests/study_gpt.rs reads the graph to prove it).
pub const FUSED_OPS: &[&str] = &[
    "embedding",
    "linear",
    "layer_norm",
    "gelu",
    "attention",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "dropout",
];

/// The library's fused ops, called exactly as `GptModel` calls them in eval mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fused;

impl OpSet for Fused {
    fn name(&self) -> String {
        "fused".into()
    }
    fn embedding(&self, weight: &Tensor<f64>, ids: &Ids) -> Result<Tensor<f64>> {
        weight.embedding(ids)
    }
    fn linear(
        &self,
        x: &Tensor<f64>,
        w: &Tensor<f64>,
        b: Option<&Tensor<f64>>,
    ) -> Result<Tensor<f64>> {
        x.linear(w, b, None)
    }
    fn layer_norm(
        &self,
        x: &Tensor<f64>,
        scale: &Tensor<f64>,
        shift: &Tensor<f64>,
        eps: f64,
    ) -> Result<Tensor<f64>> {
        x.layer_norm(scale, shift, eps)
    }
    fn gelu(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        x.gelu()
    }
    fn causal_attention(
        &self,
        q: &Tensor<f64>,
        k: &Tensor<f64>,
        v: &Tensor<f64>,
    ) -> Result<Tensor<f64>> {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: 0.0,
            seed: 0,
        };
        Tensor::attention(q, k, v, &opts)
    }
    fn cross_entropy(&self, logits: &Tensor<f64>, targets: &Ids) -> Result<Tensor<f64>> {
        logits.cross_entropy(targets)
    }
}

/// The same math from elementary ops only (add, sub, mul, div, scalar ops, pow, exp, log, sqrt,
/// tanh, sum, mean, max, matmul, masked_fill, gather and views): the graph a student would draw
/// from the book's formulas, whose every gradient comes from the simplest rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Primitive;

/// `√(2/π)`, GELU's tanh-approximation constant.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

impl Primitive {
    /// Softmax over the last axis, stable: `e = exp(s − max s)`, `e / Σe`. The max is a routed
    /// (not detached) input: softmax is shift-invariant, so the gradient it routes sums to zero
    /// up to rounding — the graph shows it.
    fn softmax(s: &Tensor<f64>) -> Result<Tensor<f64>> {
        let e = s.sub(&s.max(-1, true)?)?.exp()?;
        e.div(&e.sum(&[-1], true)?)
    }

    /// `log softmax(z) = z − max z − ln Σ exp(z − max z)` over the last axis.
    fn log_softmax(z: &Tensor<f64>) -> Result<Tensor<f64>> {
        let shifted = z.sub(&z.max(-1, true)?)?;
        shifted.sub(&shifted.exp()?.sum(&[-1], true)?.log()?)
    }
}

impl OpSet for Primitive {
    fn name(&self) -> String {
        "primitive".into()
    }

    /// A lookup is a one-hot matrix times the table: `onehot(ids) (…, V) · W (V, C)`, so its
    /// gradient is `onehotᵀ · dY` — the scatter-add the fused op does in place.
    fn embedding(&self, weight: &Tensor<f64>, ids: &Ids) -> Result<Tensor<f64>> {
        let v = weight.shape()[0];
        ids.check_range("embedding", v)?;
        let mut shape = ids.shape().to_vec();
        shape.push(v);
        let mut hot = ArrayD::<f64>::zeros(IxDyn(&shape));
        let flat = hot.as_slice_mut().expect("fresh array");
        for (row, &id) in ids.data().iter().enumerate() {
            flat[row * v + id as usize] = 1.0;
        }
        Tensor::from_array(hot).matmul(weight)
    }

    fn linear(
        &self,
        x: &Tensor<f64>,
        w: &Tensor<f64>,
        b: Option<&Tensor<f64>>,
    ) -> Result<Tensor<f64>> {
        let y = x.matmul(&w.transpose(0, 1)?)?;
        match b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// The book's `LayerNorm.forward`: `(x − mean) / √(var + ε) · γ + β`.
    fn layer_norm(
        &self,
        x: &Tensor<f64>,
        scale: &Tensor<f64>,
        shift: &Tensor<f64>,
        eps: f64,
    ) -> Result<Tensor<f64>> {
        let centered = x.sub(&x.mean(&[-1], true)?)?;
        let var = centered.mul(&centered)?.mean(&[-1], true)?;
        let norm = centered.div(&var.add_scalar(eps)?.sqrt()?)?;
        norm.mul(scale)?.add(shift)
    }

    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    fn gelu(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let inner = x
            .add(&x.powf(3.0)?.mul_scalar(0.044715)?)?
            .mul_scalar(SQRT_2_OVER_PI)?;
        x.mul(&inner.tanh()?.add_scalar(1.0)?)?.mul_scalar(0.5)
    }

    /// The book's `MultiHeadAttention` core: scores `Q·Kᵀ/√d`, the causal mask (−∞ above the
    /// diagonal), softmax, weights · V.
    fn causal_attention(
        &self,
        q: &Tensor<f64>,
        k: &Tensor<f64>,
        v: &Tensor<f64>,
    ) -> Result<Tensor<f64>> {
        let s = q.shape();
        let (t, d) = (s[2], s[3]);
        let scores = q
            .matmul(&k.transpose(2, 3)?)?
            .div_scalar((d as f64).sqrt())?;
        let masked = scores.masked_fill(&causal_mask(t, t), f64::NEG_INFINITY)?;
        Self::softmax(&masked)?.matmul(v)
    }

    /// `−mean(log softmax(logits)[target])`: a log-softmax, a `gather` of each row's target,
    /// a mean and a sign.
    fn cross_entropy(&self, logits: &Tensor<f64>, targets: &Ids) -> Result<Tensor<f64>> {
        let s = logits.shape();
        if s.len() != 3 || targets.shape() != &s[..2] {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy",
                lhs: s,
                rhs: targets.shape().to_vec(),
                why: "logits (B, T, V) need targets (B, T)".into(),
            });
        }
        let mut index_shape = targets.shape().to_vec();
        index_shape.push(1);
        let index = Ids::new(targets.data().to_vec(), &index_shape)?;
        Self::log_softmax(logits)?.gather(&index)?.mean_all()?.neg()
    }
}
