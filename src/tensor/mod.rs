//! The `Tensor` handle: a cheap, clonable reference to a node of the autograd graph.
//!
//! A tensor is its value (a [`Storage`] on a [`Device`]), plus what autograd needs: whether it
//! requires a gradient, its accumulated gradient, and — if an op made it while grad mode was on —
//! the op's backward rule and inputs (see [`crate::autograd`]). Cloning a `Tensor` clones the
//! handle, not the data: `let w2 = w.clone()` is the *same* parameter, which is how weight tying
//! shares one parameter between two places.

mod creation;
mod element;
pub mod rng;
pub mod shape;
mod storage;
pub mod torch_rng;

use std::cell::Ref;
use std::fmt;
use std::rc::Rc;

pub use element::{DType, Element};
pub(crate) use storage::device_mismatch;
pub use storage::{CpuArray, CudaStorage, Device, Storage};

mod device;

use crate::autograd::node::Node;
use crate::error::{Error, Result};

/// An n-dimensional array of `T` (`f32` by default) that can take part in reverse-mode autograd.
pub struct Tensor<T: Element = f32> {
    pub(crate) node: Rc<Node<T>>,
}

impl<T: Element> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor {
            node: Rc::clone(&self.node),
        }
    }
}

impl<T: Element> Tensor<T> {
    /// A leaf tensor (no history) holding `array`.
    pub fn from_array(array: impl Into<CpuArray<T>>) -> Self {
        Tensor {
            node: Rc::new(Node::leaf(Storage::Cpu(array.into()), false)),
        }
    }

    /// A unique id of the underlying node (stable for the tensor's lifetime).
    pub fn id(&self) -> u64 {
        self.node.id
    }

    /// The shape, e.g. `[2, 256, 768]`.
    pub fn shape(&self) -> Vec<usize> {
        self.node.value.borrow().shape().to_vec()
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.node.value.borrow().shape().len()
    }

    /// Size of axis `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> Result<usize> {
        let shape = self.shape();
        let a = shape::normalize_axis("dim", axis, shape.len())?;
        Ok(shape[a])
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        shape::numel(&self.shape())
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.node.value.borrow().device()
    }

    /// The storage, borrowed.
    pub fn storage(&self) -> Ref<'_, Storage<T>> {
        self.node.value.borrow()
    }

    /// The value as a CPU array (a cheap shared handle, no copy), or an error naming `op` if the
    /// tensor lives on another device.
    pub fn cpu(&self, op: &'static str) -> Result<CpuArray<T>> {
        self.node.value.borrow().cpu(op).cloned()
    }

    /// The value as a CPU array (shared handle). Alias of `cpu("value")`.
    pub fn value(&self) -> Result<CpuArray<T>> {
        self.cpu("value")
    }

    /// All elements in row-major (C) order (copied to the host from a device: a transfer the
    /// backend counts).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        if let Storage::Cuda(c) = &*self.storage() {
            return Ok(c.to_vec()?.into_iter().map(|v| T::of(v as f64)).collect());
        }
        let a = self.cpu("to_vec")?;
        Ok(match a.as_slice() {
            Some(s) => s.to_vec(),
            None => crate::ops::c_order_copy(&a).into_raw_vec_and_offset().0,
        })
    }

    /// The single element of a tensor with one element (any shape, e.g. a loss). On a device this
    /// is one 4-byte copy to the host.
    pub fn item(&self) -> Result<T> {
        if let Storage::Cuda(c) = &*self.storage() {
            if c.numel() != 1 {
                return Err(Error::invalid(
                    "item",
                    format!(
                        "needs exactly one element, tensor has shape {:?}",
                        c.shape()
                    ),
                ));
            }
            let v = c.buffer.read_range(c.offset, 1)?[0];
            return Ok(T::of(v as f64));
        }
        let a = self.cpu("item")?;
        if a.len() != 1 {
            return Err(Error::invalid(
                "item",
                format!(
                    "needs exactly one element, tensor has shape {:?}",
                    a.shape()
                ),
            ));
        }
        Ok(*a.iter().next().expect("one element"))
    }

    /// The element at a multi-index, e.g. `t.get(&[0, 3])`.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        let a = self.cpu("get")?;
        if index.len() != a.ndim() {
            return Err(Error::invalid(
                "get",
                format!(
                    "index {index:?} has {} axes, tensor has shape {:?}",
                    index.len(),
                    a.shape()
                ),
            ));
        }
        for (&i, &n) in index.iter().zip(a.shape()) {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    op: "get",
                    index: i as i64,
                    size: n,
                });
            }
        }
        Ok(a[index])
    }

    /// Whether a gradient is computed for this tensor by `backward()`.
    pub fn requires_grad(&self) -> bool {
        self.node.requires_grad.get()
    }

    /// Marks this leaf as a parameter (or not): `backward()` will fill its `grad()`.
    ///
    /// On a tensor made by an op this returns a new leaf with the same value
    /// (`detach().requires_grad_(on)`), since the history of a computed tensor cannot be switched.
    pub fn requires_grad_(self, on: bool) -> Self {
        if self.is_leaf() {
            self.node.requires_grad.set(on);
            self
        } else {
            let t = self.detach();
            t.node.requires_grad.set(on);
            t
        }
    }

    /// True for tensors not produced by a recorded op (inputs, parameters, detached values).
    pub fn is_leaf(&self) -> bool {
        self.node.op.is_none()
    }

    /// The name of the op that produced this tensor, if it was recorded.
    pub fn op_name(&self) -> Option<&'static str> {
        self.node.op
    }

    /// A new leaf sharing this tensor's data, cut from the graph (no gradient flows through it).
    pub fn detach(&self) -> Self {
        Tensor {
            node: Rc::new(Node::leaf(self.node.value.borrow().clone(), false)),
        }
    }

    /// The accumulated gradient as a tensor on this tensor's device (leaves that require grad,
    /// and tensors marked with [`Tensor::retain_grad`]); `None` before any backward reached it.
    pub fn grad(&self) -> Option<Tensor<T>> {
        self.grad_storage().map(|s| Tensor {
            node: Rc::new(Node::leaf(s, false)),
        })
    }

    /// The accumulated gradient's storage (optimizers read it on the parameter's device).
    pub fn grad_storage(&self) -> Option<Storage<T>> {
        self.node.grad.borrow().clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.node.grad.borrow_mut() = None;
    }

    /// Keeps the gradient of this intermediate tensor after `backward()`, so it can be read with
    /// [`Tensor::grad`] (PyTorch's `retain_grad`).
    pub fn retain_grad(&self) {
        self.node.retain_grad.set(true);
    }

    /// Whether [`Tensor::retain_grad`] was called.
    pub fn retains_grad(&self) -> bool {
        self.node.retain_grad.get()
    }

    /// Gives the tensor a name, shown by `graph_dot` and in error messages of parameter loaders.
    pub fn set_name(&self, name: impl Into<String>) {
        *self.node.name.borrow_mut() = Some(name.into());
    }

    /// The name given with [`Tensor::set_name`].
    pub fn name(&self) -> Option<String> {
        self.node.name.borrow().clone()
    }

    /// Replaces the value in place, keeping identity (loading weights). The new value must have
    /// the same shape; a tensor on a device receives it there (one copy to the device).
    pub fn set_value(&self, value: CpuArray<T>) -> Result<()> {
        let old = self.shape();
        if value.shape() != old.as_slice() {
            return Err(Error::ShapeMismatch {
                op: "set_value",
                lhs: old,
                rhs: value.shape().to_vec(),
                why: "a new value must keep the shape".into(),
            });
        }
        let device = self.device();
        let new = Storage::Cpu(value);
        let new = match device {
            Device::Cpu => new,
            d => device::storage_to(&new, d)?,
        };
        *self.node.value.borrow_mut() = new;
        Ok(())
    }

    /// Replaces the storage in place (same shape), keeping identity: how device optimizers and
    /// `to_device_` swap a parameter's data.
    pub(crate) fn set_storage(&self, value: Storage<T>) -> Result<()> {
        if value.shape() != self.shape().as_slice() {
            return Err(Error::ShapeMismatch {
                op: "set_storage",
                lhs: self.shape(),
                rhs: value.shape().to_vec(),
                why: "a new value must keep the shape".into(),
            });
        }
        *self.node.value.borrow_mut() = value;
        Ok(())
    }

    /// Runs `f` on the CPU value in place (copy-on-write: if the graph still shares the data, it
    /// is copied first, so saved values are never corrupted).
    pub fn update_value(&self, f: impl FnOnce(&mut CpuArray<T>)) -> Result<()> {
        let mut s = self.node.value.borrow_mut();
        match &mut *s {
            Storage::Cpu(a) => f(a),
            other => {
                return Err(Error::DeviceUnsupported {
                    op: "update_value",
                    device: other.device().to_string(),
                })
            }
        }
        Ok(())
    }

    /// Adds `g` into the accumulated gradient (used by backward; public so custom training code
    /// can accumulate too). `g` must have this tensor's shape and device.
    pub fn accumulate_grad(&self, g: &Storage<T>) -> Result<()> {
        let want = self.shape();
        if g.shape() != want.as_slice() {
            return Err(Error::BadGradientShape {
                op: self.node.op.unwrap_or("leaf"),
                got: g.shape().to_vec(),
                want,
            });
        }
        let same_backend = match (g, self.cuda_storage()) {
            (Storage::Cuda(g), Some(c)) => g.same_backend(&c),
            (g, c) => g.device() == Device::Cpu && c.is_none(),
        };
        if !same_backend {
            return Err(device_mismatch(
                "accumulate_grad",
                self.device(),
                g.device(),
            ));
        }
        let mut slot = self.node.grad.borrow_mut();
        *slot = Some(match slot.take() {
            None => g.clone(),
            Some(acc) => acc.sum_with(g)?,
        });
        Ok(())
    }

    /// Converts to another element type (a new leaf; no gradient flows across the cast).
    pub fn cast<U: Element>(&self) -> Result<Tensor<U>> {
        let a = self.cpu("cast")?;
        Ok(Tensor::from_array(a.mapv(|v| U::of(v.f64()))))
    }

    /// Whether every element is finite (no NaN or infinity). On a device the test runs there and
    /// only its answer is copied back.
    pub fn all_finite(&self) -> Result<bool> {
        if let Storage::Cuda(c) = &*self.storage() {
            return device::all_finite(c);
        }
        Ok(self.cpu("all_finite")?.iter().all(|v| v.is_finite()))
    }
}

impl<T: Element> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.node.value.borrow();
        match &*s {
            Storage::Cpu(a) => write!(f, "tensor({a:.4}")?,
            Storage::Cuda(_) => write!(f, "tensor(<data on the device>")?,
        }
        write!(f, ", shape={:?}, dtype={}", s.shape(), T::DTYPE)?;
        if s.device() != Device::Cpu {
            write!(f, ", device={}", s.device())?;
        }
        if let Some(op) = self.node.op {
            write!(f, ", grad_fn={op}")?;
        } else if self.requires_grad() {
            write!(f, ", requires_grad=true")?;
        }
        write!(f, ")")
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.node.value.borrow();
        let mut d = f.debug_struct("Tensor");
        d.field("id", &self.node.id)
            .field("shape", &s.shape())
            .field("dtype", &T::DTYPE)
            .field("device", &s.device())
            .field("requires_grad", &self.requires_grad())
            .field("op", &self.node.op);
        if let Some(n) = self.node.name.borrow().as_ref() {
            d.field("name", n);
        }
        d.finish()
    }
}
