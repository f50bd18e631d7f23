//! `scratchgpt tokenize`: text → token ids with any of the project's tokenizers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use scratchgpt::data::text_file::read_text_or_empty;
use scratchgpt::data::{BpeTokenizer, SimpleTokenizerV2};

#[derive(clap::Args)]
pub struct Args {
    /// The text to tokenize (or use --file).
    text: Option<String>,
    /// Read the text from a file instead.
    #[arg(long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// `gpt2` (OpenAI's BPE, built in), `simple` (the book's SimpleTokenizerV2 over
    /// the-verdict's vocabulary), or a folder with encoder.json and vocab.bpe.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// Encode special tokens such as <|endoftext|> as their ids (otherwise they are an error).
    #[arg(long)]
    allow_special: bool,
    /// Print only the ids, as one JSON array on one line.
    #[arg(long, conflicts_with = "count")]
    ids: bool,
    /// Print only the number of tokens.
    #[arg(long)]
    count: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = match (&args.text, &args.file) {
        (Some(t), None) => t.clone(),
        // An empty file is an empty text: no tokens (`[]` with --ids), as tiktoken encodes "".
        (None, Some(path)) => read_text_or_empty(path)?,
        _ => bail!("give the text as an argument or with --file PATH"),
    };
    // (id, how the token reads) per token
    let tokens: Vec<(u32, String)> = match args.tokenizer.as_str() {
        "simple" => {
            let t = SimpleTokenizerV2::from_text(include_str!("../../data/the-verdict.txt"));
            t.encode(&text)
                .into_iter()
                .map(|id| Ok((id, t.decode(&[id])?)))
                .collect::<scratchgpt::Result<_>>()?
        }
        name => {
            let loaded;
            let t = if name == "gpt2" {
                BpeTokenizer::gpt2()
            } else {
                loaded = BpeTokenizer::from_dir(name).with_context(|| {
                    format!("--tokenizer {name}: expected gpt2, simple or a tokenizer folder")
                })?;
                &loaded
            };
            let specials = t.special_tokens();
            let allowed: Vec<&str> = if args.allow_special {
                specials.iter().map(|s| s.0.as_str()).collect()
            } else {
                Vec::new()
            };
            t.encode_with_special(&text, &allowed)?
                .into_iter()
                .map(|id| Ok((id, String::from_utf8_lossy(t.token_bytes(id)?).into_owned())))
                .collect::<scratchgpt::Result<_>>()?
        }
    };
    let mut out = std::io::stdout().lock();
    if args.count {
        writeln!(out, "{}", tokens.len())?;
    } else if args.ids {
        let ids: Vec<u32> = tokens.iter().map(|t| t.0).collect();
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else {
        for (id, tok) in &tokens {
            writeln!(out, "{id:>6}  {tok:?}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
