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

use ndarray::IxDyn;

use crate::backend::cpu::{max, sum_exp_shifted};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::embedding::Ids;
use super::{contiguous, for_each_row};

/// PyTorch's default `ignore_index`.
pub const IGNORE_INDEX: i64 = -100;

impl<T: Element> Tensor<T> {
    /// Mean cross-entropy of logits `(…, V)` against targets of shape `(…)`; targets equal to
    /// [`IGNORE_INDEX`] (−100) are skipped.
    pub fn cross_entropy(&self, targets: &Ids) -> Result<Tensor<T>> {
        self.cross_entropy_with(targets, IGNORE_INDEX)
    }

    /// [`Tensor::cross_entropy`] with a chosen `ignore_index`.
    pub fn cross_entropy_with(&self, targets: &Ids, ignore_index: i64) -> Result<Tensor<T>> {
        let x = contiguous(&self.cpu("cross_entropy")?);
        let shape = x.shape().to_vec();
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
        let xs = x.as_slice().expect("contiguous");
        // Per row: (lse, loss) — written by row tasks, summed in row order afterwards.
        let mut per_row = vec![T::zero(); 2 * t.len()];
        for_each_row(&mut per_row, 2, |r, out, _| {
            let row = &xs[r * v..(r + 1) * v];
            let m = max(row);
            let lse = m + sum_exp_shifted(row, m).ln();
            out[0] = lse;
            out[1] = if t[r] == ignore_index {
                T::zero()
            } else {
                lse - row[t[r] as usize]
            };
        });
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
                let mut dx = vec![T::zero(); xs.len()];
                for_each_row(&mut dx, v, |r, out, _| {
                    if t[r] == ignore_index {
                        return; // stays zero
                    }
                    let lse = per_row[2 * r];
                    // (p − y)·scale in one pass: p = e^{z − lse}, then the one-hot's −scale.
                    for (o, &z) in out.iter_mut().zip(&xs[r * v..(r + 1) * v]) {
                        *o = (z - lse).exp_inline() * scale;
                    }
                    out[t[r] as usize] -= scale;
                });
                Ok(vec![Some(
                    CpuArray::from_shape_vec(x.raw_dim(), dx).expect("size"),
                )])
            },
        ))
    }
}
