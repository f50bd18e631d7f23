//! `scratchgpt bench train-step`: time full training steps (forward, backward, AdamW) on random
//! token batches — ms/step, tokens/s, model GFLOP/s and peak memory — to set beside the PyTorch
//! reference (`../shared/bench/torch_ch5.py`) on the same machine.

use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::Ids;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time training steps of a GPT preset.
    TrainStep(TrainStepArgs),
}

#[derive(clap::Args)]
pub struct TrainStepArgs {
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// Context length (tokens per sequence).
    #[arg(long, default_value_t = 256)]
    context: usize,
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 0.1)]
    drop_rate: f64,
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::TrainStep(a) = cmd;
    let mut cfg = GptConfig::preset_with_context(&a.preset, a.context)?;
    cfg.drop_rate = a.drop_rate;
    let model = GptModel::new(&cfg, 123)?;
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let mut rng = Rng::new(7);
    let tokens = a.batch_size * a.context;
    let batch = |rng: &mut Rng| -> scratchgpt::Result<(Ids, Ids)> {
        let v: Vec<i64> = (0..tokens + a.batch_size)
            .map(|_| rng.below(cfg.vocab_size as u64) as i64)
            .collect();
        let rows: Vec<Vec<i64>> = v.chunks(a.context + 1).map(|c| c.to_vec()).collect();
        let inputs: Vec<Vec<i64>> = rows.iter().map(|r| r[..a.context].to_vec()).collect();
        let targets: Vec<Vec<i64>> = rows.iter().map(|r| r[1..].to_vec()).collect();
        Ok((Ids::from_rows(&inputs)?, Ids::from_rows(&targets)?))
    };
    let mut times = Vec::new();
    for step in 0..=a.steps {
        let (x, y) = batch(&mut rng)?;
        let t0 = Instant::now();
        opt.zero_grad();
        let loss = model
            .forward(&x, &ForwardCtx::train(step as u64))?
            .cross_entropy(&y)?;
        loss.backward()?;
        opt.step()?;
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let min = times[0];
    // Model FLOPs per token: 6 per matmul parameter (forward 2, backward 4) plus attention's
    // 6·2·L·T·d (scores and weighted sum; the causal half is not subtracted, as PaLM counts).
    // With untied weights the token embedding (a lookup) is not a matmul but the head is; with
    // tied weights the one shared matrix is the head. Either way: all parameters minus one
    // vocab×d table (embedding lookup) — plus it back if tied — minus the position table.
    let lookup = if cfg.tie_weights {
        0
    } else {
        cfg.vocab_size * cfg.emb_dim
    };
    let matmul_params = model.num_parameters() - cfg.context_length * cfg.emb_dim - lookup;
    let flops_per_token =
        6.0 * matmul_params as f64 + 12.0 * (cfg.n_layers * a.context * cfg.emb_dim) as f64;
    println!(
        "{} context {} batch {} ({} parameters, {} threads): median {:.1} ms/step (min {:.1}), {:.0} tokens/s, {:.1} GFLOP/s, peak RSS {:.2} GiB",
        a.preset,
        a.context,
        a.batch_size,
        model.num_parameters(),
        rayon::current_num_threads(),
        median * 1e3,
        min * 1e3,
        tokens as f64 / median,
        flops_per_token * tokens as f64 / median / 1e9,
        peak_rss().map_or(f64::NAN, |b| b as f64 / (1u64 << 30) as f64)
    );
    Ok(ExitCode::SUCCESS)
}
