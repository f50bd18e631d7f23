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
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let model = a.source.load()?;
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
