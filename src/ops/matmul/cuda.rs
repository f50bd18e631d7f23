//! Matrix products on a device: one batched `matmul` launch (kernels/matmul.cu) per product of the
//! module docs — `C = A·B`, `∂L/∂A = G·Bᵀ`, `∂L/∂B = Aᵀ·G` — with a batch stride of 0 for an
//! operand whose batch is broadcast (never copied), and the broadcast batch axes of a gradient
//! summed back by `reduce::cuda::sum_to_shape`.

use crate::backend::cuda::launch::{self, standard_strides, Gemm};
use crate::error::Result;
use crate::ops::reduce::cuda::sum_to_shape;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

/// A `(batch…, r, c)` operand as a dense buffer and its batch stride: 0 (one matrix, not copied)
/// when its own batch is empty or all ones, else the operand broadcast to `batch` and made dense.
fn operand(c: &CudaStorage, batch: &[usize]) -> Result<(CudaStorage, usize)> {
    let s = c.shape();
    let (r, cols) = (s[s.len() - 2], s[s.len() - 1]);
    if s[..s.len() - 2].iter().all(|&n| n == 1) {
        let d = c.to_dense()?;
        return Ok((d.view(vec![r, cols], vec![cols, 1], 0), 0));
    }
    let full = [batch, &[r, cols]].concat();
    Ok((c.broadcast_view(&full).to_dense()?, r * cols))
}

/// `out (nb, m, n) = alpha·op(A)·op(B)`, operands with their batch strides.
fn product(
    like: &CudaStorage,
    (a, sa): (&CudaStorage, usize),
    (b, sb): (&CudaStorage, usize),
    g: Gemm,
) -> Result<CudaStorage> {
    let out = device_uninit(like, &[g.batch, g.m, g.n])?;
    launch::matmul_strided(&a.buffer, &b.buffer, &out.buffer, None, g, 1.0, 0.0, sa, sb)?;
    Ok(out)
}

pub(super) fn matmul<T: Element>(
    inputs: [&Tensor<T>; 2],
    ops: Vec<CudaStorage>,
    batch: Vec<usize>,
    (m, k, n): (usize, usize, usize),
) -> Result<Tensor<T>> {
    let (sa_shape, sb_shape) = (ops[0].shape().to_vec(), ops[1].shape().to_vec());
    let nb: usize = batch.iter().product();
    let (a, sa) = operand(&ops[0], &batch)?;
    let (b, sb) = operand(&ops[1], &batch)?;
    let out_shape = [batch.as_slice(), &[m, n]].concat();
    // A single matrix B (a Linear-like product): the batch folds into A's rows — one GEMM, and
    // no limit on the batch from the grid's z dimension.
    let fold = sb == 0 && sa != 0;
    let y = if fold {
        product(&a, (&a, 0), (&b, 0), Gemm::new(nb * m, n, k))?
    } else {
        product(&a, (&a, sa), (&b, sb), Gemm::new(m, n, k).batched(nb))?
    };
    let y = y.view(out_shape.clone(), standard_strides(&out_shape), 0);
    Ok(Tensor::from_storage_op(
        "matmul",
        Storage::Cuda(y),
        &inputs,
        move |g, needs| {
            let g = device_grad("matmul", g)?.to_dense()?;
            let full = |r: usize, c: usize| [batch.as_slice(), &[r, c]].concat();
            // ∂L/∂A = G·Bᵀ per batch element, summed over A's broadcast batch axes.
            let da = if needs[0] {
                let d = if fold {
                    product(&g, (&g, 0), (&b, 0), Gemm::new(nb * m, k, n).trans_b())?
                } else {
                    product(
                        &g,
                        (&g, m * n),
                        (&b, sb),
                        Gemm::new(m, k, n).trans_b().batched(nb),
                    )?
                };
                let shape = full(m, k);
                let d = d.view(shape.clone(), standard_strides(&shape), 0);
                Some(Storage::Cuda(sum_to_shape(&d, &sa_shape)?))
            } else {
                None
            };
            // ∂L/∂B = Aᵀ·G; a single matrix B (stride 0) sums over the batch in one GEMM with the
            // batch folded into the inner dimension when A is dense per batch.
            let db = if needs[1] {
                if fold {
                    let d = product(&g, (&a, 0), (&g, 0), Gemm::new(k, n, nb * m).trans_a())?;
                    Some(Storage::Cuda(d.view(
                        sb_shape.clone(),
                        standard_strides(&sb_shape),
                        0,
                    )))
                } else {
                    let d = product(
                        &g,
                        (&a, sa),
                        (&g, m * n),
                        Gemm::new(k, n, m).trans_a().batched(nb),
                    )?;
                    let shape = full(k, n);
                    let d = d.view(shape.clone(), standard_strides(&shape), 0);
                    Some(Storage::Cuda(sum_to_shape(&d, &sb_shape)?))
                }
            } else {
                None
            };
            Ok(vec![da, db])
        },
    ))
}
