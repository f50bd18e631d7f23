//! The MPI transport (`--features mpi`): the system's MPI library through the `mpi` crate, for
//! ranks started by `mpirun -np N scratchgpt train --ddp …` on one machine or many (`-H`).
//! Sums are `MPI_Allreduce(MPI_SUM)` over `MPI_COMM_WORLD`, whose algorithms the library picks
//! for the machine and the network (shared memory between ranks of one node).

use std::cell::RefCell;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use super::Collective;
use crate::error::{Error, Result};

/// Elements per `MPI_Allreduce` call: MPI counts are C ints, and a bounded chunk bounds the
/// receive buffer too (16 Mi floats = 64 MiB).
const CHUNK: usize = 1 << 24;

/// `MPI_COMM_WORLD` of this process; MPI is finalised when it is dropped.
pub struct MpiGroup {
    world: SimpleCommunicator,
    /// Receive buffers of the sums (reused between steps).
    scratch_f32: RefCell<Vec<f32>>,
    scratch_f64: RefCell<Vec<f64>>,
    version: String,
    // Dropped last: `MPI_Finalize`.
    _universe: Universe,
}

impl MpiGroup {
    /// Initialises MPI (once per process). Under `mpirun` the ranks find each other; started on
    /// its own, the process is a world of one.
    pub fn init() -> Result<Self> {
        // Only the main thread calls MPI (rayon's workers and the watchdog never do).
        let (universe, _) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
                Error::Distributed("MPI was already initialised in this process".into())
            })?;
        // "Open MPI v4.1.4, package: …": the first clause names the library.
        let version = mpi::environment::library_version()
            .ok()
            .and_then(|v| v.split([',', '\n']).next().map(|l| l.trim().to_string()))
            .unwrap_or_default();
        Ok(MpiGroup {
            world: universe.world(),
            scratch_f32: RefCell::new(Vec::new()),
            scratch_f64: RefCell::new(Vec::new()),
            version,
            _universe: universe,
        })
    }
}

impl MpiGroup {
    /// One plain `MPI_Allreduce(MPI_SUM)` of `send` into `recv` over the whole buffer (the
    /// reference `bench ddp` compares the bucketed gradient average with).
    pub fn plain_all_reduce(&self, send: &[f32], recv: &mut [f32]) {
        self.world
            .all_reduce_into(send, recv, SystemOperation::sum());
    }
}

impl MpiGroup {
    /// `buf ← Σ_ranks buf` in chunks, each received into `scratch` and copied back (the `mpi`
    /// crate has no `MPI_IN_PLACE`).
    fn sum_in_place<T>(&self, buf: &mut [T], scratch: &mut Vec<T>) -> Result<()>
    where
        T: mpi::traits::Equivalence + Copy + Default,
    {
        for chunk in buf.chunks_mut(CHUNK) {
            scratch.resize(chunk.len(), T::default());
            self.world
                .all_reduce_into(&chunk[..], &mut scratch[..], SystemOperation::sum());
            chunk.copy_from_slice(scratch);
        }
        Ok(())
    }
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    fn describe(&self) -> String {
        format!("MPI, {} ranks ({})", self.world_size(), self.version)
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.sum_in_place(buf, &mut self.scratch_f32.borrow_mut())
    }

    fn all_reduce_sum_f32_into(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        for (s, r) in send.chunks(CHUNK).zip(recv.chunks_mut(CHUNK)) {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.sum_in_place(buf, &mut self.scratch_f64.borrow_mut())
    }

    fn abort(&self, code: i32) -> ! {
        use mpi::topology::Communicator;
        self.world.abort(code)
    }
}
