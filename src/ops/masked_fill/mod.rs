//! `masked_fill` (set masked positions to a constant) and the causal mask.
//!
//! **Gradient.** Where the mask is set, the output is a constant and does not depend on x
//! (derivative 0); elsewhere it is x itself (derivative 1):
//! `∂L/∂x_i = g_i·[¬mask_i]`. With a mask that broadcasts over x, each x element has its own
//! (broadcast) mask bit, so no summing is needed.

mod cuda;

use ndarray::{ArrayD, IxDyn, Zip};

use crate::error::{Error, Result};
use crate::tensor::shape::broadcast_shapes;
use crate::tensor::{Element, Tensor};

/// The causal mask for `tq` queries that are the last `tq` of `tk` positions: `mask[i][j]` is
/// true (masked) where key j lies in query i's future, `j > i + (tk − tq)`.
pub fn causal_mask(tq: usize, tk: usize) -> ArrayD<bool> {
    let off = tk.saturating_sub(tq);
    ArrayD::from_shape_fn(IxDyn(&[tq, tk]), |ix| ix[1] > ix[0] + off)
}

impl<T: Element> Tensor<T> {
    /// `x` with `value` wherever `mask` (broadcastable to x's shape) is true — e.g.
    /// `scores.masked_fill(&causal_mask(t, t), f64::NEG_INFINITY)` as in the book.
    pub fn masked_fill(&self, mask: &ArrayD<bool>, value: f64) -> Result<Tensor<T>> {
        if let Some(c) = self.cuda_storage() {
            return cuda::masked_fill(self, c, mask, value);
        }
        let x = self.cpu("masked_fill")?;
        if broadcast_shapes("masked_fill", x.shape(), mask.shape())? != x.shape() {
            return Err(Error::Broadcast {
                op: "masked_fill",
                lhs: x.shape().to_vec(),
                rhs: mask.shape().to_vec(),
            });
        }
        let m = mask.broadcast(x.raw_dim()).expect("checked").to_owned();
        let v = T::of(value);
        let y = Zip::from(&x)
            .and(&m)
            .map_collect(|&x, &m| if m { v } else { x });
        Ok(Tensor::from_op("masked_fill", y, &[self], move |g, _| {
            let dx = Zip::from(g)
                .and(&m)
                .map_collect(|&g, &m| if m { T::zero() } else { g });
            Ok(vec![Some(dx.into_shared())])
        }))
    }
}
