//! Dropout on a device: `dropout_forward` / `dropout_backward` (kernels/elementwise.cu) draw the
//! mask from `hash_uniform(seed, i)` of kernels/common.cuh — bit for bit the CPU's
//! [`crate::tensor::rng::hash_uniform`] — so both devices drop the same elements.

use crate::backend::cuda::launch;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn dropout<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    p: f64,
    seed: u64,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let shape = c.shape().to_vec();
    let y = device_uninit(&c, &shape)?;
    launch::dropout_forward(&c.buffer, &y.buffer, p as f32, seed)?;
    Ok(Tensor::from_storage_op(
        "dropout",
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad("dropout", g)?;
            let gd = g.dense()?;
            let dx = device_uninit(&g, &shape)?;
            launch::dropout_backward(&gd, &dx.buffer, p as f32, seed)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
