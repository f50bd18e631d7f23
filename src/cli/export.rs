//! `scratchgpt export`: write a model as a Hugging Face folder that transformers loads — GPT-2's
//! layout for the book's GPT, Llama's or Qwen3's for those.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scratchgpt::gpt::hf_llama::{export_hf, ExportDtype, ExportOptions};

use super::generate::ModelSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: ModelSource,
    /// The folder to write (config.json + model.safetensors).
    #[arg(long)]
    hf_out: PathBuf,
    /// LoRA adapters (`adapters.safetensors` from a fine-tuning run) to merge into the model
    /// first: `W ← W + (alpha/rank)·(A·B)ᵀ`.
    #[arg(long)]
    lora_adapters: Option<PathBuf>,
    /// Element type of a Llama/Qwen3 export: f32, or bf16 (rounded to nearest even, as
    /// `model.to(torch.bfloat16)`; half the size). GPT-2 exports are f32.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// Split a Llama/Qwen3 export into shards of at most this many MB, with
    /// `model.safetensors.index.json` (as the hub's large models).
    #[arg(long, value_name = "MB")]
    max_shard_size: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DtypeArg {
    F32,
    Bf16,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let (mut model, _, tok) = a.source.load_all()?;
    if let Some(path) = &a.lora_adapters {
        model = scratchgpt::finetune::lora::load_lora_adapters(path, model)?;
        model.merge_lora()?;
        println!("merged the LoRA adapters of {}", path.display());
    }
    if model.cfg.num_classes.is_some() {
        anyhow::bail!("a classifier has no language-model head to export");
    }
    if a.max_shard_size == Some(0) {
        anyhow::bail!("--max-shard-size must be at least 1 (MB)");
    }
    let opts = ExportOptions {
        dtype: match a.dtype {
            DtypeArg::F32 => ExportDtype::F32,
            DtypeArg::Bf16 => ExportDtype::Bf16,
        },
        max_shard_bytes: match a.max_shard_size {
            None => None,
            Some(mb) => Some(
                mb.checked_mul(1_000_000)
                    .ok_or_else(|| anyhow::anyhow!("--max-shard-size {mb} MB is too large"))?,
            ),
        },
        bos_token_id: tok.bos_id(),
        eos_token_ids: tok.end_ids(),
    };
    export_hf(&model, &a.hf_out, opts)?;
    // The tokenizer beside the weights, under transformers' GPT-2 names (its `vocab.json` and
    // `merges.txt` are OpenAI's `encoder.json` and `vocab.bpe`): GPT-2's, or the run's own.
    // A tokenizer read from a `tokenizer.json` is written back as that file, which transformers
    // reads as it is.
    tok.save(&a.hf_out)?;
    if !tok.is_tokenizer_json() {
        for (ours, theirs) in [("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")] {
            std::fs::rename(a.hf_out.join(ours), a.hf_out.join(theirs))
                .with_context(|| format!("writing {}", a.hf_out.join(theirs).display()))?;
        }
        if model.cfg.arch != scratchgpt::gpt::Architecture::Gpt2 {
            // transformers would read these two files with the family's own tokenizer class
            // (Qwen's regex and NFC; Llama's needs a tokenizer.json): say they are GPT-2's.
            let config = serde_json::json!({
                "tokenizer_class": "GPT2Tokenizer",
                "model_max_length": model.cfg.context_length,
            });
            scratchgpt::data::text_file::write_atomic(
                a.hf_out.join("tokenizer_config.json"),
                serde_json::to_string_pretty(&config)?.as_bytes(),
            )?;
        }
    }
    let class = match model.cfg.arch.name() {
        "llama" => "LlamaForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        _ => "GPT2LMHeadModel",
    };
    println!(
        "wrote {} ({} parameters, {} head): load it with transformers.{class}.from_pretrained(\"{}\")",
        a.hf_out.display(),
        model.num_parameters(),
        if model.cfg.tie_weights { "tied" } else { "untied" },
        a.hf_out.display()
    );
    Ok(ExitCode::SUCCESS)
}
