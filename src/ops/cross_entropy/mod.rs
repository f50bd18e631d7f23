//! Cross-entropy of logits against integer targets: log-softmax and negative log-likelihood
//! fused, averaged over the targets that are not `ignore_index` (PyTorch's
//! `F.cross_entropy(logits.flatten(0, 1), targets.flatten())`, default `ignore_index = -100`).
//!
//! **Forward**, per row with target t: `ℓ = −log softmax(x)_t = lse(x) − x_t`, where
//! `lse(x) = m + ln Σ_j e^{x_j − m}` (m the row max, for stability). `L = (1/N)·Σ_rows ℓ` over
//! the N rows whose target is not ignored. The forward saves one `lse` per row.
//!
//! **Backward.** `∂ℓ/∂x_j = ∂lse/∂x_j − [j = t] = softmax(x)_j − [j = t]`: the famous **p − y**
//! (predicted distribution minus one-hot target). So `∂L/∂x_j = g·(p_j − y_j)/N` for counted
//! rows and 0 for ignored rows, with `p_j = e^{x_j − lse}` recomputed from the saved lse.

mod cuda;

use std::mem::MaybeUninit;

use ndarray::IxDyn;

use rayon::prelude::*;

use crate::backend::cpu::{log_sum_exp, should_par};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::embedding::Ids;
use super::{contiguous, init_from, vec_from_rows};

/// PyTorch's default `ignore_index`.
pub const IGNORE_INDEX: i64 = -100;

/// One counted row of the backward: `out = (p − y)·scale`, with `p = e^{z − lse}` recomputed from
/// the saved log-sum-exp and `y` the one-hot of `target` — one pass writing `p·scale`, then the
/// target's `−scale`. Its own function so the loop vectorises on its own terms.
#[inline(never)]
fn p_minus_y_row<'a, T: Element>(
    z: &[T],
    lse: T,
    target: usize,
    scale: T,
    out: &'a mut [MaybeUninit<T>],
) -> &'a mut [T] {
    let row = init_from(
        out,
        z.iter()
            .map(|&zj| (zj - lse).exp_nonpositive_inline() * scale),
    );
    row[target] -= scale;
    row
}

impl<T: Element> Tensor<T> {
    /// Mean cross-entropy of logits `(…, V)` against targets of shape `(…)`; targets equal to
    /// [`IGNORE_INDEX`] (−100) are skipped.
    pub fn cross_entropy(&self, targets: &Ids) -> Result<Tensor<T>> {
        self.cross_entropy_with(targets, IGNORE_INDEX)
    }

    /// [`Tensor::cross_entropy`] with a chosen `ignore_index`.
    pub fn cross_entropy_with(&self, targets: &Ids, ignore_index: i64) -> Result<Tensor<T>> {
        let shape = self.shape();
        let Some((&v, lead)) = shape.split_last() else {
            return Err(Error::invalid(
                "cross_entropy",
                "logits must have at least one axis",
            ));
        };
        if lead != targets.shape() {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy",
                lhs: shape.clone(),
                rhs: targets.shape().to_vec(),
                why: "targets must have the logits' shape without the last (class) axis".into(),
            });
        }
        if v == 0 {
            return Err(Error::invalid("cross_entropy", "zero classes"));
        }
        let t = targets.data().to_vec();
        if let Some(&bad) = t
            .iter()
            .find(|&&y| y != ignore_index && (y < 0 || y as u64 >= v as u64))
        {
            return Err(Error::IndexOutOfRange {
                op: "cross_entropy",
                index: bad,
                size: v,
            });
        }
        let count = t.iter().filter(|&&y| y != ignore_index).count();
        if count == 0 {
            return Err(Error::invalid(
                "cross_entropy",
                format!(
                    "every target is ignore_index ({ignore_index}): the mean loss is undefined"
                ),
            ));
        }
        if let Some(c) = self.cuda_storage() {
            return cuda::cross_entropy(self, c, &t, ignore_index, count);
        }
        let x = contiguous(&self.cpu("cross_entropy")?);
        let xs = x.as_slice().expect("contiguous");
        // Per row: (lse, loss) — written by row tasks, summed in row order afterwards. One row
        // (a vocabulary of logits) is plenty of work for a task, so the split is by rows and
        // its size set by the logits, not by this two-number-per-row output.
        let mut per_row = vec![T::zero(); 2 * t.len()];
        let row_loss = |(r, out): (usize, &mut [T])| {
            let row = &xs[r * v..(r + 1) * v];
            let lse = log_sum_exp(row);
            out[0] = lse;
            out[1] = if t[r] == ignore_index {
                T::zero()
            } else {
                lse - row[t[r] as usize]
            };
        };
        if should_par(xs.len()) {
            per_row.par_chunks_mut(2).enumerate().for_each(row_loss);
        } else {
            per_row.chunks_mut(2).enumerate().for_each(row_loss);
        }
        let total: T = per_row.chunks(2).fold(T::zero(), |acc, p| acc + p[1]);
        let loss = total / T::of(count as f64);
        let out = CpuArray::from_elem(IxDyn(&[]), loss);
        Ok(Tensor::from_op(
            "cross_entropy",
            out,
            &[self],
            move |g, _| {
                let scale = *g.iter().next().expect("scalar") / T::of(count as f64);
                let xs = x.as_slice().expect("contiguous");
                // Every row of dx is written by its kernel (ignored rows with zeros), so dx is
                // built without a zero fill first — a whole extra write pass over B·T·V floats.
                let dx = vec_from_rows(xs.len(), v, |r, out| {
                    if t[r] == ignore_index {
                        return init_from(out, std::iter::repeat(T::zero()));
                    }
                    let z = &xs[r * v..(r + 1) * v];
                    p_minus_y_row(z, per_row[2 * r], t[r] as usize, scale, out)
                });
                Ok(vec![Some(
                    CpuArray::from_shape_vec(x.raw_dim(), dx).expect("size"),
                )])
            },
        ))
    }
}
