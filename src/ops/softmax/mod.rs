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

impl<T: Element> Tensor<T> {
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor<T>> {
        let x = self.cpu("softmax")?;
        let n = last_axis("softmax", &x)?;
        let mut y = to_contiguous_vec(&x);
        for_each_row(&mut y, n, |_, row, _| softmax_row(row));
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        let saved = y.clone();
        Ok(Tensor::from_op("softmax", y, &[self], move |g, _| {
            let g = contiguous(g);
            let (gs, ys) = (
                g.as_slice().expect("contiguous"),
                saved.as_slice().expect("contiguous"),
            );
            let mut dx = vec![T::zero(); ys.len()];
            for_each_row(&mut dx, n, |r, out, _| {
                let (gr, yr) = (&gs[r * n..(r + 1) * n], &ys[r * n..(r + 1) * n]);
                let gy = dot(gr, yr);
                for ((o, &gi), &yi) in out.iter_mut().zip(gr).zip(yr) {
                    *o = yi * (gi - gy);
                }
            });
            Ok(vec![Some(
                CpuArray::from_shape_vec(saved.raw_dim(), dx).expect("same size"),
            )])
        }))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor<T>> {
        let x = self.cpu("log_softmax")?;
        let n = last_axis("log_softmax", &x)?;
        let mut y = to_contiguous_vec(&x);
        for_each_row(&mut y, n, |_, row, scratch| log_softmax_row(row, scratch));
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        let saved = y.clone();
        Ok(Tensor::from_op("log_softmax", y, &[self], move |g, _| {
            let g = contiguous(g);
            let (gs, ys) = (
                g.as_slice().expect("contiguous"),
                saved.as_slice().expect("contiguous"),
            );
            let mut dx = vec![T::zero(); ys.len()];
            for_each_row(&mut dx, n, |r, out, _| {
                let (gr, yr) = (&gs[r * n..(r + 1) * n], &ys[r * n..(r + 1) * n]);
                out.copy_from_slice(yr);
                T::exp_slice(out);
                let gsum = sum(gr);
                for (o, &gi) in out.iter_mut().zip(gr) {
                    *o = gi - *o * gsum;
                }
            });
            Ok(vec![Some(
                CpuArray::from_shape_vec(saved.raw_dim(), dx).expect("same size"),
            )])
        }))
    }
}
