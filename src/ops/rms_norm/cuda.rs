//! RMS norm on a device: `rms_norm_forward` saves 1/√(mean(x²) + ε) per row; the backward
//! kernels compute ∂L/∂x and the fixed-order partial sums of ∂L/∂w (kernels/rms_norm.cu) — the
//! rule of the module docs.

use crate::backend::cuda::launch;
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit, device_zeros};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn rms_norm<T: Element>(
    inputs: [&Tensor<T>; 2],
    ops: Vec<CudaStorage>,
    eps: f64,
) -> Result<Tensor<T>> {
    let x = ops[0].to_dense()?;
    let weight = ops[1].dense()?;
    let n = *x.shape().last().expect("checked non-empty");
    let rows = x.numel() / n;
    let y = device_uninit(&x, x.shape())?;
    let rstd = DeviceBuffer::uninit(x.gpu(), rows)?;
    launch::rms_norm_forward(&x.buffer, &weight, &y.buffer, &rstd, rows, n, eps as f32)?;
    Ok(Tensor::from_storage_op(
        "rms_norm",
        Storage::Cuda(y),
        &inputs,
        move |g, needs| {
            let g = device_grad("rms_norm", g)?.dense()?;
            let dx = device_uninit(&x, x.shape())?;
            let dweight = device_zeros(&x, &[n])?;
            launch::rms_norm_backward(
                &x.buffer,
                &weight,
                &rstd,
                &g,
                &dx.buffer,
                &dweight.buffer,
                rows,
                n,
            )?;
            Ok(vec![
                needs[0].then_some(Storage::Cuda(dx)),
                needs[1].then_some(Storage::Cuda(dweight)),
            ])
        },
    ))
}
