//! The CUDA device: our own kernels (`kernels/*.cu`), compiled at run time by NVRTC and launched
//! through cudarc, with no CUDA toolkit needed to build — and, behind the cargo feature
//! `cuda-emu`, the same kernels run on the CPU by an emulator.
//!
//! This is the lowest floor of the house for a GPU: it knows buffers and kernels, nothing of
//! tensors, graphs or models.
//!
//! - [`gpu`]: the small [`GpuBackend`] interface (alloc, copy, launch by name) and
//!   [`DeviceBuffer`], the owned, bounds-checked device array.
//! - [`driver`]: [`CudaGpu`], the backend on a real GPU.
//! - [`emu`] (feature `cuda-emu`): [`emu::EmuGpu`], the backend on the CPU emulator.
//! - [`allocator`]: [`CachingAllocator`], size-bucketed free lists in front of either, so a
//!   training step allocates nothing from the driver after its first.
//! - [`launch`]: one host launcher per kernel: length checks, launch shape, arguments.
//! - [`kernels`], [`nvrtc`]: the embedded sources, and their compilation.
//! - [`profile`]: per-kernel timing.
//!
//! [`device`] hands out the backend of `cuda:N` (a thread-local registry: one per ordinal, opened
//! on first use); [`transfers`] counts host↔device copies, so a test can prove that a training
//! step makes only the few scalar copies it should.

pub mod allocator;
pub mod driver;
#[cfg(feature = "cuda-emu")]
pub mod emu;
pub mod gpu;
pub mod kernels;
pub mod launch;
pub mod nvrtc;
pub mod profile;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub use allocator::{CachingAllocator, MemoryStats};
pub use driver::{probe, CudaGpu};
pub use gpu::{DeviceBuffer, DeviceElem, Gpu, GpuBackend, KernelArg};

use crate::error::Result;

thread_local! {
    static DEVICES: RefCell<HashMap<usize, Gpu>> = RefCell::new(HashMap::new());
    static TRANSFERS: Cell<Transfers> = const { Cell::new(Transfers { to_device: 0, to_host: 0, to_host_bytes: 0, launches: 0 }) };
}

/// The backend behind `cuda:ordinal` on this thread: the one installed with [`install`] (e.g. the
/// emulator), else the real GPU, opened (and every kernel compiled) on first use, behind a
/// [`CachingAllocator`].
pub fn device(ordinal: usize) -> Result<Gpu> {
    if let Some(g) = DEVICES.with(|d| d.borrow().get(&ordinal).cloned()) {
        return Ok(g);
    }
    let gpu: Gpu = Rc::new(CachingAllocator::new(Rc::new(CudaGpu::new(ordinal)?)));
    install(ordinal, gpu.clone());
    Ok(gpu)
}

/// Makes `gpu` the backend of `cuda:ordinal` on this thread (replacing any other). Tensors already
/// on the old backend keep it.
pub fn install(ordinal: usize, gpu: Gpu) {
    DEVICES.with(|d| d.borrow_mut().insert(ordinal, gpu));
}

/// Makes the CPU emulator (behind a caching allocator) the backend of `cuda:ordinal` on this
/// thread: `--device emu`. Everything above runs exactly as on a GPU.
#[cfg(feature = "cuda-emu")]
pub fn install_emulator(ordinal: usize) -> Gpu {
    install_emulator_with(ordinal, emu::Schedule::Forward)
}

/// [`install_emulator`] with the emulator running each block's threads in `schedule`'s order.
///
/// With `CUDA_EMU_ASAN=1` in the environment (an AddressSanitizer build of the emulator, see
/// docs/cuda.md) the caching allocator is left out: every buffer is then allocated at its exact
/// size, so ASan sees an overrun by a single element instead of one hidden in a bucket's slack.
#[cfg(feature = "cuda-emu")]
pub fn install_emulator_with(ordinal: usize, schedule: emu::Schedule) -> Gpu {
    let emu = emu::EmuGpu::with_schedule(schedule);
    let gpu: Gpu = if std::env::var("CUDA_EMU_ASAN").is_ok_and(|v| v == "1") {
        emu
    } else {
        Rc::new(CachingAllocator::new(emu))
    };
    install(ordinal, gpu.clone());
    gpu
}

/// Host↔device copies and kernel launches made on this thread since it started (every copy goes
/// through [`DeviceBuffer`] and every launch through [`launch`], which count them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host → device copies.
    pub to_device: u64,
    /// Device → host copies.
    pub to_host: u64,
    /// Bytes copied device → host.
    pub to_host_bytes: u64,
    /// Kernel launches (through [`launch`]).
    pub launches: u64,
}

impl Transfers {
    /// The copies made between `earlier` and `self`.
    pub fn since(self, earlier: Transfers) -> Transfers {
        Transfers {
            to_device: self.to_device - earlier.to_device,
            to_host: self.to_host - earlier.to_host,
            to_host_bytes: self.to_host_bytes - earlier.to_host_bytes,
            launches: self.launches - earlier.launches,
        }
    }
}

/// The transfer counters of this thread.
pub fn transfers() -> Transfers {
    TRANSFERS.with(|t| t.get())
}

pub(crate) fn count_to_device() {
    TRANSFERS.with(|t| {
        let mut v = t.get();
        v.to_device += 1;
        t.set(v)
    });
}

pub(crate) fn count_launch() {
    TRANSFERS.with(|t| {
        let mut v = t.get();
        v.launches += 1;
        t.set(v)
    });
}

pub(crate) fn count_to_host(bytes: usize) {
    TRANSFERS.with(|t| {
        let mut v = t.get();
        v.to_host += 1;
        v.to_host_bytes += bytes as u64;
        t.set(v)
    });
}
