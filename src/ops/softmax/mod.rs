//! `softmax` and `log_softmax` over the last axis, fused and numerically stable.
//!
//! **Forward.** Subtracting the row maximum `m` changes nothing mathematically
//! (`e^{x_i−m}/Σ_j e^{x_j−m} = e^{x_i}/Σ_j e^{x_j}`) but keeps every exponent ≤ 0, so nothing
//! overflows: `y_i = e^{x_i−m} / Σ_j e^{x_j−m}`, and `log y_i = x_i − m − ln Σ_j e^{x_j−m}`.
//!
//! **Softmax backward.** The Jacobian is `∂y_i/∂x_j = y_i(δ_ij − y_j)`. Its vector–Jacobian
//! product never needs the n×n matrix:
//! `∂L/∂x_j = Σ_i g_i y_i(δ_ij − y_j) = y_j·(g_j − Σ_i g_i y_i)` — one dot product per row.
//!
//! **Log-softmax backward.** `∂(log y_i)/∂x_j = δ_ij − y_j`, so
//! `∂L/∂x_j = g_j − y_j·Σ_i g_i` with `y = softmax(x) = exp(log_softmax(x))`.

use crate::backend::cpu::{dot, max, sum};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, for_each_row, to_contiguous_vec};

/// In place: `row ← softmax(row)`.
pub(crate) fn softmax_row<T: Element>(row: &mut [T]) {
    let m = max(row);
    row.iter_mut().for_each(|v| *v -= m);
    T::exp_slice(row);
    let inv = T::one() / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// In place: `row ← log_softmax(row)`, using `scratch` for the exponentials.
fn log_softmax_row<T: Element>(row: &mut [T], scratch: &mut Vec<T>) {
    let m = max(row);
    scratch.clear();
    scratch.extend(row.iter().map(|&v| v - m));
    T::exp_slice(scratch);
    let lse = m + sum(scratch).ln();
    row.iter_mut().for_each(|v| *v -= lse);
}

fn last_axis<T2: Element>(op: &'static str, x: &CpuArray<T2>) -> Result<usize> {
    match x.shape().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(Error::invalid(
            op,
            format!("needs a non-empty last axis, got shape {:?}", x.shape()),
        )),
    }
}

/// The shared skeleton of both ops: a row kernel forward (saving the output) and a row kernel
/// backward from `(g_row, y_row)`.
fn row_op<T: Element>(
    x: &Tensor<T>,
    op: &'static str,
    forward_row: fn(&mut [T], &mut Vec<T>),
    backward_row: fn(&[T], &[T], &mut [T]),
) -> Result<Tensor<T>> {
    let xa = x.cpu(op)?;
    let n = last_axis(op, &xa)?;
    let mut y = to_contiguous_vec(&xa);
    for_each_row(&mut y, n, |_, row, scratch| forward_row(row, scratch));
    let y = CpuArray::from_shape_vec(xa.raw_dim(), y).expect("same size");
    let saved = y.clone();
    Ok(Tensor::from_op(op, y, &[x], move |g, _| {
        let g = contiguous(g);
        let (gs, ys) = (
            g.as_slice().expect("contiguous"),
            saved.as_slice().expect("contiguous"),
        );
        let mut dx = vec![T::zero(); ys.len()];
        for_each_row(&mut dx, n, |r, out, _| {
            backward_row(&gs[r * n..(r + 1) * n], &ys[r * n..(r + 1) * n], out)
        });
        Ok(vec![Some(
            CpuArray::from_shape_vec(saved.raw_dim(), dx).expect("same size"),
        )])
    }))
}

/// Softmax backward of one row: `dx = y ⊙ (g − g·y)`.
fn softmax_backward_row<T: Element>(g: &[T], y: &[T], out: &mut [T]) {
    let gy = dot(g, y);
    for ((o, &gi), &yi) in out.iter_mut().zip(g).zip(y) {
        *o = yi * (gi - gy);
    }
}

/// Log-softmax backward of one row: `dx = g − exp(y)·Σg`.
fn log_softmax_backward_row<T: Element>(g: &[T], y: &[T], out: &mut [T]) {
    out.copy_from_slice(y);
    T::exp_slice(out);
    let gsum = sum(g);
    for (o, &gi) in out.iter_mut().zip(g) {
        *o = gi - *o * gsum;
    }
}

impl<T: Element> Tensor<T> {
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor<T>> {
        row_op(
            self,
            "softmax",
            |row, _| softmax_row(row),
            softmax_backward_row,
        )
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor<T>> {
        row_op(
            self,
            "log_softmax",
            log_softmax_row,
            log_softmax_backward_row,
        )
    }
}
