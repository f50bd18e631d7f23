//! The CUDA backend: our own kernels (`kernels/*.cu`), compiled at run time by NVRTC and launched
//! through cudarc, with no CUDA toolkit needed to build.
//!
//! - [`kernels`]: the embedded sources and their entry points.
//! - [`nvrtc`]: compile a kernel file to PTX or machine code; ptxas resource reports.
//! - [`backend`]: the small [`GpuBackend`] interface (alloc, copy, launch by name) and
//!   [`DeviceBuffer`], the owned, bounds-checked device array.
//! - [`driver`]: [`CudaGpu`], the backend on a real GPU.
//! - [`ops`]: one launcher per op (forward and backward), checked against the CPU ops.
//! - [`gpt`]: [`GpuGpt`], a whole GPT training step on the GPU (llm.c-style explicit backward).
//!
//! Without a GPU, the tests run the same kernels through a CPU emulator (`crates/cuda-emu`)
//! behind the same `GpuBackend` trait; see docs/cuda.md.

pub mod backend;
pub mod driver;
pub mod gpt;
pub mod kernels;
pub mod nvrtc;
pub mod ops;
pub mod profile;

pub use backend::{DeviceBuffer, DeviceElem, Gpu, GpuBackend, KernelArg};
pub use driver::{probe, CudaGpu};
pub use gpt::GpuGpt;
