//! Rotary position embedding (RoPE), as Llama 3 and Qwen3 apply it to queries and keys, in
//! Hugging Face's *rotate-half* convention.
//!
//! **Forward.** A head vector `x` of even length `d` is split into halves `x¹ = x[..d/2]`,
//! `x² = x[d/2..]`; at position `p`, pair `k` turns by the angle `θ_k = p·ω_k`, with the
//! frequencies `ω_k = rope_theta^(−2k/d)` (optionally rescaled, below):
//! ```text
//! y¹_k = x¹_k·cos θ_k − x²_k·sin θ_k
//! y²_k = x²_k·cos θ_k + x¹_k·sin θ_k
//! ```
//! which is HF's `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [−x², x¹]` and the angle
//! table `cat(θ, θ)`.
//!
//! **Backward.** Each pair is multiplied by the rotation matrix `R(θ) = [[c, −s], [s, c]]`, so
//! `∂L/∂x = R(θ)ᵀ·∂L/∂y = R(−θ)·∂L/∂y`: the gradient turns back by the same angle,
//! ```text
//! ∂L/∂x¹_k =  g¹_k·cos θ_k + g²_k·sin θ_k
//! ∂L/∂x²_k = −g¹_k·sin θ_k + g²_k·cos θ_k
//! ```
//! No value is saved: only the angle table, which does not depend on x.
//!
//! **Llama 3's frequency scaling** (HF `rope_type: "llama3"`): with the original context `L`,
//! wavelengths `λ_k = 2π/ω_k` longer than `L/low_freq_factor` are slowed by `factor`, those
//! shorter than `L/high_freq_factor` kept, and those between blended with
//! `s = (L/λ_k − low) / (high − low)`: `ω_k ← (1 − s)·ω_k/factor + s·ω_k`.
//!
//! The angles are computed on the host in f64 (cos and sin of `p·ω` stay accurate at large
//! positions) and handed to the kernels as tables.

mod cuda;

use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, for_each_row};

/// Llama 3's rescaling of the rotary frequencies (HF `rope_scaling` with `rope_type: "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// The rotary embedding of one model: head size, base and scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub head_dim: usize,
    /// HF `rope_theta` (10,000 for GPT-NeoX style models, 500,000 for Llama 3, 1,000,000 for
    /// Qwen3).
    pub theta: f64,
    pub scaling: Option<Llama3Scaling>,
}

/// The cosines and sines of the angles of positions `start..start + len`, `(len, head_dim/2)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTable {
    pub start: usize,
    pub len: usize,
    pub half: usize,
    pub cos: Vec<f64>,
    pub sin: Vec<f64>,
}

impl Rope {
    /// Checks the settings: an even, non-zero head size; a positive base; sensible scaling.
    pub fn new(head_dim: usize, theta: f64, scaling: Option<Llama3Scaling>) -> Result<Self> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(Error::invalid(
                "rope",
                format!("the head size must be even and non-zero, got {head_dim}"),
            ));
        }
        if !(theta.is_finite() && theta > 1.0) {
            return Err(Error::invalid(
                "rope",
                format!("rope_theta must be a number above 1, got {theta}"),
            ));
        }
        if let Some(s) = scaling {
            let ok = s.factor.is_finite()
                && s.factor > 0.0
                && s.low_freq_factor > 0.0
                && s.high_freq_factor > s.low_freq_factor
                && s.original_max_position_embeddings > 0;
            if !ok {
                return Err(Error::invalid(
                    "rope",
                    format!("llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and an original context > 0, got {s:?}"),
                ));
            }
        }
        Ok(Rope {
            head_dim,
            theta,
            scaling,
        })
    }

    /// The `head_dim/2` frequencies `ω_k`, rescaled if the model says so.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|k| {
                let w = 1.0 / self.theta.powf((2 * k) as f64 / d);
                match self.scaling {
                    None => w,
                    Some(s) => llama3_scaled(w, &s),
                }
            })
            .collect()
    }

    /// The angle table of positions `start..start + len`.
    pub fn table(&self, start: usize, len: usize) -> RopeTable {
        let freqs = self.inv_freq();
        let half = freqs.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &w in &freqs {
                let (s, c) = (p as f64 * w).sin_cos();
                cos.push(c);
                sin.push(s);
            }
        }
        RopeTable {
            start,
            len,
            half,
            cos,
            sin,
        }
    }
}

fn llama3_scaled(w: f64, s: &Llama3Scaling) -> f64 {
    let old = s.original_max_position_embeddings as f64;
    let wavelen = 2.0 * std::f64::consts::PI / w;
    if wavelen < old / s.high_freq_factor {
        w
    } else if wavelen > old / s.low_freq_factor {
        w / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * w / s.factor + smooth * w
    }
}

/// Turns every pair of `x` (slices of `len·2·half`, one per row) by the table's angles, or by
/// their negatives when `back` (the backward).
fn rotate<T: Element>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    len: usize,
    half: usize,
    back: bool,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let n = len * 2 * half;
    for_each_row(&mut out, n, |r, o| {
        let xr = &x[r * n..][..n];
        for t in 0..len {
            let (xt, ot) = (
                &xr[t * 2 * half..][..2 * half],
                &mut o[t * 2 * half..][..2 * half],
            );
            let (ct, st) = (&cos[t * half..][..half], &sin[t * half..][..half]);
            for k in 0..half {
                let (a, b) = (xt[k], xt[half + k]);
                let (c, s) = (ct[k], if back { -st[k] } else { st[k] });
                ot[k] = a * c - b * s;
                ot[half + k] = b * c + a * s;
            }
        }
    });
    out
}

impl<T: Element> Tensor<T> {
    /// Rotary position embedding of `self (…, len, 2·half)` at the positions of `table`; see the
    /// module docs for the rule and its gradient.
    pub fn rope(&self, table: &RopeTable) -> Result<Tensor<T>> {
        let s = self.shape();
        let n = s.len();
        if n < 2 || s[n - 2] != table.len || s[n - 1] != 2 * table.half {
            return Err(Error::ShapeMismatch {
                op: "rope",
                lhs: s,
                rhs: vec![table.len, 2 * table.half],
                why: "the input must be (…, positions, head size) matching the angle table".into(),
            });
        }
        if table.cos.len() != table.len * table.half || table.sin.len() != table.cos.len() {
            return Err(Error::invalid(
                "rope",
                format!(
                    "the angle table holds {} cosines and {} sines, not {} × {}",
                    table.cos.len(),
                    table.sin.len(),
                    table.len,
                    table.half
                ),
            ));
        }
        if let Some(c) = self.cuda_storage() {
            return cuda::rope(self, c, table);
        }
        let x = contiguous(&self.cpu("rope")?);
        let cos: Vec<T> = table.cos.iter().map(|&v| T::of(v)).collect();
        let sin: Vec<T> = table.sin.iter().map(|&v| T::of(v)).collect();
        let (len, half) = (table.len, table.half);
        let y = rotate(x.as_slice().expect("c"), &cos, &sin, len, half, false);
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        Ok(Tensor::from_op("rope", y, &[self], move |g, _| {
            let g = contiguous(g);
            let dx = rotate(g.as_slice().expect("c"), &cos, &sin, len, half, true);
            Ok(vec![Some(
                CpuArray::from_shape_vec(g.raw_dim(), dx).expect("same size"),
            )])
        }))
    }
}
