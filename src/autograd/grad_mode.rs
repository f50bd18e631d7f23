//! Grad mode: whether ops record their backward rule.
//!
//! Under `no_grad` nothing is recorded — ops return plain leaves, no inputs or saved values are
//! kept alive — so evaluation and generation run in constant memory.

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread currently record a graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` with recording off, restoring the previous mode afterwards (also on early return).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Turns recording off until dropped (PyTorch's `with torch.no_grad():` as an RAII guard).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Disables recording on this thread until the guard is dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}
