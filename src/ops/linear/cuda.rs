//! The fused linear layer on a device: every product of the module docs is one `matmul` launch
//! (kernels/matmul.cu) on transposed strides — `Y = X·Wᵀ (+ b fused) + s·H·B` with `H = X·A`;
//! backward `∂X = G·W + T·Aᵀ`, `∂W = Gᵀ·X`, `∂b = Σ_rows G`, `∂A = Xᵀ·T`, `∂B = s·Hᵀ·G`,
//! `T = s·G·Bᵀ`.

use crate::backend::cuda::launch::{self, Gemm};
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

/// `rows × cols` = alpha·op(a)·op(b) (+ beta·out); a fresh output unless `out` is given.
fn gemm(
    like: &CudaStorage,
    a: &CudaStorage,
    b: &CudaStorage,
    g: Gemm,
    alpha: f32,
    bias: Option<&CudaStorage>,
) -> Result<CudaStorage> {
    let out = device_uninit(like, &[g.m, g.n])?;
    launch::matmul(
        &a.buffer,
        &b.buffer,
        &out.buffer,
        bias.map(|b| &*b.buffer),
        g,
        alpha,
        0.0,
    )?;
    Ok(out)
}

pub(super) fn linear<T: Element>(
    inputs: Vec<&Tensor<T>>,
    ops: Vec<CudaStorage>,
    has_bias: bool,
    lora_scale: Option<f64>,
) -> Result<Tensor<T>> {
    let xs = ops[0].shape().to_vec();
    let (n_out, n_in) = (ops[1].shape()[0], ops[1].shape()[1]);
    let rows: usize = xs[..xs.len() - 1].iter().product();
    let x = ops[0].to_dense()?.view(vec![rows, n_in], vec![n_in, 1], 0);
    let w = ops[1].to_dense()?;
    let bias = if has_bias {
        Some(ops[2].to_dense()?)
    } else {
        None
    };
    let k = 2 + has_bias as usize;
    let lora = match lora_scale {
        Some(s) => Some((ops[k].to_dense()?, ops[k + 1].to_dense()?, s as f32)),
        None => None,
    };
    // Y = X·Wᵀ + b
    let y = gemm(
        &x,
        &x,
        &w,
        Gemm::new(rows, n_out, n_in).trans_b(),
        1.0,
        bias.as_ref(),
    )?;
    let h = match &lora {
        Some((a, b, s)) => {
            let r = a.shape()[1];
            let h = gemm(&x, &x, a, Gemm::new(rows, r, n_in), 1.0, None)?;
            // Y += s·H·B
            launch::matmul(
                &h.buffer,
                &b.buffer,
                &y.buffer,
                None,
                Gemm::new(rows, n_out, r),
                *s,
                1.0,
            )?;
            Some(h)
        }
        None => None,
    };
    let out_shape = [&xs[..xs.len() - 1], &[n_out]].concat();
    let y = y.view(
        out_shape.clone(),
        crate::backend::cuda::launch::standard_strides(&out_shape),
        0,
    );
    Ok(Tensor::from_storage_op(
        "linear",
        Storage::Cuda(y),
        &inputs,
        move |g, needs| {
            let g = device_grad("linear", g)?.to_dense()?;
            let mut grads: Vec<Option<Storage<T>>> = Vec::with_capacity(needs.len());
            let t = match &lora {
                Some((a, b, s)) if needs[0] || needs[k] => {
                    let r = a.shape()[1];
                    Some(gemm(
                        &x,
                        &g,
                        b,
                        Gemm::new(rows, r, n_out).trans_b(),
                        *s,
                        None,
                    )?)
                }
                _ => None,
            };
            // ∂X = G·W (+ T·Aᵀ)
            grads.push(if needs[0] {
                let dx = gemm(&x, &g, &w, Gemm::new(rows, n_in, n_out), 1.0, None)?;
                if let (Some((a, _, _)), Some(t)) = (&lora, &t) {
                    let r = a.shape()[1];
                    launch::matmul(
                        &t.buffer,
                        &a.buffer,
                        &dx.buffer,
                        None,
                        Gemm::new(rows, n_in, r).trans_b(),
                        1.0,
                        1.0,
                    )?;
                }
                Some(Storage::Cuda(dx.view(
                    xs.clone(),
                    crate::backend::cuda::launch::standard_strides(&xs),
                    0,
                )))
            } else {
                None
            });
            // ∂W = Gᵀ·X
            grads.push(if needs[1] {
                Some(Storage::Cuda(gemm(
                    &x,
                    &g,
                    &x,
                    Gemm::new(n_out, n_in, rows).trans_a(),
                    1.0,
                    None,
                )?))
            } else {
                None
            });
            if has_bias {
                grads.push(if needs[2] {
                    let db = device_uninit(&x, &[n_out])?;
                    launch::column_sum(&g.buffer, &db.buffer, rows, n_out, false)?;
                    Some(Storage::Cuda(db))
                } else {
                    None
                });
            }
            if let (Some((a, b, s)), Some(h)) = (&lora, &h) {
                let r = a.shape()[1];
                // ∂A = Xᵀ·T
                grads.push(match (&t, needs[k]) {
                    (Some(t), true) => Some(Storage::Cuda(gemm(
                        &x,
                        &x,
                        t,
                        Gemm::new(n_in, r, rows).trans_a(),
                        1.0,
                        None,
                    )?)),
                    _ => None,
                });
                // ∂B = s·Hᵀ·G
                grads.push(if needs[k + 1] {
                    Some(Storage::Cuda(gemm(
                        &x,
                        h,
                        &g,
                        Gemm::new(r, n_out, rows).trans_a(),
                        *s,
                        None,
                    )?))
                } else {
                    None
                });
                let _ = b;
            }
            Ok(grads)
        },
    ))
}
