//! Reductions: `sum_all`, `sum`, `mean_all`, `mean` (over axes, optional keepdim) and `max` over
//! one axis.
//!
//! **Sum.** `y = Σ_{i∈S} x_i` has `∂y/∂x_i = 1` for every summed `i`, so the backward *broadcasts*
//! `g` back over the reduced axes: each input element receives the gradient of the output it
//! was summed into. (Sum and broadcast are each other's adjoint, as `docs/gradients.md` shows.)
//!
//! **Mean.** `y = (1/n)·Σ x_i`: the same broadcast, scaled by `1/n`.
//!
//! **Max.** `y = max_i x_i` is locally `y = x_{i*}` (the argmax), so `∂y/∂x_i = [i = i*]`: the
//! whole gradient flows to the maximal element (the first one, on ties — PyTorch's `max(dim)`
//! picks one index too), and the others get zero.

pub(crate) mod cuda;

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::map_storage;
use crate::backend::cpu::sum;
use crate::error::{Error, Result};
use crate::tensor::shape::normalize_axis;
use crate::tensor::{CpuArray, Element, Tensor};

/// Sorted, deduplicated, normalised axes (an empty list means every axis).
fn reduce_axes(op: &'static str, axes: &[isize], ndim: usize) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..ndim).collect());
    }
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(op, a, ndim))
        .collect::<Result<Vec<_>>>()?;
    out.sort_unstable();
    let n = out.len();
    out.dedup();
    if out.len() != n {
        return Err(Error::invalid(op, format!("axis listed twice in {axes:?}")));
    }
    Ok(out)
}

/// The input shape with reduced axes set to 1 (the `keepdim=true` shape).
fn kept_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &s)| if axes.contains(&i) { 1 } else { s })
        .collect()
}

/// Broadcasts a reduced gradient (any of the keepdim / squeezed shapes) back to `shape`, times `scale`.
fn spread<T: Element>(g: &CpuArray<T>, kept: &[usize], shape: &[usize], scale: T) -> CpuArray<T> {
    let g = g.to_shape(IxDyn(kept)).expect("same number of elements");
    let b = g.broadcast(IxDyn(shape)).expect("kept shape broadcasts");
    if scale == T::one() {
        b.to_owned().into_shared()
    } else {
        b.mapv(|v| v * scale).into_shared()
    }
}

impl<T: Element> Tensor<T> {
    /// Sum of every element, a scalar of shape `[]`. Backward: `∂L/∂x = g·1`.
    pub fn sum_all(&self) -> Result<Tensor<T>> {
        let shape = self.shape();
        let all: Vec<usize> = (0..shape.len()).collect();
        let y = map_storage(
            &self.storage(),
            |x| {
                let s = match x.as_slice() {
                    Some(s) => sum(s),
                    None => sum(&super::to_contiguous_vec(x)),
                };
                Ok(ArrayD::from_elem(IxDyn(&[]), s).into_shared())
            },
            |c| cuda::sum_axes(c, &all, 1.0),
        )?;
        let ones = vec![1; shape.len()];
        Ok(Tensor::from_storage_op(
            "sum_all",
            y,
            &[self],
            move |g, _| {
                Ok(vec![Some(map_storage(
                    g,
                    |g| Ok(spread(g, &ones, &shape, T::one())),
                    |g| cuda::spread(g, &ones, &shape, 1.0),
                )?)])
            },
        ))
    }

    /// Mean of every element, a scalar. Backward: `∂L/∂x = g/n`.
    pub fn mean_all(&self) -> Result<Tensor<T>> {
        let n = self.numel();
        if n == 0 {
            return Err(Error::invalid("mean_all", "mean of an empty tensor"));
        }
        self.sum_all()?.div_scalar(n as f64)
    }

    /// Sum over `axes` (negative axes count from the end; empty = all axes), keeping the reduced
    /// axes as size 1 if `keepdim`.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        self.sum_scaled("sum", axes, keepdim, false)
    }

    /// Mean over `axes` (see [`Tensor::sum`]).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        self.sum_scaled("mean", axes, keepdim, true)
    }

    fn sum_scaled(
        &self,
        op: &'static str,
        axes: &[isize],
        keepdim: bool,
        mean: bool,
    ) -> Result<Tensor<T>> {
        let shape = self.shape();
        let axes = reduce_axes(op, axes, shape.len())?;
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        if mean && count == 0 {
            return Err(Error::invalid(
                op,
                format!("mean over empty axes of shape {shape:?}"),
            ));
        }
        let scale = if mean {
            T::one() / T::of(count as f64)
        } else {
            T::one()
        };
        let kept = kept_shape(&shape, &axes);
        let out_shape = if keepdim {
            kept.clone()
        } else {
            shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &n)| n)
                .collect()
        };
        let y = map_storage(
            &self.storage(),
            |x| {
                let mut y: ArrayD<T> = x.to_owned();
                for &a in axes.iter().rev() {
                    y = y.sum_axis(Axis(a));
                }
                if mean {
                    y.mapv_inplace(|v| v * scale);
                }
                Ok(y.into_shape_with_order(IxDyn(&out_shape))
                    .expect("same size")
                    .into_shared())
            },
            |c| {
                let s = cuda::sum_axes(c, &axes, scale.f64() as f32)?;
                Ok(s.view(
                    out_shape.clone(),
                    crate::backend::cuda::launch::standard_strides(&out_shape),
                    0,
                ))
            },
        )?;
        Ok(Tensor::from_storage_op(op, y, &[self], move |g, _| {
            Ok(vec![Some(map_storage(
                g,
                |g| Ok(spread(g, &kept, &shape, scale)),
                |g| cuda::spread(g, &kept, &shape, scale.f64() as f32),
            )?)])
        }))
    }

    /// Maximum over one axis (values only; see [`Tensor::argmax`] for indices). Backward routes
    /// `g` to the (first) maximal element of each lane.
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Tensor<T>> {
        let shape = self.shape();
        let ax = normalize_axis("max", axis, shape.len())?;
        if shape[ax] == 0 {
            return Err(Error::invalid(
                "max",
                format!("max over an empty axis of shape {shape:?}"),
            ));
        }
        if let Some(c) = self.cuda_storage() {
            let cuda::MaxAxis {
                values: y,
                index,
                dims,
            } = cuda::max_axis(&c, ax)?;
            let out_shape = if keepdim {
                kept_shape(&shape, &[ax])
            } else {
                y.shape().to_vec()
            };
            let y = y.view(
                out_shape.clone(),
                crate::backend::cuda::launch::standard_strides(&out_shape),
                0,
            );
            return Ok(Tensor::from_storage_op(
                "max",
                crate::tensor::Storage::Cuda(y),
                &[self],
                move |g, _| {
                    let g = super::device_grad("max", g)?;
                    let dx = super::device_uninit(&g, &shape)?;
                    crate::backend::cuda::launch::max_axis_backward(
                        &*g.dense()?,
                        &index,
                        &dx.buffer,
                        dims,
                    )?;
                    Ok(vec![Some(crate::tensor::Storage::Cuda(dx))])
                },
            ));
        }
        let x = self.cpu("max")?;
        let arg = argmax_lanes(&x, ax);
        let mut y = ArrayD::<T>::zeros(arg.raw_dim());
        Zip::from(&mut y)
            .and(&arg)
            .and(x.lanes(Axis(ax)))
            .for_each(|y, &i, lane| *y = lane[i]);
        let kept = kept_shape(&shape, &[ax]);
        let y = if keepdim {
            y.into_shape_with_order(IxDyn(&kept)).expect("same size")
        } else {
            y
        };
        Ok(Tensor::from_op("max", y, &[self], move |g, _| {
            let g = g.to_shape(arg.raw_dim()).expect("same size");
            let mut dx = ArrayD::<T>::zeros(IxDyn(&shape));
            Zip::from(dx.lanes_mut(Axis(ax)))
                .and(&arg)
                .and(&g)
                .for_each(|mut lane, &i, &gv| lane[i] = gv);
            Ok(vec![Some(dx.into_shared())])
        }))
    }

    /// Index of the maximum along `axis` (first on ties; NaN counts as maximal). Not differentiable.
    /// On a device the search runs there and only the indices are copied back.
    pub fn argmax(&self, axis: isize) -> Result<ArrayD<usize>> {
        let shape = self.shape();
        let ax = normalize_axis("argmax", axis, shape.len())?;
        if shape[ax] == 0 {
            return Err(Error::invalid("argmax", "argmax over an empty axis"));
        }
        if let Some(c) = self.cuda_storage() {
            let m = cuda::max_axis(&c, ax)?;
            let idx = m.index.to_vec()?.into_iter().map(|i| i as usize).collect();
            return Ok(ArrayD::from_shape_vec(IxDyn(m.values.shape()), idx).expect("lane count"));
        }
        let x = self.cpu("argmax")?;
        Ok(argmax_lanes(&x, ax))
    }
}

fn argmax_lanes<T: Element>(x: &CpuArray<T>, ax: usize) -> ArrayD<usize> {
    x.map_axis(Axis(ax), |lane| {
        let mut best = 0;
        for (i, &v) in lane.iter().enumerate() {
            if v > lane[best] || (v.is_nan() && !lane[best].is_nan()) {
                best = i;
            }
        }
        best
    })
}
