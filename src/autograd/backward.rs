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

/// What [`Tensor::backward_hooked`] calls with each leaf whose gradient is final.
pub type OnFinal<'a, T> = &'a mut dyn FnMut(&Tensor<T>) -> Result<()>;

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
        self.run_backward(grad.storage().clone(), None)
    }

    /// [`Tensor::backward`], calling `on_final(leaf)` for each leaf that requires grad as soon
    /// as this backward has added its last contribution to the leaf's gradient — so work on a
    /// finished gradient (data-parallel training's all-reduce) can start while the backward
    /// goes on with the rest of the graph. Every such leaf behind the loss is reported exactly
    /// once, in an order fixed by the graph (the same on every run of the same model); a tied
    /// weight, used at both ends of a GPT, finishes last.
    ///
    /// **When is a gradient final?** A leaf's gradient is the sum of one contribution per edge
    /// to it from the ops that used it (the multivariable chain rule). Counting those edges
    /// before the walk, and counting down as each consumer's rule runs, tells the moment the
    /// sum is complete: at zero. A leaf whose consumers received no gradient at all is reported
    /// at its own place in the order. The gradients themselves are the same as `backward`'s,
    /// bit for bit: only the moment they are stored changes.
    pub fn backward_hooked(&self, on_final: OnFinal<'_, T>) -> Result<()> {
        let shape = self.shape();
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::NonScalarBackward { shape });
        }
        let seed = match self.cuda_storage() {
            None => Storage::Cpu(ArrayD::from_elem(IxDyn(&shape), T::one()).into_shared()),
            Some(c) => Storage::Cuda(crate::ops::device_full(&c, &shape, 1.0)?),
        };
        self.run_backward(seed, Some(on_final))
    }

    fn run_backward(&self, grad: Storage<T>, mut on_final: Option<OnFinal<'_, T>>) -> Result<()> {
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
        // With a hook: how many edges into each parameter-like leaf are still to run.
        let mut edges_left: HashMap<u64, usize> = HashMap::new();
        if on_final.is_some() {
            for node in &order {
                if let Some(f) = node.node.grad_fn.borrow().as_ref() {
                    for input in f.inputs.iter().filter(|i| i.is_leaf() && i.requires_grad()) {
                        *edges_left.entry(input.id()).or_insert(0) += 1;
                    }
                }
            }
        }
        let mut reported = std::collections::HashSet::new();

        // Consume the order: each node's handle drops once it is processed, so (with its grad_fn
        // taken below) an intermediate's value is freed as soon as the backward has passed it,
        // not when the whole backward ends — activations shrink while gradients grow.
        for node in order.into_iter().rev() {
            if node.is_leaf() {
                if let Some(g) = pending.remove(&node.id()) {
                    node.accumulate_grad(&g)?;
                }
                if let Some(hook) = on_final.as_mut() {
                    // Not reported early (a consumer got no gradient): final now.
                    if reported.insert(node.id()) {
                        hook(&node)?;
                    }
                }
                continue;
            }
            let Some(g) = pending.remove(&node.id()) else {
                continue; // nothing flowed here (e.g. an input whose op returned None)
            };
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
            if let Some(hook) = on_final.as_mut() {
                for input in grad_fn.inputs.iter() {
                    let Some(left) = edges_left.get_mut(&input.id()) else {
                        continue;
                    };
                    *left -= 1;
                    if *left == 0 && reported.insert(input.id()) {
                        if let Some(g) = pending.remove(&input.id()) {
                            input.accumulate_grad(&g)?;
                        }
                        hook(input)?;
                    }
                }
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
