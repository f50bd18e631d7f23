//! Matrix multiplication: 2-D, batched N-D with broadcast batch dimensions, and 1-D operands
//! (PyTorch's `matmul` semantics).
//!
//! **Gradient.** For `C = A·B` with `C_ij = Σ_k A_ik B_kj`:
//! `∂C_ij/∂A_ik = B_kj`, so `∂L/∂A_ik = Σ_j G_ij B_kj`, i.e. **`∂L/∂A = G·Bᵀ`**; likewise
//! `∂C_ij/∂B_kj = A_ik` gives **`∂L/∂B = Aᵀ·G`**. Batched products apply this per batch element;
//! where an operand's batch dimensions were broadcast, its gradient is summed over them (the rule
//! of `ops::binary`).
//!
//! **Speed.** Both backward products are GEMMs on *transposed strides* — `Bᵀ` and `Aᵀ` are views,
//! never copies; `matrixmultiply` packs them like any other operand. When `B` is a plain matrix
//! (a `Linear` weight) and `A` is `(batch…, M, K)`, the batch is folded into the rows: one
//! `(batch·M × K)·(K × N)` GEMM forward, one for `∂L/∂A`, and `∂L/∂B = A_flatᵀ·G_flat` as a
//! single GEMM that sums over the whole batch at once.

mod cuda;

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};
use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::backend::cpu::{gemm, gemm_serial, gemm_uninit};
use crate::error::{Error, Result};
use crate::tensor::shape::{broadcast_shapes, numel, sum_to_shape};
use crate::tensor::{CpuArray, Element, Tensor};

impl<T: Element> Tensor<T> {
    /// Matrix product with PyTorch's rules: `(…, M, K) @ (…, K, N) → (broadcast…, M, N)`; a 1-D
    /// left operand is a row vector and a 1-D right operand a column vector, their axis removed
    /// from the result.
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        let (an, bn) = (self.ndim(), other.ndim());
        if an == 0 || bn == 0 {
            return Err(Error::ShapeMismatch {
                op: "matmul",
                lhs: self.shape(),
                rhs: other.shape(),
                why: "both operands need at least one axis".into(),
            });
        }
        let a = if an == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if bn == 1 {
            other.unsqueeze(-1)?
        } else {
            other.clone()
        };
        let mut out = matmul_nd(&a, &b)?;
        if bn == 1 {
            out = out.squeeze(-1)?;
        }
        if an == 1 {
            out = out.squeeze(if bn == 1 { -1 } else { -2 })?;
        }
        Ok(out)
    }
}

/// `(batch_a…, M, K) @ (batch_b…, K, N)`, both operands at least 2-D.
fn matmul_nd<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(Error::ShapeMismatch {
            op: "matmul",
            lhs: sa,
            rhs: sb,
            why: format!("inner dimensions differ ({k} vs {k2})"),
        });
    }
    let batch = broadcast_shapes("matmul", &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let nb = numel(&batch);
    if let Some(ops) = super::cuda_operands("matmul", &[a, b])? {
        return cuda::matmul([a, b], ops, batch, (m, k, n));
    }
    let (av, bv) = (a.cpu("matmul")?, b.cpu("matmul")?);
    let out_shape = [batch.as_slice(), &[m, n]].concat();

    let out = if sb.len() == 2 && (sa.len() == 2 || av.is_standard_layout()) {
        // B is a plain matrix: fold A's batch into its rows, one GEMM.
        let a2 = rows_view(&av, nb * m, k);
        uninit_product(&out_shape, nb * m, n, |c| {
            gemm_uninit(T::one(), a2, as2(&bv), c, true)
        })
    } else {
        let mut out = ArrayD::<T>::zeros(IxDyn(&out_shape));
        let at = av
            .broadcast(IxDyn(&[batch.as_slice(), &[m, k]].concat()))
            .expect("checked");
        let bt = bv
            .broadcast(IxDyn(&[batch.as_slice(), &[k, n]].concat()))
            .expect("checked");
        batched_gemm(
            &at,
            &bt,
            &batch,
            out.view_mut()
                .into_shape_with_order((nb, m, n))
                .expect("fresh"),
        );
        out
    };

    Ok(Tensor::from_op("matmul", out, &[a, b], move |g, needs| {
        let g = super::contiguous(g);
        let gt = g
            .view()
            .into_shape_with_order((nb, m, n))
            .expect("contiguous");
        let da = needs[0].then(|| grad_a(&av, &bv, &gt, &batch, (m, k, n)));
        let db = needs[1].then(|| grad_b(&av, &bv, &gt, &batch, (m, k, n)));
        Ok(vec![da, db])
    }))
}

/// `∂L/∂A = G·Bᵀ`, per batch element, summed back to A's (possibly broadcast) batch shape.
fn grad_a<T: Element>(
    av: &CpuArray<T>,
    bv: &CpuArray<T>,
    g: &ndarray::ArrayView3<'_, T>,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> CpuArray<T> {
    let nb = numel(batch);
    let full = [batch, &[m, k]].concat();
    let da = if bv.ndim() == 2 {
        let g2 = g
            .view()
            .into_shape_with_order((nb * m, n))
            .expect("contiguous");
        uninit_product(&full, nb * m, k, |c| {
            gemm_uninit(T::one(), g2, as2(bv).reversed_axes(), c, true)
        })
    } else {
        let mut da = ArrayD::<T>::zeros(IxDyn(&full));
        let bt = transposed_last2(
            bv.broadcast(IxDyn(&[batch, &[k, n]].concat()))
                .expect("checked"),
        );
        let gd = g
            .view()
            .into_shape_with_order(IxDyn(&[batch, &[m, n]].concat()))
            .expect("contiguous");
        batched_gemm(
            &gd,
            &bt,
            batch,
            da.view_mut()
                .into_shape_with_order((nb, m, k))
                .expect("fresh"),
        );
        da
    };
    sum_to_shape(&da.into_shared(), av.shape())
}

/// `∂L/∂B = Aᵀ·G`, per batch element, summed back to B's batch shape (for a 2-D B: one GEMM
/// over the folded batch, or a sum of per-batch GEMMs if A's batch cannot be folded).
fn grad_b<T: Element>(
    av: &CpuArray<T>,
    bv: &CpuArray<T>,
    g: &ndarray::ArrayView3<'_, T>,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> CpuArray<T> {
    let nb = numel(batch);
    if bv.ndim() == 2 {
        if av.ndim() == 2 || av.is_standard_layout() {
            // One GEMM over the folded batch: ∂L/∂B = A_flatᵀ·G_flat.
            let a2 = rows_view(av, nb * m, k);
            let g2 = g
                .view()
                .into_shape_with_order((nb * m, n))
                .expect("contiguous");
            return uninit_product(&[k, n], k, n, |c| {
                gemm_uninit(T::one(), a2.reversed_axes(), g2, c, true)
            })
            .into_shared();
        }
        // A's batch has strides that cannot be folded: accumulate batch by batch, in order.
        let mut db = ndarray::Array2::<T>::zeros((k, n));
        let at = av
            .broadcast(IxDyn(&[batch, &[m, k]].concat()))
            .expect("checked");
        for i in 0..nb {
            let ai = mat_at(&at, batch, i);
            gemm(
                T::one(),
                ai.reversed_axes(),
                g.index_axis(Axis(0), i),
                T::one(),
                db.view_mut(),
                true,
            );
        }
        return db.into_dyn().into_shared();
    }
    let full = [batch, &[k, n]].concat();
    let mut db = ArrayD::<T>::zeros(IxDyn(&full));
    let at = transposed_last2(
        av.broadcast(IxDyn(&[batch, &[m, k]].concat()))
            .expect("checked"),
    );
    let gd = g
        .view()
        .into_shape_with_order(IxDyn(&[batch, &[m, n]].concat()))
        .expect("contiguous");
    batched_gemm(
        &at,
        &gd,
        batch,
        db.view_mut()
            .into_shape_with_order((nb, k, n))
            .expect("fresh"),
    );
    sum_to_shape(&db.into_shared(), bv.shape())
}

/// `out[i] = A[i]·B[i]` over the flattened batch. Many small products run as parallel tasks of
/// single-threaded GEMMs; few large ones run one after another, each GEMM split into tasks.
/// Either way there is one level of parallelism, and each output element is computed by the same
/// operations, so the result does not depend on the thread count.
fn batched_gemm<T: Element>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    batch: &[usize],
    mut out: ndarray::ArrayViewMut3<'_, T>,
) {
    let nb = out.shape()[0];
    let threads = rayon::current_num_threads();
    if threads > 1 && nb >= 2 * threads {
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, o)| {
                gemm_serial(
                    T::one(),
                    mat_at(a, batch, i),
                    mat_at(b, batch, i),
                    T::zero(),
                    o,
                )
            });
    } else {
        for (i, o) in out.axis_iter_mut(Axis(0)).enumerate() {
            gemm(
                T::one(),
                mat_at(a, batch, i),
                mat_at(b, batch, i),
                T::zero(),
                o,
                true,
            );
        }
    }
}

/// The `i`-th matrix (in row-major order over `batch`) of an array shaped `batch…, r, c`.
fn mat_at<'a, T: Element>(
    x: &ArrayViewD<'a, T>,
    batch: &[usize],
    mut i: usize,
) -> ArrayView2<'a, T> {
    let mut idx = vec![0; batch.len()];
    for d in (0..batch.len()).rev() {
        idx[d] = i % batch[d];
        i /= batch[d];
    }
    let mut v = x.clone();
    for &j in &idx {
        v = v.index_axis_move(Axis(0), j);
    }
    v.into_dimensionality::<Ix2>().expect("two axes left")
}

/// A fresh array of `shape` whose `rows × cols` matrix view is filled by `fill` (a GEMM with
/// beta = 0), without zeroing it first.
fn uninit_product<T: Element>(
    shape: &[usize],
    rows: usize,
    cols: usize,
    fill: impl FnOnce(ndarray::ArrayViewMut2<'_, MaybeUninit<T>>),
) -> ArrayD<T> {
    let mut out = ArrayD::<T>::uninit(IxDyn(shape));
    fill(
        out.view_mut()
            .into_shape_with_order((rows, cols))
            .expect("fresh array is contiguous"),
    );
    // SAFETY: `gemm_uninit` writes every element of the rows × cols view, which covers the whole
    // array (rows·cols = its element count, checked by into_shape_with_order).
    unsafe { out.assume_init() }
}

/// A 2-D array as a 2-D view.
fn as2<T: Element>(x: &CpuArray<T>) -> ArrayView2<'_, T> {
    x.view().into_dimensionality::<Ix2>().expect("2-D")
}

/// A 2-D (any strides) or C-contiguous N-D array viewed as `rows × cols`.
fn rows_view<T: Element>(x: &CpuArray<T>, rows: usize, cols: usize) -> ArrayView2<'_, T> {
    if x.ndim() == 2 {
        as2(x)
    } else {
        x.view()
            .into_shape_with_order((rows, cols))
            .expect("C-contiguous")
    }
}

/// Swaps the last two axes of a view (a transpose through strides).
fn transposed_last2<T: Element>(mut x: ArrayViewD<'_, T>) -> ArrayViewD<'_, T> {
    let n = x.ndim();
    x.swap_axes(n - 2, n - 1);
    x
}
