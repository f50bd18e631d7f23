//! `scratchgpt export`: write a model as a Hugging Face GPT-2 folder that transformers loads.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scratchgpt::gpt::hf::export_hf_gpt2;

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
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let (mut model, _, tok) = a.source.load_all()?;
    if let Some(path) = &a.lora_adapters {
        model = scratchgpt::finetune::lora::load_lora_adapters(path, model)?;
        model.merge_lora()?;
        println!("merged the LoRA adapters of {}", path.display());
    }
    if model.cfg.num_classes.is_some() {
        anyhow::bail!("a classifier has no GPT-2 language-model head to export");
    }
    export_hf_gpt2(&model, &a.hf_out)?;
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
    }
    println!(
        "wrote {} ({} parameters, {} head): load it with transformers.GPT2LMHeadModel.from_pretrained(\"{}\")",
        a.hf_out.display(),
        model.num_parameters(),
        if model.cfg.tie_weights { "tied" } else { "untied" },
        a.hf_out.display()
    );
    Ok(ExitCode::SUCCESS)
}
