//! `scratchgpt bench ddp`: data-parallel training steps and their gradient all-reduce. Run it
//! alone for one rank and under `mpirun -np N … bench ddp --ddp` for N; it prints the step time,
//! the tokens/s of all ranks together, the time of the bucketed gradient average on its own, and
//! (over MPI) one plain `MPI_Allreduce` of the same number of floats as the reference, with both
//! bandwidths in nccl-tests' convention (algorithm bandwidth = bytes / time; bus bandwidth =
//! algorithm bandwidth × 2(N−1)/N, what a ring moves per link).

use std::process::ExitCode;
use std::time::Instant;

use scratchgpt::data::dataset::Batch;
use scratchgpt::dist::grads::{all_reduce_gradients, DEFAULT_BUCKET_BYTES};
use scratchgpt::dist::{any_rank, Collective};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::train::{dropout_seed, Engine, StepEngine};
use scratchgpt::Ids;

use super::device::DeviceChoice;

#[derive(clap::Args)]
pub struct DdpBenchArgs {
    #[arg(long, default_value = "small")]
    preset: String,
    /// Context length (tokens per sequence) [default: the preset's, at most 256].
    #[arg(long)]
    context: Option<usize>,
    /// Sequences per rank and step.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Timed repetitions of the all-reduces (after one warm-up).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// cpu or cuda.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Average the gradients after the whole backward, not bucket by bucket as backward
    /// finishes them (to compare the two).
    #[arg(long)]
    after_backward: bool,
    #[command(flatten)]
    ddp: super::ddp::DdpArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `reps` runs of `f` after one warm-up, each started together on every rank
/// (a tiny all-reduce first, so no rank's time includes waiting for a slower one to arrive).
fn timed(
    group: &dyn Collective,
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for i in 0..=reps.max(1) {
        any_rank(group, false)?;
        let t0 = Instant::now();
        f()?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

pub fn run(a: &DdpBenchArgs) -> anyhow::Result<ExitCode> {
    if a.steps == 0 || a.reps == 0 {
        anyhow::bail!("--steps and --reps must be at least 1");
    }
    let ddp = super::ddp::open(&a.ddp, a.device)?;
    super::ddp::run_ranked(&ddp, || bench(a, &ddp))
}

fn bench(a: &DdpBenchArgs, ddp: &super::ddp::Ddp) -> anyhow::Result<ExitCode> {
    let group = ddp.group();
    let (rank, world) = (group.rank(), group.world_size());
    let context = match a.context {
        Some(c) => c,
        None => GptConfig::preset(&a.preset)?.context_length.min(256),
    };
    let cfg = GptConfig::preset_with_context(&a.preset, context)?;
    let model = GptModel::new(&cfg, 123)?;
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let device = ddp.device(a.device)?;
    model.to_device(device)?;
    opt.follow_params()?;
    scratchgpt::dist::check_in_sync(group, &model.parameters(), "at the start")?;
    let mut engine = Engine::new(&model, &mut opt).with_collective(group);
    if a.after_backward {
        engine = engine.reduce_after_backward();
    }
    let mut rng = Rng::new(7 + rank as u64);
    let (b, t) = (a.batch_size, context);
    let mut batch = || -> anyhow::Result<Batch> {
        let row = |rng: &mut Rng| -> Vec<i64> {
            (0..=t)
                .map(|_| rng.below(cfg.vocab_size as u64) as i64)
                .collect()
        };
        let rows: Vec<Vec<i64>> = (0..b).map(|_| row(&mut rng)).collect();
        let inputs: Vec<Vec<i64>> = rows.iter().map(|r| r[..t].to_vec()).collect();
        let targets: Vec<Vec<i64>> = rows.iter().map(|r| r[1..].to_vec()).collect();
        Ok(Batch {
            inputs: Ids::from_rows(&inputs)?,
            targets: Ids::from_rows(&targets)?,
        })
    };
    let mut step_times = Vec::new();
    for step in 0..=a.steps {
        let mb = batch()?;
        any_rank(group, false)?;
        let t0 = Instant::now();
        let stats = engine.train_step(&[mb], &[dropout_seed(1, rank, step, 0)], None, 1e-4)?;
        if !stats.loss.is_finite() {
            anyhow::bail!("step {step}: the loss is not finite ({})", stats.loss);
        }
        if step > 0 {
            step_times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step = median(step_times);
    drop(engine);
    // The gradient average on its own, on the last step's gradients (still in place).
    let params = model.parameters();
    let floats: usize = params
        .iter()
        .filter(|p| p.grad_storage().is_some())
        .map(|p| p.numel())
        .sum();
    let bytes = (floats * 4) as f64;
    let reduce = timed(group, a.reps, || {
        all_reduce_gradients(group, &params, DEFAULT_BUCKET_BYTES)?;
        Ok(())
    })?;
    #[cfg(feature = "mpi")]
    let plain = match &ddp.mpi {
        Some(m) => {
            let send = vec![1.0f32; floats];
            let mut recv = vec![0.0f32; floats];
            Some(timed(group, a.reps, || {
                m.inner().plain_all_reduce(&send, &mut recv);
                Ok(())
            })?)
        }
        None => None,
    };
    #[cfg(not(feature = "mpi"))]
    let plain: Option<f64> = None;
    if rank != 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let tokens = (world * b * t) as f64;
    if world == 1 {
        println!(
            "{} context {t}, batch {b}, one process ({} threads, {} cores here): median {:.1} ms/step, {:.0} tokens/s (no all-reduce: run under `mpirun -np N … --ddp` for N ranks)",
            a.preset,
            rayon::current_num_threads(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            step * 1e3,
            tokens / step
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} context {t}, batch {b} per rank, {world} rank(s) ({}; {} threads each, {} cores here; gradients averaged {}): median {:.1} ms/step, {:.0} tokens/s for all ranks together ({:.0} per rank)",
        a.preset,
        group.describe(),
        rayon::current_num_threads(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if a.after_backward {
            "after the backward"
        } else {
            "bucket by bucket during the backward"
        },
        step * 1e3,
        tokens / step,
        tokens / step / world as f64
    );
    let bus = 2.0 * (world - 1) as f64 / world as f64;
    let line = |what: &str, secs: f64| {
        println!(
            "  {what:<44} {:>8.1} ms  algbw {:>6.2} GB/s  busbw {:>6.2} GB/s",
            secs * 1e3,
            bytes / secs / 1e9,
            bus * bytes / secs / 1e9
        )
    };
    println!(
        "all-reduce of the {floats} gradient floats ({:.1} MB), median of {}:",
        bytes / 1e6,
        a.reps
    );
    line("gradient average (25 MiB buckets, then ×1/N)", reduce);
    if let Some(p) = plain {
        line("one plain MPI_Allreduce of the same size", p);
    }
    println!(
        "  the gradient average is {:.1}% of a step",
        100.0 * reduce / step
    );
    Ok(ExitCode::SUCCESS)
}
