//! `scratchgpt bench train-step`: time full training steps (forward, backward, AdamW) on random
//! token batches — ms/step, tokens/s, model GFLOP/s and peak memory — to set beside the PyTorch
//! reference (`../shared/bench/torch_ch5.py`) on the same machine; with `--device cuda` the same
//! engine runs the step on the GPU, to set beside `benches/reference/torch_gpu_step.py`, and
//! reports kernel launches, host↔device copies and device memory per step.
//! `bench gpu-kernels` times the matmul kernel (TFLOP/s) and the fused attention against the
//! naive one.

use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use scratchgpt::backend::cuda::launch::{self as ops, AttentionShape, Gemm};
use scratchgpt::backend::cuda::profile::ProfilingGpu;
use scratchgpt::backend::cuda::{self, DeviceBuffer, Gpu};
use scratchgpt::Device;

use super::device::{resolve, DeviceChoice};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::Ids;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time training steps of a GPT preset.
    TrainStep(TrainStepArgs),
    /// Time the GPU kernels: matmul TFLOP/s at GPT-2 shapes, fused vs naive causal attention.
    GpuKernels(GpuKernelArgs),
    /// Tokens/s of generation with and without the KV cache (greedy, random weights).
    Generate(GenerateBenchArgs),
    /// Fine-tuning steps on the chapter 6 / 7 batches: examples/s, tokens/s, peak memory, with
    /// or without LoRA.
    Finetune(super::bench_finetune::FinetuneBenchArgs),
    /// Peak memory and time of loading weights from a Hugging Face folder (GPT-2, Llama, Qwen3);
    /// `--write` first generates random weights of a preset's size there (e.g. gpt2-medium,
    /// 1.4 GB; llama3.2-1b, 2.5 GB in BF16).
    #[command(alias = "load")]
    LoadGpt2(LoadGpt2Args),
    /// Resident memory of training from memory-mapped shards as the corpus grows, and
    /// prepare-data's throughput (MB/s).
    Corpus(super::bench_corpus::CorpusBenchArgs),
    /// The FMA peak, measured, and every GEMM of a gpt2-small step with our kernel and with
    /// matrixmultiply's: GFLOP/s and % of the peak.
    Gemm(super::bench_gemm::GemmBenchArgs),
    /// Data-parallel steps and the gradient all-reduce: run alone for one rank, under
    /// `mpirun -np N … bench ddp --ddp` for N (tokens/s of all ranks; the average's time and
    /// bandwidth against one plain MPI_Allreduce of the same size).
    Ddp(super::bench_ddp::DdpBenchArgs),
}

#[derive(clap::Args)]
pub struct GenerateBenchArgs {
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// New tokens to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 4)]
    prompt: usize,
    /// Only the KV cache (rerunning the window for every token is out of reach for 1B-sized
    /// models on a CPU).
    #[arg(long)]
    cached_only: bool,
}

#[derive(clap::Args)]
pub struct LoadGpt2Args {
    /// The folder (config.json + model.safetensors).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Write random weights of this preset's size into the folder first, then measure the load in
    /// a fresh process. A Llama/Qwen3 preset is written as its hub files are: BF16, in shards of
    /// at most 2 GB.
    #[arg(long)]
    write: Option<String>,
}

#[derive(clap::Args)]
pub struct GpuKernelArgs {
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 10)]
    reps: usize,
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
    /// cpu, cuda, or auto (CUDA when a GPU is usable).
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// On a GPU, also time every kernel separately and print where a step's time goes.
    #[arg(long)]
    profile: bool,
    /// The matrix products' number format: f32, or bf16 on a CPU with AVX-512 BF16.
    #[arg(long, value_enum, default_value = "f32")]
    precision: super::precision::PrecisionChoice,
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub(crate) fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    let a = match cmd {
        BenchCommand::TrainStep(a) => a,
        BenchCommand::GpuKernels(k) => return gpu_kernels(k),
        BenchCommand::LoadGpt2(l) => return load_gpt2(l),
        BenchCommand::Generate(g) => return bench_generate(g),
        BenchCommand::Finetune(f) => return super::bench_finetune::run(f),
        BenchCommand::Corpus(c) => return super::bench_corpus::run(c),
        BenchCommand::Gemm(g) => return super::bench_gemm::run(g),
        BenchCommand::Ddp(d) => return super::bench_ddp::run(d),
    };
    let precision = a.precision.apply(a.device)?;
    let mut cfg = GptConfig::preset_with_context(&a.preset, a.context)?;
    cfg.drop_rate = a.drop_rate;
    let model = GptModel::new(&cfg, 123)?;
    let device = resolve(a.device)?;
    let kernel_profile = match device {
        Device::Cuda(o) if a.profile => {
            // Every launch of the step goes through the profiler (installed before the model
            // moves, so its buffers use it); each kernel is synchronised, so steps run slower.
            let prof = std::rc::Rc::new(ProfilingGpu::new(cuda::device(o)?));
            let as_gpu: Gpu = prof.clone();
            cuda::install(o, as_gpu);
            Some(prof)
        }
        _ => None,
    };
    model.to_device(device)?;
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
    let mut host_times = Vec::new();
    let mut per_step = (cuda::transfers(), cuda::transfers());
    let mut last_loss = 0.0;
    for step in 0..=a.steps {
        let (x, y) = batch(&mut rng)?;
        if step == a.steps {
            per_step.0 = cuda::transfers();
        }
        if step == 1 {
            if let Some(p) = &kernel_profile {
                p.reset();
            }
        }
        let t0 = Instant::now();
        opt.zero_grad();
        let loss = model
            .forward(&x, &ForwardCtx::train(step as u64))?
            .cross_entropy(&y)?;
        loss.backward()?;
        opt.step()?;
        // On a GPU the kernels run asynchronously: the time until here is the host's (graph,
        // dispatch, launches); the loss's copy to the host then waits for the queued kernels.
        let host = t0.elapsed().as_secs_f64();
        last_loss = loss.item()?;
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
            host_times.push(host);
        }
    }
    per_step.1 = cuda::transfers();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let min = times[0];
    let profile = if a.profile {
        // One more step with the per-op profiler on.
        let (x, y) = batch(&mut rng)?;
        let t0 = Instant::now();
        scratchgpt::autograd::profile::start();
        opt.zero_grad();
        let loss = model
            .forward(&x, &ForwardCtx::train(99))?
            .cross_entropy(&y)?;
        loss.backward()?;
        let ops = scratchgpt::autograd::profile::stop();
        let t_opt = Instant::now();
        opt.step()?;
        let opt_secs = t_opt.elapsed().as_secs_f64();
        Some((ops, opt_secs, t0.elapsed().as_secs_f64()))
    } else {
        None
    };
    let flops_per_token = flops_per_token(&model, a.context);
    if let Device::Cuda(o) = device {
        let t = per_step.1.since(per_step.0);
        let gpu = cuda::device(o)?;
        let mem = gpu.memory_stats().unwrap_or_default();
        println!(
            "{} context {} batch {} on {} ({} parameters): median {:.1} ms/step (min {:.1}; host {:.1} ms before waiting on the device), {:.0} tokens/s, {:.2} TFLOP/s; per step {} kernel launches, {} copies to the device, {} to the host ({} B); device memory: peak in use {:.2} GiB, held {:.2} GiB; last loss {:.3}",
            a.preset,
            a.context,
            a.batch_size,
            gpu.describe(),
            model.num_parameters(),
            median * 1e3,
            min * 1e3,
            {
                host_times.sort_by(f64::total_cmp);
                host_times[host_times.len() / 2] * 1e3
            },
            tokens as f64 / median,
            flops_per_token * tokens as f64 / median / 1e12,
            t.launches,
            t.to_device,
            t.to_host,
            t.to_host_bytes,
            mem.peak_in_use_bytes as f64 / (1u64 << 30) as f64,
            mem.reserved_bytes as f64 / (1u64 << 30) as f64,
            last_loss
        );
        if let Some(p) = &kernel_profile {
            println!("per-kernel profile of the timed steps (each kernel synchronised):");
            print_kernel_profile(p);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} context {} batch {} ({} parameters, {} threads, {} products): median {:.1} ms/step (min {:.1}), {:.0} tokens/s, {:.1} GFLOP/s, peak RSS {:.2} GiB",
        a.preset,
        a.context,
        a.batch_size,
        model.num_parameters(),
        rayon::current_num_threads(),
        precision.name(),
        median * 1e3,
        min * 1e3,
        tokens as f64 / median,
        flops_per_token * tokens as f64 / median / 1e9,
        peak_rss().map_or(f64::NAN, |b| b as f64 / (1u64 << 30) as f64)
    );
    if let Some((ops, opt_secs, step_secs)) = profile {
        println!("per-op profile of one step ({:.1} ms; forward = time since the previous op, backward = the rule's call):", step_secs * 1e3);
        let mut rows: Vec<(String, u64, f64)> = ops
            .iter()
            .map(|(op, phase, n, s)| (format!("{op} {phase}"), *n, *s))
            .collect();
        rows.push(("AdamW step".into(), 1, opt_secs));
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        let accounted: f64 = rows.iter().map(|r| r.2).sum();
        for (name, n, secs) in rows.iter().filter(|r| r.2 >= 0.001 * step_secs) {
            println!(
                "  {name:<28} {n:>5} calls {:>9.1} ms {:>5.1}%",
                secs * 1e3,
                100.0 * secs / step_secs
            );
        }
        println!(
            "  {:<28} {:>5}       {:>9.1} ms {:>5.1}%",
            "(outside ops)",
            "",
            (step_secs - accounted) * 1e3,
            100.0 * (step_secs - accounted) / step_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Median and minimum of `reps` timed runs of `f` (after one warm-up), each ended by a
/// device synchronisation.
fn time_gpu(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut() -> scratchgpt::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    f()?;
    gpu.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        gpu.synchronize()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

/// Model FLOPs per token: 6 per matmul parameter (forward 2, backward 4) plus attention's
/// 6·2·L·T·d (scores and weighted sum; the causal half is not subtracted, as PaLM counts).
/// With untied weights the token embedding (a lookup) is not a matmul but the head is; with
/// tied weights the one shared matrix is the head. Either way: all parameters minus one
/// vocab×d table (embedding lookup) — plus it back if tied — minus a position table.
fn flops_per_token(model: &GptModel, context: usize) -> f64 {
    let cfg = &model.cfg;
    let lookup = if cfg.tie_weights {
        0
    } else {
        cfg.vocab_size * cfg.emb_dim
    };
    // Learned positions are a lookup too (Llama and Qwen3 have none); norms' few parameters
    // are counted as if they were matmuls (a rounding error of the count).
    let positions = model.pos_emb.as_ref().map_or(0, |p| p.weight.numel());
    let matmul_params = model.num_parameters() - positions - lookup;
    // Attention's width is heads × head size (Qwen3-0.6B: 16 × 128 = 2·emb_dim).
    let width = cfg.n_heads * cfg.head_dim();
    6.0 * matmul_params as f64 + 12.0 * (cfg.n_layers * context * width) as f64
}

fn print_kernel_profile(prof: &ProfilingGpu) {
    let report = prof.report();
    let total: f64 = report.iter().map(|r| r.2).sum();
    for (name, n, secs) in &report {
        println!(
            "  {:<36} {:>5} launches {:>9.3} ms {:>5.1}%",
            name,
            n,
            secs * 1e3,
            100.0 * secs / total
        );
    }
    println!(
        "  {:<36} {:>5}          {:>9.3} ms",
        "total kernel time",
        "",
        total * 1e3
    );
}

fn gpu_kernels(k: &GpuKernelArgs) -> anyhow::Result<ExitCode> {
    resolve(DeviceChoice::Cuda)?;
    let gpu = cuda::device(0)?;
    let rand = |n: usize, seed: u64| -> anyhow::Result<DeviceBuffer<f32>> {
        let mut r = Rng::new(seed);
        let v: Vec<f32> = (0..n).map(|_| r.uniform() as f32 * 2.0 - 1.0).collect();
        Ok(DeviceBuffer::from_slice(&gpu, &v)?)
    };
    for (m, n, kk, what) in [
        (4096, 4096, 4096, "square"),
        (8192, 768, 768, "attention projection (B·T=8192)"),
        (8192, 3072, 768, "MLP up-projection"),
        (8192, 50257, 768, "output head"),
    ] {
        let (a, b, c) = (
            rand(m * kk, 1)?,
            rand(kk * n, 2)?,
            DeviceBuffer::<f32>::uninit(&gpu, m * n)?,
        );
        let (med, _) = time_gpu(&gpu, k.reps, || {
            ops::matmul(&a, &b, &c, None, Gemm::new(m, n, kk), 1.0, 0.0)
        })?;
        println!(
            "matmul {m}x{n}x{kk} ({what}): {:.3} ms, {:.1} TFLOP/s",
            med * 1e3,
            2.0 * (m * n * kk) as f64 / med / 1e12
        );
    }
    let s = AttentionShape::mha(8, 1024, 12, 64);
    let numel = s.batch * s.seq * s.heads * s.head_dim;
    let (q, kb, v) = (rand(numel, 3)?, rand(numel, 4)?, rand(numel, 5)?);
    let o = DeviceBuffer::<f32>::uninit(&gpu, numel)?;
    let lse = DeviceBuffer::<f32>::uninit(&gpu, s.batch * s.heads * s.seq)?;
    let (fused, _) = time_gpu(&gpu, k.reps, || {
        ops::attention_forward(&q, &kb, &v, &o, &lse, s, 0.0, 0)
    })?;
    let scores = DeviceBuffer::<f32>::uninit(&gpu, s.batch * s.heads * s.seq * s.seq)?;
    let (naive, _) = time_gpu(&gpu, k.reps, || {
        ops::attention_naive_forward(&q, &kb, &v, &o, &scores, s)
    })?;
    let dout = rand(numel, 6)?;
    let (dq, dk, dv) = (
        DeviceBuffer::<f32>::uninit(&gpu, numel)?,
        DeviceBuffer::<f32>::uninit(&gpu, numel)?,
        DeviceBuffer::<f32>::uninit(&gpu, numel)?,
    );
    let (backward, _) = time_gpu(&gpu, k.reps, || {
        ops::attention_backward(&q, &kb, &v, &o, &lse, &dout, &dq, &dk, &dv, s, 0.0, 0)
    })?;
    println!(
        "causal attention B=8 H=12 T=1024 D=64: fused forward {:.3} ms, naive forward {:.3} ms ({:.1}x), fused backward {:.3} ms",
        fused * 1e3,
        naive * 1e3,
        naive / fused,
        backward * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// Random GPT-2 weights of `preset`'s size in the Hugging Face layout (Conv1D `(in, out)`).
fn write_random_gpt2(dir: &std::path::Path, preset: &str) -> anyhow::Result<()> {
    use safetensors::tensor::TensorView;
    let cfg = GptConfig::preset(preset)?;
    let (d, v, t) = (cfg.emb_dim, cfg.vocab_size, cfg.context_length);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("wte.weight".into(), vec![v, d]),
        ("wpe.weight".into(), vec![t, d]),
    ];
    for i in 0..cfg.n_layers {
        for (n, s) in [
            ("ln_1.weight", vec![d]),
            ("ln_1.bias", vec![d]),
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]),
            ("ln_2.bias", vec![d]),
            ("mlp.c_fc.weight", vec![d, 4 * d]),
            ("mlp.c_fc.bias", vec![4 * d]),
            ("mlp.c_proj.weight", vec![4 * d, d]),
            ("mlp.c_proj.bias", vec![d]),
        ] {
            shapes.push((format!("h.{i}.{n}"), s));
        }
    }
    shapes.push(("ln_f.weight".into(), vec![d]));
    shapes.push(("ln_f.bias".into(), vec![d]));
    let mut rng = Rng::new(1);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let bytes = (0..count)
                .flat_map(|_| ((rng.uniform() as f32 - 0.5) * 0.04).to_le_bytes())
                .collect();
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    std::fs::create_dir_all(dir)?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;
    let config = serde_json::json!({"model_type": "gpt2", "vocab_size": v, "n_positions": t, "n_embd": d,
        "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"});
    std::fs::write(dir.join("config.json"), config.to_string())?;
    Ok(())
}

fn load_gpt2(a: &LoadGpt2Args) -> anyhow::Result<ExitCode> {
    if let Some(preset) = &a.write {
        let cfg = GptConfig::preset(preset)?;
        if cfg.arch == scratchgpt::gpt::Architecture::Gpt2 {
            write_random_gpt2(&a.dir, preset)?;
        } else {
            let mut cfg = cfg;
            cfg.drop_rate = 0.0;
            let model = GptModel::new(&cfg, 1)?;
            let opts = scratchgpt::gpt::hf_llama::ExportOptions {
                dtype: scratchgpt::gpt::hf_llama::ExportDtype::Bf16,
                max_shard_bytes: Some(2_000_000_000),
                ..Default::default()
            };
            scratchgpt::gpt::hf_llama::export_hf(&model, &a.dir, opts)?;
        }
        println!(
            "wrote {} ({:.2} GiB of weights)",
            a.dir.display(),
            weight_bytes(&a.dir)? as f64 / (1u64 << 30) as f64
        );
        // Measure the load in a fresh process, so this one's generation buffers do not count.
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["bench", "load-gpt2", "--dir"])
            .arg(&a.dir)
            .status()?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let before = peak_rss().unwrap_or(0);
    let t0 = Instant::now();
    let model = scratchgpt::gpt::hf_llama::load_hf(&a.dir)?;
    let secs = t0.elapsed().as_secs_f64();
    let file = weight_bytes(&a.dir)?;
    let params = model.num_parameters() as u64 * 4;
    let peak = peak_rss().unwrap_or(0);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "loaded {} parameters ({:.2} GiB as f32) from a {:.2} GiB file in {:.1} s: peak RSS {:.2} GiB ({:.2} GiB before loading); peak / parameters = {:.2}",
        model.num_parameters(),
        gib(params),
        gib(file),
        secs,
        gib(peak),
        gib(before),
        peak as f64 / params as f64
    );
    Ok(ExitCode::SUCCESS)
}

/// Bytes of a folder's safetensors files (one, or shards).
fn weight_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".safetensors") {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

fn bench_generate(a: &GenerateBenchArgs) -> anyhow::Result<ExitCode> {
    use scratchgpt::gpt::{generate, generate_cached, Sampling};
    let mut cfg = GptConfig::preset(&a.preset)?;
    cfg.drop_rate = 0.0;
    let t0 = Instant::now();
    let model = GptModel::new(&cfg, 123)?;
    let t_init = t0.elapsed().as_secs_f64();
    // "Every effort moves you", repeated to the prompt length.
    let prompt: Vec<u32> = [6109u32, 3626, 6100, 345]
        .iter()
        .cycle()
        .take(a.prompt.max(1))
        .copied()
        .collect();
    let s = Sampling::default();
    let t0 = Instant::now();
    let cached = generate_cached(&model, &prompt, a.tokens, cfg.context_length, &s)?;
    let t_cached = t0.elapsed().as_secs_f64();
    if a.cached_only {
        println!(
            "{} ({} parameters, random init {:.1} s; {} threads), {}-token prompt, {} new tokens: KV cache {:.2} tokens/s ({:.0} ms/token, prefill included)",
            a.preset,
            model.num_parameters(),
            t_init,
            rayon::current_num_threads(),
            prompt.len(),
            a.tokens,
            a.tokens as f64 / t_cached,
            t_cached * 1e3 / a.tokens as f64
        );
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = Instant::now();
    let plain = generate(&model, &prompt, a.tokens, cfg.context_length, &s)?;
    let t_plain = t0.elapsed().as_secs_f64();
    println!(
        "{} ({} threads), {} new tokens: KV cache {:.1} tokens/s, no cache {:.1} tokens/s ({:.1}x); identical tokens: {}",
        a.preset,
        rayon::current_num_threads(),
        a.tokens,
        a.tokens as f64 / t_cached,
        a.tokens as f64 / t_plain,
        t_plain / t_cached,
        cached == plain
    );
    Ok(ExitCode::SUCCESS)
}
