//! A node of the autograd graph and how ops record themselves.
//!
//! Each op computes its output value, then calls [`Tensor::from_op`] with a *backward rule*: a
//! closure that, given `∂L/∂output`, returns `∂L/∂input` for each input (the vector–Jacobian
//! product). The closure captures what the rule needs (input values, saved statistics). If grad
//! mode is off or no input requires grad, the closure is dropped at once and the output is a plain
//! leaf: nothing is recorded.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::grad_mode::is_grad_enabled;
use crate::error::Result;
use crate::tensor::{CpuArray, Element, Storage, Tensor};

/// The signature of a backward rule: `(∂L/∂out, which inputs need a gradient) → ∂L/∂inputs`.
/// Return `None` for inputs that need none (or that the op is not differentiable in). Gradients
/// are [`Storage`]: they live on the device of the tensor they belong to.
pub type BackwardFn<T> = Box<dyn FnOnce(&Storage<T>, &[bool]) -> Result<Vec<Option<Storage<T>>>>>;

/// The recorded history of a non-leaf tensor: its op, inputs, and backward rule.
pub(crate) struct GradFn<T: Element> {
    pub(crate) inputs: Vec<Tensor<T>>,
    pub(crate) backward: BackwardFn<T>,
    /// Counts this history in [`live_graph_nodes`] while it lives.
    _live: LiveToken,
}

/// Increments the live-node counter when made, decrements it when dropped.
struct LiveToken;

impl LiveToken {
    fn new() -> Self {
        LIVE_GRAPH_NODES.with(|c| c.set(c.get() + 1));
        LiveToken
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        LIVE_GRAPH_NODES.with(|c| c.set(c.get() - 1));
    }
}

pub(crate) struct Node<T: Element> {
    pub(crate) id: u64,
    pub(crate) value: RefCell<Storage<T>>,
    pub(crate) grad: RefCell<Option<Storage<T>>>,
    pub(crate) requires_grad: Cell<bool>,
    pub(crate) retain_grad: Cell<bool>,
    /// The op that made this tensor, `None` for a leaf. Kept after the graph is freed, so a second
    /// backward can say which op's history is gone.
    pub(crate) op: Option<&'static str>,
    /// The history; taken (freed) by backward.
    pub(crate) grad_fn: RefCell<Option<GradFn<T>>>,
    pub(crate) name: RefCell<Option<String>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LIVE_GRAPH_NODES: Cell<usize> = const { Cell::new(0) };
}

/// Number of recorded ops whose history is still alive on this thread (not yet freed by backward
/// or dropped). Zero after a forward pass under `no_grad`; a test asserts it.
pub fn live_graph_nodes() -> usize {
    LIVE_GRAPH_NODES.with(|c| c.get())
}

/// The id the next tensor made will get. Ids only grow, so every tensor a stretch of code makes
/// has an id at or above the value read before it (how `study` groups a graph by module).
pub fn next_tensor_id() -> u64 {
    NEXT_ID.load(Ordering::Relaxed)
}

impl<T: Element> GradFn<T> {
    fn new(inputs: Vec<Tensor<T>>, backward: BackwardFn<T>) -> Self {
        GradFn {
            inputs,
            backward,
            _live: LiveToken::new(),
        }
    }
}

impl<T: Element> Node<T> {
    pub(crate) fn leaf(value: Storage<T>, requires_grad: bool) -> Self {
        Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            value: RefCell::new(value),
            grad: RefCell::new(None),
            requires_grad: Cell::new(requires_grad),
            retain_grad: Cell::new(false),
            op: None,
            grad_fn: RefCell::new(None),
            name: RefCell::new(None),
        }
    }
}

impl<T: Element> Drop for Node<T> {
    /// Frees a long chain of nodes iteratively: the default recursive drop of `Rc` links would
    /// overflow the stack on a graph thousands of ops deep.
    fn drop(&mut self) {
        let mut stack: Vec<Tensor<T>> = match self.grad_fn.get_mut().take() {
            Some(mut gf) => std::mem::take(&mut gf.inputs),
            None => return,
        };
        while let Some(t) = stack.pop() {
            if let Ok(node) = Rc::try_unwrap(t.node) {
                if let Some(mut gf) = node.grad_fn.borrow_mut().take() {
                    stack.append(&mut gf.inputs);
                }
            }
        }
    }
}

impl<T: Element> Tensor<T> {
    /// Makes the output of a CPU op: records `backward` with `inputs` if grad mode is on and any
    /// input requires grad, otherwise returns a plain leaf and drops `backward` unused.
    ///
    /// This is the whole interface between a CPU-only op and autograd; it is public so users can
    /// write their own differentiable ops (and check them with [`crate::autograd::gradcheck`]).
    /// Ops that also run on a device record themselves with [`Tensor::from_storage_op`].
    pub fn from_op(
        op: &'static str,
        value: impl Into<CpuArray<T>>,
        inputs: &[&Tensor<T>],
        backward: impl FnOnce(&CpuArray<T>, &[bool]) -> Result<Vec<Option<CpuArray<T>>>> + 'static,
    ) -> Tensor<T> {
        Self::from_storage_op(
            op,
            Storage::Cpu(value.into()),
            inputs,
            move |g: &Storage<T>, needs: &[bool]| {
                let grads = backward(g.cpu(op)?, needs)?;
                Ok(grads.into_iter().map(|g| g.map(Storage::Cpu)).collect())
            },
        )
    }

    /// Makes the output of an op on any device: like [`Tensor::from_op`], with the value, the
    /// incoming gradient and the input gradients as [`Storage`].
    pub fn from_storage_op(
        op: &'static str,
        value: Storage<T>,
        inputs: &[&Tensor<T>],
        backward: impl FnOnce(&Storage<T>, &[bool]) -> Result<Vec<Option<Storage<T>>>> + 'static,
    ) -> Tensor<T> {
        super::profile::forward_done(op);
        if !Self::should_record(inputs) {
            return Tensor {
                node: Rc::new(Node::leaf(value, false)),
            };
        }
        let mut node = Node::leaf(value, true);
        node.op = Some(op);
        node.grad_fn = RefCell::new(Some(GradFn::new(
            inputs.iter().map(|t| (*t).clone()).collect(),
            Box::new(backward),
        )));
        Tensor {
            node: Rc::new(node),
        }
    }

    /// Whether an op over `inputs` would be recorded now (ops check this before saving costly
    /// state for backward).
    pub fn should_record(inputs: &[&Tensor<T>]) -> bool {
        is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
    }

    /// The inputs of the op that produced this tensor (empty for leaves or freed graphs).
    pub(crate) fn graph_inputs(&self) -> Vec<Tensor<T>> {
        self.node
            .grad_fn
            .borrow()
            .as_ref()
            .map(|g| g.inputs.clone())
            .unwrap_or_default()
    }
}
