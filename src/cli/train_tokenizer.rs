//! `scratchgpt train-tokenizer`: train a byte-level BPE vocabulary on a text file and save it in
//! GPT-2's format (load it back with `--tokenizer DIR`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use scratchgpt::data::bpe::train::train_bpe;
use scratchgpt::data::text_file::read_text;

#[derive(clap::Args)]
pub struct Args {
    /// The training text (UTF-8).
    #[arg(long)]
    file: PathBuf,
    /// Total number of ids: 256 bytes + merges + special tokens.
    #[arg(long)]
    vocab_size: usize,
    /// Where to write encoder.json and vocab.bpe.
    #[arg(long)]
    out: PathBuf,
    /// Special tokens (never merged; repeat the flag for several).
    #[arg(long = "special", default_value = "<|endoftext|>")]
    specials: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = read_text(&args.file)?;
    let specials: Vec<&str> = args.specials.iter().map(String::as_str).collect();
    let start = Instant::now();
    let tok = train_bpe(&text, args.vocab_size, &specials)?;
    let secs = start.elapsed().as_secs_f64();
    tok.save(&args.out)?;
    let n = tok.encode_with_special(&text, &specials)?.len();
    println!(
        "trained {} ids ({} merges) on {} bytes in {secs:.2} s; the text is {n} tokens ({:.2} bytes/token); saved to {}",
        tok.vocab_size(),
        tok.merges().len(),
        text.len(),
        text.len() as f64 / n as f64,
        args.out.display()
    );
    if tok.vocab_size() < args.vocab_size {
        println!(
            "note: the text ran out of pairs to merge before reaching {} ids",
            args.vocab_size
        );
    }
    Ok(ExitCode::SUCCESS)
}
