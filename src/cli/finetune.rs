//! `scratchgpt finetune classify|instruct`: chapters 6 and 7 (and appendix E's LoRA) from the
//! command line. What both share lives here: where the starting weights come from, the LoRA
//! flags, printing the book's lines beside a progress bar, and the run folder.

use std::path::PathBuf;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::train::checkpoint::{load_checkpoint, Task};

#[derive(clap::Subcommand)]
pub enum FinetuneCommand {
    /// Chapter 6: spam classification on the SMS Spam Collection (data/SMSSpamCollection.tsv).
    Classify(super::finetune_classify::Args),
    /// Chapter 7: instruction following on the book's 1,100 Alpaca-style examples
    /// (data/instruction-data.json).
    Instruct(super::finetune_instruct::Args),
}

pub fn run(cmd: &FinetuneCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        FinetuneCommand::Classify(a) => super::finetune_classify::run(a),
        FinetuneCommand::Instruct(a) => super::finetune_instruct::run(a),
    }
}

/// The starting weights of a fine-tuning run.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct StartFrom {
    /// A checkpoint of ours (e.g. one pretrained with `train`).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A Hugging Face GPT-2 folder (config.json + model.safetensors): OpenAI's weights, as the
    /// book fine-tunes them.
    #[arg(long)]
    pub gpt2: Option<PathBuf>,
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

/// Loads the starting model: from a checkpoint (refusing a classifier, whose head cannot
/// generate or be re-headed meaningfully), from GPT-2 weights, or freshly from `preset`.
pub fn load_start(
    from: &StartFrom,
    preset: &str,
    context_length: Option<usize>,
    drop_rate: f64,
    seed: u64,
) -> anyhow::Result<(GptModel, String)> {
    let (mut model, what) = match (&from.checkpoint, &from.gpt2) {
        (Some(path), _) => {
            let ck = load_checkpoint(path)?;
            if matches!(ck.task, Task::Classify { .. }) {
                bail!(
                    "{} is a classifier; fine-tune from a language model",
                    path.display()
                );
            }
            (ck.model, format!("checkpoint {}", path.display()))
        }
        (None, Some(dir)) => (
            GptModel::from_hf_gpt2(dir)?,
            format!("GPT-2 weights {}", dir.display()),
        ),
        (None, None) => {
            let mut cfg = GptConfig::preset(preset)?;
            if let Some(c) = context_length {
                cfg = GptConfig::preset_with_context(preset, c)?;
            }
            cfg.drop_rate = drop_rate;
            cfg.qkv_bias = true; // GPT-2's layout, as the book's fine-tuning config
            (
                GptModel::new(&cfg, seed)?,
                format!("random initialisation ({preset}, seed {seed})"),
            )
        }
    };
    if !(0.0..1.0).contains(&drop_rate) {
        bail!("--drop-rate must be in [0, 1), got {drop_rate}");
    }
    model.cfg.drop_rate = drop_rate;
    for b in &mut model.trf_blocks {
        b.att.dropout = drop_rate;
        b.drop_shortcut.p = drop_rate;
    }
    model.drop_emb.p = drop_rate;
    Ok((model, what))
}

/// The run folder (`--out`, or runs/<kind>-<unix time>).
pub fn out_dir(out: &Option<PathBuf>, kind: &str) -> anyhow::Result<PathBuf> {
    let dir = match out {
        Some(d) => d.clone(),
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
