//! Reverse-mode differentiation: `loss.backward()`.
//!
//! The algorithm is micrograd's, for tensors:
//! 1. order the graph behind the output topologically (every node after its inputs);
//! 2. seed `∂L/∂L = 1`;
//! 3. walk the order backwards; at each node, hand its gradient to its backward rule, and add
//!    (`+=`) the returned input gradients into those inputs' pending gradients — a tensor used
//!    twice receives the sum of both contributions, which is the multivariable chain rule.
//!
//! Leaves that require grad (parameters) keep their gradient in `grad()`, accumulating across
//! calls until `zero_grad()`. Intermediate gradients are dropped as soon as their node has been
//! processed (unless `retain_grad()` asked to keep them), and each node's history is taken out of
//! the graph as it is used: after backward the graph is gone, and its memory with it.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::{Element, Storage, Tensor};

impl<T: Element> Tensor<T> {
    /// Backpropagates from this scalar (a tensor with one element), seeding its gradient with 1.
    pub fn backward(&self) -> Result<()> {
        let shape = self.shape();
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::NonScalarBackward { shape });
        }
        // The seed lives where the loss does (on a device: a `fill` kernel on the loss's backend,
        // not a copy).
        let seed = match self.cuda_storage() {
            None => Tensor::from_array(ArrayD::from_elem(IxDyn(&shape), T::one())),
            Some(c) => {
                Tensor::from_storage(Storage::Cuda(crate::ops::device_full(&c, &shape, 1.0)?))
            }
        };
        self.backward_with(&seed)
    }

    /// Backpropagates from this tensor with an explicit `∂L/∂self` of the same shape and device.
    pub fn backward_with(&self, grad: &Tensor<T>) -> Result<()> {
        let grad = grad.storage().clone();
        if !self.requires_grad() {
            return Err(Error::NoGradRequired);
        }
        if grad.shape() != self.shape().as_slice() {
            return Err(Error::ShapeMismatch {
                op: "backward_with",
                lhs: self.shape(),
                rhs: grad.shape().to_vec(),
                why: "the seed gradient must have the tensor's shape".into(),
            });
        }
        if let Some(op) = self.node.op {
            if self.node.grad_fn.borrow().is_none() {
                return Err(Error::GraphFreed { op });
            }
        }

        let order = topological_order(self);
        let same_backend = match (&grad, self.cuda_storage()) {
            (Storage::Cuda(g), Some(c)) => g.same_backend(&c),
            (g, _) => g.device() == self.device(),
        };
        if !same_backend {
            return Err(crate::tensor::device_mismatch(
                "backward_with",
                self.device(),
                grad.device(),
            ));
        }
        let mut pending: HashMap<u64, Storage<T>> = HashMap::new();
        pending.insert(self.id(), grad);

        // Consume the order: each node's handle drops once it is processed, so (with its grad_fn
        // taken below) an intermediate's value is freed as soon as the backward has passed it,
        // not when the whole backward ends — activations shrink while gradients grow.
        for node in order.into_iter().rev() {
            let Some(g) = pending.remove(&node.id()) else {
                continue; // nothing flowed here (e.g. an input whose op returned None)
            };
            if node.is_leaf() {
                node.accumulate_grad(&g)?;
                continue;
            }
            if node.retains_grad() {
                node.accumulate_grad(&g)?;
            }
            let grad_fn = node.node.grad_fn.borrow_mut().take();
            let Some(grad_fn) = grad_fn else {
                return Err(Error::GraphFreed {
                    op: node.node.op.unwrap_or("?"),
                });
            };
            let needs: Vec<bool> = grad_fn.inputs.iter().map(|t| t.requires_grad()).collect();
            let op = node.node.op.unwrap_or("?");
            let t0 = super::profile::is_on().then(std::time::Instant::now);
            let input_grads = (grad_fn.backward)(&g, &needs)?;
            if let Some(t0) = t0 {
                super::profile::backward_done(op, t0.elapsed().as_secs_f64());
            }
            for ((input, ig), need) in grad_fn.inputs.iter().zip(input_grads).zip(&needs) {
                let (Some(ig), true) = (ig, *need) else {
                    continue;
                };
                let want = input.shape();
                if ig.shape() != want.as_slice() {
                    return Err(Error::BadGradientShape {
                        op,
                        got: ig.shape().to_vec(),
                        want,
                    });
                }
                if ig.device() != input.device() {
                    return Err(crate::tensor::device_mismatch(
                        op,
                        input.device(),
                        ig.device(),
                    ));
                }
                let sum = match pending.remove(&input.id()) {
                    Some(acc) => acc.sum_with(&ig)?,
                    None => ig,
                };
                pending.insert(input.id(), sum);
            }
        }
        Ok(())
    }
}

/// The nodes behind `root` that require grad, every node after all of its inputs (iterative DFS,
/// so deep graphs do not overflow the stack).
pub(crate) fn topological_order<T: Element>(root: &Tensor<T>) -> Vec<Tensor<T>> {
    let mut order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    // (node, inputs already pushed?)
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        for input in t.graph_inputs() {
            if input.requires_grad() && !visited.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    order
}
