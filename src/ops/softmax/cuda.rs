//! Softmax and log-softmax over the last axis on a device: one block per row
//! (kernels/softmax.cu), forward saving the output, backward `dx = y ⊙ (g − g·y)` and
//! `dx = g − exp(z)·Σg` as in the module docs.

use crate::backend::cuda::launch;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn row_op<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    op: &'static str,
    log: bool,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let n = *c.shape().last().expect("checked non-empty");
    let rows = c.numel() / n;
    let y = device_uninit(&c, c.shape())?;
    if log {
        launch::log_softmax_forward(&c.buffer, &y.buffer, rows, n)?;
    } else {
        launch::softmax_forward(&c.buffer, &y.buffer, rows, n)?;
    }
    let saved = y.clone();
    Ok(Tensor::from_storage_op(
        op,
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad(op, g)?.dense()?;
            let dx = device_uninit(&saved, saved.shape())?;
            if log {
                launch::log_softmax_backward(&saved.buffer, &g, &dx.buffer, rows, n)?;
            } else {
                launch::softmax_backward(&saved.buffer, &g, &dx.buffer, rows, n)?;
            }
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
