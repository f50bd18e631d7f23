//! What a forward pass needs to know besides its input: train or eval mode, and where dropout
//! masks come from.

use std::cell::Cell;

use crate::tensor::rng::mix64;

/// Train/eval mode and the dropout seed stream of one forward pass.
///
/// In train mode every dropout layer draws a fresh seed from the stream (`seed`, then a counter
/// mixed through SplitMix64), so a run's masks — and therefore its losses — are fixed by its seed,
/// and no two layers or steps share a mask. Eval mode turns dropout off.
#[derive(Debug)]
pub struct ForwardCtx {
    training: bool,
    seed: u64,
    counter: Cell<u64>,
}

impl ForwardCtx {
    /// Train mode: dropout on, masks drawn from `seed`.
    pub fn train(seed: u64) -> Self {
        ForwardCtx {
            training: true,
            seed,
            counter: Cell::new(0),
        }
    }

    /// Eval mode: dropout off.
    pub fn eval() -> Self {
        ForwardCtx {
            training: false,
            seed: 0,
            counter: Cell::new(0),
        }
    }

    /// Whether dropout is active.
    pub fn training(&self) -> bool {
        self.training
    }

    /// The next dropout seed.
    pub fn next_seed(&self) -> u64 {
        let c = self.counter.get();
        self.counter.set(c + 1);
        mix64(self.seed ^ mix64(c.wrapping_add(0x5eed)))
    }
}
