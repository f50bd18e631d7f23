//! `a ∘ b` with broadcasting on a device: both operands are read through stride-0 views of the
//! output shape by the `binary_broadcast` kernel (kernels/binary.cu); gradients go back through
//! [`crate::ops::reduce::cuda::sum_to_shape`].

use crate::backend::cuda::launch::{self, BinaryOp, Operand};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::tensor::CudaStorage;

/// The view of `c` as an operand of the output `shape` (stride 0 where it broadcasts).
fn as_operand_view(c: &CudaStorage, shape: &[usize]) -> CudaStorage {
    let lead = shape.len() - c.shape().len();
    let strides = (0..shape.len())
        .map(|i| {
            if i < lead || (c.shape()[i - lead] == 1 && shape[i] != 1) {
                0
            } else {
                c.strides[i - lead]
            }
        })
        .collect();
    c.view(shape.to_vec(), strides, c.offset)
}

/// out (dense, `shape`) = a ∘ b.
pub(super) fn apply(
    op: BinaryOp,
    a: &CudaStorage,
    b: &CudaStorage,
    shape: &[usize],
) -> Result<CudaStorage> {
    let (va, vb) = (as_operand_view(a, shape), as_operand_view(b, shape));
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
