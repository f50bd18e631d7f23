//! The unary ops on a device: `unary_forward` / `unary_backward` (kernels/unary.cu), selected by
//! the op code in that file's table, with the same `f` and `f'` (and the same saved input or
//! output) as the CPU closures in `mod.rs`.

use crate::backend::cuda::launch;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

/// An op of unary.cu: its code, scalar and whether f' reads the output (else the input).
#[derive(Clone, Copy)]
pub(super) struct Kernel {
    pub code: i32,
    pub c: f32,
    pub saves_output: bool,
}

pub(super) fn unary<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    op: &'static str,
    k: Kernel,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let y = device_uninit(&c, c.shape())?;
    launch::unary_forward(k.code, &c.buffer, &y.buffer, k.c)?;
    let saved = if k.saves_output { y.clone() } else { c };
    Ok(Tensor::from_storage_op(
        op,
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad(op, g)?.dense()?;
            let dx = device_uninit(&saved, saved.shape())?;
            launch::unary_backward(k.code, &saved.buffer, &g, &dx.buffer, k.c)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
