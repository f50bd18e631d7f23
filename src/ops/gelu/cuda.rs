//! GELU on a device: `gelu_forward` / `gelu_backward` (kernels/elementwise.cu), the derivative of
//! the module docs.

use crate::backend::cuda::launch;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn gelu<T: Element>(x: &Tensor<T>, c: CudaStorage) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let y = device_uninit(&c, c.shape())?;
    launch::gelu_forward(&c.buffer, &y.buffer)?;
    Ok(Tensor::from_storage_op(
        "gelu",
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad("gelu", g)?.dense()?;
            let dx = device_uninit(&c, c.shape())?;
            launch::gelu_backward(&c.buffer, &g, &dx.buffer, false)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
