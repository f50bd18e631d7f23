//! A per-op time profile of the CPU engine: where does a training step's time go?
//!
//! Off by default (one thread-local flag check per op). When on, every op made through
//! [`crate::Tensor::from_op`] is charged the time since the previous op finished — its forward
//! computation (and any glue code just before it, e.g. the views a layer takes) — and every
//! backward rule is timed around its call. Parallel work inside an op (rayon, GEMM tasks) is
//! part of that op's wall time, so the figures add up to the step's wall time minus what happens
//! outside ops (the optimizer, data loading), which callers time themselves.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Default)]
struct Profile {
    on: bool,
    last: Option<Instant>,
    /// (op, "forward" | "backward") → (calls, seconds)
    times: HashMap<(&'static str, &'static str), (u64, f64)>,
}

thread_local! {
    static PROFILE: RefCell<Profile> = RefCell::new(Profile::default());
}

/// Start recording (clearing what was recorded before).
pub fn start() {
    PROFILE.with(|p| {
        let mut p = p.borrow_mut();
        p.on = true;
        p.times.clear();
        p.last = Some(Instant::now());
    });
}

/// Stop recording and return (op, phase, calls, seconds), most expensive first.
pub fn stop() -> Vec<(&'static str, &'static str, u64, f64)> {
    PROFILE.with(|p| {
        let mut p = p.borrow_mut();
        p.on = false;
        let mut v: Vec<_> = p
            .times
            .iter()
            .map(|(&(op, phase), &(n, s))| (op, phase, n, s))
            .collect();
        v.sort_by(|a, b| b.3.total_cmp(&a.3));
        v
    })
}

/// Mark "now" as the start of the next op's forward (e.g. after the optimizer step).
pub fn mark() {
    PROFILE.with(|p| {
        let mut p = p.borrow_mut();
        if p.on {
            p.last = Some(Instant::now());
        }
    });
}

/// Whether profiling is on (cheap).
pub fn is_on() -> bool {
    PROFILE.with(|p| p.borrow().on)
}

/// Charge the time since the last mark to `op`'s forward.
pub(crate) fn forward_done(op: &'static str) {
    PROFILE.with(|p| {
        let mut p = p.borrow_mut();
        if !p.on {
            return;
        }
        let now = Instant::now();
        let dt = p.last.map_or(0.0, |t| (now - t).as_secs_f64());
        let e = p.times.entry((op, "forward")).or_default();
        e.0 += 1;
        e.1 += dt;
        p.last = Some(now);
    });
}

/// Charge `secs` to `op`'s backward.
pub(crate) fn backward_done(op: &'static str, secs: f64) {
    PROFILE.with(|p| {
        let mut p = p.borrow_mut();
        if !p.on {
            return;
        }
        let e = p.times.entry((op, "backward")).or_default();
        e.0 += 1;
        e.1 += secs;
        p.last = Some(Instant::now());
    });
}
