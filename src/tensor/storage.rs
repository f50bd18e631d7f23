//! Where a tensor's numbers live.
//!
//! `Storage` is an enum over devices. Today it has the CPU variant, an ndarray `ArcArray` (shared,
//! copy-on-write, any strides — so transposes and reshapes of contiguous data are views, not
//! copies). The CUDA backend adds a `Cuda` variant beside it. Ops reach the CPU data through
//! [`Storage::cpu`], which returns a clear [`Error::DeviceUnsupported`] for any other device: an op
//! without a CUDA kernel yet fails with its name instead of silently copying, and adding the
//! variant does not require touching every op at once.

use std::rc::Rc;

use ndarray::{ArcArray, IxDyn};

use crate::cuda::DeviceBuffer;

use crate::error::{Error, Result};
use crate::tensor::Element;

/// A CPU array of any rank: shared, copy-on-write, arbitrary strides.
pub type CpuArray<T> = ArcArray<T, IxDyn>;

/// The device a tensor lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory, ndarray arrays, rayon parallelism.
    Cpu,
    /// A CUDA GPU by ordinal (the CUDA backend issue).
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Data in GPU memory: a shared handle to an f32 device buffer (row-major, contiguous) and the
/// shape. Made by [`crate::Tensor::to_gpu`]; [`crate::Tensor::to_cpu`] copies it back.
#[derive(Clone)]
pub struct CudaStorage {
    pub buffer: Rc<DeviceBuffer<f32>>,
    pub shape: Vec<usize>,
    pub ordinal: usize,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, shape {:?})",
            self.ordinal, self.shape
        )
    }
}

/// A tensor's data on its device.
#[derive(Clone, Debug)]
pub enum Storage<T: Element> {
    Cpu(CpuArray<T>),
    /// f32 data on a CUDA GPU. The autograd ops read CPU data; on this variant they return
    /// [`Error::DeviceUnsupported`] naming the op (the GPU's own kernels live in `crate::cuda`).
    Cuda(CudaStorage),
}

impl<T: Element> Storage<T> {
    /// The device this storage lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => Device::Cuda(c.ordinal),
        }
    }

    /// The CPU array, or a clear error naming `op` if the data lives elsewhere.
    pub fn cpu(&self, op: &'static str) -> Result<&CpuArray<T>> {
        match self {
            Storage::Cpu(a) => Ok(a),
            other => Err(Error::DeviceUnsupported {
                op,
                device: other.device().to_string(),
            }),
        }
    }

    /// The shape of the data.
    pub fn shape(&self) -> &[usize] {
        match self {
            Storage::Cpu(a) => a.shape(),
            Storage::Cuda(c) => &c.shape,
        }
    }
}
