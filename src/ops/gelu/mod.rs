//! GELU with the tanh approximation GPT-2 uses (the book's `GELU` module):
//!
//! ```text
//! gelu(x) = ½·x·(1 + tanh u),   u = √(2/π)·(x + 0.044715·x³)
//! ```
//!
//! **Computed through a sigmoid.** Since `tanh u = (1 − e^{−2u}) / (1 + e^{−2u})`,
//! `1 + tanh u = 2 / (1 + e^{−2u})`, that is `½(1 + tanh u) = σ(2u)` with `σ(z) = 1/(1 + e^{−z})`:
//!
//! ```text
//! gelu(x) = x · s,   s = σ(2u) = 1 / (1 + e^{−2u})
//! ```
//!
//! The same function, evaluated with one `exp` and one division — `tanh` would cost an `exp`, a
//! division *and* a second polynomial for small |u|, where `1 − 2/(e^{2u} + 1)` cancels. Here
//! nothing cancels (`1 + e^{−2u} ≥ 1`), and the ends come out right: a large negative x gives
//! `e^{−2u} = +∞`, s = 0, gelu = −0; a large positive x gives s = 1, gelu = x.
//!
//! **Gradient.** Product rule on `x · σ(2u)`, with `σ'(z) = σ(z)(1 − σ(z))` and
//! `du/dx = √(2/π)·(1 + 3·0.044715·x²)`:
//!
//! ```text
//! gelu'(x) = s + x · s(1 − s) · 2·√(2/π)·(1 + 0.134145·x²)
//! ```
//!
//! (In the tanh form, with `t = tanh u = 2s − 1`, `½(1 + t) = s` and `1 − t² = 4s(1 − s)`, this is
//! the familiar `½(1 + t) + ½·x·(1 − t²)·du/dx`.) The backward recomputes `s` from the saved
//! input instead of storing it: one `exp` per element is cheaper than keeping a second
//! activation-sized buffer alive until backward.

use std::mem::MaybeUninit;

mod cuda;

use crate::backend::cpu::PAR_MIN_ELEMS;
use crate::error::Result;
use crate::tensor::{CpuArray, Element, Tensor};

use super::{init_from, vec_from_rows};

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const COEFF: f64 = 0.044_715;

/// `s = σ(2u(x)) = ½(1 + tanh u)`, inlined so the loops below vectorise (for f32).
#[inline(always)]
fn sigmoid_2u<T: Element>(x: T) -> T {
    let u = T::of(SQRT_2_OVER_PI) * (x + T::of(COEFF) * x * x * x);
    T::one() / (T::one() + (-(u + u)).exp_inline())
}

/// Forward over one chunk: `out[i] = x[i]·σ(2u(x[i]))`.
///
/// Kept as its own function (not inlined into the parallel driver) so LLVM vectorises the loop
/// on its own terms: inlined into the rayon closure it chose 8 lanes and no unrolling, and the
/// backward ran 1.6× slower.
#[inline(never)]
fn gelu_into<'a, T: Element>(x: &[T], out: &'a mut [MaybeUninit<T>]) -> &'a mut [T] {
    init_from(out, x.iter().map(|&v| v * sigmoid_2u(v)))
}

/// Backward over one chunk: `out[i] = g[i]·gelu'(x[i])`, with
/// `gelu'(x) = s + x·s(1 − s)·2√(2/π)(1 + 3·0.044715·x²)`, `s = σ(2u)`.
#[inline(never)]
fn gelu_backward_into<'a, T: Element>(
    x: &[T],
    g: &[T],
    out: &'a mut [MaybeUninit<T>],
) -> &'a mut [T] {
    // 2·√(2/π) and 3·0.044715: du/dx = √(2/π)(1 + 3·0.044715·x²), doubled for σ(2u).
    let (two_k, c3) = (T::of(2.0 * SQRT_2_OVER_PI), T::of(3.0 * COEFF));
    let grad = |(&v, &gv): (&T, &T)| {
        let s = sigmoid_2u(v);
        gv * (s + v * s * (T::one() - s) * two_k * (T::one() + c3 * v * v))
    };
    init_from(out, x.iter().zip(g).map(grad))
}

/// The chunk length the elementwise loops are split into (the "rows" of [`vec_from_rows`]).
const CHUNK: usize = PAR_MIN_ELEMS;

impl<T: Element> Tensor<T> {
    /// GELU (tanh approximation). See the module docs for the derivative.
    pub fn gelu(&self) -> Result<Tensor<T>> {
        if let Some(c) = self.cuda_storage() {
            return cuda::gelu(self, c);
        }
        let x = super::contiguous(&self.cpu("gelu")?);
        let xs = x.as_slice().expect("contiguous");
        let y = vec_from_rows(xs.len(), CHUNK, |i, out| {
            gelu_into(&xs[i * CHUNK..][..out.len()], out)
        });
        let y = CpuArray::from_shape_vec(x.raw_dim(), y).expect("same size");
        Ok(Tensor::from_op("gelu", y, &[self], move |g, _| {
            let gc = super::contiguous(g); // no copy when g is already contiguous
            let gv = gc.as_slice().expect("contiguous");
            let xs = x.as_slice().expect("contiguous");
            let dx = vec_from_rows(xs.len(), CHUNK, |i, out| {
                let r = i * CHUNK..i * CHUNK + out.len();
                gelu_backward_into(&xs[r.clone()], &gv[r], out)
            });
            Ok(vec![Some(
                CpuArray::from_shape_vec(x.raw_dim(), dx).expect("same size"),
            )])
        }))
    }
}
