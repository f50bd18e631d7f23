//! Gather along the last axis: pick, in every row, the entries at given positions — how DPO's
//! `compute_logprobs` takes each token's log-probability of its target out of a `(B, T, V)`
//! log-softmax (`torch.gather(logprobs, -1, labels.unsqueeze(-1))`).
//!
//! **Forward.** For `x` of shape `(..., V)` and indices of shape `(..., K)` with the same leading
//! shape (rows r):
//! ```text
//! out[r, j] = x[r, idx[r, j]]
//! ```
//!
//! **Backward.** `out[r, j]` depends on exactly one input, `x[r, idx[r, j]]`, with derivative 1
//! (the "max routes" gate pattern, with the route given instead of found). So the gradient is
//! a scatter-add back into those places, and zero everywhere nothing was picked; an index picked
//! twice in a row receives both gradients (the chain rule sums over every use):
//! ```text
//! ∂L/∂x[r, v] = Σ_{j : idx[r, j] = v} g[r, j]
//! ```
//! Each row's sum runs over j in order, so repeated indices accumulate deterministically. It is
//! the embedding's backward (a row gather's scatter-add) applied within each row.

mod cuda;

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::contiguous;
use super::embedding::Ids;

/// Checks `idx` against `x`'s shape: same leading shape, every index in `0..V`. Returns
/// (rows, V, K).
fn check(x_shape: &[usize], idx: &Ids) -> Result<(usize, usize, usize)> {
    let (Some((&v, lead)), Some((&k, ilead))) = (x_shape.split_last(), idx.shape().split_last())
    else {
        return Err(Error::invalid(
            "gather",
            "the input and the indices need at least one axis",
        ));
    };
    if lead != ilead {
        return Err(Error::ShapeMismatch {
            op: "gather",
            lhs: x_shape.to_vec(),
            rhs: idx.shape().to_vec(),
            why: "the indices need the input's leading shape (any last axis)".into(),
        });
    }
    idx.check_range("gather", v)?;
    Ok((lead.iter().product(), v, k))
}

impl<T: Element> Tensor<T> {
    /// `out[..., j] = self[..., index[..., j]]`: entries of the last axis picked by `index`
    /// (same leading shape as `self`, any length K); out has `index`'s shape.
    pub fn gather(&self, index: &Ids) -> Result<Tensor<T>> {
        if let Some(c) = self.cuda_storage() {
            let (rows, v, k) = check(c.shape(), index)?;
            return cuda::gather(self, c, index, rows, v, k);
        }
        let x = contiguous(&self.cpu("gather")?);
        let (rows, v, k) = check(x.shape(), index)?;
        let xs = x.as_slice().expect("contiguous");
        let idx: Vec<usize> = index.data().iter().map(|&i| i as usize).collect();
        let out: Vec<T> = (0..rows * k).map(|i| xs[(i / k) * v + idx[i]]).collect();
        let out = ArrayD::from_shape_vec(IxDyn(index.shape()), out).expect("size");
        let x_shape = x.shape().to_vec();
        Ok(Tensor::from_op("gather", out, &[self], move |g, _| {
            let g = contiguous(g);
            let gs = g.as_slice().expect("contiguous");
            let mut dx = vec![T::zero(); rows * v];
            for r in 0..rows {
                for j in 0..k {
                    dx[r * v + idx[r * k + j]] += gs[r * k + j];
                }
            }
            Ok(vec![Some(
                CpuArray::from_shape_vec(IxDyn(&x_shape), dx).expect("size"),
            )])
        }))
    }
}
