//! Mean cross-entropy on a device: per-row losses (`cross_entropy_forward`), their sum and the
//! 1/count scale on the device, so the loss is a device scalar; the backward reads the upstream
//! gradient on the device too (`cross_entropy_backward`, kernels/cross_entropy.cu). Targets equal
//! to `ignore_index` are sent to the kernels as −1 (ignored).

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn cross_entropy<T: Element>(
    logits: &Tensor<T>,
    c: CudaStorage,
    targets: &[i64],
    ignore_index: i64,
    count: usize,
) -> Result<Tensor<T>> {
    let x = c.to_dense()?;
    let v = *x.shape().last().expect("checked");
    let rows = x.numel() / v;
    let t32: Vec<i32> = targets
        .iter()
        .map(|&t| if t == ignore_index { -1 } else { t as i32 })
        .collect();
    let t_d = DeviceBuffer::from_slice(x.gpu(), &t32)?;
    let losses = DeviceBuffer::<f32>::uninit(x.gpu(), rows)?;
    launch::cross_entropy_forward(&x.buffer, &t_d, &losses, rows, v)?;
    let total = DeviceBuffer::<f32>::uninit(x.gpu(), 1)?;
    launch::sum(&losses, &total)?;
    let loss = device_uninit(&x, &[])?;
    let inv_count = 1.0 / count as f32;
    launch::scale(&total, &loss.buffer, inv_count)?;
    Ok(Tensor::from_storage_op(
        "cross_entropy",
        Storage::Cuda(loss),
        &[logits],
        move |g, _| {
            let g = device_grad("cross_entropy", g)?.dense()?;
            let dx = device_uninit(&x, x.shape())?;
            launch::cross_entropy_backward(&x.buffer, &t_d, &g, &dx.buffer, rows, v, inv_count)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
