//! A rank that stops answering must not hang the others forever. A collective blocks until every
//! rank reaches it; if one rank is stopped (SIGSTOP, a debugger), swapped out or wedged in a
//! driver, MPI and NCCL wait without limit. [`Watched`] wraps a transport and times every call:
//! a background thread checks once a second, and a call still waiting after `timeout` ends the
//! process with a message that says which call waited, for how long, and that the checkpoints
//! already written are whole (every save is atomic: written to a temporary file, then renamed).
//!
//! The process exits rather than returning an error because the blocked call cannot be
//! cancelled: the thread that made it is inside the transport. Under `mpirun` a rank that exits
//! ends the whole job, so the stopped rank is killed too and `mpirun` returns an error status.
//!
//! The timeout counts only time spent *inside* collectives: rank 0 sampling, saving or plotting
//! while the others wait at the next all-reduce is part of that wait, so it must be longer than
//! the slowest of those (the default, 300 s, is far above what gpt2-small's take on a CPU).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Collective;
use crate::backend::cuda::DeviceBuffer;
use crate::error::Result;

/// The exit status of a process ended by the watchdog (EX_TEMPFAIL: try again, from the last
/// checkpoint).
pub const EXIT_TIMED_OUT: i32 = 75;

/// The call in progress, if any: what it is and when it began.
#[derive(Default)]
struct InFlight {
    call: Option<(&'static str, Instant)>,
}

/// A transport whose every collective is timed by a watchdog thread.
pub struct Watched<C: Collective> {
    inner: C,
    in_flight: Arc<Mutex<InFlight>>,
}

impl<C: Collective> Watched<C> {
    /// Wraps `inner`; a collective that has not returned after `timeout` ends the process.
    pub fn new(inner: C, timeout: Duration) -> Self {
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        start_watchdog(
            Arc::clone(&in_flight),
            timeout,
            inner.rank(),
            inner.world_size(),
        );
        Watched { inner, in_flight }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn timed<T>(&self, what: &'static str, f: impl FnOnce(&C) -> Result<T>) -> Result<T> {
        self.set(Some((what, Instant::now())));
        let out = f(&self.inner);
        self.set(None);
        out
    }

    fn set(&self, call: Option<(&'static str, Instant)>) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .call = call;
    }
}

/// One watchdog thread per process (a second `Watched` shares it: the newest registration wins).
fn start_watchdog(in_flight: Arc<Mutex<InFlight>>, timeout: Duration, rank: usize, world: usize) {
    static WATCHED: OnceLock<Mutex<Arc<Mutex<InFlight>>>> = OnceLock::new();
    let mut first = false;
    let slot = WATCHED.get_or_init(|| {
        first = true;
        Mutex::new(Arc::clone(&in_flight))
    });
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = in_flight;
    if !first {
        return;
    }
    std::thread::Builder::new()
        .name("scratchgpt-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let current = Arc::clone(&slot.lock().unwrap_or_else(|e| e.into_inner()));
            let call = current.lock().unwrap_or_else(|e| e.into_inner()).call;
            if let Some((what, since)) = call {
                let waited = since.elapsed();
                if waited >= timeout {
                    eprintln!(
                        "error: rank {rank} of {world}: the {what} has waited {:.0} s for the other ranks (limit {:.0} s: --ddp-timeout); a rank has stopped, crashed or hangs. Exiting. Checkpoints already written are whole (saves are atomic); resume from the newest with --resume.",
                        waited.as_secs_f64(),
                        timeout.as_secs_f64()
                    );
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    // SAFETY: `_exit` ends the process at once and is always safe to call; it
                    // skips atexit handlers on purpose (MPI's and CUDA's could wait on the very
                    // peer that stopped answering). Nothing is lost: stdout was flushed above,
                    // stderr is unbuffered, and every file this program writes is complete or
                    // absent (atomic renames).
                    unsafe { libc::_exit(EXIT_TIMED_OUT) };
                }
            }
        })
        .expect("spawning the watchdog thread");
}

impl<C: Collective> Collective for Watched<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.timed("gradient all-reduce", |c| c.all_reduce_sum_f32(buf))
    }

    fn all_reduce_sum_f32_into(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        self.timed("gradient all-reduce", |c| {
            c.all_reduce_sum_f32_into(send, recv)
        })
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.timed("all-reduce of losses and flags", |c| {
            c.all_reduce_sum_f64(buf)
        })
    }

    fn reduces_device_memory(&self) -> bool {
        self.inner.reduces_device_memory()
    }

    fn all_reduce_sum_device(&self, buf: &DeviceBuffer<f32>) -> Result<()> {
        self.timed("device gradient all-reduce", |c| {
            c.all_reduce_sum_device(buf)
        })
    }

    fn begin_device_group(&self) -> Result<()> {
        self.inner.begin_device_group()
    }

    fn end_device_group(&self) -> Result<()> {
        // NCCL launches the grouped calls here: the wait is in this call.
        self.timed("device gradient all-reduce", |c| c.end_device_group())
    }

    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}
