//! `scratchgpt train`: the book's chapter 5 pretraining run on the-verdict, from one command.
//! Defaults reproduce the book: gpt2-small at context 256, dropout 0.1, no qkv bias, 10 epochs,
//! batch 2, AdamW lr 4e-4 wd 0.1, eval every 5 steps on 5 batches, seed 123.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use scratchgpt::data::text_file::read_text;
use scratchgpt::data::{split_train_val, BpeTokenizer, DataLoader, GptDataset};
use scratchgpt::gpt::safetensors_io::read_safetensors;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig, LrSchedule};
use scratchgpt::train::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use scratchgpt::train::plot::plot_losses;
use scratchgpt::train::{
    calc_loss_loader, engine_for, train_with_engine, TrainEvent, TrainOptions, TrainState,
};

#[derive(clap::Args)]
pub struct Args {
    /// Training text (default: the bundled data/the-verdict.txt, built into the binary).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model preset: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, small, tiny.
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// Context length (at most the preset's).
    #[arg(long, default_value_t = 256)]
    context_length: usize,
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
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 4e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Evaluate every N steps.
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
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
    /// with another implementation.
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
    let text = match &args.data {
        Some(p) => read_text(p)?,
        None => include_str!("../../data/the-verdict.txt").to_string(),
    };
    let mut cfg = GptConfig::preset_with_context(&args.preset, args.context_length)?;
    cfg.drop_rate = args.drop_rate;
    cfg.qkv_bias = args.qkv_bias;
    cfg.tie_weights = args.tie_weights;
    if args.eval_freq == 0 || args.eval_iter == 0 {
        bail!("--eval-freq and --eval-iter must be at least 1");
    }

    let resumed = match &args.resume {
        Some(path) => {
            let ck = load_checkpoint(path)?;
            if ck.model.cfg.context_length != cfg.context_length {
                bail!(
                    "{} was trained with context {}, not --context-length {}",
                    path.display(),
                    ck.model.cfg.context_length,
                    cfg.context_length
                );
            }
            Some(ck)
        }
        None => None,
    };
    let seed = resumed.as_ref().map_or(args.seed, |ck| ck.seed);
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
    let tok = BpeTokenizer::gpt2();
    let (train_text, val_text) = split_train_val(&text, args.train_ratio)?;
    let windows = |t: &str, which: &str| -> anyhow::Result<GptDataset> {
        let ids = tok.encode_with_special(t, &["<|endoftext|>"])?;
        GptDataset::new(&ids, cfg.context_length, cfg.context_length).with_context(|| {
            format!(
                "the {which} split ({} characters) is too short for context {}",
                t.chars().count(),
                cfg.context_length
            )
        })
    };
    let mut train_loader = DataLoader::new(
        windows(train_text, "training")?,
        args.batch_size,
        !args.no_shuffle,
        true,
        seed,
    )
    .context("training loader")?;
    let mut val_loader = DataLoader::new(
        windows(val_text, "validation")?,
        args.batch_size,
        false,
        false,
        seed,
    )
    .context("validation loader")?;

    println!(
        "GPT {} (emb {}, {} layers, {} heads, context {}): {} parameters, {:.2} MB",
        args.preset,
        cfg.emb_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.context_length,
        model.num_parameters(),
        model.size_mb()
    );
    println!(
        "data: {} characters, {} training batches and {} validation batches of {}×{} tokens; {} threads",
        text.chars().count(),
        train_loader.num_batches(),
        val_loader.num_batches(),
        args.batch_size,
        cfg.context_length,
        rayon::current_num_threads()
    );
    // Reported before training, on fixed batches so as not to draw from the shuffling stream.
    let initial_train = calc_loss_loader(&model, &train_loader.eval_batches(args.eval_iter), None)?;
    let initial_val = calc_loss_loader(&model, &val_loader.eval_batches(args.eval_iter), None)?;
    println!("initial loss: train {initial_train:.3}, val {initial_val:.3}");

    let per_epoch = train_loader.num_batches();
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
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
        (None, None) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from(format!("runs/run-{secs}"))
        }
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let checkpoint_path = out_dir.join("checkpoint.safetensors");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_dir.join("metrics.jsonl"))
        .with_context(|| format!("opening {}/metrics.jsonl", out_dir.display()))?;
    if state.global_step > 0 {
        println!(
            "resuming at step {} (epoch {}, batch {})",
            state.global_step,
            state.epoch + 1,
            state.batch_in_epoch
        );
    }
    let opts = TrainOptions {
        num_epochs: args.epochs,
        eval_freq: args.eval_freq,
        eval_iter: args.eval_iter,
        start_context: args.start_context.clone(),
        max_steps: args.max_steps,
        seed,
        schedule,
        clip: args.clip,
        sample_tokens: args.sample_tokens,
    };

    let bar = ProgressBar::new(total_steps as u64);
    bar.set_position(state.global_step.min(total_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let device = super::device::resolve(args.device)?;
    let mut engine = engine_for(device, &model, &mut optimizer)?;
    let started = Instant::now();
    let result = train_with_engine(
        engine.as_mut(),
        &model,
        &mut train_loader,
        &mut val_loader,
        &opts,
        tok,
        &mut state,
        |e| {
            match e {
                TrainEvent::Step {
                    epoch,
                    step,
                    loss,
                    step_secs,
                    ..
                } => {
                    if args.log_steps {
                        let line = format!("step {step} loss {loss:.6}");
                        if bar.is_hidden() {
                            println!("{line}");
                        } else {
                            bar.println(line);
                        }
                    }
                    bar.inc(1);
                    bar.set_message(format!(
                        "epoch {} loss {loss:.3} ({:.0} tokens/s)",
                        epoch + 1,
                        (args.batch_size * cfg.context_length) as f64 / step_secs
                    ));
                }
                other => {
                    if let TrainEvent::Eval {
                        epoch,
                        step,
                        train_loss,
                        val_loss,
                        tokens_seen,
                    } = other
                    {
                        let line = serde_json::json!({"epoch": epoch + 1, "step": step, "train_loss": train_loss,
                                                  "val_loss": val_loss, "tokens_seen": tokens_seen});
                        let _ = writeln!(metrics, "{line}");
                    }
                    if let Some(line) = other.book_line() {
                        // `println` on a hidden bar (output not a terminal) prints nothing.
                        if bar.is_hidden() {
                            println!("{line}");
                        } else {
                            bar.println(line);
                        }
                    }
                }
            }
        },
    );
    drop(engine); // it borrows the optimizer, which the checkpoint reads
                  // Save what was reached — unless the run diverged: weights that give a non-finite loss must
                  // not overwrite the last good checkpoint.
    let diverged = matches!(result, Err(scratchgpt::Error::NonFinite { .. }));
    if !diverged && state.global_step > 0 {
        save_checkpoint(&checkpoint_path, &model, &optimizer, &state, seed)?;
    }
    if !state.train_losses.is_empty() {
        plot_losses(
            out_dir.join("loss.png"),
            state.epoch.max(1) as f64,
            &state.track_tokens_seen,
            &state.train_losses,
            &state.val_losses,
        )?;
    }
    if diverged && checkpoint_path.exists() {
        eprintln!(
            "the last good checkpoint is kept: {}",
            checkpoint_path.display()
        );
    }
    result?;
    let report = &state;
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "done: {} steps, {} tokens in {:.1} s ({:.1} s of training steps: {:.2} s/step, {:.0} tokens/s)",
        report.global_step,
        report.tokens_seen,
        wall,
        report.train_secs,
        report.train_secs / report.global_step.max(1) as f64,
        report.tokens_seen as f64 / report.train_secs.max(1e-9)
    );
    if let (Some(t), Some(v)) = (report.train_losses.last(), report.val_losses.last()) {
        println!("final losses: train {t:.3}, val {v:.3}");
    }
    println!(
        "checkpoint: {}; loss plot: {}",
        checkpoint_path.display(),
        out_dir.join("loss.png").display()
    );
    Ok(ExitCode::SUCCESS)
}
