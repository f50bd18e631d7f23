//! `scratchgpt train`: the book's chapter 5 pretraining run on the-verdict, from one command.
//! Defaults reproduce the book: gpt2-small at context 256, dropout 0.1, no qkv bias, 10 epochs,
//! batch 2, AdamW lr 4e-4 wd 0.1, eval every 5 steps on 5 batches, seed 123.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::interrupt::{resume_command, StopSignal};
use super::metrics_log::open_metrics;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use scratchgpt::data::manifest::{TokenizerRef, TOKENIZER_DIR};
use scratchgpt::data::{BpeTokenizer, DataLoader};
use scratchgpt::gpt::safetensors_io::read_safetensors;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig, LrSchedule};
use scratchgpt::train::checkpoint::{
    load_checkpoint, save_run_checkpoint, Checkpoint, RunInfo, Task,
};
use scratchgpt::train::data::{check_same_data, DataSpec, RunTokenizer, TrainingData};
use scratchgpt::train::plot::plot_losses;
use scratchgpt::train::{
    distributed_engine_for, loader_loss, train_with_engine, PeriodicSave, RunEnd, TrainEvent,
    TrainOptions, TrainState,
};

#[derive(clap::Args)]
pub struct Args {
    /// Training data: a UTF-8 text file, or a folder written by `prepare-data` (token shards,
    /// memory-mapped). Default: the bundled data/the-verdict.txt, built into the binary; a
    /// resumed run defaults to the data it trained on.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Tokenizer for a text file: gpt2 (default) or a folder from `train-tokenizer` (the
    /// model's vocabulary size follows it; it is saved beside the checkpoint). Prepared data
    /// brings its own.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Model preset: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, small, tiny; the same
    /// sizes as Llama 3 or Qwen3 (RMSNorm, RoPE, SwiGLU, grouped-query attention):
    /// llama-small, llama-tiny, qwen3-small, qwen3-tiny; the published models' shapes:
    /// llama3.2-1b, llama3.2-3b, qwen3-0.6b, qwen3-1.7b.
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// Context length (at most the preset's; default the book's 256, or the preset's context
    /// where that is shorter).
    #[arg(long)]
    context_length: Option<usize>,
    #[arg(long, default_value_t = 0.1)]
    drop_rate: f64,
    /// Biases on the query/key/value projections.
    #[arg(long)]
    qkv_bias: bool,
    /// Share tok_emb's weight with out_head.
    #[arg(long)]
    tie_weights: bool,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Sequences per micro-batch [default: 2; a resumed run keeps its own].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step: the step trains on batch-size × N sequences with the
    /// memory of one micro-batch [default: 1; a resumed run keeps its own].
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Also write a resumable checkpoint every N optimizer steps
    /// (`checkpoint-step00000100.safetensors` in the run folder).
    #[arg(long)]
    save_every: Option<usize>,
    /// Keep only the newest K periodic checkpoints.
    #[arg(long, requires = "save_every")]
    keep_last: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 4e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Evaluate every N steps [default: 5; a resumed run keeps its own].
    #[arg(long)]
    eval_freq: Option<usize>,
    /// Batches per evaluation.
    #[arg(long, default_value_t = 5)]
    eval_iter: usize,
    /// Fixes initialisation, shuffling, dropout.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value = "Every effort moves you")]
    start_context: String,
    /// Tokens generated in each epoch's sample.
    #[arg(long, default_value_t = 50)]
    sample_tokens: usize,
    /// Fraction of the text (by characters) used for training.
    #[arg(long, default_value_t = 0.9)]
    train_ratio: f64,
    /// Linear warmup steps (appendix D).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Cosine decay to 10 % of the peak after warmup (appendix D).
    #[arg(long)]
    cosine: bool,
    /// Clip the global gradient norm to this value (appendix D uses 1.0).
    #[arg(long)]
    clip: Option<f64>,
    /// Exempt biases and LayerNorm parameters from weight decay.
    #[arg(long)]
    no_decay_biases_norms: bool,
    /// Run folder for checkpoint.safetensors and metrics.jsonl (default runs/run-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// How the seed draws the initial weights: `torch` draws exactly what PyTorch draws for the
    /// book's GPTModel after torch.manual_seed(seed) (so seed 123 starts from the book's
    /// weights); `scratchgpt` uses our own SplitMix64 stream.
    #[arg(long, value_enum, default_value = "torch")]
    init: InitScheme,
    /// Start from these weights (a safetensors file with the book's parameter names, e.g. one
    /// saved from the book's PyTorch GPTModel) instead of a random initialisation.
    #[arg(long, conflicts_with = "resume")]
    init_weights: Option<PathBuf>,
    /// Print every step's training-batch loss (one line per step).
    #[arg(long)]
    log_steps: bool,
    /// Keep the training batches in text order (no shuffling), e.g. to compare step by step
    /// with another implementation (a resumed run keeps its own choice).
    #[arg(long)]
    no_shuffle: bool,
    /// Continue a run from its checkpoint (model, optimizer, data order and step are restored;
    /// the model and optimizer settings come from the checkpoint).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Where the training steps run: cpu, cuda, or auto (CUDA when a GPU is usable). Samples
    /// and checkpoints use the CPU copy, synced from the GPU as needed.
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
    /// The matrix products' number format: f32, or bf16 operands with f32 sums on a CPU with
    /// AVX-512 BF16 (weights, optimizer state and the loss stay f32). A resume must pass the
    /// run's own.
    #[arg(long, value_enum, default_value = "f32")]
    precision: super::precision::PrecisionChoice,
    #[command(flatten)]
    ddp: super::ddp::DdpArgs,
}

/// Which generator draws the initial weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitScheme {
    /// PyTorch's (mt19937 and ATen's uniform_/normal_), as the book's notebook.
    Torch,
    /// Our SplitMix64 stream.
    Scratchgpt,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.eval_iter == 0 {
        bail!("--eval-iter must be at least 1");
    }
    if args.save_every == Some(0) || args.keep_last == Some(0) {
        bail!("--save-every and --keep-last must be at least 1");
    }
    // First: ranks sharing a machine size rayon's pool before anything uses it.
    let ddp = super::ddp::open(&args.ddp, args.device)?;
    super::ddp::run_ranked(&ddp, || run_rank(args, &ddp))
}

/// The run, as this process's rank (the only one without --ddp).
fn run_rank(args: &Args, ddp: &super::ddp::Ddp) -> anyhow::Result<ExitCode> {
    let group = ddp.group();
    let (rank, world) = (group.rank(), group.world_size());
    let main = ddp.is_main();
    args.precision.apply(args.device)?;
    let resumed = match &args.resume {
        Some(path) => {
            let ck = load_checkpoint(path)?;
            if let Some(cmd) = ck
                .info
                .finetune
                .as_ref()
                .and_then(|f| f["command"].as_str())
            {
                bail!(
                    "{} is a checkpoint of `finetune {cmd}`; resume it with `scratchgpt finetune {cmd} --resume {0}`",
                    path.display()
                );
            }
            if ck.task != Task::Pretrain {
                bail!(
                    "{} holds a fine-tuned model ({:?}), not a pretraining run",
                    path.display(),
                    ck.task
                );
            }
            if ck.info.precision != args.precision.precision() {
                bail!(
                    "{} was trained with --precision {}, this run asks for {}: resume with the run's own settings",
                    path.display(),
                    ck.info.precision.name(),
                    args.precision.precision().name()
                );
            }
            Some(ck)
        }
        None => None,
    };
    // The data: as given, else (resuming) what the checkpoint trained on, else the-verdict.
    let recorded_data = resumed.as_ref().and_then(|ck| ck.info.data.clone());
    let data_path = args.data.clone().or_else(|| {
        let r = recorded_data.as_ref()?;
        (r["kind"] != "text" || r["path"] != "the-verdict (bundled)")
            .then(|| r["path"].as_str().map(PathBuf::from))
            .flatten()
    });
    let spec = DataSpec::from_path(data_path.as_deref());
    // The tokenizer: as given, else the checkpoint's (its run folder's tokenizer/), else GPT-2's
    // (or, for prepared data, the folder's own).
    let tokenizer = match (&args.tokenizer, &resumed, &args.resume) {
        (Some(t), _, _) => {
            Some(RunTokenizer::from_arg(t).with_context(|| format!("--tokenizer {t}"))?)
        }
        (None, Some(ck), Some(path)) if ck.info.tokenizer == TokenizerRef::Folder => Some(
            RunTokenizer::from_arg(&checkpoint_tokenizer_dir(path).display().to_string())?,
        ),
        _ => None,
    };

    let mut cfg = match (&resumed, args.context_length) {
        (Some(ck), Some(c)) if c != ck.model.cfg.context_length => bail!(
            "{} was trained with context {}, not --context-length {c}",
            args.resume.as_ref().expect("resumed").display(),
            ck.model.cfg.context_length
        ),
        (Some(ck), _) => ck.model.cfg.clone(),
        (None, Some(c)) => GptConfig::preset_with_context(&args.preset, c)?,
        (None, None) => {
            let preset = GptConfig::preset(&args.preset)?;
            GptConfig::preset_with_context(&args.preset, preset.context_length.min(256))?
        }
    };
    let data = TrainingData::open(&spec, cfg.context_length, args.train_ratio, tokenizer)?;
    let tok = data.tokenizer.tokenizer.as_ref();
    // What fixes the position in the data: a resumed run keeps the checkpoint's values and
    // refuses others.
    let setting = |key: &str, given: Option<usize>, default: usize| -> anyhow::Result<usize> {
        let recorded = recorded_data
            .as_ref()
            .and_then(|r| r["position"][key].as_u64())
            .map(|v| v as usize);
        let value = match (given, recorded) {
            (Some(g), Some(r)) if g != r => bail!(
                "{} was trained with --{} {r}; resume with the same value (it fixes the position in the data)",
                args.resume.as_ref().map_or(String::new(), |p| p.display().to_string()),
                key.replace('_', "-")
            ),
            (g, r) => g.or(r).unwrap_or(default),
        };
        if value == 0 {
            bail!("--{} must be at least 1", key.replace('_', "-"));
        }
        Ok(value)
    };
    let batch_size = setting("batch_size", args.batch_size, 2)?;
    let grad_accum = setting("grad_accum", args.grad_accum, 1)?;
    let eval_freq = setting("eval_freq", args.eval_freq, 5)?;
    // Shuffling: a resumed run keeps the checkpoint's choice; --no-shuffle on a run that
    // shuffled would change its order, and is refused.
    let recorded_shuffle = recorded_data
        .as_ref()
        .and_then(|r| r["position"]["shuffle"].as_bool());
    if args.no_shuffle && recorded_shuffle == Some(true) {
        bail!(
            "{} was trained with shuffling; resume it without --no-shuffle",
            args.resume
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    let shuffle = !args.no_shuffle && recorded_shuffle.unwrap_or(true);
    // Data-parallel ranks read stripes of the data: the position means something else in
    // another world size, so a resume must keep it (one process records none: old checkpoints
    // and single-process runs agree).
    let recorded_world = recorded_data
        .as_ref()
        .and_then(|r| r["position"]["world_size"].as_u64())
        .map_or(1, |w| w as usize);
    if let (Some(path), true) = (&args.resume, recorded_world != world) {
        bail!(
            "{} was trained by {recorded_world} data-parallel rank(s), this run has {world}: resume with the same number (`mpirun -np {recorded_world}`{})",
            path.display(),
            if recorded_world == 1 { ", or without --ddp" } else { " … --ddp" }
        );
    }
    let mut identity = data.identity.clone();
    identity["position"] = serde_json::json!({"batch_size": batch_size, "grad_accum": grad_accum,
                                              "eval_freq": eval_freq, "shuffle": shuffle});
    if world > 1 {
        identity["position"]["world_size"] = serde_json::json!(world);
    }
    if let (Some(rec), Some(path)) = (&recorded_data, &args.resume) {
        check_same_data(rec, &identity).with_context(|| format!("resuming {}", path.display()))?;
    }
    if resumed.is_none() {
        cfg.drop_rate = args.drop_rate;
        cfg.qkv_bias = args.qkv_bias;
        // The published Llama/Qwen3 shapes are tied; the book's GPT ties only when asked.
        cfg.tie_weights |= args.tie_weights;
        cfg.vocab_size = tok.vocab_size();
    } else if cfg.vocab_size != tok.vocab_size() {
        bail!(
            "the checkpoint's model has {} ids, the tokenizer {}",
            cfg.vocab_size,
            tok.vocab_size()
        );
    }

    let seed = resumed.as_ref().map_or(args.seed, |ck| ck.info.seed);
    let model = match &resumed {
        Some(ck) => ck.model.clone(),
        None => match args.init {
            InitScheme::Torch => GptModel::new_torch_init(&cfg, args.seed)?,
            InitScheme::Scratchgpt => GptModel::new(&cfg, args.seed)?,
        },
    };
    if let Some(path) = &args.init_weights {
        let weights = read_safetensors(path)?;
        model
            .load_named(|name| weights.get(name).and_then(|l| l.to_tensor(name).ok()))
            .with_context(|| format!("loading --init-weights {}", path.display()))?;
    }
    let cfg = model.cfg.clone();
    // Each rank reads its stripe of both splits (all of them in one process).
    let mut train_loader = DataLoader::new(data.train.clone(), batch_size, shuffle, true, seed)
        .and_then(|l| l.striped(rank, world))
        .context("training loader")?;
    let mut val_loader = DataLoader::new(data.val.clone(), batch_size, false, false, seed)
        .and_then(|l| l.striped(rank, world))
        .context("validation loader")?;

    if main && world > 1 {
        println!(
            "data-parallel: {} — rank {rank} of {world}; each rank trains on batches of {batch_size}, together {} sequences per micro-batch",
            group.describe(),
            batch_size * world
        );
    }
    if main {
        println!(
        "GPT {} (emb {}, {} layers, {} heads, context {}, vocabulary {}): {} parameters, {:.2} MB",
        args.preset,
        cfg.emb_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.context_length,
        cfg.vocab_size,
        model.num_parameters(),
        model.size_mb()
    );
        println!(
            "data: {}, {} training batches and {} validation batches of {}×{} tokens{}; {} threads",
            data.describe,
            train_loader.num_batches(),
            val_loader.num_batches(),
            batch_size,
            cfg.context_length,
            if grad_accum > 1 {
                format!(", {} per step", grad_accum)
            } else {
                String::new()
            },
            rayon::current_num_threads()
        );
    }
    // Reported before training, on fixed batches so as not to draw from the shuffling stream
    // (every rank evaluates its share).
    let initial_train = loader_loss(
        &model,
        &train_loader.eval_batches(args.eval_iter),
        group,
        args.eval_iter.min(train_loader.global_num_batches()),
    )?;
    let initial_val = loader_loss(
        &model,
        &val_loader.eval_batches(args.eval_iter),
        group,
        args.eval_iter.min(val_loader.global_num_batches()),
    )?;
    if main {
        println!("initial loss: train {initial_train:.3}, val {initial_val:.3}");
    }

    let per_epoch = train_loader.num_batches() / grad_accum;
    if per_epoch == 0 {
        bail!(
            "{} training batches make no step of --grad-accum {} micro-batches",
            train_loader.num_batches(),
            grad_accum
        );
    }
    let total_steps = args
        .max_steps
        .map_or(args.epochs * per_epoch, |m| m.min(args.epochs * per_epoch));
    let schedule = LrSchedule {
        peak_lr: args.lr,
        initial_lr: if args.warmup > 0 {
            args.lr * 1e-2
        } else {
            args.lr
        },
        min_lr: if args.cosine { args.lr * 0.1 } else { args.lr },
        warmup_steps: args.warmup,
        total_steps,
        cosine: args.cosine,
    };
    let (mut optimizer, mut state) = match resumed {
        Some(Checkpoint {
            optimizer: Some(opt),
            state,
            ..
        }) => (opt, state),
        Some(_) => bail!(
            "{} has no optimizer state to resume from",
            args.resume.as_ref().expect("resumed").display()
        ),
        None => (
            AdamW::new(
                model.named_parameters(),
                AdamWConfig {
                    lr: args.lr,
                    weight_decay: args.weight_decay,
                    exempt_biases_and_norms: args.no_decay_biases_norms,
                    ..AdamWConfig::default()
                },
            ),
            TrainState::default(),
        ),
    };
    let out_dir = match (&args.out, &args.resume) {
        (Some(d), _) => d.clone(),
        (None, Some(r)) => r
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
        (None, None) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from(format!("runs/run-{secs}"))
        }
    };
    // Rank 0 alone writes the run folder.
    if main {
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
    }
    // A custom tokenizer travels with the checkpoints: `tokenizer/` in the run folder.
    if main && data.tokenizer.dir.is_some() {
        let dir = out_dir.join(TOKENIZER_DIR);
        let same = data
            .tokenizer
            .dir
            .as_deref()
            .is_some_and(|d| same_dir(d, &dir));
        if !same {
            tok.save(&dir)?;
        }
    }
    let info = RunInfo {
        seed,
        tokenizer: data.tokenizer.reference(),
        data: Some(identity),
        finetune: None,
        precision: args.precision.precision(),
    };
    let checkpoint_path = out_dir.join("checkpoint.safetensors");
    let mut metrics = if main {
        Some(open_metrics(&out_dir.join("metrics.jsonl"), &state)?)
    } else {
        None
    };
    if main && state.global_step > 0 {
        println!(
            "resuming at step {} (epoch {}, step {} of the epoch)",
            state.global_step,
            state.epoch + 1,
            state.batch_in_epoch
        );
    }
    // Ctrl-C (SIGINT) or SIGTERM: finish the step in progress, save, explain how to resume.
    let signal = StopSignal::install()?;
    let opts = TrainOptions {
        num_epochs: args.epochs,
        eval_freq,
        eval_iter: args.eval_iter,
        start_context: args.start_context.clone(),
        max_steps: args.max_steps,
        seed,
        schedule,
        clip: args.clip,
        sample_tokens: args.sample_tokens,
        grad_accum,
        save: args.save_every.map(|every| PeriodicSave {
            dir: out_dir.clone(),
            every,
            keep_last: args.keep_last,
            info: info.clone(),
        }),
        stop: Some(Arc::clone(&signal.stop)),
    };

    let bar = if main {
        ProgressBar::new(total_steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_position(state.global_step.min(total_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let say = |line: String| {
        if !main {
            return;
        }
        // `println` on a hidden bar (output not a terminal) prints nothing.
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    // One GPU per rank on a node: rank r on cuda:<local rank>.
    let device = ddp.device(args.device)?;
    let mut engine = distributed_engine_for(device, &model, &mut optimizer, group)?;
    let started = Instant::now();
    // The loss curve so far (a resumed run's included), redrawn as evaluations arrive.
    let mut curve = (
        state.track_tokens_seen.clone(),
        state.train_losses.clone(),
        state.val_losses.clone(),
    );
    let mut last_plot: Option<Instant> = None;
    let plot_path = out_dir.join("loss.png");
    let epochs_so_far = |tokens: usize| -> f64 {
        // Every rank's tokens: `tokens_seen` counts them all.
        let per_epoch_tokens =
            (per_epoch * grad_accum * batch_size * world * cfg.context_length).max(1);
        tokens as f64 / per_epoch_tokens as f64
    };
    let mut tokens_per_sec = RecentRate::default();
    let result = train_with_engine(
        engine.as_mut(),
        &mut train_loader,
        &mut val_loader,
        &opts,
        tok,
        &mut state,
        |e| match e {
            TrainEvent::Step {
                epoch,
                step,
                loss,
                lr,
                grad_norm,
                step_secs,
                tokens,
            } => {
                if args.log_steps {
                    say(format!("step {step} loss {loss:.6}"));
                }
                bar.inc(1);
                bar.set_message(format!(
                    "epoch {} loss {loss:.3} | {:.0} tok/s | lr {lr:.2e} | grad norm {grad_norm:.3}",
                    epoch + 1,
                    tokens_per_sec.update(*tokens, *step_secs),
                ));
            }
            TrainEvent::Eval {
                epoch,
                step,
                train_loss,
                val_loss,
                tokens_seen,
            } => {
                let line = serde_json::json!({"epoch": epoch + 1, "step": step, "train_loss": train_loss,
                                              "val_loss": val_loss, "tokens_seen": tokens_seen});
                if let Some(m) = metrics.as_mut() {
                    let _ = writeln!(m, "{line}");
                    let _ = m.flush();
                }
                curve.0.push(*tokens_seen);
                curve.1.push(*train_loss);
                curve.2.push(*val_loss);
                // Redraw the figure at most every few seconds (a tiny model evaluates many
                // times a second); the end of the run draws the final one.
                if main && last_plot.is_none_or(|t| t.elapsed().as_secs_f64() > 5.0) {
                    let _ = plot_losses(
                        &plot_path,
                        epochs_so_far(*tokens_seen).max(1e-9),
                        &curve.0,
                        &curve.1,
                        &curve.2,
                    );
                    last_plot = Some(Instant::now());
                }
                if let Some(line) = e.book_line() {
                    say(line);
                }
            }
            TrainEvent::Saved { path, .. } => {
                if args.log_steps {
                    say(format!("saved {}", path.display()));
                }
            }
            other => {
                if let Some(line) = other.book_line() {
                    say(line);
                }
            }
        },
    );
    drop(engine); // it borrows the optimizer, which the checkpoint reads
                  // Save what was reached — unless the run diverged: weights that give a non-finite loss must
                  // not overwrite the last good checkpoint.
    let diverged = matches!(result, Err(scratchgpt::Error::NonFinite { .. }));
    if world > 1 {
        // A divergence is seen by every rank at the same step (losses and norms are agreed);
        // any other error is this rank's alone, and ends the job (`run`).
        if let Err(e) = &result {
            if !diverged {
                bail!("{e}");
            }
        } else {
            // Every rank reaches the end together: check they still agree before rank 0 saves.
            scratchgpt::dist::check_in_sync(group, &model.parameters(), "at the end of the run")?;
        }
    }
    if !main {
        // The other ranks have nothing to write or print: they wait until rank 0 has saved,
        // then end quietly. The job's status is rank 0's (a divergence included): a rank that
        // exits with an error makes mpirun end the others, which could cut rank 0's message.
        bar.finish_and_clear();
        scratchgpt::dist::any_rank(group, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !diverged && state.global_step > 0 {
        save_run_checkpoint(&checkpoint_path, &model, &optimizer, &state, &info)?;
    }
    if !state.train_losses.is_empty() {
        plot_losses(
            &plot_path,
            epochs_so_far(state.tokens_seen).max(1e-9),
            &state.track_tokens_seen,
            &state.train_losses,
            &state.val_losses,
        )?;
    }
    bar.finish_and_clear();
    if world > 1 {
        // Rank 0 has written everything: the others may go.
        scratchgpt::dist::any_rank(group, false)?;
    }
    if diverged {
        let kept = if checkpoint_path.exists() {
            format!(
                "the last good checkpoint is kept: {}",
                checkpoint_path.display()
            )
        } else {
            "no checkpoint was written".to_string()
        };
        let e = result.expect_err("diverged");
        bail!(
            "{e}; the run stopped after {} steps ({kept}); try a lower --lr or --clip 1.0",
            state.global_step
        );
    }
    let end = result?;
    let wall = started.elapsed().as_secs_f64();
    let steps_here = state.session_tokens;
    if steps_here == 0 {
        println!(
            "nothing to train: the run is at step {} of {} (raise --epochs or --max-steps to continue)",
            state.global_step, total_steps
        );
    } else {
        println!(
            "done: {} steps, {} tokens ({} in this run) in {:.1} s ({:.1} s of training steps: {:.0} tokens/s)",
            state.global_step,
            state.tokens_seen,
            state.session_tokens,
            wall,
            state.train_secs,
            state.session_tokens as f64 / state.train_secs.max(1e-9)
        );
    }
    if let (Some(t), Some(v)) = (state.train_losses.last(), state.val_losses.last()) {
        println!("final losses: train {t:.3}, val {v:.3}");
    }
    if state.global_step > 0 {
        println!(
            "checkpoint: {}; loss plot: {}",
            checkpoint_path.display(),
            plot_path.display()
        );
    }
    if end == RunEnd::Stopped {
        println!(
            "interrupted after step {}; continue exactly with:\n  {}{}",
            state.global_step,
            super::ddp::resume_prefix(world),
            resume_command(&checkpoint_path)
        );
        return Ok(signal.exit_code());
    }
    Ok(ExitCode::SUCCESS)
}

/// The vocabulary a checkpoint's ids belong to: GPT-2's, or the one in `tokenizer/` beside it.
pub fn checkpoint_tokenizer(
    which: &TokenizerRef,
    checkpoint: &Path,
) -> anyhow::Result<Cow<'static, BpeTokenizer>> {
    Ok(match which {
        TokenizerRef::Gpt2 => Cow::Borrowed(BpeTokenizer::gpt2()),
        TokenizerRef::Folder => {
            let dir = checkpoint_tokenizer_dir(checkpoint);
            Cow::Owned(BpeTokenizer::from_dir(&dir).with_context(|| {
                format!(
                    "{} was trained with its own tokenizer, expected in {}",
                    checkpoint.display(),
                    dir.display()
                )
            })?)
        }
    })
}

/// Where a checkpoint's custom tokenizer lives: `tokenizer/` in its folder.
pub fn checkpoint_tokenizer_dir(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(TOKENIZER_DIR)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Tokens per second over the last few steps (the first steps of a run are slower: allocation,
/// caches), for the progress bar.
#[derive(Default)]
struct RecentRate {
    window: std::collections::VecDeque<(usize, f64)>,
}

impl RecentRate {
    fn update(&mut self, tokens: usize, secs: f64) -> f64 {
        self.window.push_back((tokens, secs));
        if self.window.len() > 20 {
            self.window.pop_front();
        }
        let (t, s) = self
            .window
            .iter()
            .fold((0usize, 0.0f64), |(t, s), &(a, b)| (t + a, s + b));
        t as f64 / s.max(1e-9)
    }
}
