//! `scratchgpt export`: write a model as a Hugging Face GPT-2 folder that transformers loads.

use std::path::PathBuf;
use std::process::ExitCode;

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
    let mut model = a.source.load()?;
    if let Some(path) = &a.lora_adapters {
        model = scratchgpt::finetune::lora::load_lora_adapters(path, model)?;
        model.merge_lora()?;
        println!("merged the LoRA adapters of {}", path.display());
    }
    if model.cfg.num_classes.is_some() {
        anyhow::bail!("a classifier has no GPT-2 language-model head to export");
    }
    export_hf_gpt2(&model, &a.hf_out)?;
    println!(
        "wrote {} ({} parameters, {} head): load it with transformers.GPT2LMHeadModel.from_pretrained(\"{}\")",
        a.hf_out.display(),
        model.num_parameters(),
        if model.cfg.tie_weights { "tied" } else { "untied" },
        a.hf_out.display()
    );
    Ok(ExitCode::SUCCESS)
}
