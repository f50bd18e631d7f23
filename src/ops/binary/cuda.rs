//! `a ∘ b` with broadcasting on a device: both operands are read through stride-0 views of the
//! output shape by the `binary_broadcast` kernel (kernels/binary.cu); gradients go back through
//! [`crate::ops::reduce::cuda::sum_to_shape`].

use crate::backend::cuda::launch::{self, BinaryOp, Operand};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::tensor::CudaStorage;

/// out (dense, `shape`) = a ∘ b.
pub(super) fn apply(
    op: BinaryOp,
    a: &CudaStorage,
    b: &CudaStorage,
    shape: &[usize],
) -> Result<CudaStorage> {
    let (va, vb) = (a.broadcast_view(shape), b.broadcast_view(shape));
    let out = DeviceBuffer::<f32>::uninit(a.gpu(), shape.iter().product())?;
    launch::binary_broadcast(
        op,
        Operand {
            buffer: &va.buffer,
            offset: va.offset,
            strides: &va.strides,
        },
        Operand {
            buffer: &vb.buffer,
            offset: vb.offset,
            strides: &vb.strides,
        },
        &out,
        shape,
    )?;
    Ok(CudaStorage::from_buffer(out, shape))
}
