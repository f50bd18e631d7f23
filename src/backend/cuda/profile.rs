//! [`ProfilingGpu`]: a [`GpuBackend`] wrapper that times every kernel by name — "where does the
//! time of a GPU training step go". It synchronises after each launch (so the kernels run back to
//! back instead of overlapping with the host's queueing), which slows the whole step slightly;
//! the per-kernel times are what each kernel costs on its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use super::gpu::{Gpu, GpuBackend, KernelArg};
use crate::error::Result;

/// Kernel-time accounting around another backend.
pub struct ProfilingGpu {
    inner: Gpu,
    times: RefCell<HashMap<String, (u64, f64)>>,
}

impl ProfilingGpu {
    pub fn new(inner: Gpu) -> Self {
        ProfilingGpu {
            inner,
            times: RefCell::new(HashMap::new()),
        }
    }

    /// Forget what was measured so far (e.g. after a warm-up step).
    pub fn reset(&self) {
        self.times.borrow_mut().clear();
    }

    /// (kernel, launches, total seconds), most expensive first.
    pub fn report(&self) -> Vec<(String, u64, f64)> {
        let mut v: Vec<_> = self
            .times
            .borrow()
            .iter()
            .map(|(k, &(n, s))| (k.clone(), n, s))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}

impl GpuBackend for ProfilingGpu {
    fn describe(&self) -> String {
        format!("{} (profiling)", self.inner.describe())
    }
    fn alloc(&self, bytes: usize) -> Result<u64> {
        self.inner.alloc(bytes)
    }
    unsafe fn free(&self, ptr: u64) {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.inner.free(ptr) }
    }
    unsafe fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: forwarded unchanged.
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
        self.inner.synchronize()?;
        let t0 = Instant::now();
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.launch(name, grid, block, args)? };
        self.inner.synchronize()?;
        let dt = t0.elapsed().as_secs_f64();
        let mut times = self.times.borrow_mut();
        let e = times.entry(name.to_string()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += dt;
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }
    fn ordinal(&self) -> usize {
        self.inner.ordinal()
    }
    unsafe fn poison(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: forwarded unchanged.
        unsafe { self.inner.poison(dst, bytes) }
    }
    fn memory_stats(&self) -> Option<super::MemoryStats> {
        self.inner.memory_stats()
    }
}
