//! Elementwise binary ops with NumPy/PyTorch broadcasting: `add`, `sub`, `mul`, `div`.
//!
//! **Broadcasting and its backward.** `z = a ∘ b` first broadcasts both operands to a common
//! shape (aligning trailing axes; size-1 and missing axes stretch). Broadcasting copies one input
//! element into many output positions, so by the multivariable chain rule that element's gradient
//! is the *sum* of the gradients at all those positions: every backward here computes the
//! elementwise local gradient at the output shape and then [`sum_to_shape`]s it back to each
//! operand's shape.

use crate::backend::cpu::zip_map;
use crate::error::Result;
use crate::tensor::shape::{broadcast_shapes, sum_to_shape};
use crate::tensor::{CpuArray, Element, Tensor};

/// The shared skeleton: broadcast, apply `f`, record `backward`.
fn binary<T: Element>(
    op: &'static str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
    backward: impl FnOnce(&CpuArray<T>, &[bool], CpuArray<T>, CpuArray<T>) -> [Option<CpuArray<T>>; 2]
        + 'static,
) -> Result<Tensor<T>> {
    let (av, bv) = (a.cpu(op)?, b.cpu(op)?);
    let shape = broadcast_shapes(op, av.shape(), bv.shape())?;
    let out = zip_map(&av, &bv, &shape, f);
    Ok(Tensor::from_op(op, out, &[a, b], move |g, needs| {
        Ok(backward(g, needs, av, bv).into())
    }))
}

impl<T: Element> Tensor<T> {
    /// `a + b`.
    ///
    /// ∂z/∂a = 1, ∂z/∂b = 1, so `∂L/∂a = sum_back(g)`, `∂L/∂b = sum_back(g)`.
    pub fn add(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        binary(
            "add",
            self,
            other,
            |x, y| x + y,
            |g, needs, a, b| {
                [
                    needs[0].then(|| sum_to_shape(g, a.shape())),
                    needs[1].then(|| sum_to_shape(g, b.shape())),
                ]
            },
        )
    }

    /// `a − b`.
    ///
    /// ∂z/∂a = 1, ∂z/∂b = −1: `∂L/∂a = sum_back(g)`, `∂L/∂b = −sum_back(g)`.
    pub fn sub(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        binary(
            "sub",
            self,
            other,
            |x, y| x - y,
            |g, needs, a, b| {
                [
                    needs[0].then(|| sum_to_shape(g, a.shape())),
                    needs[1].then(|| sum_to_shape(&g.mapv(|v| -v).into_shared(), b.shape())),
                ]
            },
        )
    }

    /// `a ⊙ b` (elementwise product).
    ///
    /// ∂z/∂a = b, ∂z/∂b = a (product rule): `∂L/∂a = sum_back(g ⊙ b)`, `∂L/∂b = sum_back(g ⊙ a)`.
    pub fn mul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        binary(
            "mul",
            self,
            other,
            |x, y| x * y,
            |g, needs, a, b| {
                let s = g.shape().to_vec();
                [
                    needs[0].then(|| sum_to_shape(&zip_map(g, &b, &s, |g, b| g * b), a.shape())),
                    needs[1].then(|| sum_to_shape(&zip_map(g, &a, &s, |g, a| g * a), b.shape())),
                ]
            },
        )
    }

    /// `a / b` (elementwise).
    ///
    /// z = a·b⁻¹, so ∂z/∂a = 1/b and ∂z/∂b = −a/b²:
    /// `∂L/∂a = sum_back(g / b)`, `∂L/∂b = sum_back(−g·a / b²)`.
    pub fn div(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        binary(
            "div",
            self,
            other,
            |x, y| x / y,
            |g, needs, a, b| {
                let s = g.shape().to_vec();
                let ga =
                    needs[0].then(|| sum_to_shape(&zip_map(g, &b, &s, |g, b| g / b), a.shape()));
                let gb = needs[1].then(|| {
                    let ab = zip_map(&a, &b, &s, |a, b| a / (b * b));
                    sum_to_shape(&zip_map(g, &ab, &s, |g, q| -g * q), b.shape())
                });
                [ga, gb]
            },
        )
    }
}
