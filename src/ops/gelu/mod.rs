//! GELU with the tanh approximation GPT-2 uses (the book's `GELU` module):
//!
//! ```text
//! gelu(x) = ½·x·(1 + tanh u),   u = √(2/π)·(x + 0.044715·x³)
//! ```
//!
//! **Gradient.** Product rule on `½x · (1 + tanh u)`, with `d tanh u / du = 1 − tanh²u` and
//! `du/dx = √(2/π)·(1 + 3·0.044715·x²)`:
//!
//! ```text
//! gelu'(x) = ½(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 0.134145·x²),   t = tanh u
//! ```
//!
//! The backward recomputes `t` from the saved input instead of storing it: one tanh per element
//! is cheaper than keeping a second activation-sized buffer alive until backward.

use rayon::prelude::*;

use crate::backend::cpu::{should_par, PAR_MIN_ELEMS};
use crate::error::Result;
use crate::tensor::{CpuArray, Element, Tensor};

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const COEFF: f64 = 0.044_715;

/// `out[i] = u(x[i])`, then tanh over the whole chunk with the (vectorised) slice kernel.
fn tanh_u<T: Element>(x: &[T], out: &mut [T]) {
    let (s, c) = (T::of(SQRT_2_OVER_PI), T::of(COEFF));
    for (o, &v) in out.iter_mut().zip(x) {
        *o = s * (v + c * v * v * v);
    }
    T::tanh_slice(out);
}

fn gelu_chunk<T: Element>(x: &[T], out: &mut [T]) {
    tanh_u(x, out);
    let half = T::of(0.5);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = half * v * (T::one() + *o);
    }
}

fn gelu_backward_chunk<T: Element>(x: &[T], g: &[T], out: &mut [T]) {
    tanh_u(x, out);
    let (half, s, c3) = (T::of(0.5), T::of(SQRT_2_OVER_PI), T::of(3.0 * COEFF));
    for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
        let t = *o;
        let d = half * (T::one() + t) + half * v * (T::one() - t * t) * s * (T::one() + c3 * v * v);
        *o = gv * d;
    }
}

/// Runs a chunk kernel over `x` (and `g`), in parallel above the size threshold.
fn chunked<T: Element>(
    x: &[T],
    g: Option<&[T]>,
    kernel: impl Fn(&[T], Option<&[T]>, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    if should_par(x.len()) {
        out.par_chunks_mut(PAR_MIN_ELEMS)
            .enumerate()
            .for_each(|(i, o)| {
                let r = i * PAR_MIN_ELEMS..i * PAR_MIN_ELEMS + o.len();
                kernel(&x[r.clone()], g.map(|g| &g[r]), o)
            });
    } else {
        kernel(x, g, &mut out);
    }
    out
}

impl<T: Element> Tensor<T> {
    /// GELU (tanh approximation). See the module docs for the derivative.
    pub fn gelu(&self) -> Result<Tensor<T>> {
        let x = super::contiguous(&self.cpu("gelu")?);
        let xs = x.as_slice().expect("contiguous");
        let y = chunked(xs, None, |x, _, o| gelu_chunk(x, o));
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        Ok(Tensor::from_op("gelu", y, &[self], move |g, _| {
            let gc = super::contiguous(g); // no copy when g is already contiguous
            let gv = gc.as_slice().expect("contiguous");
            let xs = x.as_slice().expect("contiguous");
            let dx = chunked(xs, Some(gv), |x, g, o| {
                gelu_backward_chunk(x, g.expect("given"), o)
            });
            Ok(vec![Some(
                CpuArray::from_shape_vec(x.raw_dim(), dx).expect("same size"),
            )])
        }))
    }
}
