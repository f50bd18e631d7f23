//! `--ddp` and its flags: which ranks this process trains with, over which transport.
//!
//! - `mpirun -np N scratchgpt train --ddp …` (a build with `--features mpi`): MPI between the
//!   processes; CPU gradients summed by `MPI_Allreduce`, device gradients staged through the host.
//! - `--device cuda` in a build with `--features nccl`: NCCL between GPUs, one per rank (rank r
//!   on `cuda:<local rank>`). Launched by `mpirun` (the ranks come from its environment; MPI
//!   itself is not needed) or by hand with `--world-size N --rank R` on each process; either way
//!   the ranks meet through `--nccl-id-file`.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::bail;
use scratchgpt::dist::{Collective, SOLO};

use super::device::DeviceChoice;

#[derive(clap::Args, Clone, Debug)]
pub struct DdpArgs {
    /// Data-parallel training: this process is one rank of those `mpirun -np N` started (or of
    /// --world-size with --rank, for NCCL). Each rank reads every Nth window of the data and the
    /// gradients are averaged every step: N ranks of --batch-size B train as one process of
    /// batch N·B. Rank 0 alone prints, plots and saves. Needs a build with `--features mpi`
    /// (CPU) or `--features nccl` (--device cuda).
    #[arg(long)]
    pub ddp: bool,
    /// With --ddp and NCCL, launched without mpirun: the number of ranks.
    #[arg(long, requires = "ddp")]
    pub world_size: Option<usize>,
    /// With --ddp and NCCL, launched without mpirun: this process's rank (0 .. world size).
    #[arg(long, requires = "ddp")]
    pub rank: Option<usize>,
    /// With --ddp and NCCL: a file on a filesystem every rank sees, through which rank 0 hands
    /// NCCL's id to the others (it must not exist before the launch; rank 0 deletes it).
    #[arg(long, requires = "ddp")]
    pub nccl_id_file: Option<PathBuf>,
    /// With --ddp: seconds a rank waits for the others in one collective before it exits with an
    /// error (a rank stopped, crashed or hangs). Must exceed rank 0's longest pause (a sample
    /// or a checkpoint save).
    #[arg(long, default_value_t = 300.0, requires = "ddp")]
    pub ddp_timeout: f64,
}

/// The ranks of this run.
pub struct Ddp {
    group: Option<Rc<dyn Collective>>,
    /// This process's index among the ranks on its node (its GPU).
    pub local_rank: usize,
    /// The same group as MPI, for `bench ddp`'s plain `MPI_Allreduce` reference.
    #[cfg(feature = "mpi")]
    pub mpi: Option<Rc<scratchgpt::dist::watchdog::Watched<scratchgpt::dist::mpi::MpiGroup>>>,
}

impl Ddp {
    /// The process group (one process without --ddp).
    pub fn group(&self) -> &dyn Collective {
        self.group.as_deref().unwrap_or(&SOLO)
    }

    /// The device this rank trains on: `choice`, with a GPU chosen by the local rank
    /// ([`gpu_ordinal`]) — the GPU driver is not touched for the CPU.
    pub fn device(&self, choice: DeviceChoice) -> anyhow::Result<scratchgpt::Device> {
        let ordinal = match choice {
            DeviceChoice::Cpu => 0,
            _ => gpu_ordinal(self.local_rank),
        };
        super::device::resolve_on(choice, ordinal)
    }

    /// Whether this process prints, plots and writes files (rank 0).
    pub fn is_main(&self) -> bool {
        self.group().rank() == 0
    }
}

/// A positive integer from the first of these environment variables that is set (what mpirun,
/// MPICH's hydra or Slurm tell each process).
fn env_number(names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg_attr(not(feature = "nccl"), allow(dead_code))] // NCCL's launch reads them
fn launcher_rank() -> Option<usize> {
    env_number(&["OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"])
}

#[cfg_attr(not(feature = "nccl"), allow(dead_code))]
fn launcher_world() -> Option<usize> {
    env_number(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"])
}

fn launcher_local_rank() -> Option<usize> {
    env_number(&[
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ])
}

fn launcher_local_size() -> Option<usize> {
    env_number(&[
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ])
}

/// What goes before `scratchgpt …` in the command that resumes a run of `world` ranks.
pub fn resume_prefix(world: usize) -> String {
    if world == 1 {
        String::new()
    } else if launcher_world().is_some() {
        format!("mpirun -np {world} ")
    } else {
        format!("(on each of the {world} ranks, with its own --rank) ")
    }
}

/// The GPU of the rank with this local rank: `cuda:<local rank>`, modulo the GPUs this process
/// sees (a launcher that gives each rank one GPU through CUDA_VISIBLE_DEVICES leaves each one
/// `cuda:0`).
pub fn gpu_ordinal(local_rank: usize) -> usize {
    scratchgpt::backend::cuda::probe().map_or(local_rank, |n| local_rank % n.max(1))
}

/// Runs `f` as this process's rank; an error on one rank of several ends them all at once (MPI)
/// rather than leave the others waiting in a collective this rank will never reach.
pub fn run_ranked<T>(ddp: &Ddp, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let out = f();
    let group = ddp.group();
    if let (Err(e), true) = (&out, group.world_size() > 1) {
        eprintln!(
            "error: rank {} of {}: {e:#}",
            group.rank(),
            group.world_size()
        );
        group.abort(1);
    }
    out
}

/// Sets up the ranks. Call first, before anything uses rayon: ranks sharing a machine divide its
/// cores between them unless `RAYON_NUM_THREADS` says otherwise (one level of parallelism:
/// N ranks × all cores would oversubscribe every core N times).
pub fn open(args: &DdpArgs, device: DeviceChoice) -> anyhow::Result<Ddp> {
    if !args.ddp {
        return Ok(Ddp {
            group: None,
            local_rank: 0,
            #[cfg(feature = "mpi")]
            mpi: None,
        });
    }
    if !(args.ddp_timeout.is_finite() && args.ddp_timeout > 0.0) {
        bail!(
            "--ddp-timeout must be a positive number of seconds, got {}",
            args.ddp_timeout
        );
    }
    let timeout = Duration::from_secs_f64(args.ddp_timeout);
    let local_rank = launcher_local_rank().unwrap_or(0);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        if let Some(local) = launcher_local_size().filter(|&n| n > 1) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = (cores / local).max(1);
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global();
        }
    }
    let gpu = matches!(device, DeviceChoice::Cuda);
    if gpu && cfg!(feature = "nccl") {
        return Ok(Ddp {
            group: Some(nccl(args, local_rank, timeout)?),
            local_rank,
            #[cfg(feature = "mpi")]
            mpi: None,
        });
    }
    if args.world_size.is_some() || args.rank.is_some() || args.nccl_id_file.is_some() {
        bail!(
            "--world-size, --rank and --nccl-id-file launch NCCL ranks without mpirun: they need --device cuda and a build with `--features nccl`; over MPI the ranks are mpirun's (`mpirun -np N scratchgpt train --ddp …`)"
        );
    }
    mpi(local_rank, timeout)
}

#[cfg(feature = "mpi")]
fn mpi(local_rank: usize, timeout: Duration) -> anyhow::Result<Ddp> {
    use scratchgpt::dist::{mpi::MpiGroup, watchdog::Watched};
    let group = Rc::new(Watched::new(MpiGroup::init()?, timeout));
    Ok(Ddp {
        group: Some(group.clone()),
        local_rank,
        mpi: Some(group),
    })
}

#[cfg(not(feature = "mpi"))]
fn mpi(_local_rank: usize, _timeout: Duration) -> anyhow::Result<Ddp> {
    bail!(
        "--ddp: this binary was built without MPI; rebuild with `cargo build --release --features mpi` (it needs OpenMPI: on Debian, openmpi-bin, libopenmpi-dev and libclang-dev) and launch with `mpirun -np N target/release/scratchgpt train --ddp …`{}",
        if cfg!(feature = "nccl") {
            " — or, on GPUs, use --device cuda (NCCL)"
        } else {
            ""
        }
    )
}

#[cfg(feature = "nccl")]
fn nccl(
    args: &DdpArgs,
    local_rank: usize,
    timeout: Duration,
) -> anyhow::Result<Rc<dyn Collective>> {
    use anyhow::Context;
    use scratchgpt::dist::{nccl::NcclGroup, watchdog::Watched};
    let (rank, world) = match (args.rank, args.world_size) {
        (Some(r), Some(w)) => (r, w),
        (None, None) => match (launcher_rank(), launcher_world()) {
            (Some(r), Some(w)) => (r, w),
            _ => bail!(
                "--ddp --device cuda: give --world-size N and --rank R to each process, or launch them with mpirun"
            ),
        },
        _ => bail!("--world-size and --rank go together"),
    };
    if world == 0 || rank >= world {
        bail!("--rank {rank} must be below --world-size {world}");
    }
    let id_file = match &args.nccl_id_file {
        Some(p) => p.clone(),
        None if world == 1 => PathBuf::from("nccl-id"),
        None => bail!(
            "--ddp over NCCL with {world} ranks needs --nccl-id-file PATH on a filesystem every rank sees"
        ),
    };
    let ordinal = gpu_ordinal(local_rank);
    let gpu = scratchgpt::backend::cuda::device(ordinal)
        .with_context(|| format!("rank {rank}: opening cuda:{ordinal}"))?;
    let group = NcclGroup::init(gpu, rank, world, &id_file, timeout)?;
    Ok(Rc::new(Watched::new(group, timeout)))
}

#[cfg(not(feature = "nccl"))]
fn nccl(
    _args: &DdpArgs,
    _local_rank: usize,
    _timeout: Duration,
) -> anyhow::Result<Rc<dyn Collective>> {
    unreachable!("only called in a build with the nccl feature")
}
