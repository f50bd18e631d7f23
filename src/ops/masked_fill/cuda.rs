//! masked_fill on a device: the mask is copied to the device in its own shape (as 1.0 / 0.0 —
//! for a causal mask, T² values, not the B·H·T² of the scores), broadcast there to x's shape
//! (a stride-0 view made dense by `strided_copy`), then `masked_fill_forward` /
//! `masked_fill_backward` (kernels/masked_fill.cu) apply the rule of the module docs.

use ndarray::ArrayD;

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::{Error, Result};
use crate::ops::{device_grad, device_uninit};
use crate::tensor::shape::broadcast_shapes;
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn masked_fill<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    mask: &ArrayD<bool>,
    value: f64,
) -> Result<Tensor<T>> {
    let shape = c.shape().to_vec();
    if broadcast_shapes("masked_fill", &shape, mask.shape())? != shape {
        return Err(Error::Broadcast {
            op: "masked_fill",
            lhs: shape,
            rhs: mask.shape().to_vec(),
        });
    }
    let small: Vec<f32> = mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let small = CudaStorage::from_buffer(DeviceBuffer::from_slice(c.gpu(), &small)?, mask.shape());
    let m = small.broadcast_view(&shape).dense()?;
    let xd = c.dense()?;
    let y = device_uninit(&c, &shape)?;
    launch::masked_fill_forward(&xd, &m, &y.buffer, value as f32)?;
    Ok(Tensor::from_storage_op(
        "masked_fill",
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad("masked_fill", g)?;
            let dx = device_uninit(&g, &shape)?;
            launch::masked_fill_backward(&*g.dense()?, &m, &dx.buffer)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
