//! The one interface between the GPU ops and whatever runs the kernels.
//!
//! [`GpuBackend`] is deliberately small — allocate, copy, launch by name — the shape of the CUDA
//! driver API. Two things implement it: [`super::driver::CudaGpu`] (a real GPU through cudarc) and,
//! in the tests, the CPU emulator of `crates/cuda-emu`, whose "device pointers" are host
//! addresses. Because the op launchers in [`super::launch`] only talk to this trait, the emulator
//! tests exercise exactly the host code (launch shapes, argument order, scratch buffers) that runs
//! on a GPU.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::error::{Error, Result};

/// A shared handle to a backend.
pub type Gpu = Rc<dyn GpuBackend>;

/// One kernel argument, passed by value like a C function argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelArg {
    /// A device pointer (`float*`, `const int*`, …; null for an absent optional buffer).
    Ptr(u64),
    /// `int`
    I32(i32),
    /// `long long`
    I64(i64),
    /// `unsigned long long`
    U64(u64),
    /// `float`
    F32(f32),
}

impl KernelArg {
    /// The parameter kind the emulator checks against the kernel's signature: `p` pointer, `i`
    /// 32-bit integer, `l` 64-bit integer, `f` float.
    pub fn kind(&self) -> char {
        match self {
            KernelArg::Ptr(_) => 'p',
            KernelArg::I32(_) => 'i',
            KernelArg::I64(_) | KernelArg::U64(_) => 'l',
            KernelArg::F32(_) => 'f',
        }
    }
}

// The packing below stores 4-byte values in the low half of an 8-byte word, which is where a
// kernel's `int`/`float` parameter reads it only on a little-endian host.
const _: () = assert!(cfg!(target_endian = "little"));

/// Argument values laid out for a `cuLaunchKernel`-style call: `words` owns one 8-byte slot per
/// argument, and `pointers()` gives the `void**` array pointing at each slot.
pub struct PackedArgs {
    words: Vec<u64>,
}

impl PackedArgs {
    pub fn new(args: &[KernelArg]) -> Self {
        let words = args
            .iter()
            .map(|a| match *a {
                KernelArg::Ptr(p) | KernelArg::U64(p) => p,
                KernelArg::I32(v) => v as u32 as u64,
                KernelArg::I64(v) => v as u64,
                KernelArg::F32(v) => v.to_bits() as u64,
            })
            .collect();
        PackedArgs { words }
    }

    /// Pointers to each argument's slot (valid while `self` lives and is not moved).
    pub fn pointers(&mut self) -> Vec<*mut c_void> {
        self.words
            .iter_mut()
            .map(|w| w as *mut u64 as *mut c_void)
            .collect()
    }
}

/// What a GPU (or the emulator) must provide.
pub trait GpuBackend {
    /// A one-line description ("NVIDIA H100 80GB HBM3 (sm_90), CUDA driver 13.0").
    fn describe(&self) -> String;

    /// The device ordinal (`cuda:N`).
    fn ordinal(&self) -> usize {
        0
    }

    /// Allocate `bytes` of device memory. Contents are unspecified.
    fn alloc(&self, bytes: usize) -> Result<u64>;

    /// Free memory from [`GpuBackend::alloc`].
    ///
    /// # Safety
    /// `ptr` came from `alloc` on this backend, is freed once, and is not used afterwards.
    unsafe fn free(&self, ptr: u64);

    /// Copy host bytes to device memory.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` lies inside one live allocation of this backend.
    unsafe fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<()>;

    /// Copy device bytes to the host (waits for queued kernels first).
    ///
    /// # Safety
    /// `src .. src + dst.len()` lies inside one live allocation of this backend.
    unsafe fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<()>;

    /// Copy between two device allocations.
    ///
    /// # Safety
    /// Both ranges lie inside live allocations of this backend and do not overlap.
    unsafe fn copy_device(&self, dst: u64, src: u64, bytes: usize) -> Result<()>;

    /// Set `bytes` bytes at `dst` to zero.
    ///
    /// # Safety
    /// `dst .. dst + bytes` lies inside one live allocation of this backend.
    unsafe fn zero(&self, dst: u64, bytes: usize) -> Result<()>;

    /// Launch kernel `name` over `grid` blocks of `block` threads.
    ///
    /// # Safety
    /// `args` match the kernel's parameter list in number and type, and every buffer the kernel
    /// touches for these arguments lies inside live allocations of this backend. The launchers in
    /// [`super::launch`] check buffer lengths against the sizes before calling this.
    unsafe fn launch(
        &self,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[KernelArg],
    ) -> Result<()>;

    /// Wait until every queued kernel and copy has finished (and report any asynchronous error).
    fn synchronize(&self) -> Result<()>;

    /// Mark `bytes` at `dst` as uninitialised again. A no-op on a GPU; the emulator fills them
    /// with NaN bits, so a kernel reading a reused buffer before writing it shows as on a fresh one.
    ///
    /// # Safety
    /// `dst .. dst + bytes` lies inside one live allocation of this backend.
    unsafe fn poison(&self, _dst: u64, _bytes: usize) -> Result<()> {
        Ok(())
    }

    /// The caching allocator's statistics, if this backend has one.
    fn memory_stats(&self) -> Option<super::MemoryStats> {
        None
    }
}

/// Element types a [`DeviceBuffer`] can hold.
pub trait DeviceElem: Copy + Default + 'static {
    const NAME: &'static str;
}
impl DeviceElem for f32 {
    const NAME: &'static str = "f32";
}
impl DeviceElem for i32 {
    const NAME: &'static str = "i32";
}
impl DeviceElem for i64 {
    const NAME: &'static str = "i64";
}
impl DeviceElem for u64 {
    const NAME: &'static str = "u64";
}

/// An owned array of `T` in device memory, freed on drop. All transfers are bounds-checked, which
/// is what makes the backend's unsafe primitives safe to use through it.
pub struct DeviceBuffer<T: DeviceElem> {
    gpu: Gpu,
    ptr: u64,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: DeviceElem> DeviceBuffer<T> {
    /// `len` elements with unspecified contents (the emulator fills them with NaN bits to catch
    /// kernels that read before writing).
    pub fn uninit(gpu: &Gpu, len: usize) -> Result<Self> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        let ptr = gpu.alloc(bytes)?;
        Ok(DeviceBuffer {
            gpu: gpu.clone(),
            ptr,
            len,
            _elem: PhantomData,
        })
    }

    /// `len` zeros.
    pub fn zeros(gpu: &Gpu, len: usize) -> Result<Self> {
        let b = Self::uninit(gpu, len)?;
        // SAFETY: the range is exactly the allocation just made.
        unsafe { gpu.zero(b.ptr, len * std::mem::size_of::<T>())? };
        Ok(b)
    }

    /// A copy of `data` on the device.
    pub fn from_slice(gpu: &Gpu, data: &[T]) -> Result<Self> {
        let b = Self::uninit(gpu, data.len())?;
        b.write(data)?;
        Ok(b)
    }

    /// Overwrite the whole buffer with `data` (same length).
    pub fn write(&self, data: &[T]) -> Result<()> {
        self.check_len("DeviceBuffer::write", data.len())?;
        super::count_to_device();
        // SAFETY: T is a plain number type (f32/i32); viewing it as bytes is valid. The
        // destination range is this buffer's allocation, whose length was just checked.
        unsafe {
            let bytes =
                std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data));
            self.gpu.copy_to_device(self.ptr, bytes)
        }
    }

    /// The contents, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.len];
        super::count_to_host(std::mem::size_of_val(out.as_slice()));
        // SAFETY: as in `write`; `out` has exactly `len` elements.
        unsafe {
            let bytes = std::slice::from_raw_parts_mut(
                out.as_mut_ptr() as *mut u8,
                std::mem::size_of_val(out.as_slice()),
            );
            self.gpu.copy_to_host(self.ptr, bytes)?;
        }
        Ok(out)
    }

    /// Elements `start .. start + len`, copied to the host.
    pub fn read_range(&self, start: usize, len: usize) -> Result<Vec<T>> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::invalid(
                "DeviceBuffer::read_range",
                format!(
                    "range {start}..{} of a buffer of {}",
                    start.saturating_add(len),
                    self.len
                ),
            ));
        }
        let mut out = vec![T::default(); len];
        let size = std::mem::size_of::<T>();
        super::count_to_host(len * size);
        // SAFETY: the range was just checked against this buffer's length.
        unsafe {
            let bytes = std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, len * size);
            self.gpu
                .copy_to_host(self.ptr + (start * size) as u64, bytes)?;
        }
        Ok(out)
    }

    /// Copy all of `src` (same length) into this buffer, on the device.
    pub fn copy_from(&self, src: &DeviceBuffer<T>) -> Result<()> {
        self.check_len("DeviceBuffer::copy_from", src.len)?;
        // SAFETY: both ranges are whole allocations of equal, checked length; distinct buffers
        // never overlap.
        unsafe {
            self.gpu
                .copy_device(self.ptr, src.ptr, self.len * std::mem::size_of::<T>())
        }
    }

    /// Set every element to zero.
    pub fn zero(&self) -> Result<()> {
        // SAFETY: the range is this buffer's allocation.
        unsafe { self.gpu.zero(self.ptr, self.len * std::mem::size_of::<T>()) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address (for kernel arguments).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// This buffer as a kernel argument.
    pub fn arg(&self) -> KernelArg {
        KernelArg::Ptr(self.ptr)
    }

    /// The backend this buffer lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// An error unless the buffer holds exactly `want` elements.
    pub fn check_len(&self, op: &'static str, want: usize) -> Result<()> {
        if self.len != want {
            return Err(Error::invalid(
                op,
                format!(
                    "device buffer holds {} {} elements, the op needs {want}",
                    self.len,
                    T::NAME
                ),
            ));
        }
        Ok(())
    }
}

impl<T: DeviceElem> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this backend's alloc and this is the only owner.
        unsafe { self.gpu.free(self.ptr) }
    }
}

impl<T: DeviceElem> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>[{}] @ {:#x}",
            T::NAME,
            self.len,
            self.ptr
        )
    }
}
