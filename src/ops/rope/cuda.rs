//! RoPE on a device: `rope_rotate` (kernels/rope.cu) turns each pair by the host-computed angle
//! table, and by its negative for the backward — the rule of the module docs.

use std::rc::Rc;

use super::RopeTable;
use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

pub(super) fn rope<T: Element>(
    x: &Tensor<T>,
    c: CudaStorage,
    table: &RopeTable,
) -> Result<Tensor<T>> {
    let c = c.to_dense()?;
    let to_f32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let cos = Rc::new(DeviceBuffer::from_slice(c.gpu(), &to_f32(&table.cos))?);
    let sin = Rc::new(DeviceBuffer::from_slice(c.gpu(), &to_f32(&table.sin))?);
    let (len, half) = (table.len, table.half);
    let rows = c.numel() / (len * 2 * half).max(1);
    let y = device_uninit(&c, c.shape())?;
    launch::rope_rotate(&c.buffer, &cos, &sin, &y.buffer, rows, len, half, 1.0)?;
    Ok(Tensor::from_storage_op(
        "rope",
        Storage::Cuda(y),
        &[x],
        move |g, _| {
            let g = device_grad("rope", g)?.to_dense()?;
            let dx = device_uninit(&g, g.shape())?;
            launch::rope_rotate(&g.buffer, &cos, &sin, &dx.buffer, rows, len, half, -1.0)?;
            Ok(vec![Some(Storage::Cuda(dx))])
        },
    ))
}
