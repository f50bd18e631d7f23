//! `scratchgpt download NAME [--revision R]`: a model from the Hugging Face hub into the local hub
//! cache (the only command that touches the network); `--model NAME` then finds it offline.

use std::process::ExitCode;

use scratchgpt::net::hub::{download, HubSettings};

#[derive(clap::Args)]
pub struct Args {
    /// A hub repository: `gpt2` … `gpt2-xl`, `Qwen/Qwen3-0.6B`, `meta-llama/Llama-3.2-1B`
    /// (gated: accept its license on the hub and set HF_TOKEN), or any `org/name` of a GPT-2,
    /// Llama or Qwen3 model with safetensors weights.
    name: String,
    /// A branch, tag or commit.
    #[arg(long, default_value = "main")]
    revision: String,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let mut settings = HubSettings::from_env();
    settings.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    eprintln!(
        "downloading {} ({}) from {} into {}",
        a.name,
        a.revision,
        settings.endpoint,
        settings.cache_dir.display()
    );
    let got = download(&a.name, &a.revision, &settings)?;
    // Check what came: a model this crate reads (its config; the weights are read on use).
    let readable = scratchgpt::gpt::hf_llama::hf_config(&got.dir);
    println!("{}", got.dir.display());
    eprintln!("{} files: {}", got.files.len(), got.files.join(", "));
    match readable {
        Ok(cfg) => eprintln!(
            "a {} model of {} parameters: use it with --model {}{}",
            cfg.arch.name(),
            cfg.num_parameters(),
            if a.revision == "main" {
                a.name.clone()
            } else {
                got.dir.display().to_string()
            },
            if a.revision == "main" {
                ""
            } else {
                " (--model NAME reads the main revision)"
            }
        ),
        Err(e) => {
            eprintln!("downloaded, but this crate cannot read the model: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
