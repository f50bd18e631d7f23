//! `scratchgpt check-reference DIR`: recompute a PyTorch golden fixture and compare.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use scratchgpt::gpt::reference_check::{check_book_fixture, check_hf_fixture, is_hf_fixture};

#[derive(clap::Args)]
pub struct Args {
    /// A fixture folder: the book-gpt-tiny format (config.json, weights/batch/expected
    /// .safetensors, expected.json) or the hf-gpt2-tiny format (a Hugging Face GPT-2, Llama or
    /// Qwen3 folder — one file or shards — with expected.json: hf-llama-tiny, hf-qwen3-tiny).
    dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let lines = if is_hf_fixture(&args.dir) {
        check_hf_fixture(&args.dir)?
    } else {
        check_book_fixture(&args.dir)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<58} {:>12} {:>12} {:>10}  result",
        "quantity", "max abs err", "max rel err", "tolerance"
    )?;
    let mut failed = 0;
    for l in &lines {
        writeln!(
            out,
            "{:<58} {:>12.3e} {:>12.3e} {:>10.1e}  {}",
            l.quantity,
            l.max_abs_err,
            l.max_rel_err,
            l.tolerance,
            if l.ok { "ok" } else { "FAIL" }
        )?;
        failed += usize::from(!l.ok);
    }
    writeln!(out, "\n{} checked, {failed} failed", lines.len())?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
