//! Embedding lookup (row gather) and the [`Ids`] type for token ids and targets.
//!
//! **Forward.** `out[p, :] = W[id_p, :]` for every position p.
//!
//! **Backward.** `out[p, c]` depends on exactly one weight, `W[id_p, c]`, with derivative 1. A
//! weight row used at several positions receives the sum of their gradients (chain rule over
//! every use), and rows never used get zero:
//! ```text
//! ∂L/∂W[v, :] = Σ_{p : id_p = v} g[p, :]      (a scatter-add)
//! ```
//! It is the same as multiplying a one-hot matrix by W, without ever building the one-hot matrix.
//! The scatter-add runs positions in order, so repeated ids accumulate deterministically.

mod cuda;

use ndarray::{ArrayD, IxDyn};

use crate::backend::cpu::axpy;
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

use super::{contiguous, for_each_row};

/// Integer ids (token ids, class targets) with a shape, e.g. a `(batch, seq)` batch of tokens.
/// Values are `i64` so that `-100` (the `ignore_index` of cross-entropy) fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    data: Vec<i64>,
    shape: Vec<usize>,
}

impl Ids {
    /// Ids of a given shape (row-major); the shape must match the number of ids.
    pub fn new(data: Vec<i64>, shape: &[usize]) -> Result<Self> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::invalid(
                "Ids::new",
                format!("{} ids cannot have shape {shape:?}", data.len()),
            ));
        }
        Ok(Ids {
            data,
            shape: shape.to_vec(),
        })
    }

    /// A 1-D sequence.
    pub fn from_vec(data: Vec<i64>) -> Self {
        let n = data.len();
        Ids {
            data,
            shape: vec![n],
        }
    }

    /// A `(rows, len)` batch from equally long rows.
    pub fn from_rows(rows: &[Vec<i64>]) -> Result<Self> {
        let len = rows.first().map_or(0, |r| r.len());
        if let Some(bad) = rows.iter().find(|r| r.len() != len) {
            return Err(Error::invalid(
                "Ids::from_rows",
                format!("rows of different lengths ({len} and {})", bad.len()),
            ));
        }
        Ok(Ids {
            data: rows.concat(),
            shape: vec![rows.len(), len],
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The ids in row-major order.
    pub fn data(&self) -> &[i64] {
        &self.data
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Checks every id is in `0..size` (naming the first bad one).
    pub fn check_range(&self, op: &'static str, size: usize) -> Result<()> {
        match self
            .data
            .iter()
            .find(|&&v| v < 0 || v as u64 >= size as u64)
        {
            Some(&bad) => Err(Error::IndexOutOfRange {
                op,
                index: bad,
                size,
            }),
            None => Ok(()),
        }
    }
}

impl<T: Element> Tensor<T> {
    /// Looks up rows of this `(vocab, dim)` weight: the result has shape `ids.shape() + [dim]`.
    pub fn embedding(&self, ids: &Ids) -> Result<Tensor<T>> {
        if let Some(c) = self.cuda_storage() {
            if c.shape().len() != 2 {
                return Err(Error::invalid(
                    "embedding",
                    format!(
                        "the weight must be 2-D (vocab, dim), got shape {:?}",
                        c.shape()
                    ),
                ));
            }
            ids.check_range("embedding", c.shape()[0])?;
            let shape = [ids.shape(), &[c.shape()[1]]].concat();
            return cuda::embedding(self, c, ids.data.clone(), shape);
        }
        let w = contiguous(&self.cpu("embedding")?);
        if w.ndim() != 2 {
            return Err(Error::invalid(
                "embedding",
                format!(
                    "the weight must be 2-D (vocab, dim), got shape {:?}",
                    w.shape()
                ),
            ));
        }
        let (vocab, dim) = (w.shape()[0], w.shape()[1]);
        ids.check_range("embedding", vocab)?;
        let ws = w.as_slice().expect("contiguous");
        let mut out = vec![T::zero(); ids.len() * dim];
        let idv = ids.data.clone();
        for_each_row(&mut out, dim, |p, row| {
            let id = idv[p] as usize;
            row.copy_from_slice(&ws[id * dim..(id + 1) * dim]);
        });
        let shape = [ids.shape(), &[dim]].concat();
        let out = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("size");
        Ok(Tensor::from_op("embedding", out, &[self], move |g, _| {
            let g = contiguous(g);
            let gs = g.as_slice().expect("contiguous");
            let mut dw = vec![T::zero(); vocab * dim];
            for (p, &id) in idv.iter().enumerate() {
                let id = id as usize;
                axpy(
                    T::one(),
                    &gs[p * dim..(p + 1) * dim],
                    &mut dw[id * dim..(id + 1) * dim],
                );
            }
            Ok(vec![Some(
                CpuArray::from_shape_vec(IxDyn(&[vocab, dim]), dw).expect("size"),
            )])
        }))
    }
}
