//! The gradient all-reduce: after backward, every parameter's gradient becomes the mean over the
//! ranks, `g ← (1/N)·Σ_r g_r` (why the mean is the big batch's gradient: [`super`]).
//!
//! **Buckets.** One collective call per parameter would pay the transport's latency ~150 times a
//! step for GPT-2 small, most of them for biases and norm scales of a few hundred floats. So the
//! gradients are taken in reverse parameter order (the order backward finishes them: the head and
//! the last block first, as PyTorch's DDP buckets them) and packed into buckets of about
//! `bucket_bytes`: a run of small gradients is copied into one buffer and summed in one call; a
//! gradient as large as a bucket on its own is sent from where it lies. The sums arrive in a
//! receive buffer (reused from step to step) and are scaled by 1/N on their way back into the
//! gradients: three passes over memory for a bucket (pack, sum, unpack) and two for a large
//! gradient, against the one of a single plain all-reduce (`bench ddp` measures both).
//!
//! Parameters without a gradient (frozen weights, LoRA's base model) are skipped: every rank has
//! the same set, because every rank runs the same model on the same kind of batch.
//!
//! Device gradients are summed by the transport in device memory when it can (NCCL), else staged
//! through the host; either way the division by N is one `scale` kernel.

use crate::backend::cuda::{launch, DeviceBuffer};
use crate::error::Result;
use crate::tensor::{CudaStorage, Storage, Tensor};

use super::Collective;

/// PyTorch DDP's default bucket size (25 MiB).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Replaces every gradient of `params` by its mean over the ranks of `group`. Does nothing in
/// one process. Every rank must call it with the same parameters (in the same order).
pub fn all_reduce_gradients(
    group: &dyn Collective,
    params: &[Tensor],
    bucket_bytes: usize,
) -> Result<()> {
    let world = group.world_size();
    if world == 1 {
        return Ok(());
    }
    let scale = 1.0 / world as f32;
    let with_grad: Vec<&Tensor> = params
        .iter()
        .rev()
        .filter(|p| p.grad_storage().is_some())
        .collect();
    let (host, device): (Vec<&Tensor>, Vec<&Tensor>) = with_grad
        .into_iter()
        .partition(|p| matches!(p.grad_storage(), Some(Storage::Cpu(_))));
    reduce_host(group, &host, bucket_bytes.max(4) / 4, scale)?;
    if !device.is_empty() {
        reduce_device(group, &device, scale)?;
    }
    Ok(())
}

/// CPU gradients, in buckets of at most `bucket_len` floats (a larger gradient on its own).
fn reduce_host(
    group: &dyn Collective,
    params: &[&Tensor],
    bucket_len: usize,
    scale: f32,
) -> Result<()> {
    thread_local! {
        /// The receive buffer (and the bucket), kept between steps: no page faults per step.
        static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = Default::default();
    }
    BUFFERS.with(|b| {
        let (bucket, recv) = &mut *b.borrow_mut();
        reduce_host_with(group, params, bucket_len, scale, bucket, recv)
    })
}

fn reduce_host_with(
    group: &dyn Collective,
    params: &[&Tensor],
    bucket_len: usize,
    scale: f32,
    bucket: &mut Vec<f32>,
    recv: &mut Vec<f32>,
) -> Result<()> {
    let mut start = 0;
    while start < params.len() {
        // The longest run from `start` that fits a bucket (at least one gradient).
        let mut end = start + 1;
        let mut len = params[start].numel();
        while end < params.len() && len + params[end].numel() <= bucket_len {
            len += params[end].numel();
            end += 1;
        }
        let run = &params[start..end];
        recv.resize(len, 0.0);
        if run.len() == 1 {
            // Alone in its bucket: sent from where it lies.
            with_host_grad(run[0], |g| {
                group.all_reduce_sum_f32_into(g, recv)?;
                scale_into(g, recv, scale);
                Ok(())
            })?;
        } else {
            bucket.clear();
            for p in run {
                with_host_grad(p, |g| {
                    bucket.extend_from_slice(g);
                    Ok(())
                })?;
            }
            group.all_reduce_sum_f32_into(bucket, recv)?;
            let mut at = 0;
            for p in run {
                with_host_grad(p, |g| {
                    scale_into(g, &recv[at..at + g.len()], scale);
                    at += g.len();
                    Ok(())
                })?;
            }
        }
        start = end;
    }
    Ok(())
}

/// `out[i] = sums[i]·scale`, in parallel chunks (a memory-bound pass).
fn scale_into(out: &mut [f32], sums: &[f32], scale: f32) {
    use rayon::prelude::*;
    out.par_chunks_mut(1 << 16)
        .zip(sums.par_chunks(1 << 16))
        .for_each(|(o, s)| {
            for (x, &v) in o.iter_mut().zip(s) {
                *x = v * scale;
            }
        });
}

/// Runs `f` on `p`'s CPU gradient as one contiguous, uniquely owned slice (made so first if the
/// gradient is a view or shared — ndarray's copy-on-write), in C order.
fn with_host_grad(p: &Tensor, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    let mut slot = p.node.grad.borrow_mut();
    let Some(Storage::Cpu(g)) = slot.as_mut() else {
        unreachable!("partitioned as a CPU gradient");
    };
    if !g.is_standard_layout() {
        *g = crate::ops::c_order_copy(g).into_shared();
    }
    let slice = g
        .as_slice_mut()
        .expect("a standard-layout array, uniquely owned after as_slice_mut's copy-on-write");
    f(slice)
}

/// Device gradients, one call each (grouped into one launch where the transport can), then
/// scaled by 1/N into a fresh buffer that becomes the gradient.
fn reduce_device(group: &dyn Collective, params: &[&Tensor], scale: f32) -> Result<()> {
    let mut summed = Vec::with_capacity(params.len());
    group.begin_device_group()?;
    let reduced = (|| {
        for p in params {
            let Some(Storage::Cuda(g)) = p.grad_storage() else {
                unreachable!("partitioned as a device gradient");
            };
            // A private dense copy: the gradient may be a view, or shared with a saved value.
            let own = g.fresh_copy()?;
            group.all_reduce_sum_device(&own.buffer)?;
            summed.push((*p, own));
        }
        Ok(())
    })();
    group.end_device_group()?;
    reduced?;
    for (p, own) in summed {
        let out = DeviceBuffer::<f32>::uninit(own.gpu(), own.numel())?;
        launch::scale(&own.buffer, &out, scale)?;
        p.zero_grad();
        p.accumulate_grad(&Storage::Cuda(CudaStorage::from_buffer(out, own.shape())))?;
    }
    Ok(())
}

/// The trainable parameters in buckets fixed before a step, so that each bucket can be averaged
/// the moment backward has finished all of its gradients ([`Tensor::backward_hooked`]) instead of
/// after the whole backward: the head's and the last blocks' buckets go first, the tied
/// embedding's last. Every rank builds the same buckets from the same model and sees them
/// finish in the same order (the graph fixes it), so the collectives match rank for rank.
pub struct Buckets {
    /// Parameter indices per bucket (reverse parameter order, about `bucket_bytes` each).
    members: Vec<Vec<usize>>,
    /// Bucket of each trainable parameter, by tensor id.
    bucket_of: std::collections::HashMap<u64, usize>,
    /// Gradients each bucket still waits for.
    left: Vec<usize>,
    done: Vec<bool>,
    bucket_bytes: usize,
}

impl Buckets {
    /// Buckets over the parameters that require grad.
    pub fn new(params: &[Tensor], bucket_bytes: usize) -> Self {
        let cap = bucket_bytes.max(4) / 4;
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut len = 0;
        for (i, p) in params.iter().enumerate().rev() {
            if !p.requires_grad() {
                continue;
            }
            let n = p.numel();
            match members.last_mut() {
                Some(b) if len + n <= cap => {
                    b.push(i);
                    len += n;
                }
                _ => {
                    members.push(vec![i]);
                    len = n;
                }
            }
        }
        let bucket_of = members
            .iter()
            .enumerate()
            .flat_map(|(b, m)| m.iter().map(move |&i| (params[i].id(), b)))
            .collect();
        Buckets {
            left: members.iter().map(Vec::len).collect(),
            done: vec![false; members.len()],
            members,
            bucket_of,
            bucket_bytes,
        }
    }

    /// `param`'s gradient is final: averages its bucket if that was the last one it waited for.
    pub fn finished(
        &mut self,
        group: &dyn Collective,
        params: &[Tensor],
        param: &Tensor,
    ) -> Result<()> {
        let Some(&b) = self.bucket_of.get(&param.id()) else {
            return Ok(()); // not a parameter of this model (an input that requires grad)
        };
        self.left[b] -= 1;
        if self.left[b] == 0 {
            self.reduce(group, params, b)?;
        }
        Ok(())
    }

    /// Averages the buckets not averaged yet (whose parameters received no gradient, or all of
    /// them when backward ran without the hook), in bucket order.
    pub fn finish(&mut self, group: &dyn Collective, params: &[Tensor]) -> Result<()> {
        for b in 0..self.members.len() {
            if !self.done[b] {
                self.reduce(group, params, b)?;
            }
        }
        Ok(())
    }

    fn reduce(&mut self, group: &dyn Collective, params: &[Tensor], b: usize) -> Result<()> {
        self.done[b] = true;
        let mine: Vec<Tensor> = self.members[b].iter().map(|&i| params[i].clone()).collect();
        all_reduce_gradients(group, &mine, self.bucket_bytes)
    }
}
