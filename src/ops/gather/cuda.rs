//! The gather on a device: `gather_last` forward and the in-row scatter-add backward
//! (`gather_last_backward`, kernels/gather.cu), both deterministic.

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::{Error, Result};
use crate::ops::embedding::Ids;
use crate::ops::{device_grad, device_uninit, device_zeros};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn gather<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    index: &Ids,
    rows: usize,
    v: usize,
    k: usize,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let idx32: Vec<i32> = index
        .data()
        .iter()
        .map(|&i| i32::try_from(i).map_err(|_| Error::invalid("gather", "index exceeds i32")))
        .collect::<Result<_>>()?;
    let idx = std::rc::Rc::new(DeviceBuffer::from_slice(c.gpu(), &idx32)?);
    let y = device_uninit(&c, index.shape())?;
    launch::gather_last(&c.buffer, &idx, &y.buffer, rows, v, k)?;
    let x_shape = c.shape().to_vec();
    Ok(Tensor::from_storage_op(
        "gather",
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad("gather", g)?;
            let dx = device_zeros(&g, &x_shape)?;
            launch::gather_last_backward(&*g.dense()?, &idx, &dx.buffer, rows, v, k)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
