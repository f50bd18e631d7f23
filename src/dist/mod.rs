//! Data-parallel training (the book's appendix A.9, PyTorch's DistributedDataParallel, llm.c's
//! multi-GPU runs): N processes ("ranks") each hold the whole model, read a disjoint stripe of the
//! data, and average their gradients before every optimizer step, so they stay identical.
//!
//! **Why averaging the gradients is the big batch's gradient.** Rank r's loss is the mean over
//! its batch of B sequences, `L_r = (1/B)·Σ_{i∈r} ℓ_i`. One process with the N ranks' batches as
//! one batch of N·B has `L = (1/(N·B))·Σ_i ℓ_i = (1/N)·Σ_r L_r`, and differentiation is linear:
//! `∂L/∂θ = (1/N)·Σ_r ∂L_r/∂θ` — the all-reduce (a sum on every rank) followed by a division by N.
//! Every rank then holds the same gradient, clips it by the same global norm and applies the same
//! AdamW update to the same weights, so the weights never need to be sent: only gradients
//! travel, once per optimizer step (with `--grad-accum`, after the last micro-batch only).
//!
//! The pieces:
//! - [`Collective`]: the small trait a transport implements — rank, world size, in-place sums.
//!   [`Solo`] is the single process; the `mpi` feature adds MPI between processes (CPU
//!   tensors), the `nccl` feature NCCL between GPUs (device buffers, no host copy).
//! - [`grads::all_reduce_gradients`]: the averaging, in buckets.
//! - [`watchdog::Watched`]: a transport whose every call is timed, so a rank that stops
//!   answering ends the others with a clear error instead of a hang.
//! - [`fingerprint`]: checks that the ranks' weights agree (at the start and at every save).
//!
//! Which windows a rank reads is the loader's business ([`crate::data::DataLoader::striped`]).

use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

pub mod grads;
pub mod watchdog;

#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;

/// What data-parallel training needs from a transport: who we are, and element-wise sums over
/// all ranks, in place, with the same result on every rank. Every rank must make the same calls
/// in the same order (a collective blocks until all ranks reach it).
pub trait Collective {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// One line for the log ("MPI, 2 ranks (Open MPI v4.1.4)").
    fn describe(&self) -> String;

    /// `buf[i] ← Σ_ranks buf[i]`, on every rank.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;

    /// `recv[i] ← Σ_ranks send[i]`, on every rank (`send` and `recv` of one length): the sum
    /// without the copy an in-place sum costs a transport whose library wants two buffers.
    fn all_reduce_sum_f32_into(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        self.all_reduce_sum_f32(recv)
    }

    /// `buf[i] ← Σ_ranks buf[i]`, on every rank (losses, counts, fingerprints).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;

    /// Whether [`Collective::all_reduce_sum_device`] reduces device memory directly (NCCL);
    /// otherwise device gradients are staged through the host.
    fn reduces_device_memory(&self) -> bool {
        false
    }

    /// `buf ← Σ_ranks buf` for a buffer on a device. The default copies it to the host, sums
    /// there and copies it back; a GPU transport overrides this to sum in device memory.
    fn all_reduce_sum_device(&self, buf: &crate::backend::cuda::DeviceBuffer<f32>) -> Result<()> {
        let mut host = buf.to_vec()?;
        self.all_reduce_sum_f32(&mut host)?;
        buf.write(&host)
    }

    /// The device gradients of one optimizer step are about to be summed (NCCL groups the calls
    /// between `begin_device_group` and `end_device_group` into one launch).
    fn begin_device_group(&self) -> Result<()> {
        Ok(())
    }

    /// See [`Collective::begin_device_group`].
    fn end_device_group(&self) -> Result<()> {
        Ok(())
    }

    /// Ends every rank at once after an error on this one (MPI_Abort), so that none is left
    /// waiting in a collective this rank will never reach. The default ends this process only.
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// One process: rank 0 of 1; every sum is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

/// The single process, for code that takes a `&dyn Collective`.
pub static SOLO: Solo = Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn describe(&self) -> String {
        "one process".into()
    }

    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// Whether any rank raised `flag` (a stop request: every rank must stop after the same step).
pub fn any_rank(group: &dyn Collective, flag: bool) -> Result<bool> {
    if group.world_size() == 1 {
        return Ok(flag);
    }
    let mut v = [flag as u8 as f64];
    group.all_reduce_sum_f64(&mut v)?;
    Ok(v[0] > 0.0)
}

/// Every rank's `value`, exactly, on every rank (index = rank): each rank writes its value into
/// its own slot of a zeroed vector and the vector is summed — adding zeros is exact, so this
/// all-gather is bit-exact for any value (NaN included) over a sum-only transport.
pub fn all_gather_f64(group: &dyn Collective, value: f64) -> Result<Vec<f64>> {
    let mut v = vec![0.0; group.world_size()];
    v[group.rank()] = value;
    if group.world_size() > 1 {
        group.all_reduce_sum_f64(&mut v)?;
    }
    Ok(v)
}

/// A checksum of the parameters' values: the wrapping sum of `bits(x_i)·(i + 1)` over every
/// element in order, parameter by parameter. It depends only on the bits (not on any floating-
/// point summation order), so equal weights give equal fingerprints on every rank and device.
pub fn fingerprint(params: &[Tensor]) -> Result<u64> {
    use rayon::prelude::*;
    let mut acc = 0u64;
    let mut offset = 0u64;
    for p in params {
        let values: Vec<f32> = match &*p.storage() {
            Storage::Cpu(_) => p.to_vec()?,
            Storage::Cuda(c) => c.to_vec()?,
        };
        let base = offset;
        acc = acc.wrapping_add(
            values
                .par_iter()
                .enumerate()
                .map(|(i, x)| (x.to_bits() as u64).wrapping_mul(base + i as u64 + 1))
                .reduce(|| 0, u64::wrapping_add),
        );
        offset += values.len() as u64;
    }
    Ok(acc)
}

/// Checks that every rank holds the same weights (`when`: "at the start", "after step 100"),
/// with a clear error naming the ranks that differ. Ranks that drifted apart would train
/// different models while looking like one run: this catches a rank started from other
/// weights, or a transport that gave ranks different sums.
pub fn check_in_sync(group: &dyn Collective, params: &[Tensor], when: &str) -> Result<()> {
    if group.world_size() == 1 {
        return Ok(());
    }
    let fp = fingerprint(params)?;
    // Two exact halves: an f64 holds any 32-bit integer exactly.
    let hi = all_gather_f64(group, (fp >> 32) as f64)?;
    let lo = all_gather_f64(group, (fp & 0xffff_ffff) as f64)?;
    let of = |r: usize| ((hi[r] as u64) << 32) | lo[r] as u64;
    let differing: Vec<usize> = (0..group.world_size())
        .filter(|&r| of(r) != of(0))
        .collect();
    if differing.is_empty() {
        Ok(())
    } else {
        Err(Error::Distributed(format!(
            "{when}, the weights of rank(s) {differing:?} differ from rank 0's (fingerprints {:016x} vs {:016x}): every rank must start from the same seed, --init-weights or --resume checkpoint",
            of(differing[0]),
            of(0)
        )))
    }
}

/// The mean of per-batch mean losses over batches split across ranks: `per_batch[i] = (mean
/// loss, sequences)` of this rank's share of global batch i (0 sequences where the rank has
/// none), `slots` the same length on every rank. Global batch i's mean is the
/// sequence-weighted mean of its shares, `Σ_r n_r·m_r / Σ_r n_r` (each sequence has the same
/// number of tokens), and the result is the mean over the batches any rank had — what one
/// process evaluating the whole batches computes. In one process: the plain mean of the means.
pub fn mean_of_batch_means(
    group: &dyn Collective,
    per_batch: &[(f64, usize)],
    slots: usize,
) -> Result<f64> {
    if group.world_size() == 1 {
        if per_batch.is_empty() {
            return Err(Error::invalid("evaluate", "there are no batches"));
        }
        return Ok(per_batch.iter().map(|b| b.0).sum::<f64>() / per_batch.len() as f64);
    }
    if per_batch.len() > slots {
        return Err(Error::invalid(
            "evaluate",
            format!("{} batches for {slots} slots", per_batch.len()),
        ));
    }
    let mut buf = vec![0.0f64; 2 * slots];
    for (i, &(mean, n)) in per_batch.iter().enumerate() {
        buf[i] = mean * n as f64;
        buf[slots + i] = n as f64;
    }
    group.all_reduce_sum_f64(&mut buf)?;
    let (sums, counts) = buf.split_at(slots);
    let batches: Vec<f64> = sums
        .iter()
        .zip(counts)
        .filter(|(_, &n)| n > 0.0)
        .map(|(s, n)| s / n)
        .collect();
    if batches.is_empty() {
        return Err(Error::invalid("evaluate", "no rank has a batch"));
    }
    Ok(batches.iter().sum::<f64>() / batches.len() as f64)
}
