//! The study versions of attention from book chapter 3, written with plain ops so every step
//! (scores, mask, softmax, weights, context) can be inspected — and tested equal to the fused
//! causal attention the GPT uses (tests/attention_study.rs).
//!
//! - [`simplified_self_attention`] (§3.3): no weights; scores = X·Xᵀ, weights = softmax, Z = W·X.
//! - [`SelfAttentionV1`] (§3.4): trainable `W_query`, `W_key`, `W_value` matrices `(d_in, d_out)`.
//! - [`SelfAttentionV2`] (§3.4): the same with `Linear` layers.
//! - [`CausalAttention`] (§3.5): batched, causal mask with −∞, dropout on the weights.
//! - [`MultiHeadAttentionWrapper`] (§3.6.1): several `CausalAttention` heads, concatenated.

use crate::error::Result;
use crate::nn::{ForwardCtx, Linear};
use crate::ops::masked_fill::causal_mask;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

/// §3.3: attention without trainable weights, for `x` of shape `(T, d)`. Returns
/// `(scores, weights, context)`, shapes `(T, T)`, `(T, T)`, `(T, d)`.
pub fn simplified_self_attention(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let scores = x.matmul(&x.transpose(0, 1)?)?;
    let weights = scores.softmax()?;
    let context = weights.matmul(x)?;
    Ok((scores, weights, context))
}

/// `softmax(Q·Kᵀ/√d_k)·V` with an optional causal mask and weight dropout — the formula every
/// study module shares. `q, k, v`: `(…, T, d_k)`.
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    dropout: f64,
    ctx: &ForwardCtx,
) -> Result<Tensor> {
    let d_k = *k.shape().last().expect("rank ≥ 1") as f64;
    let t = q.shape()[q.ndim() - 2];
    let mut scores = q.matmul(&k.transpose(-1, -2)?)?;
    if causal {
        scores = scores.masked_fill(&causal_mask(t, t), f64::NEG_INFINITY)?;
    }
    let mut weights = scores.div_scalar(d_k.sqrt())?.softmax()?;
    if ctx.training() && dropout > 0.0 {
        weights = weights.dropout(dropout, ctx.next_seed())?;
    }
    weights.matmul(v)
}

/// §3.4, version 1: the projections are bare parameter matrices, `x·W`.
#[derive(Clone, Debug)]
pub struct SelfAttentionV1 {
    pub w_query: Tensor,
    pub w_key: Tensor,
    pub w_value: Tensor,
}

impl SelfAttentionV1 {
    /// Matrices `(d_in, d_out)` drawn uniformly in [0, 1), as the book's `torch.rand`.
    pub fn new(d_in: usize, d_out: usize, rng: &mut Rng) -> Self {
        let mut m = || Tensor::uniform_from(&[d_in, d_out], 0.0, 1.0, rng).requires_grad_(true);
        SelfAttentionV1 {
            w_query: m(),
            w_key: m(),
            w_value: m(),
        }
    }

    /// `(T, d_in) → (T, d_out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (
            x.matmul(&self.w_query)?,
            x.matmul(&self.w_key)?,
            x.matmul(&self.w_value)?,
        );
        attend(&q, &k, &v, false, 0.0, &ForwardCtx::eval())
    }
}

/// §3.4, version 2: `Linear` projections without bias.
#[derive(Clone, Debug)]
pub struct SelfAttentionV2 {
    pub w_query: Linear,
    pub w_key: Linear,
    pub w_value: Linear,
}

impl SelfAttentionV2 {
    /// `d_in → d_out`, `Linear` default initialisation.
    pub fn new(d_in: usize, d_out: usize, qkv_bias: bool, rng: &mut Rng) -> Self {
        SelfAttentionV2 {
            w_query: Linear::new(d_in, d_out, qkv_bias, rng),
            w_key: Linear::new(d_in, d_out, qkv_bias, rng),
            w_value: Linear::new(d_in, d_out, qkv_bias, rng),
        }
    }

    /// `(T, d_in) → (T, d_out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (
            self.w_query.forward(x)?,
            self.w_key.forward(x)?,
            self.w_value.forward(x)?,
        );
        attend(&q, &k, &v, false, 0.0, &ForwardCtx::eval())
    }
}

/// §3.5: batched causal attention with dropout on the attention weights.
#[derive(Clone, Debug)]
pub struct CausalAttention {
    pub w_query: Linear,
    pub w_key: Linear,
    pub w_value: Linear,
    pub dropout: f64,
}

impl CausalAttention {
    /// `d_in → d_out` with weight dropout `dropout`.
    pub fn new(d_in: usize, d_out: usize, dropout: f64, qkv_bias: bool, rng: &mut Rng) -> Self {
        CausalAttention {
            w_query: Linear::new(d_in, d_out, qkv_bias, rng),
            w_key: Linear::new(d_in, d_out, qkv_bias, rng),
            w_value: Linear::new(d_in, d_out, qkv_bias, rng),
            dropout,
        }
    }

    /// `(B, T, d_in) → (B, T, d_out)`.
    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (q, k, v) = (
            self.w_query.forward(x)?,
            self.w_key.forward(x)?,
            self.w_value.forward(x)?,
        );
        attend(&q, &k, &v, true, self.dropout, ctx)
    }
}

/// §3.6.1: `num_heads` independent causal heads, outputs concatenated on the last axis.
#[derive(Clone, Debug)]
pub struct MultiHeadAttentionWrapper {
    pub heads: Vec<CausalAttention>,
}

impl MultiHeadAttentionWrapper {
    /// `num_heads` heads of `d_in → d_out` each (output `num_heads·d_out`).
    pub fn new(
        d_in: usize,
        d_out: usize,
        num_heads: usize,
        dropout: f64,
        qkv_bias: bool,
        rng: &mut Rng,
    ) -> Self {
        MultiHeadAttentionWrapper {
            heads: (0..num_heads)
                .map(|_| CausalAttention::new(d_in, d_out, dropout, qkv_bias, rng))
                .collect(),
        }
    }

    /// `(B, T, d_in) → (B, T, num_heads·d_out)`.
    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let outs = self
            .heads
            .iter()
            .map(|h| h.forward(x, ctx))
            .collect::<Result<Vec<_>>>()?;
        Tensor::concat(&outs.iter().collect::<Vec<_>>(), -1)
    }
}
