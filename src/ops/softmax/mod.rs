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

mod cuda;

use std::mem::MaybeUninit;

use crate::backend::cpu::{dot, max, sum, sum_exp_shifted};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, init_from, vec_from_rows};

/// `out ← softmax(x)` for one row: the max of x, `e^{x−m}` written to `out`, its sum, the scaling.
fn softmax_row_into<'a, T: Element>(x: &[T], out: &'a mut [MaybeUninit<T>]) -> &'a mut [T] {
    let m = max(x);
    let y = init_from(out, x.iter().map(|&v| (v - m).exp_nonpositive_inline()));
    let inv = T::one() / sum(y);
    y.iter_mut().for_each(|v| *v *= inv);
    y
}

/// `out ← log_softmax(x)` for one row: the max, `ln Σ e^{x−m}` (nothing written), then
/// `x − (m + ln Σ)`.
fn log_softmax_row_into<'a, T: Element>(x: &[T], out: &'a mut [MaybeUninit<T>]) -> &'a mut [T] {
    let m = max(x);
    let lse = m + sum_exp_shifted(x, m).ln();
    init_from(out, x.iter().map(|&v| v - lse))
}

fn last_axis(op: &'static str, shape: &[usize]) -> Result<usize> {
    match shape.last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(Error::invalid(
            op,
            format!("needs a non-empty last axis, got shape {shape:?}"),
        )),
    }
}

/// A forward row kernel: input row → output row.
type ForwardRow<T> = for<'a> fn(&[T], &'a mut [MaybeUninit<T>]) -> &'a mut [T];
/// A backward row kernel: (upstream gradient row, saved output row) → input-gradient row.
type BackwardRow<T> = for<'a> fn(&[T], &[T], &'a mut [MaybeUninit<T>]) -> &'a mut [T];

/// The shared skeleton of both ops: a row kernel forward (saving the output) and a row kernel
/// backward from `(g_row, y_row)`. Both write fresh buffers directly (no zero fill, no copy of
/// the input).
fn row_op<T: Element>(
    x: &Tensor<T>,
    op: &'static str,
    forward_row: ForwardRow<T>,
    backward_row: BackwardRow<T>,
) -> Result<Tensor<T>> {
    let n = last_axis(op, &x.shape())?;
    if let Some(c) = x.cuda_storage() {
        return cuda::row_op(x, c, op, op == "log_softmax");
    }
    let xa = contiguous(&x.cpu(op)?);
    let xs = xa.as_slice().expect("contiguous");
    let y = vec_from_rows(xs.len(), n, |r, out| forward_row(&xs[r * n..][..n], out));
    let y = CpuArray::from_shape_vec(xa.raw_dim(), y).expect("same size");
    let saved = y.clone();
    Ok(Tensor::from_op(op, y, &[x], move |g, _| {
        let g = contiguous(g);
        let (gs, ys) = (
            g.as_slice().expect("contiguous"),
            saved.as_slice().expect("contiguous"),
        );
        let dx = vec_from_rows(ys.len(), n, |r, out| {
            backward_row(&gs[r * n..][..n], &ys[r * n..][..n], out)
        });
        Ok(vec![Some(
            CpuArray::from_shape_vec(saved.raw_dim(), dx).expect("same size"),
        )])
    }))
}

/// Softmax backward of one row: `dx = y ⊙ (g − g·y)`.
fn softmax_backward_row<'a, T: Element>(
    g: &[T],
    y: &[T],
    out: &'a mut [MaybeUninit<T>],
) -> &'a mut [T] {
    let gy = dot(g, y);
    init_from(out, g.iter().zip(y).map(|(&gi, &yi)| yi * (gi - gy)))
}

/// Log-softmax backward of one row: `dx = g − exp(y)·Σg`.
fn log_softmax_backward_row<'a, T: Element>(
    g: &[T],
    y: &[T],
    out: &'a mut [MaybeUninit<T>],
) -> &'a mut [T] {
    let gsum = sum(g);
    init_from(
        out,
        g.iter()
            .zip(y)
            .map(|(&gi, &yi)| gi - yi.exp_nonpositive_inline() * gsum),
    )
}

impl<T: Element> Tensor<T> {
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor<T>> {
        row_op(self, "softmax", softmax_row_into, softmax_backward_row)
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor<T>> {
        row_op(
            self,
            "log_softmax",
            log_softmax_row_into,
            log_softmax_backward_row,
        )
    }
}
