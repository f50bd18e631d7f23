//! [`CudaGpu`]: the [`GpuBackend`] on a real GPU, through cudarc's driver API with the CUDA
//! libraries loaded at run time (the crate builds without a toolkit).
//!
//! On creation it checks that libcuda and libnvrtc exist (cudarc panics rather than erroring when
//! they do not, so we probe first and say which one is missing), opens the device, compiles every
//! kernel file with NVRTC for the device's exact architecture (sm_XY machine code), loads the
//! modules and keeps each entry point: compile once per process, then launch by name.
//!
//! All work goes to the legacy default stream, so launches and copies are ordered; memory comes
//! from the stream-ordered allocator (cuMemAllocAsync) when the device supports it, which makes the
//! launchers' small scratch buffers cheap and their frees safe while kernels are still queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use super::gpu::{GpuBackend, KernelArg, PackedArgs};
use super::kernels::KERNEL_FILES;
use super::nvrtc::{self, Target};
use crate::error::{Error, Result};

/// Machine code of every kernel file, per architecture, compiled once per process: opening a
/// second device (or a second `CudaGpu` in the same process, as the tests do) reuses it.
fn compiled_images(sm: u32) -> Result<Vec<Vec<u8>>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Vec<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(images) = map.get(&sm) {
        return Ok(images.clone());
    }
    let images = KERNEL_FILES
        .iter()
        .map(|file| nvrtc::compile(file, Target::Cubin { sm }).map(|c| c.image))
        .collect::<Result<Vec<_>>>()?;
    map.insert(sm, images.clone());
    Ok(images)
}

/// A CUDA device with every kernel compiled and loaded.
pub struct CudaGpu {
    ctx: Arc<CudaContext>,
    _modules: Vec<Arc<CudaModule>>,
    functions: HashMap<&'static str, CudaFunction>,
    description: String,
    async_alloc: bool,
}

fn driver_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{what}: {e:?}"))
}

/// Whether a usable GPU is present: the driver library loads, initialises and reports at least one
/// device. `Err` says what is missing, in one line.
pub fn probe() -> Result<usize> {
    // SAFETY: only tries to dlopen libcuda by its candidate names.
    let present = std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err(Error::Cuda(
            "no CUDA driver: libcuda.so was not found (no NVIDIA driver installed, or it is not on the library path)".into(),
        ));
    }
    let count = std::panic::catch_unwind(|| {
        result::init()?;
        result::device::get_count()
    })
    .map_err(|_| {
        Error::Cuda(
            "the CUDA driver library is present but could not be loaded (driver too old?)".into(),
        )
    })?
    .map_err(|e| driver_err("CUDA driver initialisation failed (no GPU visible?)", e))?;
    if count <= 0 {
        return Err(Error::Cuda("the CUDA driver reports no GPU".into()));
    }
    nvrtc::nvrtc_status()?;
    Ok(count as usize)
}

impl CudaGpu {
    /// Open GPU `ordinal` and compile every kernel for it.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = probe()?;
        if ordinal >= count {
            return Err(Error::Cuda(format!(
                "cuda:{ordinal} requested but only {count} GPU(s) are visible"
            )));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| Error::Cuda("cudarc panicked while opening the device".into()))?
            .map_err(|e| driver_err("opening the CUDA device", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_err("reading the compute capability", e))?;
        let sm = (major * 10 + minor) as u32;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let total = ctx.total_mem().unwrap_or(0);
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        for (file, image) in KERNEL_FILES.iter().zip(compiled_images(sm)?) {
            let module = ctx
                .load_module(Ptx::from_binary(image))
                .map_err(|e| driver_err(&format!("loading {}", file.name), e))?;
            for &entry in file.entry_points {
                let f = module.load_function(entry).map_err(|e| {
                    driver_err(&format!("finding kernel {entry} in {}", file.name), e)
                })?;
                functions.insert(entry, f);
            }
            modules.push(module);
        }
        let description = format!(
            "{name} (sm_{sm}, {:.1} GiB), {}",
            total as f64 / (1u64 << 30) as f64,
            nvrtc::nvrtc_status().unwrap_or_default()
        );
        Ok(CudaGpu {
            async_alloc: ctx.has_async_alloc(),
            ctx,
            _modules: modules,
            functions,
            description,
        })
    }

    fn stream(&self) -> sys::CUstream {
        std::ptr::null_mut()
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_err("binding the CUDA context", e))
    }
}

impl GpuBackend for CudaGpu {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        self.bind()?;
        let bytes = bytes.max(4);
        // SAFETY: plain allocation; the memory is handed out uninitialised, which DeviceBuffer
        // documents.
        let r = unsafe {
            if self.async_alloc {
                result::malloc_async(self.stream(), bytes)
            } else {
                result::malloc_sync(bytes)
            }
        };
        r.map_err(|e| {
            let (free, total) = self.ctx.mem_get_info().unwrap_or((0, 0));
            Error::Cuda(format!(
                "out of GPU memory: could not allocate {bytes} bytes ({:.1} MiB; {:.1} of {:.1} GiB free): {e:?}",
                bytes as f64 / (1 << 20) as f64,
                free as f64 / (1u64 << 30) as f64,
                total as f64 / (1u64 << 30) as f64
            ))
        })
    }

    unsafe fn free(&self, ptr: u64) {
        let _ = self.bind();
        // SAFETY: per the trait contract `ptr` came from `alloc` and is freed once. The async free
        // is ordered after every queued use on the stream; the synchronous one waits first.
        unsafe {
            if self.async_alloc {
                let _ = result::free_async(ptr, self.stream());
            } else {
                let _ = self.ctx.synchronize();
                let _ = result::free_sync(ptr);
            }
        }
    }

    unsafe fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees the destination range; the source is a valid slice.
        unsafe { result::memcpy_htod_sync(dst, src) }.map_err(|e| driver_err("copy to GPU", e))
    }

    unsafe fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // The synchronous copy waits for queued kernels on the default stream first.
        // SAFETY: the caller guarantees the source range; the destination is a valid slice.
        unsafe { result::memcpy_dtoh_sync(dst, src) }.map_err(|e| driver_err("copy from GPU", e))
    }

    unsafe fn copy_device(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees both ranges.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream()) }
            .map_err(|e| driver_err("device-to-device copy", e))
    }

    unsafe fn zero(&self, dst: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees the range.
        unsafe { result::memset_d8_async(dst, 0, bytes, self.stream()) }
            .map_err(|e| driver_err("memset on GPU", e))
    }

    unsafe fn launch(
        &self,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[KernelArg],
    ) -> Result<()> {
        self.bind()?;
        let f = self
            .functions
            .get(name)
            .ok_or_else(|| Error::Cuda(format!("no kernel named {name} was compiled")))?;
        let mut packed = PackedArgs::new(args);
        let mut ptrs = packed.pointers();
        // SAFETY: the caller guarantees the arguments match the kernel and its buffers are valid;
        // `packed` outlives the call (the driver copies the argument values at launch).
        unsafe {
            result::launch_kernel(
                f.cu_function(),
                (grid[0], grid[1], grid[2]),
                (block[0], block[1], block[2]),
                0,
                self.stream(),
                &mut ptrs,
            )
        }
        .map_err(|e| {
            driver_err(
                &format!("launching {name} grid {grid:?} block {block:?}"),
                e,
            )
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.ctx
            .synchronize()
            .map_err(|e| driver_err("GPU error (reported at synchronize)", e))
    }
}
