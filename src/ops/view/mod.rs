//! Shape and view ops: `reshape`, `permute`, `transpose`, `narrow`, `concat`, `split`,
//! `squeeze`, `unsqueeze`, `select`, `broadcast_to`, `contiguous`.
//!
//! None of these computes anything: each output element *is* one input element (or, for
//! `broadcast_to`, one input element is copied to many outputs). So every backward is the same
//! data movement run in reverse — the gradient of an element goes back to where the element came
//! from:
//!
//! | forward | backward |
//! |---|---|
//! | reshape to S | reshape `g` back to the input shape |
//! | permute by π | permute `g` by π⁻¹ |
//! | narrow / select | zeros of the input shape, `g` written into the narrowed part |
//! | concat | split `g` at the same boundaries |
//! | broadcast_to | sum `g` over the broadcast axes ([`sum_to_shape`]) |
//!
//! `permute`, `transpose`, `narrow`, `select`, `squeeze`/`unsqueeze` and `reshape` of contiguous
//! data are **views**: they share the input's buffer and only change shape/strides (ndarray's
//! `ArcArray`), so `x.transpose(-1, -2)?.matmul(..)` hands transposed strides straight to GEMM.
//! On a device they are views too (`cuda.rs`: a buffer with shape, strides and offset); each rule
//! below is written once and runs its data movement through [`map_storage`] on either device.

mod cuda;

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::error::{Error, Result};
use crate::tensor::shape::{broadcast_shapes, normalize_axis, numel, sum_to_shape};
use crate::tensor::{CpuArray, Element, Storage, Tensor};

use super::{contiguous, map_storage};

/// Records a view op whose forward and backward are each one data movement per device.
fn view_op<T: Element>(
    op: &'static str,
    x: &Tensor<T>,
    forward: (
        impl FnOnce(&CpuArray<T>) -> Result<CpuArray<T>>,
        impl FnOnce(&crate::tensor::CudaStorage) -> Result<crate::tensor::CudaStorage>,
    ),
    backward: (
        impl FnOnce(&CpuArray<T>) -> Result<CpuArray<T>> + 'static,
        impl FnOnce(&crate::tensor::CudaStorage) -> Result<crate::tensor::CudaStorage> + 'static,
    ),
) -> Result<Tensor<T>> {
    let y = map_storage(&x.storage(), forward.0, forward.1)?;
    Ok(Tensor::from_storage_op(op, y, &[x], move |g, _| {
        Ok(vec![Some(map_storage(g, backward.0, backward.1)?)])
    }))
}

/// Reshapes an array, as a view when its data is contiguous, else via one copy.
fn reshape_array<T: Element>(a: &CpuArray<T>, shape: &[usize]) -> CpuArray<T> {
    contiguous(a)
        .into_shape_with_order(IxDyn(shape))
        .expect("caller checked the element count")
}

impl<T: Element> Tensor<T> {
    /// The same elements in row-major order with a new shape (same element count).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let in_shape = self.shape();
        if numel(shape) != numel(&in_shape) {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: in_shape,
                rhs: shape.to_vec(),
                why: "reshape must keep the number of elements".into(),
            });
        }
        let (s1, s2) = (in_shape.clone(), in_shape);
        view_op(
            "reshape",
            self,
            (|x| Ok(reshape_array(x, shape)), |c| cuda::reshape(c, shape)),
            (
                move |g| Ok(reshape_array(g, &s1)),
                move |g| cuda::reshape(g, &s2),
            ),
        )
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]` (a strided view, no copy).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor<T>> {
        let shape = self.shape();
        let n = shape.len();
        let mut seen = vec![false; n];
        if perm.len() != n
            || perm
                .iter()
                .any(|&p| p >= n || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::invalid(
                "permute",
                format!("{perm:?} is not a permutation of the {n} axes of shape {shape:?}"),
            ));
        }
        let mut inverse = vec![0; n];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let inv2 = inverse.clone();
        view_op(
            "permute",
            self,
            (
                |x| Ok(x.clone().permuted_axes(IxDyn(perm))),
                |c| Ok(c.permuted(perm)),
            ),
            (
                move |g| Ok(g.clone().permuted_axes(IxDyn(&inverse))),
                move |g| Ok(g.permuted(&inv2)),
            ),
        )
    }

    /// Swaps two axes (negative axes count from the end). A view.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor<T>> {
        let n = self.ndim();
        let (a, b) = (
            normalize_axis("transpose", a, n)?,
            normalize_axis("transpose", b, n)?,
        );
        let mut perm: Vec<usize> = (0..n).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start..start+len` along `axis` (a view).
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor<T>> {
        let shape = self.shape();
        let ax = normalize_axis("narrow", axis, shape.len())?;
        let size = shape[ax];
        if start + len > size {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{} exceeds size {size} of axis {ax} (shape {shape:?})",
                    start + len,
                ),
            ));
        }
        let shape2 = shape.clone();
        view_op(
            "narrow",
            self,
            (
                |x| {
                    let mut y = x.clone();
                    y.slice_axis_inplace(Axis(ax), Slice::from(start..start + len));
                    Ok(y)
                },
                |c| Ok(cuda::narrow(c, ax, start, len)),
            ),
            (
                move |g| {
                    let mut dx = ArrayD::<T>::zeros(IxDyn(&shape));
                    dx.slice_axis_mut(Axis(ax), Slice::from(start..start + len))
                        .assign(g);
                    Ok(dx.into_shared())
                },
                move |g| cuda::pad_into(g, &shape2, ax, start, true),
            ),
        )
    }

    /// Joins tensors along an existing axis; all other axes must agree.
    pub fn concat(tensors: &[&Tensor<T>], axis: isize) -> Result<Tensor<T>> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("concat", "needs at least one tensor"))?;
        let ax = normalize_axis("concat", axis, first.ndim())?;
        let s0 = first.shape();
        for t in &tensors[1..] {
            let shape = t.shape();
            let ok = shape.len() == s0.len()
                && shape
                    .iter()
                    .zip(&s0)
                    .enumerate()
                    .all(|(i, (x, y))| i == ax || x == y);
            if !ok {
                return Err(Error::ShapeMismatch {
                    op: "concat",
                    lhs: s0,
                    rhs: shape,
                    why: format!("all axes but {ax} must agree"),
                });
            }
        }
        if let Some(parts) = super::cuda_operands("concat", tensors)? {
            let sizes: Vec<usize> = parts.iter().map(|p| p.shape()[ax]).collect();
            let mut shape = s0;
            shape[ax] = sizes.iter().sum();
            let y = cuda::concat(&parts, ax, &shape)?;
            return Ok(Tensor::from_storage_op(
                "concat",
                Storage::Cuda(y),
                tensors,
                move |g, needs| {
                    let g = &super::device_grad("concat", g)?;
                    let mut start = 0;
                    Ok(sizes
                        .iter()
                        .zip(needs)
                        .map(|(&n, &need)| {
                            let part = cuda::narrow(g, ax, start, n);
                            start += n;
                            need.then_some(Storage::Cuda(part))
                        })
                        .collect())
                },
            ));
        }
        let arrays = tensors
            .iter()
            .map(|t| t.cpu("concat"))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        let y = ndarray::concatenate(Axis(ax), &views).expect("shapes checked");
        let sizes: Vec<usize> = arrays.iter().map(|a| a.shape()[ax]).collect();
        Ok(Tensor::from_op("concat", y, tensors, move |g, needs| {
            let mut start = 0;
            Ok(sizes
                .iter()
                .zip(needs)
                .map(|(&n, &need)| {
                    let mut part = g.clone();
                    part.slice_axis_inplace(Axis(ax), Slice::from(start..start + n));
                    start += n;
                    need.then_some(part)
                })
                .collect())
        }))
    }

    /// Splits along `axis` into pieces of the given sizes (which must add up to the axis size).
    pub fn split(&self, sizes: &[usize], axis: isize) -> Result<Vec<Tensor<T>>> {
        let ax = normalize_axis("split", axis, self.ndim())?;
        let total = self.shape()[ax];
        if sizes.iter().sum::<usize>() != total {
            return Err(Error::invalid(
                "split",
                format!("sizes {sizes:?} do not add up to {total}, the size of axis {ax}"),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let t = self.narrow(ax as isize, start, n);
                start += n;
                t
            })
            .collect()
    }

    /// Removes an axis of size 1.
    pub fn squeeze(&self, axis: isize) -> Result<Tensor<T>> {
        let shape = self.shape();
        let ax = normalize_axis("squeeze", axis, shape.len())?;
        if shape[ax] != 1 {
            return Err(Error::invalid(
                "squeeze",
                format!("axis {ax} of shape {shape:?} is not of size 1"),
            ));
        }
        let mut s = shape;
        s.remove(ax);
        self.reshape(&s)
    }

    /// Inserts an axis of size 1 at position `axis` (`0..=ndim`; negative counts from the end).
    pub fn unsqueeze(&self, axis: isize) -> Result<Tensor<T>> {
        let mut s = self.shape();
        let ax = normalize_axis("unsqueeze", axis, s.len() + 1)?;
        s.insert(ax, 1);
        self.reshape(&s)
    }

    /// The slice at `index` along `axis`, with that axis removed (`x[.., index, ..]`). A view.
    pub fn select(&self, axis: isize, index: usize) -> Result<Tensor<T>> {
        let shape = self.shape();
        let ax = normalize_axis("select", axis, shape.len())?;
        if index >= shape[ax] {
            return Err(Error::IndexOutOfRange {
                op: "select",
                index: index as i64,
                size: shape[ax],
            });
        }
        let shape2 = shape.clone();
        view_op(
            "select",
            self,
            (
                |x| Ok(x.clone().index_axis_move(Axis(ax), index)),
                |c| Ok(cuda::select(c, ax, index)),
            ),
            (
                move |g| {
                    let mut dx = ArrayD::<T>::zeros(IxDyn(&shape));
                    dx.index_axis_mut(Axis(ax), index).assign(g);
                    Ok(dx.into_shared())
                },
                move |g| cuda::pad_into(g, &shape2, ax, index, false),
            ),
        )
    }

    /// Broadcasts to `shape` (NumPy rules; materialised). Backward sums over the broadcast axes.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let in_shape = self.shape();
        if broadcast_shapes("broadcast_to", &in_shape, shape)? != shape {
            return Err(Error::Broadcast {
                op: "broadcast_to",
                lhs: in_shape,
                rhs: shape.to_vec(),
            });
        }
        let s2 = in_shape.clone();
        view_op(
            "broadcast_to",
            self,
            (
                |x| {
                    Ok(x.broadcast(IxDyn(shape))
                        .expect("checked")
                        .to_owned()
                        .into_shared())
                },
                |c| Ok(c.broadcast_view(shape)),
            ),
            (
                move |g| Ok(sum_to_shape(g, &in_shape)),
                move |g| super::reduce::cuda::sum_to_shape(g, &s2),
            ),
        )
    }

    /// The same values laid out in row-major order (a copy only if they were not). Identity
    /// gradient.
    pub fn contiguous(&self) -> Result<Tensor<T>> {
        let dense = match &*self.storage() {
            Storage::Cpu(x) => x.is_standard_layout(),
            Storage::Cuda(c) => c.is_dense(),
        };
        if dense {
            return Ok(self.clone());
        }
        view_op(
            "contiguous",
            self,
            (|x| Ok(contiguous(x)), |c| c.to_dense()),
            (|g| Ok(g.clone()), |g| Ok(g.clone())),
        )
    }

    /// Overwrites rows `start..start + n` of this tensor (along axis 0) with `src` (`n` rows of
    /// the same trailing shape), in place and outside the graph: how a KV cache appends. On a
    /// device it is one copy on the device.
    pub fn write_rows(&self, start: usize, src: &Tensor<T>) -> Result<()> {
        let (shape, s) = (self.shape(), src.shape());
        if shape.is_empty()
            || s.len() != shape.len()
            || s[1..] != shape[1..]
            || start + s[0] > shape[0]
        {
            return Err(Error::ShapeMismatch {
                op: "write_rows",
                lhs: shape,
                rhs: s,
                why: format!("rows {start}.. must fit and share the trailing shape"),
            });
        }
        if self.device() != src.device() {
            return Err(Error::DeviceMismatch {
                op: "write_rows",
                lhs: self.device().to_string(),
                rhs: src.device().to_string(),
            });
        }
        let n = s[0];
        match (self.cuda_storage(), src.cuda_storage()) {
            (Some(dst), Some(src)) => {
                // Copy-on-write, as on the CPU: a buffer another tensor shares is copied first
                // (one handle is `dst` itself).
                let dst = if dst.writable_in_place(1) {
                    dst
                } else {
                    let fresh = dst.fresh_copy()?;
                    self.set_storage(Storage::Cuda(fresh.clone()))?;
                    fresh
                };
                // Rows of the same buffer (`t.write_rows(0, &t.narrow(0, 1, n)?)`): stage them,
                // so the parallel copy never reads what it writes.
                let src = if std::rc::Rc::ptr_eq(&src.buffer, &dst.buffer) {
                    src.fresh_copy()?
                } else {
                    src
                };
                cuda::copy_into(&src, &cuda::narrow(&dst, 0, start, n))
            }
            _ => {
                let src = src.cpu("write_rows")?;
                self.update_value(|a| {
                    a.slice_axis_mut(Axis(0), Slice::from(start..start + n))
                        .assign(&src)
                })
            }
        }
    }
}
