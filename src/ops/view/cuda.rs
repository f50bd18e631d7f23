//! The view ops on a device: shape, strides and offset arithmetic on a [`CudaStorage`], the same
//! views ndarray makes on the CPU. Only `reshape` of a non-dense view, the zero-padded backward of
//! `narrow`/`select` and `concat` move data (the `strided_copy` kernel, kernels/view.cu).

use crate::backend::cuda::launch::{self, standard_strides};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::tensor::CudaStorage;

/// The same elements with a new shape: a view of dense data, else a dense copy first.
pub(super) fn reshape(c: &CudaStorage, shape: &[usize]) -> Result<CudaStorage> {
    let d = c.to_dense()?;
    Ok(d.view(shape.to_vec(), standard_strides(shape), 0))
}

/// Elements start..start+len of axis `ax`.
pub(super) fn narrow(c: &CudaStorage, ax: usize, start: usize, len: usize) -> CudaStorage {
    let mut shape = c.shape.clone();
    shape[ax] = len;
    c.view(shape, c.strides.clone(), c.offset + start * c.strides[ax])
}

/// The slice at `index` of axis `ax`, that axis removed.
pub(super) fn select(c: &CudaStorage, ax: usize, index: usize) -> CudaStorage {
    let mut shape = c.shape.clone();
    let mut strides = c.strides.clone();
    shape.remove(ax);
    strides.remove(ax);
    c.view(shape, strides, c.offset + index * c.strides[ax])
}

/// Zeros of `shape` with `g` written at start.. of axis `ax` (`g` may lack the axis: `select`).
pub(super) fn pad_into(
    g: &CudaStorage,
    shape: &[usize],
    ax: usize,
    start: usize,
    axis_kept: bool,
) -> Result<CudaStorage> {
    let out = DeviceBuffer::<f32>::zeros(g.gpu(), shape.iter().product())?;
    let out = CudaStorage::from_buffer(out, shape);
    let mut dst = narrow(&out, ax, start, if axis_kept { g.shape[ax] } else { 1 });
    if !axis_kept {
        dst = select(&dst, ax, 0);
    }
    copy_into(g, &dst)?;
    Ok(out)
}

/// Writes `src` into the view `dst` (same shape).
pub(super) fn copy_into(src: &CudaStorage, dst: &CudaStorage) -> Result<()> {
    launch::strided_copy(
        &src.buffer,
        src.offset,
        &src.strides,
        &dst.buffer,
        dst.offset,
        &dst.strides,
        &src.shape,
    )
}

/// The parts joined along `ax` (shapes checked by the caller).
pub(super) fn concat(parts: &[CudaStorage], ax: usize, shape: &[usize]) -> Result<CudaStorage> {
    let out = DeviceBuffer::<f32>::uninit(parts[0].gpu(), shape.iter().product())?;
    let out = CudaStorage::from_buffer(out, shape);
    let mut start = 0;
    for p in parts {
        copy_into(p, &narrow(&out, ax, start, p.shape[ax]))?;
        start += p.shape[ax];
    }
    Ok(out)
}
