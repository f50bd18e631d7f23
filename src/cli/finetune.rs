//! `scratchgpt finetune classify|instruct|dpo`: chapters 6 and 7, DPO (and appendix E's LoRA) from
//! the command line. What they share lives here: where the starting weights come from, the LoRA
//! flags, printing the book's lines beside a progress bar, and the run folder.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use scratchgpt::backend::gemm::Precision;
use scratchgpt::data::manifest::TokenizerRef;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::epochs::RunControl;
use scratchgpt::finetune::lora::save_lora_adapters;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::checkpoint::{
    load_checkpoint, load_resumable, save_finetune_checkpoint, RunInfo, Task,
};
use scratchgpt::train::{PeriodicSave, RunEnd, TrainState};
use serde_json::{json, Value};

use super::interrupt::{resume_command, StopSignal};

#[derive(clap::Subcommand)]
pub enum FinetuneCommand {
    /// Chapter 6: spam classification on the SMS Spam Collection (data/SMSSpamCollection.tsv).
    Classify(super::finetune_classify::Args),
    /// Chapter 7: instruction following on the book's 1,100 Alpaca-style examples
    /// (data/instruction-data.json).
    Instruct(super::finetune_instruct::Args),
    /// Chapter 7's bonus: preference tuning with DPO on the book's 1,100 pairs
    /// (data/instruction-data-with-preference.json), from an instruction-tuned model.
    Dpo(super::finetune_dpo::Args),
}

pub fn run(cmd: &FinetuneCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        FinetuneCommand::Classify(a) => super::finetune_classify::run(a),
        FinetuneCommand::Instruct(a) => super::finetune_instruct::run(a),
        FinetuneCommand::Dpo(a) => super::finetune_dpo::run(a),
    }
}

/// The starting weights of a fine-tuning run (one is needed, unless it resumes).
#[derive(clap::Args)]
#[group(required = false, multiple = false)]
pub struct StartFrom {
    /// A checkpoint of ours (e.g. one pretrained with `train`).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A Hugging Face model — its folder (config.json + model.safetensors or shards) or a hub
    /// name already in the local Hugging Face cache: OpenAI's GPT-2, as the book fine-tunes it,
    /// or (for `finetune instruct`) a Llama 3 or Qwen3 with its own tokenizer. `--gpt2` is the
    /// old name of this flag.
    #[arg(long = "model", visible_alias = "gpt2", value_name = "NAME|DIR")]
    pub model: Option<String>,
    /// A freshly initialised model of `--preset` (the book's ablation without pretraining).
    #[arg(long)]
    pub random_init: bool,
}

/// LoRA settings (appendix E); without `--lora-rank`, ordinary fine-tuning.
#[derive(clap::Args)]
pub struct LoraArgs {
    /// Train rank-R LoRA adapters on every linear layer instead of the weights themselves.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0, requires = "lora_rank")]
    pub lora_alpha: f64,
}

/// What every fine-tuning command takes: the starting weights, the book's optimizer and
/// evaluation settings (batch 8, the command's AdamW rate and decay, eval on 5 batches, no
/// dropout), LoRA, the run folder and the device.
#[derive(clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub from: StartFrom,
    /// Preset of a `--random-init` model.
    #[arg(long, default_value = "gpt2-small")]
    pub preset: String,
    /// Context length of a `--random-init` model (default: the preset's).
    #[arg(long)]
    pub context_length: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// AdamW learning rate (default: the book's for the command — 5e-5 for classify and
    /// instruct, 5e-6 for dpo).
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay (default: the book's — 0.1 for classify and instruct, 0.01 for dpo).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Batches per evaluation.
    #[arg(long, default_value_t = 5)]
    pub eval_iter: usize,
    /// The book fine-tunes without dropout.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Fixes the split, a new head's initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 123)]
    pub seed: u64,
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Run folder for the checkpoint (and adapters.safetensors with LoRA), metrics or responses
    /// (default runs/<command>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: super::device::DeviceChoice,
    /// The matrix products' number format: f32, or bf16 operands with f32 sums on a CPU with
    /// AVX-512 BF16 (weights, optimizer state and the loss stay f32). A resume must pass the
    /// run's own.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: super::precision::PrecisionChoice,
    /// Continue a run exactly from one of its checkpoints: the run folder's
    /// checkpoint.safetensors (written whenever a run ends or is interrupted) or a periodic
    /// checkpoint-step*.safetensors. Give the run's own settings (the command printed at an
    /// interruption does); --epochs and --max-steps may grow.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// Also write a resumable checkpoint every N optimizer steps
    /// (checkpoint-stepNNNNNNNN.safetensors in the run folder).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Keep only the newest N periodic checkpoints.
    #[arg(long, requires = "save_every")]
    pub keep_last: Option<usize>,
}

impl FinetuneArgs {
    /// What identifies a run of `command` on `data` (see [`data_identity`]): every setting that
    /// fixes its position in the data or its maths, common ones and the command's own
    /// (`extra`, an object keyed by flag name). A resume must repeat them.
    pub fn run_record(
        &self,
        command: &str,
        book: &BookOptimizer,
        data: Value,
        extra: Value,
    ) -> Value {
        let mut settings = json!({
            "seed": self.seed, "batch-size": self.batch_size, "lr": self.lr(book),
            "weight-decay": self.weight_decay.unwrap_or(book.weight_decay),
            "eval-iter": self.eval_iter, "drop-rate": self.drop_rate,
            "lora-rank": self.lora.lora_rank,
            "lora-alpha": self.lora.lora_rank.map(|_| self.lora.lora_alpha),
            "precision": self.precision.precision().name(),
        });
        if let (Some(all), Some(more)) = (settings.as_object_mut(), extra.as_object()) {
            all.extend(more.clone());
        }
        json!({"command": command, "data": data, "settings": settings})
    }

    /// Loads `--resume`, checking that it is a checkpoint of the same command, data and
    /// settings (`record`, from [`Self::run_record`]) with an optimizer to continue.
    pub fn load_resume(&self, record: &Value) -> anyhow::Result<Option<Resumed>> {
        let Some(path) = &self.resume else {
            return Ok(None);
        };
        let shown = path.display();
        let ck = load_resumable(path)?;
        let command = &record["command"];
        let Some(rec) = &ck.info.finetune else {
            bail!(
                "{shown} is not a checkpoint of a fine-tuning run (a pretraining run resumes with `scratchgpt train --resume`)"
            );
        };
        if rec["command"] != *command {
            bail!(
                "{shown} is a checkpoint of `finetune {}`; resume it with that command",
                rec["command"].as_str().unwrap_or("?")
            );
        }
        if rec["data"] != record["data"] {
            bail!(
                "{shown} was trained on other data ({}, this run reads {}): resume with the run's own --data",
                rec["data"],
                record["data"]
            );
        }
        if let Some(settings) = record["settings"].as_object() {
            for (flag, value) in settings {
                // Runs saved before `--precision` existed multiplied in f32.
                let f32_default = json!("f32");
                let was = match &rec["settings"][flag] {
                    Value::Null if flag == "precision" => &f32_default,
                    was => was,
                };
                if was != value {
                    let say = |v: &Value| match v {
                        Value::Null => "none".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    bail!(
                        "{shown} was trained with --{flag} {}, this run asks for {}: resume with the run's own settings (the command printed when it was interrupted has them)",
                        say(was),
                        say(value)
                    );
                }
            }
        }
        let Some(optimizer) = ck.optimizer else {
            bail!("{shown} has no optimizer state to resume from");
        };
        Ok(Some(Resumed {
            source: format!("run {shown}"),
            task: ck.task,
            model: ck.model,
            optimizer,
            state: ck.state,
            reference: ck.reference,
            tokenizer: ck.info.tokenizer,
        }))
    }

    /// Periodic checkpoints (`--save-every`, `--keep-last`) into `dir` and the Ctrl-C flag.
    pub fn run_control(
        &self,
        dir: &Path,
        info: &RunInfo,
        signal: &StopSignal,
    ) -> anyhow::Result<RunControl> {
        if self.save_every == Some(0) || self.keep_last == Some(0) {
            bail!("--save-every and --keep-last must be at least 1");
        }
        Ok(RunControl {
            save: self.save_every.map(|every| PeriodicSave {
                dir: dir.to_path_buf(),
                every,
                keep_last: self.keep_last,
                info: info.clone(),
            }),
            stop: Some(Arc::clone(&signal.stop)),
        })
    }

    /// Optimizer steps of the run (drop_last batches per epoch, capped by `--max-steps`): the
    /// progress bar's length.
    pub fn total_steps(&self, epochs: usize, train_len: usize) -> usize {
        let all = epochs * (train_len / self.batch_size.max(1));
        self.max_steps.map_or(all, |m| m.min(all))
    }

    /// Where the run's steps go (`--device`).
    pub fn device(&self) -> anyhow::Result<scratchgpt::Device> {
        super::device::resolve(self.device)
    }

    /// Applies `--precision` (first thing in a run, before its data and folder are touched).
    pub fn apply_precision(&self) -> anyhow::Result<()> {
        self.precision.apply(self.device).map(|_| ())
    }

    /// What the run's checkpoints record besides its settings: the seed, GPT-2's tokenizer and
    /// the precision (callers override the tokenizer and add the settings).
    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            precision: self.precision.precision(),
            ..RunInfo::gpt2(self.seed)
        }
    }

    /// The learning rate: `--lr`, or the book's for the command.
    pub fn lr(&self, book: &BookOptimizer) -> f64 {
        self.lr.unwrap_or(book.lr)
    }

    /// AdamW over `model`'s trainable parameters with the run's rate and decay.
    pub fn optimizer(&self, model: &GptModel, book: &BookOptimizer) -> AdamW {
        AdamW::new(
            model.named_parameters(),
            AdamWConfig {
                lr: self.lr(book),
                weight_decay: self.weight_decay.unwrap_or(book.weight_decay),
                ..AdamWConfig::default()
            },
        )
    }
}

/// A run read back by `--resume`, ready to continue.
pub struct Resumed {
    /// "run PATH", for the opening line.
    pub source: String,
    pub task: Task,
    /// With its adapters unmerged and its frozen layers frozen.
    pub model: GptModel,
    pub optimizer: AdamW,
    pub state: TrainState,
    /// DPO's reference, when the file holds one.
    pub reference: Option<GptModel>,
    /// `Folder`: the run's tokenizer is in `tokenizer/` beside the checkpoint.
    pub tokenizer: TokenizerRef,
}

/// The book's AdamW settings for a fine-tuning command.
pub struct BookOptimizer {
    pub lr: f64,
    pub weight_decay: f64,
}

impl BookOptimizer {
    /// Chapters 6 and 7: `AdamW(lr=5e-5, weight_decay=0.1)`.
    pub const SUPERVISED: BookOptimizer = BookOptimizer {
        lr: 5e-5,
        weight_decay: 0.1,
    };
    /// The DPO bonus: `AdamW(lr=5e-6, weight_decay=0.01)`.
    pub const DPO: BookOptimizer = BookOptimizer {
        lr: 5e-6,
        weight_decay: 0.01,
    };
}

/// Where a fine-tuning run starts.
pub struct Start {
    /// With the run's dropout rate.
    pub model: GptModel,
    /// Where the weights came from, for the opening line.
    pub source: String,
    /// What the weights were trained for (`Task::Pretrain` for hub weights and fresh models).
    pub task: Task,
    /// The weights' vocabulary: GPT-2's (`TokenizerRef::Gpt2`), or their own — a Llama or Qwen
    /// folder's, or the one saved beside a checkpoint (`TokenizerRef::Folder`).
    pub tokenizer: Cow<'static, BpeTokenizer>,
    pub tokenizer_ref: TokenizerRef,
}

/// Loads the starting model for a command that reads its data with GPT-2's tokenizer
/// ([`load_start_with_task`], refusing weights with a vocabulary of their own).
pub fn load_start(a: &FinetuneArgs, command: &str) -> anyhow::Result<(GptModel, String)> {
    let start = load_start_with_task(a, Some(command))?;
    Ok((start.model, start.source))
}

/// Loads the starting model: from a checkpoint (refusing a classifier, whose head cannot
/// generate or be re-headed meaningfully), from a Hugging Face model (GPT-2, Llama 3, Qwen3),
/// or freshly from `--preset`; with the run's dropout rate, and its vocabulary.
/// `gpt2_only_for`: the command, when it reads its data with GPT-2's vocabulary alone — then
/// weights with their own are refused before they are loaded.
pub fn load_start_with_task(
    a: &FinetuneArgs,
    gpt2_only_for: Option<&str>,
) -> anyhow::Result<Start> {
    let (from, preset, drop_rate, seed) = (&a.from, a.preset.as_str(), a.drop_rate, a.seed);
    if !(0.0..1.0).contains(&drop_rate) {
        bail!("--drop-rate must be in [0, 1), got {drop_rate}");
    }
    if from.checkpoint.is_none() && from.model.is_none() && !from.random_init {
        bail!("give the starting weights: --checkpoint FILE, --model NAME|DIR or --random-init (or --resume a run)");
    }
    let mut task = Task::Pretrain;
    let mut tokenizer = Cow::Borrowed(BpeTokenizer::gpt2());
    let mut tokenizer_ref = TokenizerRef::Gpt2;
    let (mut model, what) = match (&from.checkpoint, &from.model) {
        (Some(path), _) => {
            let ck = load_checkpoint(path)?;
            if let Some(command) = gpt2_only_for.filter(|_| ck.info.tokenizer != TokenizerRef::Gpt2)
            {
                bail!(
                    "{} was trained with its own tokenizer; `finetune {command}` reads its data with GPT-2's (`finetune instruct` takes a model with its own tokenizer)",
                    path.display()
                );
            }
            tokenizer = super::train::checkpoint_tokenizer(&ck.info.tokenizer, path)?;
            tokenizer_ref = ck.info.tokenizer.clone();
            if matches!(ck.task, Task::Classify { .. }) {
                bail!(
                    "{} is a classifier; fine-tune from a language model",
                    path.display()
                );
            }
            task = ck.task.clone();
            (ck.model, format!("checkpoint {}", path.display()))
        }
        (None, Some(spec)) => {
            let dir = scratchgpt::gpt::hub_cache::resolve_model(spec)?;
            if let Some(command) =
                gpt2_only_for.filter(|_| scratchgpt::gpt::hf_llama::is_decoder_folder(&dir))
            {
                bail!(
                    "{} is a Llama/Qwen3 model with its own tokenizer; `finetune {command}` reads its data with GPT-2's, so it takes GPT-2 weights (`finetune instruct` takes this model)",
                    dir.display()
                );
            }
            let model = scratchgpt::gpt::hf_llama::load_hf(&dir)?;
            // GPT-2's vocabulary is built in; a Llama or Qwen3 brings its own.
            tokenizer = super::generate::folder_tokenizer(&dir, &model)?;
            if model.cfg.arch != scratchgpt::gpt::Architecture::Gpt2 {
                tokenizer_ref = TokenizerRef::Folder;
            }
            let family = match model.cfg.arch {
                scratchgpt::gpt::Architecture::Gpt2 => "GPT-2",
                scratchgpt::gpt::Architecture::Llama(_) => "Llama",
                scratchgpt::gpt::Architecture::Qwen3(_) => "Qwen3",
            };
            (model, format!("{family} weights {}", dir.display()))
        }
        (None, None) => {
            let mut cfg = match a.context_length {
                Some(c) => GptConfig::preset_with_context(preset, c)?,
                None => GptConfig::preset(preset)?,
            };
            cfg.drop_rate = drop_rate;
            // GPT-2's layout, as the book's fine-tuning config (Llama and Qwen3 have none).
            cfg.qkv_bias = cfg.arch == scratchgpt::gpt::Architecture::Gpt2;
            (
                GptModel::new(&cfg, seed)?,
                format!("random initialisation ({preset}, seed {seed})"),
            )
        }
    };
    model.cfg.drop_rate = drop_rate;
    for b in &mut model.trf_blocks {
        b.att.dropout = drop_rate;
        b.drop_shortcut.p = drop_rate;
    }
    model.drop_emb.p = drop_rate;
    if tokenizer.vocab_size() > model.cfg.vocab_size {
        bail!(
            "{what}: the tokenizer has {} ids, the model only {}",
            tokenizer.vocab_size(),
            model.cfg.vocab_size
        );
    }
    Ok(Start {
        model,
        source: what,
        task,
        tokenizer,
        tokenizer_ref,
    })
}

/// After a LoRA run: save the adapters alone to `dir/adapters.safetensors`, then fold them into
/// the weights so the checkpoint is a plain GPT. Nothing to do without adapters.
pub fn save_adapters_and_merge(dir: &Path, model: &mut GptModel) -> anyhow::Result<()> {
    if model.has_lora() {
        let adapters = dir.join("adapters.safetensors");
        save_lora_adapters(&adapters, model)?;
        println!("LoRA adapters: {}", adapters.display());
        // W + (alpha/r)·A·B in f32 whatever the run's precision: the saved weights stay f32.
        let precision = Precision::current();
        Precision::F32.apply()?;
        model.merge_lora()?;
        precision.apply()?;
    }
    Ok(())
}

/// The run folder: `--out`, or a resumed run's own folder, or runs/<kind>-<unix time>.
pub fn out_dir(a: &FinetuneArgs, kind: &str) -> anyhow::Result<PathBuf> {
    let resumed_in = a.resume.as_ref().map(|r| {
        r.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    });
    let dir = match a.out.clone().or(resumed_in) {
        Some(d) => d,
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from(format!("runs/{kind}-{secs}"))
        }
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Writes the run's resumable checkpoint, `dir/checkpoint.safetensors`, when it ends or is
/// interrupted (nothing when no step was taken).
pub fn save_resumable(
    dir: &Path,
    run: ResumableRun<'_>,
    state: &TrainState,
) -> anyhow::Result<Option<PathBuf>> {
    if state.global_step == 0 {
        return Ok(None);
    }
    let path = dir.join(RESUME_FILE);
    save_finetune_checkpoint(
        &path,
        run.model,
        run.optimizer,
        state,
        run.info,
        run.task,
        run.reference,
    )?;
    Ok(Some(path))
}

/// The file a fine-tuning run leaves to be resumed from.
pub const RESUME_FILE: &str = "checkpoint.safetensors";

/// What a resumable checkpoint holds besides the position.
pub struct ResumableRun<'a> {
    pub model: &'a GptModel,
    pub optimizer: &'a AdamW,
    pub info: &'a RunInfo,
    pub task: &'a Task,
    /// DPO's reference model (not saved under LoRA, where it is the policy's base).
    pub reference: Option<&'a GptModel>,
}

/// How a run that ended is reported: after an interruption (the loop stopped, or a signal came
/// as it ended), where it was saved and the command that continues it (and the exit code 128 +
/// signal); `None` when it ran to its end — then the handlers are disarmed, so a Ctrl-C during
/// what follows (test-set answers, samples) ends the process at once.
pub fn report_interrupted(
    end: RunEnd,
    state: &TrainState,
    saved: Option<&Path>,
    signal: &StopSignal,
) -> anyhow::Result<Option<ExitCode>> {
    if end != RunEnd::Stopped && !signal.raised() {
        signal.disarm()?;
        return Ok(None);
    }
    match saved {
        Some(path) => println!(
            "interrupted after step {}; continue exactly with:\n  {}",
            state.global_step,
            resume_command(path)
        ),
        None => println!("interrupted before the first step; nothing to save"),
    }
    Ok(Some(signal.exit_code()))
}

/// The identity of a fine-tuning data set: its entry count and a hash of its bytes (FNV-1a,
/// 64 bits), so a resume on other data is caught wherever the file lives.
pub fn data_identity(bytes: &[u8], entries: usize) -> Value {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    json!({"entries": entries, "fnv1a64": format!("{hash:016x}")})
}

/// The bytes of `--data` (or the bundled text) for [`data_identity`].
pub fn data_bytes(path: &Option<PathBuf>, bundled: &'static str) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(bundled.as_bytes().to_vec()),
    }
}

/// A step progress bar that the book's lines print above.
pub fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// After one optimizer step: advance the bar and show the epoch, loss and step time.
pub fn step_done(bar: &ProgressBar, epoch: usize, loss: f64, step_secs: f64) {
    bar.inc(1);
    bar.set_message(format!(
        "epoch {} loss {loss:.3} ({step_secs:.2} s/step)",
        epoch + 1
    ));
}

/// Prints a line above the bar (or plainly when the bar is hidden, e.g. output to a file).
pub fn say(bar: &ProgressBar, line: impl Into<String>) {
    let line = line.into();
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Peak resident memory so far, in GiB (Linux), for the closing report.
pub fn peak_rss_gib() -> Option<f64> {
    super::bench::peak_rss().map(|b| b as f64 / (1u64 << 30) as f64)
}
