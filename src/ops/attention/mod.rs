//! Fused (causal) scaled dot-product attention, the core of the book's `MultiHeadAttention`:
//!
//! ```text
//! S = s·Q·Kᵀ  (s = 1/√d),   P = softmax(S + causal mask),   P̃ = dropout(P),   O = P̃·V
//! ```
//! for every (batch, head), with `Q: (B, H, Tq, d)`, `K, V: (B, H, Tk, d)`, `Tq ≤ Tk`. Query i is
//! the position `i + (Tk − Tq)` (the last Tq of Tk positions — a KV cache's case), and sees keys
//! `j ≤ i + (Tk − Tq)`.
//!
//! **Memory, flash-attention style.** The T×T matrices S and P are never stored. Queries are
//! processed in blocks of [`BLOCK`] rows; for a block only the keys some row of it can see are
//! multiplied, and only the per-row log-sum-exp `lse_i = m_i + ln Σ_j e^{S_ij − m_i}` is saved
//! for backward, so the op keeps O(T) extra memory instead of O(T²) per head.
//!
//! **Block products.** The products inside a block run on [`tile_gemm`], a packing-free
//! register-tile GEMM (see `backend::tile_gemm` for why not `matrixmultiply` here). It is told
//! the causal structure. Each band of 4 query rows computes scores only up to the last key it
//! sees, rounded up to half a 64-key tile (softmax overwrites the masked entries computed that
//! way before they are used, as FlashAttention does), and sums `P·V` and `dS·K` only over the
//! keys it sees; each band of keys sums `Pᵀ·dO` and `dSᵀ·Q` only over the queries that see it.
//! So of the masked upper triangle only the part of the diagonal blocks between each band's
//! last visible key and the next multiple of 32 keys is computed (and then discarded).
//!
//! **Backward, by recomputation.** From `lse`, `P_ij = e^{S_ij − lse_i}` is recomputed block by
//! block. Let `M_ij/(1−p)` be the dropout multiplier (regenerated from its seed), `dO = ∂L/∂O`:
//! - `O = P̃V` ⇒ `∂L/∂V = P̃ᵀ·dO` and `∂L/∂P̃ = dO·Vᵀ`; dropout ⇒ `∂L/∂P = ∂L/∂P̃ ⊙ M/(1−p)`.
//! - softmax (see `ops::softmax`): `∂L/∂S_ij = P_ij·(∂L/∂P_ij − D_i)` with
//!   `D_i = Σ_j P_ij ∂L/∂P_ij`. Since `P_ij ∂L/∂P_ij = P̃_ij ∂L/∂P̃_ij`,
//!   `D_i = Σ_j P̃_ij (dO_i·V_j) = dO_i·O_i` — one dot product per row, no T×T reduction.
//! - `S = s·QKᵀ` ⇒ `∂L/∂Q = s·dS·K` and `∂L/∂K = s·dSᵀ·Q`.
//!   Masked entries have `P_ij = 0`, so they contribute nothing anywhere.
//!
//! **Dropout** uses the index of the attention weight in the `(B, H, Tq, Tk)` tensor as its
//! counter, so the mask is exactly the one `dropout(p, seed)` would draw on the materialised
//! attention-weight tensor — which is how the unfused study modules of chapter 3 are tested
//! equal to this op, dropout included.
//!
//! **Grouped-query attention** (Llama 3, Qwen3): `K` and `V` may have fewer heads than `Q`,
//! `KV` dividing `H`; query head `h` of a batch row reads KV head `⌊h / g⌋`, `g = H / KV` —
//! transformers' `repeat_kv` order (query heads 0, 1 share KV head 0 when `H = 4, KV = 2`).
//! Nothing is copied: the forward simply indexes the shared head. In the backward, KV head
//! `k_h` appears in the scores of its `g` query heads, so by the chain rule its gradient is the
//! sum over the group:
//!
//! ```text
//! ∂L/∂K_{k_h} = Σ_{h: ⌊h/g⌋ = k_h} s·dS_hᵀ·Q_h,     ∂L/∂V_{k_h} = Σ_{h: ⌊h/g⌋ = k_h} P̃_hᵀ·dO_h
//! ```
//!
//! computed by giving each KV head one task that walks its `g` query heads and accumulates —
//! no atomics, no per-query-head copies of the K/V gradients, the same order on every run.

mod cuda;

use ndarray::IxDyn;
use rayon::prelude::*;

use crate::backend::cpu::{dot, exp_shifted_sum, max};
use crate::backend::tile_gemm::{tile_gemm, Strided};
use crate::backend::transpose::transposed;
use crate::error::{Error, Result};
use crate::tensor::rng::hash_uniform;
use crate::tensor::{CpuArray, Element, Tensor};

use super::contiguous;

/// One KV head's index, the slice of ∂L/∂Q of its query heads, and its ∂L/∂K, ∂L/∂V.
type HeadGrads<'a, T> = (usize, ((&'a mut [T], &'a mut [T]), &'a mut [T]));

/// Query rows per block.
pub const BLOCK: usize = 64;

/// Options of [`Tensor::attention`].
#[derive(Clone, Copy, Debug)]
pub struct AttentionOptions {
    /// Mask future keys (GPT); false attends to every key.
    pub causal: bool,
    /// Dropout probability on the attention weights (0 = none, e.g. in eval mode).
    pub dropout_p: f64,
    /// Seed of the dropout mask.
    pub seed: u64,
}

impl Default for AttentionOptions {
    fn default() -> Self {
        AttentionOptions {
            causal: true,
            dropout_p: 0.0,
            seed: 0,
        }
    }
}

/// Geometry shared by forward and backward.
#[derive(Clone, Copy)]
struct Dims {
    /// Query heads in all (batch × heads).
    heads: usize,
    /// Query heads per KV head (1 without grouped-query attention).
    group: usize,
    tq: usize,
    tk: usize,
    d: usize,
    causal: bool,
    p: f64,
    seed: u64,
}

impl Dims {
    /// One past the last key query `i` may see.
    fn key_end(&self, i: usize) -> usize {
        if self.causal {
            (i + self.tk - self.tq + 1).min(self.tk)
        } else {
            self.tk
        }
    }

    /// The first query that sees key `j` (the inverse of [`Dims::key_end`]): query `i` sees
    /// key `j` iff `j ≤ i + (Tk − Tq)`.
    fn first_query(&self, j: usize) -> usize {
        if self.causal {
            j.saturating_sub(self.tk - self.tq)
        } else {
            0
        }
    }

    /// Dropout multiplier `M_ij/(1−p)` of weight (head, i, j).
    fn drop_mul<T: Element>(&self, head: usize, i: usize, j: usize) -> T {
        let idx = ((head * self.tq + i) * self.tk + j) as u64;
        if hash_uniform(self.seed, idx) >= self.p as f32 {
            T::of(1.0 / (1.0 - self.p))
        } else {
            T::zero()
        }
    }
}

/// Where a block's per-row log-sum-exp goes: the forward computes and saves it, the backward
/// reads it back to recompute `P` without a max or a sum.
enum Lse<'a, T> {
    Save(&'a mut [T]),
    Saved(&'a [T]),
}

/// `P` (softmax of the scaled scores, masked entries 0) for query rows `r0..r1` of one head into
/// `p` (row stride `ke`, the keys the block sees): the scores `s·Q_blk·Kᵀ` on the tile GEMM,
/// each band of rows up to (about) its last visible key, then a stable softmax per row — or,
/// given the saved log-sum-exp, `P_ij = e^{S_ij − lse_i}` directly. Entries right of each row's
/// last visible key (including those the GEMM computed for the rest of its tile) become 0.
#[allow(clippy::too_many_arguments)]
fn probabilities<T: Element>(
    dims: &Dims,
    (r0, r1, ke): (usize, usize, usize),
    scale: T,
    q_blk: &[T],
    kt: &[T],
    p: &mut [T],
    mut lse: Lse<'_, T>,
) {
    let d = dims.d;
    tile_gemm(
        (r1 - r0, ke, d),
        scale,
        Strided::rows(q_blk, d),
        (kt, dims.tk),
        T::zero(),
        (&mut *p, ke),
        |_, i1| (dims.key_end(r0 + i1 - 1), 0..d),
    );
    for i in r0..r1 {
        let row = &mut p[(i - r0) * ke..(i - r0 + 1) * ke];
        let (live, dead) = row.split_at_mut(dims.key_end(i));
        dead.iter_mut().for_each(|v| *v = T::zero());
        match &mut lse {
            Lse::Saved(saved) => {
                let l = saved[i];
                live.iter_mut()
                    .for_each(|v| *v = (*v - l).exp_nonpositive_inline());
            }
            Lse::Save(out) => {
                let m = max(live);
                let s = exp_shifted_sum(live, m);
                let inv = T::one() / s;
                live.iter_mut().for_each(|v| *v *= inv);
                out[i] = m + s.ln();
            }
        }
    }
}

/// Calls `f(index in the block, M_ij/(1−p))` for every visible weight of query rows `r0..r1`
/// (row stride `ke`): the dropout multipliers, drawn once per weight.
fn for_each_dropout<T: Element>(
    dims: &Dims,
    head: usize,
    (r0, r1, ke): (usize, usize, usize),
    mut f: impl FnMut(usize, T),
) {
    for i in r0..r1 {
        for j in 0..dims.key_end(i) {
            f((i - r0) * ke + j, dims.drop_mul::<T>(head, i, j));
        }
    }
}

impl<T: Element> Tensor<T> {
    /// Fused scaled dot-product attention `softmax(Q·Kᵀ/√d [+ causal mask])·V` with optional
    /// dropout on the weights; see the module docs for the math. Shapes: `q: (B, H, Tq, d)`,
    /// `k, v: (B, KV, Tk, d)` with `Tq ≤ Tk` and `KV` dividing `H` (grouped-query attention when
    /// `KV < H`); output `(B, H, Tq, d)`.
    pub fn attention(
        q: &Tensor<T>,
        k: &Tensor<T>,
        v: &Tensor<T>,
        opts: &AttentionOptions,
    ) -> Result<Tensor<T>> {
        let (sq, sk) = (q.shape(), k.shape());
        let bad = |why: &str| Error::ShapeMismatch {
            op: "attention",
            lhs: sq.clone(),
            rhs: sk.clone(),
            why: why.into(),
        };
        if sq.len() != 4 || sk.len() != 4 || v.shape() != sk {
            return Err(bad("q must be (B, H, Tq, d), k and v both (B, KV, Tk, d)"));
        }
        if sq[0] != sk[0] || sq[3] != sk[3] {
            return Err(bad("q and k must agree in batch and head dim"));
        }
        if sk[1] == 0 || sq[1] % sk[1] != 0 {
            return Err(bad(
                "the KV heads must divide the query heads (grouped-query attention)",
            ));
        }
        if sq[2] > sk[2] || sk[2] == 0 || sq[3] == 0 {
            return Err(bad("need 0 < Tq ≤ Tk and d > 0"));
        }
        if !(0.0..1.0).contains(&opts.dropout_p) {
            return Err(Error::invalid(
                "attention",
                format!("dropout_p must be in [0, 1), got {}", opts.dropout_p),
            ));
        }
        if let Some(ops) = super::cuda_operands("attention", &[q, k, v])? {
            return cuda::attention([q, k, v], ops, opts.causal, opts.dropout_p, opts.seed);
        }
        let (qa, ka, va) = (
            contiguous(&q.cpu("attention")?),
            contiguous(&k.cpu("attention")?),
            contiguous(&v.cpu("attention")?),
        );
        let dims = Dims {
            heads: sq[0] * sq[1],
            group: sq[1] / sk[1],
            tq: sq[2],
            tk: sk[2],
            d: sq[3],
            causal: opts.causal,
            p: opts.dropout_p,
            seed: opts.seed,
        };
        let Dims {
            heads,
            group,
            tq,
            tk,
            d,
            ..
        } = dims;
        let kv_heads = heads / group;
        let scale = T::of(1.0 / (d as f64).sqrt());
        let mut out = vec![T::zero(); heads * tq * d];
        let mut lse = vec![T::zero(); heads * tq];
        let (qs, ks, vs) = (
            qa.as_slice().expect("c"),
            ka.as_slice().expect("c"),
            va.as_slice().expect("c"),
        );

        let forward_head = |(h, (o, l)): (usize, (&mut [T], &mut [T]))| {
            // Query head h (of all B·H) reads KV head h / g: within a batch row, query heads
            // g·k .. g·k + g share KV head k, and B·H / g = B·KV keeps the batch rows aligned.
            let kvh = h / group;
            let (qh, kh, vh) = (
                &qs[h * tq * d..][..tq * d],
                &ks[kvh * tk * d..][..tk * d],
                &vs[kvh * tk * d..][..tk * d],
            );
            let mut p = vec![T::zero(); BLOCK * tk];
            let kt = transposed(kh, tk, d);
            for r0 in (0..tq).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(tq);
                let ke = dims.key_end(r1 - 1);
                let pb = &mut p[..(r1 - r0) * ke];
                let nr = r1 - r0;
                let block = (r0, r1, ke);
                probabilities(
                    &dims,
                    block,
                    scale,
                    &qh[r0 * d..r1 * d],
                    &kt,
                    pb,
                    Lse::Save(&mut *l),
                );
                if dims.p > 0.0 {
                    for_each_dropout(&dims, h, block, |idx, m| pb[idx] *= m);
                }
                // The keys the query rows r0 + i0 .. r0 + i1 of this block can see.
                let seen = |_: usize, i1: usize| dims.key_end(r0 + i1 - 1);
                // O_blk = P̃·V[..ke], each row band summing only over the keys it sees.
                tile_gemm(
                    (nr, d, ke),
                    T::one(),
                    Strided::rows(pb, ke),
                    (vh, d),
                    T::zero(),
                    (&mut o[r0 * d..r1 * d], d),
                    |i0, i1| (d, 0..seen(i0, i1)),
                );
            }
        };
        out.par_chunks_mut(tq * d)
            .zip(lse.par_chunks_mut(tq))
            .enumerate()
            .with_max_len(1)
            .for_each(forward_head);

        let out = CpuArray::from_shape_vec(IxDyn(&sq), out).expect("size");
        let saved_out = out.clone();
        Ok(Tensor::from_op(
            "attention",
            out,
            &[q, k, v],
            move |g, _| {
                let g = contiguous(g);
                let (gs, os) = (g.as_slice().expect("c"), saved_out.as_slice().expect("c"));
                let (qs, ks, vs) = (
                    qa.as_slice().expect("c"),
                    ka.as_slice().expect("c"),
                    va.as_slice().expect("c"),
                );
                let mut dq = vec![T::zero(); heads * tq * d];
                let mut dk = vec![T::zero(); kv_heads * tk * d];
                let mut dv = vec![T::zero(); kv_heads * tk * d];
                // One task per KV head: its g query heads in turn, their dK and dV summed into
                // the head's own (the group sum of the module docs).
                let backward_kv_head = |(kvh, ((dq_group, dkh), dvh)): HeadGrads<'_, T>| {
                    let (kh, vh) = (&ks[kvh * tk * d..][..tk * d], &vs[kvh * tk * d..][..tk * d]);
                    let (kt, vt) = (transposed(kh, tk, d), transposed(vh, tk, d));
                    let mut p = vec![T::zero(); BLOCK * tk];
                    let mut dp = vec![T::zero(); BLOCK * tk];
                    let mut p_dropped = Vec::new(); // P̃, only with dropout
                    for (r, dqh) in dq_group.chunks_mut(tq * d).enumerate() {
                        let h = kvh * group + r;
                        let qh = &qs[h * tq * d..][..tq * d];
                        let (goh, oh, lh) = (
                            &gs[h * tq * d..][..tq * d],
                            &os[h * tq * d..][..tq * d],
                            &lse[h * tq..][..tq],
                        );
                        for r0 in (0..tq).step_by(BLOCK) {
                            let r1 = (r0 + BLOCK).min(tq);
                            let (nr, ke) = (r1 - r0, dims.key_end(r1 - 1));
                            let (pb, dpb) = (&mut p[..nr * ke], &mut dp[..nr * ke]);
                            let (q_blk, do_blk) = (&qh[r0 * d..r1 * d], &goh[r0 * d..r1 * d]);
                            // Query bands see keys ..seen; key bands are seen from query first_seen.
                            let seen = |_: usize, i1: usize| dims.key_end(r0 + i1 - 1);
                            let first_seen = |j0: usize| dims.first_query(j0).saturating_sub(r0);
                            let block = (r0, r1, ke);
                            probabilities(&dims, block, scale, q_blk, &kt, pb, Lse::Saved(lh));
                            // dP̃ = dO·Vᵀ, the same columns as S (the rest of dp is stale until the dS loop).
                            tile_gemm(
                                (nr, ke, d),
                                T::one(),
                                Strided::rows(do_blk, d),
                                (&vt, tk),
                                T::zero(),
                                (&mut *dpb, ke),
                                |i0, i1| (seen(i0, i1), 0..d),
                            );
                            // dV += P̃ᵀ·dO, each key band summing over the queries that see it.
                            let dv_update = |p_tilde: &[T], dvh: &mut [T]| {
                                tile_gemm(
                                    (ke, d, nr),
                                    T::one(),
                                    Strided::transposed(p_tilde, ke),
                                    (do_blk, d),
                                    T::one(),
                                    (&mut dvh[..ke * d], d),
                                    |j0, _| (d, first_seen(j0)..nr),
                                )
                            };
                            if dims.p > 0.0 {
                                // dP = dP̃ ⊙ M/(1−p) in place, and P̃ = P ⊙ M/(1−p) in a copy for
                                // dV (dS below needs P itself), from one draw of each multiplier.
                                p_dropped.clear();
                                p_dropped.extend_from_slice(pb);
                                for_each_dropout(&dims, h, block, |idx, m| {
                                    dpb[idx] *= m;
                                    p_dropped[idx] *= m;
                                });
                                dv_update(&p_dropped, dvh);
                            } else {
                                dv_update(pb, dvh);
                            }
                            // dS = P ⊙ (dP − D_i), D_i = dO_i·O_i, written over dp; masked entries
                            // are 0 (dp there was never computed, so it is overwritten, not scaled).
                            for i in r0..r1 {
                                let di = dot(&goh[i * d..(i + 1) * d], &oh[i * d..(i + 1) * d]);
                                let row = (i - r0) * ke..(i - r0 + 1) * ke;
                                let end = dims.key_end(i);
                                let (live, dead) = dpb[row.clone()].split_at_mut(end);
                                // Zipped, not indexed: no bounds checks, so the loop vectorises.
                                for (ds, &pij) in live.iter_mut().zip(&pb[row]) {
                                    *ds = pij * (*ds - di);
                                }
                                dead.iter_mut().for_each(|v| *v = T::zero());
                            }
                            // dQ_blk = s·dS·K[..ke]
                            tile_gemm(
                                (nr, d, ke),
                                scale,
                                Strided::rows(dpb, ke),
                                (kh, d),
                                T::zero(),
                                (&mut dqh[r0 * d..r1 * d], d),
                                |i0, i1| (d, 0..seen(i0, i1)),
                            );
                            // dK[..ke] += s·dSᵀ·Q_blk
                            tile_gemm(
                                (ke, d, nr),
                                scale,
                                Strided::transposed(dpb, ke),
                                (q_blk, d),
                                T::one(),
                                (&mut dkh[..ke * d], d),
                                |j0, _| (d, first_seen(j0)..nr),
                            );
                        }
                    }
                };
                dq.par_chunks_mut(group * tq * d)
                    .zip(dk.par_chunks_mut(tk * d))
                    .zip(dv.par_chunks_mut(tk * d))
                    .enumerate()
                    .with_max_len(1)
                    .for_each(backward_kv_head);
                let arr =
                    |v: Vec<T>, s: &[usize]| CpuArray::from_shape_vec(IxDyn(s), v).expect("size");
                Ok(vec![
                    Some(arr(dq, &sq)),
                    Some(arr(dk, &sk)),
                    Some(arr(dv, &sk)),
                ])
            },
        ))
    }
}
