//! Moving tensors between devices, and making tensors on one.
//!
//! A tensor's device is a property of its storage. [`Tensor::to_device`] makes a copy on another
//! device (a new leaf, like `cast`: no gradient flows across the copy); [`Tensor::to_device_`]
//! moves a tensor *in place*, keeping its identity — what `model.to_device` does to every
//! parameter, so a tied weight (one node used twice) stays one parameter on the device.
//!
//! Device tensors hold f32; an f64 tensor is refused rather than silently rounded (gradient checks
//! run in f64 on the CPU; the device kernels are compared with them in f32).

use std::rc::Rc;

use super::{CpuArray, CudaStorage, DType, Device, Element, Storage, Tensor};
use crate::autograd::node::Node;
use crate::backend::cuda::{self, launch, DeviceBuffer};
use crate::error::{Error, Result};

/// `storage` copied to `device` (the same handle if it is already there).
pub(crate) fn storage_to<T: Element>(storage: &Storage<T>, device: Device) -> Result<Storage<T>> {
    match (storage, device) {
        (Storage::Cpu(_), Device::Cpu) => Ok(storage.clone()),
        (Storage::Cuda(c), Device::Cuda(o)) if c.ordinal() == o => Ok(storage.clone()),
        (Storage::Cpu(a), Device::Cuda(o)) => {
            if T::DTYPE != DType::F32 {
                return Err(Error::invalid(
                    "to_device",
                    format!(
                        "device tensors are f32; this tensor is {} (cast it first)",
                        T::DTYPE
                    ),
                ));
            }
            let gpu = cuda::device(o)?;
            let data: Vec<f32> = crate::ops::to_contiguous_vec(a)
                .iter()
                .map(|v| v.f64() as f32)
                .collect();
            let buf = DeviceBuffer::from_slice(&gpu, &data)?;
            Ok(Storage::Cuda(CudaStorage::from_buffer(buf, a.shape())))
        }
        (Storage::Cuda(c), Device::Cpu) => {
            let data: Vec<T> = c.to_vec()?.iter().map(|&v| T::of(v as f64)).collect();
            let a = CpuArray::from_shape_vec(ndarray::IxDyn(&c.shape), data).expect("size");
            Ok(Storage::Cpu(a))
        }
        (Storage::Cuda(c), Device::Cuda(_)) => {
            // Between two devices, through the host (no peer-to-peer copies yet).
            storage_to(
                &storage_to::<T>(&Storage::Cuda(c.clone()), Device::Cpu)?,
                device,
            )
        }
    }
}

/// Whether every element is finite, tested on the device: Σ 0·x is 0 when every x is finite and
/// NaN otherwise (0·∞ and 0·NaN are NaN); only that one number is copied back.
pub(crate) fn all_finite(c: &CudaStorage) -> Result<bool> {
    let x = c.dense()?;
    let zeroed = DeviceBuffer::<f32>::uninit(c.gpu(), x.len())?;
    launch::scale(&x, &zeroed, 0.0)?;
    let total = DeviceBuffer::<f32>::uninit(c.gpu(), 1)?;
    launch::sum(&zeroed, &total)?;
    Ok(total.to_vec()?[0] == 0.0)
}

impl<T: Element> Tensor<T> {
    /// A copy of this tensor on `device` (a new leaf: no gradient flows across devices), or the
    /// tensor itself if it is there already.
    pub fn to_device(&self, device: Device) -> Result<Tensor<T>> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let s = storage_to(&self.storage(), device)?;
        Ok(Tensor {
            node: Rc::new(Node::leaf(s, false)),
        })
    }

    /// Moves this tensor to `device` in place, keeping its identity, `requires_grad` and name (a
    /// parameter stays the same parameter; a tied weight stays tied). Its gradient, if any, moves
    /// with it. Only leaves move in place: a graph's intermediate values belong to their op.
    pub fn to_device_(&self, device: Device) -> Result<()> {
        if !self.is_leaf() {
            return Err(Error::invalid(
                "to_device_",
                format!(
                    "only leaf tensors (parameters, inputs) move in place; this one was made by '{}' (use to_device)",
                    self.op_name().unwrap_or("?")
                ),
            ));
        }
        let s = storage_to(&self.storage(), device)?;
        let g = self
            .grad_storage()
            .map(|g| storage_to(&g, device))
            .transpose()?;
        *self.node.value.borrow_mut() = s;
        *self.node.grad.borrow_mut() = g;
        Ok(())
    }

    /// A copy of this tensor where `other` lives — on `other`'s very backend, not only its
    /// ordinal (or the tensor itself if it is there already).
    pub fn to_device_like(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        let Some(target) = other.cuda_storage() else {
            return self.to_device(Device::Cpu);
        };
        if let Some(c) = self.cuda_storage() {
            if c.same_backend(&target) {
                return Ok(self.clone());
            }
        }
        let host = self.to_device(Device::Cpu)?;
        if T::DTYPE != DType::F32 {
            return Err(Error::invalid(
                "to_device",
                format!(
                    "device tensors are f32; this tensor is {} (cast it first)",
                    T::DTYPE
                ),
            ));
        }
        let data: Vec<f32> = host.to_vec()?.iter().map(|v| v.f64() as f32).collect();
        let buf = DeviceBuffer::from_slice(target.gpu(), &data)?;
        Ok(Tensor::from_storage(Storage::Cuda(
            CudaStorage::from_buffer(buf, &host.shape()),
        )))
    }

    /// This tensor on the CPU: itself if it is already there, else a copy (a new leaf).
    pub fn to_cpu(&self) -> Result<Tensor<T>> {
        self.to_device(Device::Cpu)
    }

    /// A tensor of `shape` filled with `value` on `device` (on a device: a `fill` kernel, no copy).
    pub fn full_on(shape: &[usize], value: T, device: Device) -> Result<Tensor<T>> {
        match device {
            Device::Cpu => Ok(Tensor::full(shape, value)),
            Device::Cuda(o) => {
                if T::DTYPE != DType::F32 {
                    return Err(Error::invalid(
                        "full_on",
                        format!("device tensors are f32, not {}", T::DTYPE),
                    ));
                }
                let gpu = cuda::device(o)?;
                let buf = DeviceBuffer::<f32>::uninit(&gpu, shape.iter().product())?;
                launch::fill(&buf, value.f64() as f32)?;
                Ok(Tensor {
                    node: Rc::new(Node::leaf(
                        Storage::Cuda(CudaStorage::from_buffer(buf, shape)),
                        false,
                    )),
                })
            }
        }
    }

    /// The device storage of this tensor (None on the CPU), for code that launches kernels.
    pub fn cuda_storage(&self) -> Option<CudaStorage> {
        match &*self.storage() {
            Storage::Cuda(c) => Some(c.clone()),
            Storage::Cpu(_) => None,
        }
    }

    /// A leaf holding `storage` (how ops and the autograd make device tensors of their own).
    pub(crate) fn from_storage(storage: Storage<T>) -> Tensor<T> {
        Tensor {
            node: Rc::new(Node::leaf(storage, false)),
        }
    }
}
