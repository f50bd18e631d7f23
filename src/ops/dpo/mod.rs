//! Direct Preference Optimization's two functions (the book's chapter 7 bonus): the mean
//! log-probability of a sequence's response tokens, and the DPO loss over a batch of pairs.
//!
//! Both are compositions of differentiable ops that already have their own rules, gradient
//! checks and CUDA kernels (`narrow`, `log_softmax`, `gather`, `mul`, `sum`, `div`, `sub`,
//! `log_sigmoid`, `mean`), so their backward is those rules chained — derived here in full,
//! and checked as a whole by the `dpo` cases of `scratchgpt gradcheck`.
//!
//! ## `sequence_logprobs` — the book's `compute_logprobs`
//!
//! For logits `z (B, T, V)`, labels `y (B, T)` and a mask `m (B, T)` (1 on response tokens):
//! position `t` predicts token `t + 1`, so with `p_{b,t} = softmax(z_{b,t})` and
//! `M_b = Σ_{t≥1} m_{b,t}`,
//!
//! ```text
//! ℓ_b = (1/M_b) · Σ_{t=0}^{T−2} m_{b,t+1} · ln p_{b,t}[y_{b,t+1}]
//! ```
//!
//! and, since `∂ ln p[y]/∂z = onehot(y) − p` (log-softmax's Jacobian row),
//!
//! ```text
//! ∂L/∂z_{b,t} = (∂L/∂ℓ_b) · (m_{b,t+1}/M_b) · (onehot(y_{b,t+1}) − p_{b,t})   for t ≤ T − 2,
//! ∂L/∂z_{b,T−1} = 0                                                             (it predicts nothing).
//! ```
//!
//! Without a mask, `M_b = T − 1` and every `m = 1` (the book's `.mean(-1)`).
//!
//! ## `dpo_loss` — the book's `compute_dpo_loss`
//!
//! With the policy's log-probabilities `π_c, π_r` and the frozen reference's `ρ_c, ρ_r`
//! (all `(B,)`), `Δ_b = (π_c − π_r)_b − (ρ_c − ρ_r)_b` and
//!
//! ```text
//! L = (1/B) · Σ_b −ln σ(β·Δ_b).
//! ```
//!
//! `d ln σ(x)/dx = σ(−x)`, so `∂L/∂Δ_b = −(β/B)·σ(−β·Δ_b)`, and
//! `∂L/∂π_c = ∂L/∂Δ`, `∂L/∂π_r = −∂L/∂Δ` (the reference is a constant). A pair the policy already
//! ranks far better than the reference does (`β·Δ ≫ 0`) contributes almost nothing; a pair it
//! ranks worse pulls with weight up to `β/B`. The rewards the book reports are the detached means
//! of `π_c − ρ_c` and `π_r − ρ_r` (not scaled by β).

use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::tensor::{Element, Tensor};

impl<T: Element> Tensor<T> {
    /// The mean log-probability of each sequence's selected tokens (the book's
    /// `compute_logprobs`): `self` is logits `(B, T, V)`, `labels (B, T)` the token ids,
    /// `mask` rows of `T` flags (true = the token's log-probability counts; `None` = all).
    /// Returns `(B,)`. See the module docs for the gradient.
    pub fn sequence_logprobs(&self, labels: &Ids, mask: Option<&[Vec<bool>]>) -> Result<Tensor<T>> {
        let s = self.shape();
        let bad = |why: String| Error::ShapeMismatch {
            op: "sequence_logprobs",
            lhs: s.clone(),
            rhs: labels.shape().to_vec(),
            why,
        };
        if s.len() != 3 || labels.shape() != &s[..2] {
            return Err(bad("logits (B, T, V) need labels (B, T)".into()));
        }
        let (b, t) = (s[0], s[1]);
        if t < 2 {
            return Err(bad(
                "a sequence needs at least 2 tokens (position t predicts token t + 1)".into(),
            ));
        }
        // Position t predicts token t + 1: drop the last position's logits, the first label.
        let next: Vec<i64> = labels
            .data()
            .chunks(t)
            .flat_map(|row| row[1..].to_vec())
            .collect();
        let index = Ids::new(next, &[b, t - 1, 1])?;
        let picked = self
            .narrow(1, 0, t - 1)?
            .log_softmax()?
            .gather(&index)?
            .reshape(&[b, t - 1])?; // ln p_{b,t}[y_{b,t+1}]
        let Some(mask) = mask else {
            return picked.mean(&[-1], false);
        };
        if mask.len() != b || mask.iter().any(|row| row.len() != t) {
            return Err(bad(format!(
                "the mask must be {b} rows of {t} flags, got {} rows of lengths {:?}",
                mask.len(),
                mask.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        let mut weights = Vec::with_capacity(b * (t - 1));
        let mut counts = Vec::with_capacity(b);
        for (r, row) in mask.iter().enumerate() {
            let n = row[1..].iter().filter(|&&m| m).count();
            if n == 0 {
                return Err(Error::invalid(
                    "sequence_logprobs",
                    format!(
                        "sequence {r} selects no token after its first (an empty response, or a prompt that fills the whole allowed length)"
                    ),
                ));
            }
            counts.push(n as f64);
            weights.extend(row[1..].iter().map(|&m| if m { 1.0 } else { 0.0 }));
        }
        let device = self.device();
        let weights = Tensor::<T>::from_f64s(&weights, &[b, t - 1])?.to_device(device)?;
        let counts = Tensor::<T>::from_f64s(&counts, &[b])?.to_device(device)?;
        picked.mul(&weights)?.sum(&[-1], false)?.div(&counts)
    }
}

/// The DPO loss of a batch and the book's two reported rewards.
pub struct DpoLoss<T: Element> {
    /// `mean_b −ln σ(β·Δ_b)`, differentiable in the policy's log-probabilities.
    pub loss: Tensor<T>,
    /// `mean_b (π_c − ρ_c)`: how much more likely the policy makes the chosen answers.
    pub chosen_rewards: f64,
    /// `mean_b (π_r − ρ_r)`.
    pub rejected_rewards: f64,
}

/// The book's `compute_dpo_loss` over `(B,)` log-probabilities of the policy (`policy_*`,
/// differentiable) and of the reference (`reference_*`, constants): see the module docs.
pub fn dpo_loss<T: Element>(
    policy_chosen: &Tensor<T>,
    policy_rejected: &Tensor<T>,
    reference_chosen: &Tensor<T>,
    reference_rejected: &Tensor<T>,
    beta: f64,
) -> Result<DpoLoss<T>> {
    let shape = policy_chosen.shape();
    for other in [policy_rejected, reference_chosen, reference_rejected] {
        if other.shape() != shape || shape.len() != 1 {
            return Err(Error::ShapeMismatch {
                op: "dpo_loss",
                lhs: shape,
                rhs: other.shape(),
                why: "the four log-probabilities must be (B,) each".into(),
            });
        }
    }
    if !(beta.is_finite() && beta > 0.0) {
        return Err(Error::invalid(
            "dpo_loss",
            format!("β must be a positive number, got {beta}"),
        ));
    }
    let policy_ratio = policy_chosen.sub(policy_rejected)?;
    let reference_ratio = reference_chosen.sub(reference_rejected)?;
    let loss = policy_ratio
        .sub(&reference_ratio)?
        .mul_scalar(beta)?
        .log_sigmoid()?
        .neg()?
        .mean_all()?;
    let reward = |p: &Tensor<T>, r: &Tensor<T>| -> Result<f64> {
        Ok(p.detach().sub(&r.detach())?.mean_all()?.item()?.f64())
    };
    Ok(DpoLoss {
        loss,
        chosen_rewards: reward(policy_chosen, reference_chosen)?,
        rejected_rewards: reward(policy_rejected, reference_rejected)?,
    })
}
