//! The differentiable ops, one folder per family. In every file the forward computation and its
//! backward rule sit side by side, and the doc comment above each op derives the gradient — the
//! vector–Jacobian product `∂L/∂x = (∂y/∂x)ᵀ · ∂L/∂y` that the backward closure computes.
//!
//! | folder | ops |
//! |---|---|
//! | [`binary`] | add, sub, mul, div (broadcasting) |
//! | [`unary`] | neg, scalar add/mul/div, pow, exp, log, sqrt, tanh, relu |
//! | [`gelu`] | GELU (tanh approximation, as GPT-2) |
//! | [`reduce`] | sum, mean (all or over axes, keepdim), max over an axis |
//! | [`matmul`] | 2-D, batched N-D with broadcast batch dims, 1-D operands |
//! | [`softmax`] | softmax, log_softmax over the last axis (fused) |
//! | [`layer_norm`] | layer norm with scale and shift (fused) |
//! | [`embedding`] | row gather with scatter-add backward; the [`Ids`](embedding::Ids) type |
//! | [`dropout`] | seeded inverted dropout |
//! | [`masked_fill`] | masked_fill, causal masks |
//! | [`cross_entropy`] | fused log-softmax + NLL with `ignore_index` |
//! | [`attention`] | fused causal self-attention (flash-style, backward by recomputation) |
//! | [`view`] | reshape, permute, transpose, narrow, concat, split, squeeze, unsqueeze, select, broadcast_to |
//!
//! [`gradcheck_suite`] checks all of them numerically; `scratchgpt gradcheck` prints it.

pub mod attention;
pub mod binary;
pub mod cross_entropy;
pub mod dropout;
pub mod embedding;
pub mod gelu;
pub mod gradcheck_suite;
pub mod layer_norm;
pub mod linear;
pub mod masked_fill;
pub mod matmul;
pub mod reduce;
pub mod softmax;
pub mod unary;
pub mod view;

use rayon::prelude::*;

use crate::tensor::{CpuArray, Element};

/// The same data in C (row-major) order: the array itself if it already is, else a copy.
/// Row-wise kernels (softmax, layer norm, ...) work on contiguous rows.
pub(crate) fn contiguous<T: Element>(a: &CpuArray<T>) -> CpuArray<T> {
    if a.is_standard_layout() {
        a.clone()
    } else {
        c_order_copy(a).into_shared()
    }
}

/// A fresh, exclusively owned copy in C order, as a `Vec` (for kernels that write in place).
pub(crate) fn to_contiguous_vec<T: Element>(a: &CpuArray<T>) -> Vec<T> {
    match a.as_slice() {
        Some(s) => s.to_vec(),
        None => c_order_copy(a).into_raw_vec_and_offset().0,
    }
}

/// Copies a strided array into a new C-order one. `assign` walks both with ndarray's `Zip`,
/// which runs the innermost axis as a plain strided loop — several times faster than the
/// element-by-element `IxDyn` iterator behind `iter().collect()` or `as_standard_layout()`.
pub(crate) fn c_order_copy<T: Element>(a: &CpuArray<T>) -> ndarray::ArrayD<T> {
    let mut out = ndarray::ArrayD::<T>::zeros(a.raw_dim());
    out.assign(a);
    out
}

/// Rows per rayon task for row-wise kernels: enough work per task (≈ 32K elements) that task
/// overhead stays small. Depends only on the row length, never on the thread count, so any
/// per-task partial results (layer norm's dγ) are combined in the same order on every run.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (crate::backend::cpu::PAR_MIN_ELEMS / row_len.max(1)).max(1)
}

/// Calls `f(row_index, out_row, scratch)` for every row of length `n` of `out`, in parallel
/// tasks of [`rows_per_task`] rows when the array is large. Rows are independent, so the result
/// does not depend on the split. `scratch` is a buffer reused by all rows of one task (so row
/// kernels need not allocate).
pub(crate) fn for_each_row<T: Element>(
    out: &mut [T],
    n: usize,
    f: impl Fn(usize, &mut [T], &mut Vec<T>) + Sync + Send,
) {
    if n == 0 {
        return;
    }
    let per = rows_per_task(n);
    let run = |(chunk, rows): (usize, &mut [T])| {
        let mut scratch = Vec::new();
        for (r, row) in rows.chunks_mut(n).enumerate() {
            f(chunk * per + r, row, &mut scratch);
        }
    };
    if crate::backend::cpu::should_par(out.len()) {
        out.par_chunks_mut(per * n).enumerate().for_each(run);
    } else {
        out.chunks_mut(per * n).enumerate().for_each(run);
    }
}
