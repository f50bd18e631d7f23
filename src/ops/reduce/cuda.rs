//! Sums on a device: every reduction becomes one `column_sum` (kernels/reduce.cu, two fixed-order
//! stages, so deterministic) after the reduced axes are permuted to the front and the data made
//! dense; the backward's broadcast is a stride-0 view made dense by `strided_copy`.

use crate::backend::cuda::launch::{self, standard_strides};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::tensor::CudaStorage;

/// out = scale · x (a new dense storage); `x` itself when scale is 1 and it is dense.
pub(crate) fn scaled(x: &CudaStorage, scale: f32) -> Result<CudaStorage> {
    if scale == 1.0 {
        return x.to_dense();
    }
    let d = x.dense()?;
    let out = DeviceBuffer::<f32>::uninit(x.gpu(), d.len())?;
    launch::scale(&d, &out, scale)?;
    Ok(CudaStorage::from_buffer(out, x.shape()))
}

/// Σ over `axes` (sorted), times `scale`; the result has the other axes, in order.
pub(crate) fn sum_axes(x: &CudaStorage, axes: &[usize], scale: f32) -> Result<CudaStorage> {
    let n = x.shape().len();
    let kept: Vec<usize> = (0..n).filter(|a| !axes.contains(a)).collect();
    let perm: Vec<usize> = axes.iter().chain(&kept).copied().collect();
    let rows: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let out_shape: Vec<usize> = kept.iter().map(|&a| x.shape()[a]).collect();
    let cols: usize = out_shape.iter().product();
    let permuted = x.view(
        perm.iter().map(|&p| x.shape()[p]).collect(),
        perm.iter().map(|&p| x.strides[p]).collect(),
        x.offset,
    );
    let data = permuted.dense()?;
    let out = DeviceBuffer::<f32>::uninit(x.gpu(), cols)?;
    if rows == 0 {
        launch::fill(&out, 0.0)?;
    } else {
        launch::column_sum(&data, &out, rows, cols, false)?;
    }
    scaled(&CudaStorage::from_buffer(out, &out_shape), scale)
}

/// Sums `g` down to `shape`, which broadcasts to g's shape (the backward of broadcasting).
pub(crate) fn sum_to_shape(g: &CudaStorage, shape: &[usize]) -> Result<CudaStorage> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.shape().len() - shape.len();
    let axes: Vec<usize> = (0..g.shape().len())
        .filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
        .collect();
    let summed = sum_axes(g, &axes, 1.0)?;
    Ok(summed.view(shape.to_vec(), standard_strides(shape), 0))
}

/// `g` (of the reduced shape, any of keepdim or not) broadcast back to `shape` times `scale`.
pub(crate) fn spread(
    g: &CudaStorage,
    kept: &[usize],
    shape: &[usize],
    scale: f32,
) -> Result<CudaStorage> {
    let g = g.to_dense()?;
    let strides = standard_strides(kept)
        .into_iter()
        .zip(kept.iter().zip(shape))
        .map(|(s, (&k, &n))| if k == 1 && n != 1 { 0 } else { s })
        .collect();
    let b = g.view(shape.to_vec(), strides, 0);
    scaled(&b.to_dense()?, scale)
}

/// What [`max_axis`] returns: the values (the axis removed), each lane's index of its maximum,
/// and the `(outer, n, inner)` split of the input around the axis.
pub(crate) struct MaxAxis {
    pub values: CudaStorage,
    pub index: DeviceBuffer<i32>,
    pub dims: (usize, usize, usize),
}

/// The maximum over axis `ax` and the index of each lane's (first) maximum, on the device.
pub(crate) fn max_axis(x: &CudaStorage, ax: usize) -> Result<MaxAxis> {
    let s = x.shape();
    let dims = (
        s[..ax].iter().product::<usize>(),
        s[ax],
        s[ax + 1..].iter().product::<usize>(),
    );
    let out_shape: Vec<usize> = s
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != ax)
        .map(|(_, &n)| n)
        .collect();
    let data = x.dense()?;
    let y = DeviceBuffer::<f32>::uninit(x.gpu(), dims.0 * dims.2)?;
    let index = DeviceBuffer::<i32>::uninit(x.gpu(), dims.0 * dims.2)?;
    launch::max_axis_forward(&data, &y, &index, dims)?;
    Ok(MaxAxis {
        values: CudaStorage::from_buffer(y, &out_shape),
        index,
        dims,
    })
}
