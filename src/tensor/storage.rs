//! Where a tensor's numbers live.
//!
//! `Storage` is an enum over devices: the CPU variant is an ndarray `ArcArray` (shared,
//! copy-on-write, any strides — so transposes and reshapes of contiguous data are views, not
//! copies); the CUDA variant is a shared device buffer with a shape, strides and an offset, so
//! views are free on the GPU too. Values, gradients and what backward rules save are all
//! `Storage`, which is what makes the autograd device-blind: `backward()` only adds gradients
//! ([`Storage::sum_with`]) and hands them to the rules, and each op's rule dispatches on the variant.
//!
//! An op without a path for a device fails with [`Error::DeviceUnsupported`] naming the op and
//! the device — never a silent copy to the host.

use std::rc::Rc;

use ndarray::{ArcArray, IxDyn};

use crate::backend::cuda::launch::{self, standard_strides};
use crate::backend::cuda::{DeviceBuffer, Gpu};
use crate::error::{Error, Result};
use crate::tensor::Element;

/// A CPU array of any rank: shared, copy-on-write, arbitrary strides.
pub type CpuArray<T> = ArcArray<T, IxDyn>;

/// The device a tensor lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory, ndarray arrays, rayon parallelism.
    Cpu,
    /// CUDA device `N`: a GPU, or the CPU emulator installed in its place (`--device emu`).
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

/// The error for an op handed tensors on two devices — or on two backends of one ordinal (a
/// backend installed for `cuda:N` after the other tensor was made there).
pub(crate) fn device_mismatch(op: &'static str, a: Device, b: Device) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: a.to_string(),
        rhs: if a == b {
            format!("{b} on another backend (installed since)")
        } else {
            b.to_string()
        },
    }
}

/// f32 data on a CUDA device: a shared buffer, and the view of it this tensor sees (shape, strides
/// in elements — 0 for a broadcast axis — and offset). Kernels read *dense* operands (row-major,
/// offset 0, the whole buffer); [`CudaStorage::dense`] gives one, copying a strided view on the
/// device when it is not dense already.
#[derive(Clone)]
pub struct CudaStorage {
    pub(crate) buffer: Rc<DeviceBuffer<f32>>,
    pub(crate) shape: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) offset: usize,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, shape {:?}, strides {:?}, offset {})",
            self.ordinal(),
            self.shape,
            self.strides,
            self.offset
        )
    }
}

impl CudaStorage {
    /// A dense (row-major) view of a whole buffer.
    pub(crate) fn from_buffer(buffer: DeviceBuffer<f32>, shape: &[usize]) -> Self {
        debug_assert_eq!(buffer.len(), shape.iter().product::<usize>());
        CudaStorage {
            buffer: Rc::new(buffer),
            shape: shape.to_vec(),
            strides: standard_strides(shape),
            offset: 0,
        }
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.buffer.gpu().ordinal()
    }

    /// The backend the data lives on.
    pub fn gpu(&self) -> &Gpu {
        self.buffer.gpu()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether this view is the whole buffer in row-major order.
    pub fn is_dense(&self) -> bool {
        self.offset == 0
            && self.buffer.len() == self.numel()
            && self
                .shape
                .iter()
                .zip(self.strides.iter().zip(standard_strides(&self.shape)))
                .all(|(&n, (&s, want))| n <= 1 || s == want)
    }

    /// The data as a dense buffer: this one if the view is dense, else a strided copy on the
    /// device.
    pub fn dense(&self) -> Result<Rc<DeviceBuffer<f32>>> {
        if self.is_dense() {
            return Ok(self.buffer.clone());
        }
        let out = DeviceBuffer::<f32>::uninit(self.gpu(), self.numel())?;
        launch::strided_copy(
            &self.buffer,
            self.offset,
            &self.strides,
            &out,
            0,
            &standard_strides(&self.shape),
            &self.shape,
        )?;
        Ok(Rc::new(out))
    }

    /// This data as a dense storage (a copy on the device only if needed).
    pub fn to_dense(&self) -> Result<CudaStorage> {
        if self.is_dense() {
            return Ok(self.clone());
        }
        Ok(CudaStorage {
            buffer: self.dense()?,
            shape: self.shape.clone(),
            strides: standard_strides(&self.shape),
            offset: 0,
        })
    }

    /// Whether `other` lives on the same backend (not only the same ordinal: installing another
    /// backend for `cuda:N` leaves tensors made before on the old one, and a kernel must never
    /// receive pointers from two backends).
    pub fn same_backend(&self, other: &CudaStorage) -> bool {
        Rc::ptr_eq(self.gpu(), other.gpu())
    }

    /// This data seen as an operand of `shape` (NumPy broadcasting: leading axes added, size-1
    /// axes stretched), with stride 0 on every broadcast axis — no copy.
    pub(crate) fn broadcast_view(&self, shape: &[usize]) -> CudaStorage {
        let lead = shape.len() - self.shape.len();
        let strides = (0..shape.len())
            .map(|i| {
                if i < lead || (self.shape[i - lead] == 1 && shape[i] != 1) {
                    0
                } else {
                    self.strides[i - lead]
                }
            })
            .collect();
        self.view(shape.to_vec(), strides, self.offset)
    }

    /// Output axis i is input axis `perm[i]` (a view).
    pub(crate) fn permuted(&self, perm: &[usize]) -> CudaStorage {
        let shape = perm.iter().map(|&p| self.shape[p]).collect();
        let strides = perm.iter().map(|&p| self.strides[p]).collect();
        self.view(shape, strides, self.offset)
    }

    /// A dense copy of this data in a new buffer that nothing else shares.
    pub(crate) fn fresh_copy(&self) -> Result<CudaStorage> {
        let out = DeviceBuffer::<f32>::uninit(self.gpu(), self.numel())?;
        if self.is_dense() {
            out.copy_from(&self.buffer)?;
        } else {
            launch::strided_copy(
                &self.buffer,
                self.offset,
                &self.strides,
                &out,
                0,
                &standard_strides(&self.shape),
                &self.shape,
            )?;
        }
        Ok(CudaStorage::from_buffer(out, &self.shape))
    }

    /// Whether a kernel may write this tensor's data in place: a dense view of a buffer that no
    /// other handle shares (`extra` counts the handles the caller itself holds besides the
    /// tensor's own storage). Otherwise writing would change every tensor sharing the buffer —
    /// views, detached clones, values a live graph saved — so the caller copies first
    /// (copy-on-write, as ndarray does on the CPU).
    pub(crate) fn writable_in_place(&self, extra: usize) -> bool {
        self.is_dense() && Rc::strong_count(&self.buffer) == 1 + extra
    }

    /// The same buffer seen through another shape, strides and offset.
    pub(crate) fn view(&self, shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        CudaStorage {
            buffer: self.buffer.clone(),
            shape,
            strides,
            offset,
        }
    }

    /// The elements in row-major order, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.dense()?.to_vec()
    }
}

/// A tensor's data on its device.
#[derive(Clone, Debug)]
pub enum Storage<T: Element> {
    Cpu(CpuArray<T>),
    /// f32 data on a CUDA device (tensors of other element types are refused by `to_device`).
    Cuda(CudaStorage),
}

impl<T: Element> Storage<T> {
    /// The device this storage lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => Device::Cuda(c.ordinal()),
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

    /// `self + other` (same shape, same device): how backward sums the gradients a tensor
    /// receives from each of its uses. On the CPU the sum is made in place when the array is not
    /// shared; on a device, likewise into a dense, unshared buffer (`accumulate` kernel).
    pub fn sum_with(self, other: &Storage<T>) -> Result<Storage<T>> {
        match (self, other) {
            (Storage::Cpu(mut a), Storage::Cpu(b)) => {
                crate::backend::cpu::add_assign(&mut a, b);
                Ok(Storage::Cpu(a))
            }
            (Storage::Cuda(a), Storage::Cuda(b)) if a.same_backend(b) => {
                let b = b.dense()?;
                if a.writable_in_place(0) {
                    launch::accumulate(&a.buffer, &b)?;
                    Ok(Storage::Cuda(a))
                } else {
                    let out = DeviceBuffer::<f32>::uninit(a.gpu(), a.numel())?;
                    let a_dense = a.dense()?;
                    launch::add(&a_dense, &b, &out)?;
                    Ok(Storage::Cuda(CudaStorage::from_buffer(out, &a.shape)))
                }
            }
            (a, b) => Err(device_mismatch(
                "gradient accumulation",
                a.device(),
                b.device(),
            )),
        }
    }
}
