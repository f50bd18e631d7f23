//! The NCCL transport (`--features nccl`): GPU gradients summed by NCCL in device memory, with no
//! copy through the host, for ranks that each drive one GPU (`--device cuda`). libnccl is loaded
//! at run time through cudarc's bindings, like the rest of CUDA, so the build needs no toolkit.
//!
//! **Meeting.** NCCL's ranks find each other through a 128-byte unique id that rank 0 creates
//! and every other rank must receive. Without MPI to broadcast it, it travels through a file on a
//! filesystem every rank sees (`--nccl-id-file`, as llm.c does): rank 0 writes it atomically
//! (refusing to start if the file already exists — a previous run's id would let the others join
//! a communicator that no longer exists), the others wait for it, and rank 0 deletes it once
//! every rank has joined. Ranks and the world size come from `--rank`/`--world-size`, or from
//! `mpirun`'s environment when it launched the processes.
//!
//! **Ordering.** NCCL runs on the legacy default stream, the stream every kernel and copy of
//! this engine uses, so the sums start after backward's kernels and the scaling kernel after the
//! sums, without extra synchronisation.
//!
//! *Unverified here:* no machine of this project has two GPUs, and NCCL refuses two ranks on one
//! GPU; world size 1 runs on any GPU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cudarc::nccl::{result, sys};

use super::Collective;
use crate::backend::cuda::{DeviceBuffer, Gpu};
use crate::error::{Error, Result};

fn nccl_err(what: &str, e: result::NcclError) -> Error {
    // The status's name (ncclUnhandledCudaError, ncclRemoteError, …), not just "NcclError".
    Error::Distributed(format!("NCCL: {what}: {:?}", e.0))
}

/// A NCCL communicator over one GPU per rank.
pub struct NcclGroup {
    comm: sys::ncclComm_t,
    rank: usize,
    world: usize,
    gpu: Gpu,
    version: String,
}

impl NcclGroup {
    /// Joins the communicator of `world` ranks as `rank`, on `gpu`, meeting through `id_file`;
    /// gives up after `timeout` if the other ranks do not come.
    pub fn init(
        gpu: Gpu,
        rank: usize,
        world: usize,
        id_file: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        if rank >= world {
            return Err(Error::invalid(
                "nccl",
                format!("rank {rank} is not below the world size {world}"),
            ));
        }
        // SAFETY: only tries to dlopen libnccl by its candidate names.
        let present =
            std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
        if !present {
            return Err(Error::Distributed(
                "NCCL: libnccl.so was not found (install NCCL, or put it on the library path)"
                    .into(),
            ));
        }
        let version = result::get_nccl_version()
            .map(|v| format!("NCCL {}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
            .unwrap_or_else(|_| "NCCL".into());
        let id = if rank == 0 {
            let id = result::get_uniqueid().map_err(|e| nccl_err("creating the unique id", e))?;
            if world > 1 {
                publish_id(id_file, &id)?;
            }
            id
        } else {
            wait_for_id(id_file, timeout)?
        };
        // The context must be current on this thread when the communicator is made.
        gpu.synchronize()?;
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // Joining blocks until every rank has joined: bounded like every collective.
        let joined = init_watchdog(rank, world, timeout);
        // SAFETY: `comm` is a valid out-pointer; `id` is the 128-byte id rank 0 created; rank and
        // world were checked above and fit in a C int for any real launch.
        let made = unsafe { result::comm_init_rank(&mut comm, world as i32, id, rank as i32) };
        joined.store(true, std::sync::atomic::Ordering::SeqCst);
        made.map_err(|e| nccl_err("joining the communicator", e))?;
        if rank == 0 && world > 1 {
            // Every rank has joined (the call above returns once they have): the id is spent.
            let _ = std::fs::remove_file(id_file);
        }
        Ok(NcclGroup {
            comm,
            rank,
            world,
            gpu,
            version,
        })
    }
}

/// A thread that ends the process if the communicator is not joined within `timeout` (a rank
/// that never comes would leave `ncclCommInitRank` waiting forever); the returned flag, once
/// set, stands it down.
fn init_watchdog(
    rank: usize,
    world: usize,
    timeout: Duration,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            if start.elapsed() > timeout {
                eprintln!(
                    "error: rank {rank} of {world}: the other ranks did not join NCCL's communicator within {:.0} s (--ddp-timeout). Exiting.",
                    timeout.as_secs_f64()
                );
                // SAFETY: ends the process at once (see the watchdog: atexit handlers could
                // wait on the absent ranks); nothing has been written yet.
                unsafe { libc::_exit(super::watchdog::EXIT_TIMED_OUT) };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    done
}

/// The id as bytes (`c_char` is `i8` or `u8` depending on the platform).
fn id_bytes(id: &sys::ncclUniqueId) -> Vec<u8> {
    id.internal.iter().map(|&c| c as u8).collect()
}

fn publish_id(path: &Path, id: &sys::ncclUniqueId) -> Result<()> {
    if path.exists() {
        return Err(Error::Distributed(format!(
            "the NCCL id file {} already exists (left by an earlier run?): remove it and launch again",
            path.display()
        )));
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    let io = |e| Error::Io {
        path: path.display().to_string(),
        err: e,
    };
    std::fs::write(&tmp, id_bytes(id)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn wait_for_id(path: &Path, timeout: Duration) -> Result<sys::ncclUniqueId> {
    let start = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            if bytes.len() == 128 {
                let mut id = sys::ncclUniqueId { internal: [0; 128] };
                for (c, b) in id.internal.iter_mut().zip(bytes) {
                    *c = b as _;
                }
                return Ok(id);
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::Distributed(format!(
                "rank 0 did not write the NCCL id file {} within {:.0} s (is it running, and is the path on a filesystem every rank sees?)",
                path.display(),
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Collective for NcclGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn describe(&self) -> String {
        format!("{}, {} ranks", self.version, self.world)
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        // Host values (losses, CPU gradients) through a device buffer.
        let dev = DeviceBuffer::from_slice(&self.gpu, buf)?;
        self.all_reduce_sum_device(&dev)?;
        buf.copy_from_slice(&dev.to_vec()?);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        // Device buffers hold f32; each f64 travels as two f32 halves (hi = f32 of x, lo = f32 of
        // the rest) summed separately. Exact for flags, counts and the fingerprints' 32-bit
        // halves (sums of integers below 2^24, or of one value and zeros); a sum of losses is
        // rounded to f32 in its high half, ~6e-8 relative — what is reported, identical on
        // every rank.
        let mut halves = Vec::with_capacity(2 * buf.len());
        for &x in buf.iter() {
            let hi = x as f32;
            halves.push(hi);
            halves.push((x - hi as f64) as f32);
        }
        self.all_reduce_sum_f32(&mut halves)?;
        for (x, pair) in buf.iter_mut().zip(halves.chunks_exact(2)) {
            *x = pair[0] as f64 + pair[1] as f64;
        }
        Ok(())
    }

    fn reduces_device_memory(&self) -> bool {
        true
    }

    fn all_reduce_sum_device(&self, buf: &DeviceBuffer<f32>) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        // SAFETY: `buf` is a live allocation of `buf.len()` f32 on this rank's GPU (a
        // DeviceBuffer owns exactly that range); in place (send = receive) is allowed by NCCL;
        // the null stream is the legacy default stream all our work is queued on.
        unsafe {
            result::all_reduce(
                buf.ptr() as *const std::ffi::c_void,
                buf.ptr() as *mut std::ffi::c_void,
                buf.len(),
                sys::ncclDataType_t::ncclFloat32,
                sys::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(|e| nccl_err("all-reduce", e))?;
        Ok(())
    }

    fn begin_device_group(&self) -> Result<()> {
        result::group_start().map_err(|e| nccl_err("group start", e))?;
        Ok(())
    }

    fn end_device_group(&self) -> Result<()> {
        result::group_end().map_err(|e| nccl_err("group end", e))?;
        // Wait here, inside the watchdog's timed call, rather than at some later copy.
        self.gpu.synchronize()
    }
}

impl Drop for NcclGroup {
    fn drop(&mut self) {
        // SAFETY: `comm` came from comm_init_rank and is destroyed once, here.
        unsafe {
            let _ = result::comm_destroy(self.comm);
        }
    }
}
