//! Elementwise binary ops with NumPy/PyTorch broadcasting: `add`, `sub`, `mul`, `div`.
//!
//! **Broadcasting and its backward.** `z = a ∘ b` first broadcasts both operands to a common
//! shape (aligning trailing axes; size-1 and missing axes stretch). Broadcasting copies one input
//! element into many output positions, so by the multivariable chain rule that element's gradient
//! is the *sum* of the gradients at all those positions: every backward here computes the
//! elementwise local gradient at the output shape and then [`sum_to_shape`]s it back to each
//! operand's shape.

mod cuda;

use crate::backend::cpu::zip_map;
use crate::backend::cuda::launch::BinaryOp;
use crate::error::Result;
use crate::ops::reduce::cuda::{scaled, sum_to_shape as cuda_sum_to_shape};
use crate::tensor::shape::{broadcast_shapes, sum_to_shape};
use crate::tensor::{CpuArray, CudaStorage, Element, Storage, Tensor};

/// The device half of each rule: `∂L/∂a`, `∂L/∂b` from `g` and the saved operands, as chains of
/// `binary_broadcast` launches (the same local gradients as the CPU closures), summed back to
/// each operand's shape.
fn cuda_backward(
    kind: BinaryOp,
    g: &CudaStorage,
    needs: &[bool],
    a: &CudaStorage,
    b: &CudaStorage,
) -> Result<[Option<CudaStorage>; 2]> {
    let s = g.shape().to_vec();
    let ga = if needs[0] {
        let local = match kind {
            BinaryOp::Add | BinaryOp::Sub => g.clone(),
            BinaryOp::Mul => cuda::apply(BinaryOp::Mul, g, b, &s)?,
            BinaryOp::Div => cuda::apply(BinaryOp::Div, g, b, &s)?,
        };
        Some(cuda_sum_to_shape(&local, a.shape())?)
    } else {
        None
    };
    let gb = if needs[1] {
        let local = match kind {
            BinaryOp::Add => g.clone(),
            BinaryOp::Sub => scaled(g, -1.0)?,
            BinaryOp::Mul => cuda::apply(BinaryOp::Mul, g, a, &s)?,
            BinaryOp::Div => {
                // −g·a/b²
                let q = cuda::apply(BinaryOp::Mul, g, a, &s)?;
                let q = cuda::apply(BinaryOp::Div, &q, b, &s)?;
                scaled(&cuda::apply(BinaryOp::Div, &q, b, &s)?, -1.0)?
            }
        };
        Some(cuda_sum_to_shape(&local, b.shape())?)
    } else {
        None
    };
    Ok([ga, gb])
}

/// The shared skeleton: broadcast, apply `f`, record `backward`.
fn binary<T: Element>(
    op: &'static str,
    kind: BinaryOp,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
    backward: impl FnOnce(&CpuArray<T>, &[bool], CpuArray<T>, CpuArray<T>) -> [Option<CpuArray<T>>; 2]
        + 'static,
) -> Result<Tensor<T>> {
    if let Some(ops) = super::cuda_operands(op, &[a, b])? {
        let (ca, cb) = (ops[0].clone(), ops[1].clone());
        let shape = broadcast_shapes(op, ca.shape(), cb.shape())?;
        let y = cuda::apply(kind, &ca, &cb, &shape)?;
        return Ok(Tensor::from_storage_op(
            op,
            Storage::Cuda(y),
            &[a, b],
            move |g, needs| {
                let g = super::device_grad(op, g)?;
                let grads = cuda_backward(kind, &g, needs, &ca, &cb)?;
                Ok(grads.into_iter().map(|g| g.map(Storage::Cuda)).collect())
            },
        ));
    }
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
            BinaryOp::Add,
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
            BinaryOp::Sub,
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
            BinaryOp::Mul,
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
            BinaryOp::Div,
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
