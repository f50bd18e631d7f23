//! `Dropout`: identity in eval mode; in train mode the seeded inverted dropout of `ops::dropout`.

use super::ForwardCtx;
use crate::error::Result;
use crate::tensor::{Element, Tensor};

/// Drops each element with probability `p` in train mode.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub p: f64,
}

impl Dropout {
    /// A dropout layer.
    pub fn new(p: f64) -> Self {
        Dropout { p }
    }

    /// Applies dropout if `ctx` is in train mode and `p > 0`.
    pub fn forward<T: Element>(&self, x: &Tensor<T>, ctx: &ForwardCtx) -> Result<Tensor<T>> {
        if !ctx.training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        x.dropout(self.p, ctx.next_seed())
    }
}
