//! Layer norm on a device: `layer_norm_forward` saves μ and 1/σ per row, the backward kernels
//! compute ∂L/∂x and the fixed-order partial sums of ∂L/∂γ, ∂L/∂β (kernels/layer_norm.cu) — the
//! rule of the module docs.

use crate::backend::cuda::launch::{self, LayerNormStats};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit, device_zeros};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn layer_norm<T: Element>(
    inputs: [&Tensor<T>; 3],
    ops: Vec<CudaStorage>,
    eps: f64,
) -> Result<Tensor<T>> {
    let x = ops[0].to_dense()?;
    let (gamma, beta) = (ops[1].dense()?, ops[2].dense()?);
    let n = *x.shape().last().expect("checked non-empty");
    let rows = x.numel() / n;
    let y = device_uninit(&x, x.shape())?;
    let stats = LayerNormStats {
        mean: DeviceBuffer::uninit(x.gpu(), rows)?,
        rstd: DeviceBuffer::uninit(x.gpu(), rows)?,
    };
    launch::layer_norm_forward(
        &x.buffer, &gamma, &beta, &y.buffer, &stats, rows, n, eps as f32,
    )?;
    Ok(Tensor::from_storage_op(
        "layer_norm",
        Storage::Cuda(y),
        &inputs,
        move |g, needs| {
            let g = device_grad("layer_norm", g)?.dense()?;
            let dx = device_uninit(&x, x.shape())?;
            let (dgamma, dbeta) = (device_zeros(&x, &[n])?, device_zeros(&x, &[n])?);
            launch::layer_norm_backward(
                &x.buffer,
                &gamma,
                &stats,
                &g,
                &dx.buffer,
                &dgamma.buffer,
                &dbeta.buffer,
                rows,
                n,
                false,
            )?;
            Ok(vec![
                needs[0].then_some(Storage::Cuda(dx)),
                needs[1].then_some(Storage::Cuda(dgamma)),
                needs[2].then_some(Storage::Cuda(dbeta)),
            ])
        },
    ))
}
