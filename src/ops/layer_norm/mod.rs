//! Layer normalisation over the last axis with a learnable scale γ and shift β — the book's
//! `LayerNorm` (biased variance, `eps` inside the square root), fused into one op.
//!
//! **Forward**, per row `x` of length n:
//! ```text
//! μ = (1/n)Σ x_i,   σ² = (1/n)Σ (x_i − μ)²,   r = 1/√(σ² + ε),
//! x̂_i = (x_i − μ)·r,   y_i = γ_i·x̂_i + β_i
//! ```
//! The forward saves μ and r per row (two numbers), not x̂.
//!
//! **Backward.** With `g = ∂L/∂y`:
//! - `∂L/∂β_i = Σ_rows g_i` and `∂L/∂γ_i = Σ_rows g_i·x̂_i` (y is linear in β and γ).
//! - For x, let `d_i = g_i·γ_i = ∂L/∂x̂_i`. x̂ depends on x directly *and* through μ and r:
//!   `∂x̂_i/∂x_j = r·(δ_ij − 1/n) − (x_i − μ)·r³·(x_j − μ)/n = r·(δ_ij − 1/n − x̂_i x̂_j / n)`
//!   (using `∂r/∂x_j = −r³(x_j − μ)/n`, since `∂σ²/∂x_j = 2(x_j − μ)/n`). Contracting with d:
//!   ```text
//!   ∂L/∂x_j = r · ( d_j − mean(d) − x̂_j · mean(d ⊙ x̂) )
//!   ```
//!   the three terms: the direct path, the path through the mean, the path through the variance.
//!
//! **Determinism.** ∂L/∂γ and ∂L/∂β sum over rows; rows are split into fixed-size chunks
//! (depending only on the row length), each chunk sums its rows, and the chunk sums are added
//! in order — the same bits on every run and with any number of threads.

mod cuda;

use rayon::prelude::*;

use crate::backend::cpu::{should_par, sum, sum_sq_dev};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, rows_per_task};

/// Lanes of [`row_sums`]' accumulators (independent chains, so the loop vectorises).
const LANES: usize = 16;

/// One row's pass of the backward: accumulates `dγ += g ⊙ x̂` and `dβ += g`, and returns
/// `(Σ d, Σ d ⊙ x̂)` with `d = g ⊙ γ`, `x̂ = (x − μ)·r` computed on the fly. Nothing else is
/// stored: the final loop recomputes `x̂` and `d` (a multiply-add each) instead of reading them
/// back from scratch rows, which saves two stores and two loads per element.
fn row_sums<T: Element>(
    x: &[T],
    g: &[T],
    gamma: &[T],
    mu: T,
    rstd: T,
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> (T, T) {
    let (mut sd, mut sdx) = ([T::zero(); LANES], [T::zero(); LANES]);
    let mut step = |lanes: usize, x: &[T], g: &[T], ga: &[T], dg: &mut [T], db: &mut [T]| {
        for i in 0..lanes {
            let xh = (x[i] - mu) * rstd;
            let d = g[i] * ga[i];
            sd[i] += d;
            sdx[i] += d * xh;
            dg[i] += g[i] * xh;
            db[i] += g[i];
        }
    };
    let full = x.len() / LANES * LANES;
    let chunks = x[..full]
        .chunks_exact(LANES)
        .zip(g[..full].chunks_exact(LANES))
        .zip(gamma[..full].chunks_exact(LANES))
        .zip(dgamma[..full].chunks_exact_mut(LANES))
        .zip(dbeta[..full].chunks_exact_mut(LANES));
    for ((((x, g), ga), dg), db) in chunks {
        step(LANES, x, g, ga, dg, db);
    }
    let rest = x.len() - full;
    step(
        rest,
        &x[full..],
        &g[full..],
        &gamma[full..],
        &mut dgamma[full..],
        &mut dbeta[full..],
    );
    let total = |a: [T; LANES]| a.iter().fold(T::zero(), |s, &v| s + v);
    (total(sd), total(sdx))
}

impl<T: Element> Tensor<T> {
    /// `LayerNorm(x) = scale ⊙ (x − mean) / √(var + eps) + shift` over the last axis; `scale` and
    /// `shift` have shape `[n]` where n is the size of the last axis.
    pub fn layer_norm(&self, scale: &Tensor<T>, shift: &Tensor<T>, eps: f64) -> Result<Tensor<T>> {
        let in_shape = self.shape();
        let n = match in_shape.last() {
            Some(&n) if n > 0 => n,
            _ => {
                return Err(Error::invalid(
                    "layer_norm",
                    format!("needs a non-empty last axis, got {in_shape:?}"),
                ))
            }
        };
        for (what, p) in [("scale", scale), ("shift", shift)] {
            if p.shape() != [n] {
                return Err(Error::ShapeMismatch {
                    op: "layer_norm",
                    lhs: in_shape.clone(),
                    rhs: p.shape(),
                    why: format!("{what} must have shape [{n}] (the last axis of the input)"),
                });
            }
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::invalid(
                "layer_norm",
                format!("eps must be positive, got {eps}"),
            ));
        }
        if let Some(ops) = super::cuda_operands("layer_norm", &[self, scale, shift])? {
            return cuda::layer_norm([self, scale, shift], ops, eps);
        }
        let x = contiguous(&self.cpu("layer_norm")?);
        let gamma = contiguous(&scale.cpu("layer_norm")?);
        let beta = contiguous(&shift.cpu("layer_norm")?);
        let (xs, gs, bs) = (
            x.as_slice().expect("c"),
            gamma.as_slice().expect("c"),
            beta.as_slice().expect("c"),
        );
        let rows = xs.len() / n;
        let mut y = vec![T::zero(); xs.len()];
        let mut stats = vec![(T::zero(), T::zero()); rows]; // (μ, r) per row
        let inv_n = T::one() / T::of(n as f64);
        let epst = T::of(eps);
        let per = rows_per_task(n);
        type Chunk<'a, T> = (usize, (&'a mut [T], &'a mut [(T, T)]));
        let work = |(c, (yc, sc)): Chunk<'_, T>| {
            for (r, (yr, st)) in yc.chunks_mut(n).zip(sc.iter_mut()).enumerate() {
                let xr = &xs[(c * per + r) * n..][..n];
                let mu = sum(xr) * inv_n;
                let var = sum_sq_dev(xr, mu) * inv_n;
                let rstd = T::one() / (var + epst).sqrt();
                for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(gs).zip(bs) {
                    *y = g * ((x - mu) * rstd) + b;
                }
                *st = (mu, rstd);
            }
        };
        if should_par(xs.len()) {
            y.par_chunks_mut(per * n)
                .zip(stats.par_chunks_mut(per))
                .enumerate()
                .for_each(work);
        } else {
            y.chunks_mut(per * n)
                .zip(stats.chunks_mut(per))
                .enumerate()
                .for_each(work);
        }
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");

        Ok(Tensor::from_op(
            "layer_norm",
            y,
            &[self, scale, shift],
            move |g, needs| {
                let gc = contiguous(g); // no copy when g is already contiguous
                let gv = gc.as_slice().expect("c");
                let (xs, gam) = (x.as_slice().expect("c"), gamma.as_slice().expect("c"));
                let mut dx = vec![T::zero(); xs.len()];
                // One task per chunk of rows: writes its rows of dx, returns its partial dγ, dβ.
                // Every loop zips its slices (no indexing), so each one vectorises.
                let work = |(c, dxc): (usize, &mut [T])| {
                    let mut dgamma = vec![T::zero(); n];
                    let mut dbeta = vec![T::zero(); n];
                    for (r, dxr) in dxc.chunks_mut(n).enumerate() {
                        let row = c * per + r;
                        let (xr, gr) = (&xs[row * n..][..n], &gv[row * n..][..n]);
                        let (mu, rstd) = stats[row];
                        let (mean_d, mean_dx) =
                            row_sums(xr, gr, gam, mu, rstd, &mut dgamma, &mut dbeta);
                        let (mean_d, mean_dx) = (mean_d * inv_n, mean_dx * inv_n);
                        // dx_j = r·(d_j − mean(d) − x̂_j·mean(d ⊙ x̂)), x̂ and d recomputed.
                        for (((o, &x), &g), &ga) in dxr.iter_mut().zip(xr).zip(gr).zip(gam) {
                            let xh = (x - mu) * rstd;
                            *o = rstd * (g * ga - mean_d - xh * mean_dx);
                        }
                    }
                    (dgamma, dbeta)
                };
                let partials: Vec<(Vec<T>, Vec<T>)> = if should_par(xs.len()) {
                    dx.par_chunks_mut(per * n).enumerate().map(work).collect()
                } else {
                    dx.chunks_mut(per * n).enumerate().map(work).collect()
                };
                let mut dgamma = vec![T::zero(); n];
                let mut dbeta = vec![T::zero(); n];
                for (pg, pb) in &partials {
                    for i in 0..n {
                        dgamma[i] += pg[i];
                        dbeta[i] += pb[i];
                    }
                }
                let vec1 =
                    |v: Vec<T>| CpuArray::from_shape_vec(ndarray::IxDyn(&[n]), v).expect("n");
                Ok(vec![
                    needs[0].then(|| CpuArray::from_shape_vec(x.raw_dim(), dx).expect("same size")),
                    needs[1].then(|| vec1(dgamma)),
                    needs[2].then(|| vec1(dbeta)),
                ])
            },
        ))
    }
}
