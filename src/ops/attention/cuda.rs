//! Fused causal self-attention on a device: kernels/attention.cu (flash-style forward saving one
//! log-sum-exp per query row, backward by recomputation in a Δ pass, a dq pass and a dk/dv pass),
//! the rule of the module docs. The kernels read q, k, v in the `(B, T, H, d)` layout the model's
//! head split is a view of, so `reshape → transpose(1, 2)` costs nothing here either; the output
//! and the gradients come back as the same kind of view.

use crate::backend::cuda::launch::{self, AttentionShape};
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;
use crate::ops::{device_grad, device_uninit};
use crate::tensor::{CudaStorage, Element, Storage, Tensor};

/// Swaps the head and time axes: `(B, H, T, d)` ↔ `(B, T, H, d)`.
const HEADS_TIME: [usize; 4] = [0, 2, 1, 3];

/// A `(B, H, T, d)` tensor as a dense `(B, T, H, d)` buffer (free when it is the head-split view
/// of one).
fn bthd(c: &CudaStorage) -> Result<CudaStorage> {
    c.permuted(&HEADS_TIME).to_dense()
}

/// A dense `(B, T, H, d)` buffer seen as `(B, H, T, d)`.
fn bhtd(c: CudaStorage) -> CudaStorage {
    c.permuted(&HEADS_TIME)
}

pub(super) fn attention<T: Element>(
    inputs: [&Tensor<T>; 3],
    ops: Vec<CudaStorage>,
    causal: bool,
    dropout_p: f64,
    seed: u64,
) -> Result<Tensor<T>> {
    let sq = ops[0].shape().to_vec();
    let sk = ops[1].shape().to_vec();
    if !causal || sq[2] != sk[2] || sq[3] > 64 {
        return composed(inputs, causal, dropout_p, seed);
    }
    let shape = AttentionShape {
        batch: sq[0],
        heads: sq[1],
        kv_heads: sk[1],
        seq: sq[2],
        head_dim: sq[3],
    };
    let (q, k, v) = (bthd(&ops[0])?, bthd(&ops[1])?, bthd(&ops[2])?);
    let o = device_uninit(&q, q.shape())?;
    let lse = DeviceBuffer::<f32>::uninit(q.gpu(), shape.batch * shape.heads * shape.seq)?;
    let p = dropout_p as f32;
    launch::attention_forward(
        &q.buffer, &k.buffer, &v.buffer, &o.buffer, &lse, shape, p, seed,
    )?;
    let o_saved = o.clone();
    Ok(Tensor::from_storage_op(
        "attention",
        Storage::Cuda(bhtd(o)),
        &inputs,
        move |g, _| {
            let dout = bthd(&device_grad("attention", g)?)?;
            let (dq, dk, dv) = (
                device_uninit(&q, q.shape())?,
                device_uninit(&k, k.shape())?,
                device_uninit(&k, k.shape())?,
            );
            launch::attention_backward(
                &q.buffer,
                &k.buffer,
                &v.buffer,
                &o_saved.buffer,
                &lse,
                &dout.buffer,
                &dq.buffer,
                &dk.buffer,
                &dv.buffer,
                shape,
                p,
                seed,
            )?;
            Ok(vec![
                Some(Storage::Cuda(bhtd(dq))),
                Some(Storage::Cuda(bhtd(dk))),
                Some(Storage::Cuda(bhtd(dv))),
            ])
        },
    ))
}

/// The cases the fused kernels do not cover — fewer queries than keys (a KV cache: the new
/// queries sit at the end, query i sees keys j ≤ i + Tk − Tq), no causal mask, head dims over
/// 64 — composed from device ops, each with its own backward:
/// `softmax(Q·Kᵀ/√d + M)·V` with `M` 0 where visible and −∞ where masked, and dropout on the
/// weights with the same counter (the weight's index in `(B, H, Tq, Tk)`) as the fused op, so
/// its masks are the CPU's.
///
/// Grouped-query attention without copying K or V: the `g = H/KV` query heads of a group are
/// consecutive, so `Q (B, H, Tq, d)` is viewed as `(B, KV, g·Tq, d)` — each KV head's queries
/// stacked — and one batched matmul per KV head scores them all. Row `r·Tq + i` of a group is
/// query `i` of head `g·k + r`, so the mask repeats every `Tq` rows, and the flat index of a
/// weight in `(B, KV, g·Tq, Tk)` is its index in `(B, H, Tq, Tk)`: the dropout masks agree.
fn composed<T: Element>(
    inputs: [&Tensor<T>; 3],
    causal: bool,
    dropout_p: f64,
    seed: u64,
) -> Result<Tensor<T>> {
    let [q, k, v] = inputs;
    let (sq, sk) = (q.shape(), k.shape());
    let (tq, tk, d) = (sq[2], sk[2], sq[3]);
    let group = sq[1] / sk[1];
    let rows = group * tq;
    let grouped_q = if group == 1 {
        q.clone()
    } else {
        q.reshape(&[sq[0], sk[1], rows, d])?
    };
    let mut scores = grouped_q
        .matmul(&k.transpose(-1, -2)?)?
        .mul_scalar(1.0 / (d as f64).sqrt())?;
    let offset = tk - tq;
    if causal && offset + 1 < tk {
        let mask: Vec<T> = (0..rows * tk)
            .map(|n| {
                let (i, j) = ((n / tk) % tq, n % tk);
                if j <= i + offset {
                    T::zero()
                } else {
                    T::of(f64::NEG_INFINITY)
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, &[rows, tk])?.to_device_like(q)?;
        scores = scores.add(&mask)?;
    }
    let weights = scores.softmax()?.dropout(dropout_p, seed)?;
    let out = weights.matmul(v)?;
    if group == 1 {
        Ok(out)
    } else {
        out.reshape(&sq)
    }
}
