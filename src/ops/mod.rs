//! The differentiable ops, one folder per family. In every file the forward computation and its
//! backward rule sit side by side, and the doc comment above each op derives the gradient — the
//! vector–Jacobian product `∂L/∂x = (∂y/∂x)ᵀ · ∂L/∂y` that the backward closure computes.
//!
//! | folder | ops |
//! |---|---|
//! | [`binary`] | add, sub, mul, div (broadcasting) |
//! | [`unary`] | neg, scalar add/mul/div, pow, exp, log, sqrt, tanh, relu, sigmoid, log-sigmoid, SiLU |
//! | [`gelu`] | GELU (tanh approximation, as GPT-2) |
//! | [`reduce`] | sum, mean (all or over axes, keepdim), max over an axis |
//! | [`matmul`] | 2-D, batched N-D with broadcast batch dims, 1-D operands |
//! | [`softmax`] | softmax, log_softmax over the last axis (fused) |
//! | [`layer_norm`] | layer norm with scale and shift (fused) |
//! | [`rms_norm`] | RMS norm with a weight (fused; Llama, Qwen3) |
//! | [`rope`] | rotary position embedding (rotate-half, Llama 3 scaling) |
//! | [`embedding`] | row gather with scatter-add backward; the [`Ids`](embedding::Ids) type |
//! | [`dpo`] | a sequence's mean log-probability, the DPO loss (compositions) |
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
pub mod dpo;
pub mod dropout;
pub mod embedding;
pub mod gather;
pub mod gelu;
pub mod gradcheck_suite;
pub mod layer_norm;
pub mod linear;
pub mod masked_fill;
pub mod matmul;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
pub mod unary;
pub mod view;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::{CpuArray, CudaStorage, Element, Storage, Tensor};

/// Runs the CPU or the device version of one step of an op, on whichever device `s` lives: the
/// dispatch that lets a rule be written once over both.
pub(crate) fn map_storage<T: Element>(
    s: &Storage<T>,
    cpu: impl FnOnce(&CpuArray<T>) -> Result<CpuArray<T>>,
    cuda: impl FnOnce(&CudaStorage) -> Result<CudaStorage>,
) -> Result<Storage<T>> {
    Ok(match s {
        Storage::Cpu(a) => Storage::Cpu(cpu(a)?),
        Storage::Cuda(c) => Storage::Cuda(cuda(c)?),
    })
}

/// The device storages of `tensors` if they all live on one CUDA device, `None` if they all live
/// on the CPU, and a [`Error::DeviceMismatch`] naming `op` if they are mixed.
pub(crate) fn cuda_operands<T: Element>(
    op: &'static str,
    tensors: &[&Tensor<T>],
) -> Result<Option<Vec<CudaStorage>>> {
    let first = tensors[0].device();
    if let Some(other) = tensors.iter().find(|t| t.device() != first) {
        return Err(crate::tensor::device_mismatch(op, first, other.device()));
    }
    if first == crate::tensor::Device::Cpu {
        return Ok(None);
    }
    let ops: Vec<CudaStorage> = tensors
        .iter()
        .map(|t| t.cuda_storage().expect("on a device"))
        .collect();
    if ops.iter().any(|c| !c.same_backend(&ops[0])) {
        return Err(crate::tensor::device_mismatch(op, first, first));
    }
    Ok(Some(ops))
}

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

/// Builds a new `Vec` of `len` elements, row by row, **without zero-filling it first**:
/// `f(row_index, out_row)` gets each row of length `n` (the last one may be shorter when `n` does
/// not divide `len`) as uninitialised memory and must return it initialised through [`init_from`].
/// Rows run in parallel tasks of [`rows_per_task`] rows when the array is large.
///
/// Why: a kernel that writes every output element anyway (softmax, GELU, their backwards) would
/// otherwise pay a full extra write pass for `vec![0; len]`, or a read *and* a write for copying
/// its input to work in place — a fifth of softmax's forward time.
pub(crate) fn vec_from_rows<T: Element>(
    len: usize,
    n: usize,
    f: impl for<'a> Fn(usize, &'a mut [MaybeUninit<T>]) -> &'a mut [T] + Sync + Send,
) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    if len == 0 || n == 0 {
        return v;
    }
    let per = rows_per_task(n);
    let run = |(chunk, rows): (usize, &mut [MaybeUninit<T>])| {
        for (r, row) in rows.chunks_mut(n).enumerate() {
            let (start, count) = (row.as_ptr() as *const T, row.len());
            let done = f(chunk * per + r, row);
            // The only safe way to turn this memory into a `&mut [T]` is `init_from`, which
            // writes all of it; checking that `f` handed back exactly its row closes the loop.
            assert!(
                std::ptr::eq(done.as_ptr(), start) && done.len() == count,
                "vec_from_rows: a row kernel must return its whole row, initialised"
            );
        }
    };
    let spare = &mut v.spare_capacity_mut()[..len];
    if crate::backend::cpu::should_par(len) {
        spare.par_chunks_mut(per * n).enumerate().for_each(run);
    } else {
        spare.chunks_mut(per * n).enumerate().for_each(run);
    }
    // SAFETY: `spare` is the first `len` slots of `v`'s allocation (capacity ≥ len), and every
    // one of its rows was returned by `f` as an initialised `&mut [T]` of the same address and
    // length (asserted above; a panic there unwinds before this line, leaving `v` empty).
    unsafe { v.set_len(len) };
    v
}

/// Writes `values` into `out` in order and returns `out` as initialised memory. Panics if
/// `values` runs out before `out` is full (extra values are ignored).
#[inline(always)]
pub(crate) fn init_from<T>(
    out: &mut [MaybeUninit<T>],
    values: impl IntoIterator<Item = T>,
) -> &mut [T] {
    let mut written = 0;
    for (o, v) in out.iter_mut().zip(values) {
        o.write(v);
        written += 1;
    }
    assert_eq!(written, out.len(), "init_from: too few values");
    // SAFETY: the loop wrote all `out.len()` elements (asserted), and `MaybeUninit<T>` has the
    // same size, alignment and layout as `T`, so the slice of them is a valid `[T]`.
    unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Calls `f(row_index, out_row)` for every row of length `n` of `out`, in parallel tasks of
/// [`rows_per_task`] rows when `out` is large. Rows are independent, so the result does not
/// depend on the split. The split is sized by `out`, so use it where the work is proportional to
/// the output (a kernel whose output is small next to its input — cross-entropy's two numbers per
/// row of 50,257 logits — must split by its input instead).
pub(crate) fn for_each_row<T: Element>(
    out: &mut [T],
    n: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if n == 0 {
        return;
    }
    let per = rows_per_task(n);
    let run = |(chunk, rows): (usize, &mut [T])| {
        for (r, row) in rows.chunks_mut(n).enumerate() {
            f(chunk * per + r, row);
        }
    };
    if crate::backend::cpu::should_par(out.len()) {
        out.par_chunks_mut(per * n).enumerate().for_each(run);
    } else {
        out.chunks_mut(per * n).enumerate().for_each(run);
    }
}

/// The incoming gradient of a device op's backward, which lives on the op's device.
pub(crate) fn device_grad<T: Element>(op: &'static str, g: &Storage<T>) -> Result<CudaStorage> {
    match g {
        Storage::Cuda(c) => Ok(c.clone()),
        other => Err(Error::DeviceMismatch {
            op,
            lhs: "a device".into(),
            rhs: other.device().to_string(),
        }),
    }
}

/// A dense device tensor of `shape` filled with `value`, on `like`'s backend.
pub(crate) fn device_full(like: &CudaStorage, shape: &[usize], value: f32) -> Result<CudaStorage> {
    let out = device_uninit(like, shape)?;
    crate::backend::cuda::launch::fill(&out.buffer, value)?;
    Ok(out)
}

/// A dense device output of `shape` (contents unspecified until a kernel writes it).
pub(crate) fn device_uninit(like: &CudaStorage, shape: &[usize]) -> Result<CudaStorage> {
    let b = crate::backend::cuda::DeviceBuffer::<f32>::uninit(like.gpu(), shape.iter().product())?;
    Ok(CudaStorage::from_buffer(b, shape))
}

/// A dense device tensor of zeros of `shape`.
pub(crate) fn device_zeros(like: &CudaStorage, shape: &[usize]) -> Result<CudaStorage> {
    let b = crate::backend::cuda::DeviceBuffer::<f32>::zeros(like.gpu(), shape.iter().product())?;
    Ok(CudaStorage::from_buffer(b, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_from_rows_fills_every_row_including_a_short_last_one() {
        // 100_003 elements in rows of 7: parallel (above the threshold), last row 3 long.
        let len = 100_003;
        let v: Vec<f64> = vec_from_rows(len, 7, |r, out| {
            init_from(out, (0..).map(|i| (r * 7 + i) as f64))
        });
        assert_eq!(v.len(), len);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f64));
        let empty: Vec<f32> = vec_from_rows(0, 5, |_, out| init_from(out, std::iter::empty()));
        assert!(empty.is_empty());
    }

    #[test]
    #[should_panic(expected = "too few values")]
    fn init_from_refuses_to_leave_memory_uninitialised() {
        let _: Vec<f32> = vec_from_rows(10, 5, |_, out| init_from(out, [1.0f32; 4]));
    }

    #[test]
    #[should_panic(expected = "must return its whole row")]
    fn vec_from_rows_refuses_a_kernel_that_returns_part_of_its_row() {
        let _: Vec<f32> = vec_from_rows(10, 5, |_, out| {
            let (head, _) = out.split_at_mut(2);
            init_from(head, [1.0f32; 2])
        });
    }
}
