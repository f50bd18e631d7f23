//! [`EmuGpu`]: the CPU emulator (`crates/cuda-emu`, feature `cuda-emu`) behind the same
//! [`GpuBackend`] trait as a real GPU. "Device memory" is host memory, poisoned with NaN bits on
//! allocation (and on reuse by the caching allocator) so a kernel that reads before it writes
//! shows; a device pointer is a host address. `--device emu` runs every command on it.

use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::gpu::{Gpu, GpuBackend, KernelArg, PackedArgs};
use crate::error::{Error, Result};
pub use cuda_emu::Schedule;

/// The emulated device.
pub struct EmuGpu {
    allocations: RefCell<HashMap<u64, Layout>>,
    workers: u32,
    schedule: Schedule,
}

impl EmuGpu {
    /// A new emulator running each block's threads in the forward order, as a shared handle.
    pub fn shared() -> Gpu {
        Self::with_schedule(Schedule::Forward)
    }

    /// A new emulator whose blocks run their threads in `schedule`'s order.
    pub fn with_schedule(schedule: Schedule) -> Gpu {
        let workers = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
        Rc::new(EmuGpu {
            allocations: RefCell::new(HashMap::new()),
            workers,
            schedule,
        })
    }
}

impl GpuBackend for EmuGpu {
    fn describe(&self) -> String {
        format!(
            "CPU emulator ({} worker threads, {:?} thread schedule)",
            self.workers, self.schedule
        )
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        let layout =
            Layout::from_size_align(bytes.max(4), 256).map_err(|e| Error::Cuda(e.to_string()))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return Err(Error::Cuda(format!(
                "emulator out of memory allocating {bytes} bytes"
            )));
        }
        // SAFETY: `p` is valid for `layout.size()` bytes. 0xFF bytes are NaN as f32.
        unsafe { std::ptr::write_bytes(p, 0xFF, layout.size()) };
        self.allocations.borrow_mut().insert(p as u64, layout);
        Ok(p as u64)
    }

    unsafe fn free(&self, ptr: u64) {
        if let Some(layout) = self.allocations.borrow_mut().remove(&ptr) {
            // SAFETY: allocated above with this layout, freed once (removed from the map).
            unsafe { dealloc(ptr as *mut u8, layout) }
        }
    }

    unsafe fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: the caller guarantees the destination range.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the caller guarantees the source range.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy_device(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller guarantees both ranges.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn poison(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller guarantees the range. 0xFF bytes are NaN as f32.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0xFF, bytes) };
        Ok(())
    }

    unsafe fn zero(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller guarantees the range.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, bytes) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[KernelArg],
    ) -> Result<()> {
        let mut packed = PackedArgs::new(args);
        let mut ptrs = packed.pointers();
        let kinds: String = args.iter().map(KernelArg::kind).collect();
        // SAFETY: forwarded from the caller's contract (and the emulator checks the argument
        // kinds against the kernel's parameter list before running it).
        unsafe {
            cuda_emu::launch(
                name,
                grid,
                block,
                &mut ptrs,
                &kinds,
                self.workers,
                self.schedule,
            )
        }
        .map_err(Error::Cuda)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
