//! `scratchgpt prepare-data`: files and folders of text → token shards that `train --data DIR`
//! reads through memory maps (see `data::prepare` for the format and the split).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use scratchgpt::data::prepare::{collect_files, prepare, PrepareOptions};
use scratchgpt::train::data::RunTokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// Text files or folders (walked recursively; hidden entries skipped). Repeat for several.
    #[arg(long = "input", required = true)]
    inputs: Vec<PathBuf>,
    /// The folder to write the shards, manifest.json and (for a custom tokenizer) tokenizer/ to.
    #[arg(long)]
    out: PathBuf,
    /// gpt2 or a folder from `train-tokenizer`.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// Fraction of each document (its end, by characters) held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 100_000_000)]
    shard_tokens: u64,
    /// Cut Project Gutenberg's license header and footer (as the book's bonus script does).
    #[arg(long)]
    strip_gutenberg: bool,
    /// Refuse a file that cannot be used (unreadable, binary, not UTF-8, empty) instead of
    /// skipping it.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let tok = RunTokenizer::from_arg(&args.tokenizer)
        .with_context(|| format!("--tokenizer {}", args.tokenizer))?;
    let files = collect_files(&args.inputs)?;
    let opts = PrepareOptions {
        val_fraction: args.val_fraction,
        shard_tokens: args.shard_tokens,
        strip_gutenberg: args.strip_gutenberg,
        strict: args.strict,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} [{elapsed_precise}<{eta_precise}] {bytes_per_sec}",
        )
        .expect("valid template"),
    );
    let report = prepare(
        &files,
        &args.out,
        &tok.tokenizer,
        tok.dir.is_some(),
        &opts,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )?;
    bar.finish_and_clear();
    let m = &report.manifest;
    println!(
        "{} documents ({:.1} MB) → {} training tokens in {} shards, {} validation tokens in {} shards; {:.1} s, {:.1} MB/s on {} threads",
        m.documents,
        m.source_bytes as f64 / 1e6,
        m.train_tokens(),
        m.train.len(),
        m.val_tokens(),
        m.val.len(),
        report.secs,
        report.mb_per_sec(),
        rayon::current_num_threads()
    );
    if args.strip_gutenberg {
        println!(
            "Project Gutenberg header/footer cut from {} documents",
            report.gutenberg_stripped
        );
    }
    if !m.skipped.is_empty() {
        println!("skipped {} files:", m.skipped.len());
        for s in &m.skipped {
            println!("  {}: {}", s.path, s.reason);
        }
    }
    println!("wrote {}", args.out.join("manifest.json").display());
    Ok(ExitCode::SUCCESS)
}
