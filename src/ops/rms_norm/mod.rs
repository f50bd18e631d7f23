//! RMS normalisation over the last axis with a learnable weight — Llama's and Qwen3's `RMSNorm`:
//! layer norm without the mean and without the shift.
//!
//! **Forward**, per row `x` of length n:
//! ```text
//! r = 1/√((1/n)Σ x_i² + ε),   x̂_i = x_i·r,   y_i = w_i·x̂_i
//! ```
//! The forward saves r per row (one number), not x̂.
//!
//! **Backward.** With `g = ∂L/∂y`:
//! - `∂L/∂w_i = Σ_rows g_i·x̂_i` (y is linear in w).
//! - For x, let `d_i = g_i·w_i = ∂L/∂x̂_i`. x̂ depends on x directly and through r, with
//!   `∂r/∂x_j = −r³·x_j/n` (since `∂(Σx²/n)/∂x_j = 2x_j/n`):
//!   `∂x̂_i/∂x_j = r·δ_ij − x_i·r³·x_j/n = r·(δ_ij − x̂_i x̂_j / n)`. Contracting with d:
//!   ```text
//!   ∂L/∂x_j = r · ( d_j − x̂_j · mean(d ⊙ x̂) )
//!   ```
//!   layer norm's rule (src/ops/layer_norm) without its `− mean(d)` term: no mean was subtracted.
//!
//! **Determinism.** ∂L/∂w sums over rows in fixed-size chunks added in order (on the device:
//! fixed-order partial sums), so the bits do not depend on the thread count.

mod cuda;

use rayon::prelude::*;

use crate::backend::cpu::should_par;
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, rows_per_task};

impl<T: Element> Tensor<T> {
    /// `RMSNorm(x) = weight ⊙ x / √(mean(x²) + eps)` over the last axis; `weight` has shape `[n]`,
    /// the size of the last axis. See the module docs for the gradient.
    pub fn rms_norm(&self, weight: &Tensor<T>, eps: f64) -> Result<Tensor<T>> {
        let in_shape = self.shape();
        let n = match in_shape.last() {
            Some(&n) if n > 0 => n,
            _ => {
                return Err(Error::invalid(
                    "rms_norm",
                    format!("needs a non-empty last axis, got {in_shape:?}"),
                ))
            }
        };
        if weight.shape() != [n] {
            return Err(Error::ShapeMismatch {
                op: "rms_norm",
                lhs: in_shape,
                rhs: weight.shape(),
                why: format!("the weight must have shape [{n}] (the last axis of the input)"),
            });
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::invalid(
                "rms_norm",
                format!("eps must be positive, got {eps}"),
            ));
        }
        if let Some(ops) = super::cuda_operands("rms_norm", &[self, weight])? {
            return cuda::rms_norm([self, weight], ops, eps);
        }
        let x = contiguous(&self.cpu("rms_norm")?);
        let w = contiguous(&weight.cpu("rms_norm")?);
        let (xs, ws) = (x.as_slice().expect("c"), w.as_slice().expect("c"));
        let rows = xs.len() / n;
        let inv_n = T::one() / T::of(n as f64);
        let epst = T::of(eps);
        let mut y = vec![T::zero(); xs.len()];
        let mut rstd = vec![T::zero(); rows];
        let per = rows_per_task(n);
        type Chunk<'a, T> = (usize, (&'a mut [T], &'a mut [T]));
        let work = |(c, (yc, rc)): Chunk<'_, T>| {
            for (r, (yr, rs)) in yc.chunks_mut(n).zip(rc.iter_mut()).enumerate() {
                let xr = &xs[(c * per + r) * n..][..n];
                let ms = xr.iter().fold(T::zero(), |s, &v| s + v * v) * inv_n;
                let inv = T::one() / (ms + epst).sqrt();
                for ((y, &x), &w) in yr.iter_mut().zip(xr).zip(ws) {
                    *y = w * (x * inv);
                }
                *rs = inv;
            }
        };
        if should_par(xs.len()) {
            y.par_chunks_mut(per * n)
                .zip(rstd.par_chunks_mut(per))
                .enumerate()
                .for_each(work);
        } else {
            y.chunks_mut(per * n)
                .zip(rstd.chunks_mut(per))
                .enumerate()
                .for_each(work);
        }
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        Ok(Tensor::from_op(
            "rms_norm",
            y,
            &[self, weight],
            move |g, needs| {
                let gc = contiguous(g);
                let gv = gc.as_slice().expect("c");
                let (xs, ws) = (x.as_slice().expect("c"), w.as_slice().expect("c"));
                let mut dx = vec![T::zero(); xs.len()];
                // One task per chunk of rows: its rows of dx, and its partial dw.
                let work = |(c, dxc): (usize, &mut [T])| {
                    let mut dw = vec![T::zero(); n];
                    for (r, dxr) in dxc.chunks_mut(n).enumerate() {
                        let row = c * per + r;
                        let (xr, gr) = (&xs[row * n..][..n], &gv[row * n..][..n]);
                        let inv = rstd[row];
                        let mut sdx = T::zero();
                        for (((&x, &g), &w), dw) in xr.iter().zip(gr).zip(ws).zip(dw.iter_mut()) {
                            let xh = x * inv;
                            sdx += g * w * xh;
                            *dw += g * xh;
                        }
                        let mean_dx = sdx * inv_n;
                        // dx_j = r·(d_j − x̂_j·mean(d ⊙ x̂)).
                        for (((o, &x), &g), &w) in dxr.iter_mut().zip(xr).zip(gr).zip(ws) {
                            *o = inv * (g * w - x * inv * mean_dx);
                        }
                    }
                    dw
                };
                let partials: Vec<Vec<T>> = if should_par(xs.len()) {
                    dx.par_chunks_mut(per * n).enumerate().map(work).collect()
                } else {
                    dx.chunks_mut(per * n).enumerate().map(work).collect()
                };
                let mut dw = vec![T::zero(); n];
                for p in &partials {
                    for (a, &b) in dw.iter_mut().zip(p) {
                        *a += b;
                    }
                }
                Ok(vec![
                    needs[0].then(|| CpuArray::from_shape_vec(x.raw_dim(), dx).expect("same size")),
                    needs[1].then(|| CpuArray::from_shape_vec(w.raw_dim(), dw).expect("same size")),
                ])
            },
        ))
    }
}
