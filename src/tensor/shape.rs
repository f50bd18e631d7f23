//! Shape arithmetic: broadcasting rules, axis normalisation, and the reverse of broadcasting
//! ("sum back") that every broadcasting op's backward needs.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element};

/// The broadcast shape of `a` and `b` under NumPy/PyTorch rules: align the shapes at their last
/// axis; two sizes agree if they are equal or one of them is 1; missing leading axes count as 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::Broadcast {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            });
        };
    }
    Ok(out)
}

/// Maps a possibly negative axis (`-1` = last) into `0..ndim`.
pub fn normalize_axis(op: &'static str, axis: isize, ndim: usize) -> Result<usize> {
    let n = ndim as isize;
    if axis >= n || axis < -n {
        return Err(Error::InvalidAxis { op, axis, ndim });
    }
    Ok(if axis < 0 { axis + n } else { axis } as usize)
}

/// Sums a gradient of a broadcast result back to the shape of the operand that was broadcast.
///
/// If `y = broadcast(x)` copies `x[j]` into every `y[i]` with `i ↦ j`, then by the chain rule
/// `∂L/∂x[j] = Σ_{i ↦ j} ∂L/∂y[i]`: sum over the leading axes `x` lacked, and over every axis
/// where `x` had size 1 (keeping that axis).
pub fn sum_to_shape<T: Element>(g: &CpuArray<T>, shape: &[usize]) -> CpuArray<T> {
    if g.shape() == shape {
        return g.clone();
    }
    let extra = g.ndim() - shape.len();
    let mut r: ArrayD<T> = g.to_owned();
    for _ in 0..extra {
        r = r.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    debug_assert_eq!(r.shape(), shape);
    r.into_shared()
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// An `IxDyn` from a slice, for ndarray calls.
pub fn dim(shape: &[usize]) -> IxDyn {
    IxDyn(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes("t", &[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes("t", &[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes("t", &[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn sum_back_reverses_broadcast() {
        let g = ndarray::ArrayD::<f64>::ones(IxDyn(&[2, 4, 3])).into_shared();
        let r = sum_to_shape(&g, &[4, 1]);
        assert_eq!(r.shape(), &[4, 1]);
        assert!(r.iter().all(|&v| v == 6.0));
    }
}
