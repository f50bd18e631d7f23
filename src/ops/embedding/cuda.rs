//! The embedding gather on a device: `embedding_gather` forward, and the scatter-add backward
//! grouped by id on the host (where the ids are) and summed in a fixed order without atomics
//! (`embedding_backward_tokens`, kernels/embedding.cu).

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::{Error, Result};
use crate::ops::{device_grad, device_uninit, device_zeros};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn embedding<T: Element>(
    w: &Tensor<T>,
    c: CudaStorage,
    ids: Vec<i64>,
    out_shape: Vec<usize>,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let (vocab, dim) = (c.shape()[0], c.shape()[1]);
    let ids32: Vec<i32> = ids
        .iter()
        .map(|&i| i32::try_from(i).map_err(|_| Error::invalid("embedding", "id exceeds i32")))
        .collect::<Result<_>>()?;
    let ids_d = DeviceBuffer::from_slice(c.gpu(), &ids32)?;
    let y = device_uninit(&c, &out_shape)?;
    launch::embedding_gather(&ids_d, &c.buffer, &y.buffer, vocab, dim)?;
    Ok(Tensor::from_storage_op(
        "embedding",
        Storage::Cuda(y),
        &[w],
        move |g, _| {
            let g = device_grad("embedding", g)?;
            let dw = device_zeros(&g, &[vocab, dim])?;
            launch::embedding_scatter_add(&ids32, &*g.dense()?, &dw.buffer, vocab, dim)?;
            Ok(vec![Some(Storage::Cuda(dw))])
        },
    ))
}
