//! [`CachingAllocator`]: device memory from size-bucketed free lists, as PyTorch's CUDA caching
//! allocator does.
//!
//! **Why.** An eager autograd step allocates one buffer per op output, per saved tensor and per
//! gradient — hundreds per GPT step. A `cuMemAlloc` is a driver call that can synchronise the
//! device; a free-list hit is a hash-map lookup. Freed blocks go back to the list of their bucket
//! instead of to the driver, and the next step, which asks for the same sizes in the same order,
//! finds every block it needs there: after the first step a training step allocates nothing from
//! the driver (a test asserts it).
//!
//! **Buckets.** A request is rounded up to one of four sizes per power of two (2ᵏ, 1.25·2ᵏ,
//! 1.5·2ᵏ, 1.75·2ᵏ; at least 512 bytes), so a block serves any request within 25 % below its size
//! and rounding never wastes more than a fifth. Blocks are never split or merged: the workload
//! repeats its sizes, so the simple scheme keeps all of them warm.
//!
//! **Out of memory.** When the driver refuses, the cache is emptied (every idle block returned to
//! the driver) and the allocation tried once more before the error reaches the caller.
//!
//! **Safety of reuse.** All work runs on one stream, in order, so a block freed after its last
//! kernel was queued can be handed to a kernel queued later: that kernel runs after the last use.
//! Reused blocks are re-poisoned on backends that poison fresh memory (the emulator fills it with
//! NaN), so a kernel that reads before it writes still shows.

use std::cell::RefCell;
use std::collections::HashMap;

use super::gpu::{Gpu, GpuBackend, KernelArg};
use crate::error::Result;

/// What the allocator holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Calls that went to the driver (cache misses).
    pub driver_allocs: u64,
    /// Requests served from the cache.
    pub cache_hits: u64,
    /// Bytes handed out and not yet freed (bucket sizes).
    pub in_use_bytes: usize,
    /// The most `in_use_bytes` ever reached.
    pub peak_in_use_bytes: usize,
    /// Bytes held from the driver in all (in use + idle in the free lists).
    pub reserved_bytes: usize,
}

/// Size-bucketed free lists in front of another backend.
pub struct CachingAllocator {
    inner: Gpu,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// Idle blocks by bucket size.
    free: HashMap<usize, Vec<u64>>,
    /// Bucket size of every block handed out.
    live: HashMap<u64, usize>,
    stats: MemoryStats,
}

/// The bucket a request of `bytes` is served from: at least 512, rounded up to 2ᵏ·(1 + j/4).
pub fn bucket_size(bytes: usize) -> usize {
    let b = bytes.max(512);
    let k = usize::BITS - 1 - b.leading_zeros(); // 2ᵏ ≤ b < 2ᵏ⁺¹
    let quarter = 1usize << (k - 2);
    b.div_ceil(quarter) * quarter
}

impl CachingAllocator {
    /// Caches the allocations of `inner`.
    pub fn new(inner: Gpu) -> Self {
        CachingAllocator {
            inner,
            state: RefCell::new(State::default()),
        }
    }

    /// Returns every idle block to the driver.
    pub fn empty_cache(&self) {
        let blocks: Vec<(usize, u64)> = {
            let mut s = self.state.borrow_mut();
            let drained: Vec<(usize, u64)> = s
                .free
                .drain()
                .flat_map(|(size, ptrs)| ptrs.into_iter().map(move |p| (size, p)))
                .collect();
            for (size, _) in &drained {
                s.stats.reserved_bytes -= size;
            }
            drained
        };
        for (_, p) in blocks {
            // SAFETY: every idle block came from `inner.alloc` and is owned by the cache alone
            // (it was removed from the free list above and is in no `live` entry).
            unsafe { self.inner.free(p) };
        }
    }
}

impl Drop for CachingAllocator {
    fn drop(&mut self) {
        self.empty_cache();
    }
}

impl GpuBackend for CachingAllocator {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn ordinal(&self) -> usize {
        self.inner.ordinal()
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        let size = bucket_size(bytes);
        let cached = self
            .state
            .borrow_mut()
            .free
            .get_mut(&size)
            .and_then(|v| v.pop());
        let ptr = match cached {
            Some(p) => {
                // SAFETY: `p` is an idle block of `size` bytes from `inner`.
                unsafe { self.inner.poison(p, size)? };
                self.state.borrow_mut().stats.cache_hits += 1;
                p
            }
            None => {
                let p = match self.inner.alloc(size) {
                    Ok(p) => p,
                    Err(_) => {
                        self.empty_cache();
                        self.inner.alloc(size)?
                    }
                };
                let mut s = self.state.borrow_mut();
                s.stats.driver_allocs += 1;
                s.stats.reserved_bytes += size;
                p
            }
        };
        let mut s = self.state.borrow_mut();
        s.live.insert(ptr, size);
        s.stats.in_use_bytes += size;
        s.stats.peak_in_use_bytes = s.stats.peak_in_use_bytes.max(s.stats.in_use_bytes);
        Ok(ptr)
    }

    unsafe fn free(&self, ptr: u64) {
        let mut s = self.state.borrow_mut();
        if let Some(size) = s.live.remove(&ptr) {
            s.stats.in_use_bytes -= size;
            s.free.entry(size).or_default().push(ptr);
        }
    }

    unsafe fn poison(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.poison(dst, bytes) }
    }

    unsafe fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: forwarded unchanged; a block is at least as large as its request.
        unsafe { self.inner.copy_to_device(dst, src) }
    }

    unsafe fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.copy_to_host(src, dst) }
    }

    unsafe fn copy_device(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.copy_device(dst, src, bytes) }
    }

    unsafe fn zero(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.zero(dst, bytes) }
    }

    unsafe fn launch(
        &self,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[KernelArg],
    ) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.launch(name, grid, block, args) }
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn memory_stats(&self) -> Option<MemoryStats> {
        Some(self.state.borrow().stats)
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_size;

    #[test]
    fn buckets_round_up_by_at_most_a_quarter() {
        assert_eq!(bucket_size(1), 512);
        assert_eq!(bucket_size(512), 512);
        assert_eq!(bucket_size(513), 640);
        assert_eq!(bucket_size(1024), 1024);
        assert_eq!(bucket_size(1025), 1280);
        assert_eq!(bucket_size(3 << 20), 3 << 20);
        for b in [700usize, 5000, 123_457, 50257 * 4 * 8192] {
            let s = bucket_size(b);
            assert!(s >= b && (s - b) * 4 <= b, "{b} → {s}");
        }
    }
}
