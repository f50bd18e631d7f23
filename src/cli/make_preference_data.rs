//! `scratchgpt make-preference-data`: the book's preference data, written by a model server (its
//! notebook `create-preference-data-ollama`): each instruction entry's output rewritten to be
//! more polite or more impolite, kept as the chosen or the rejected answer. The file is rewritten
//! atomically after every entry, and a rerun continues where a stopped one ended.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use scratchgpt::data::text_file::write_atomic;
use scratchgpt::finetune::instruction_data::{parse_instruction_json, read_instruction_json};
use scratchgpt::finetune::preference_data::{parse_preference_json, preference_json};
use scratchgpt::finetune::preference_generation::{make_preference_entry, polite_choice};

use super::finetune::{progress, say};

#[derive(clap::Args)]
pub struct Args {
    /// The model server, e.g. http://localhost:11434 (Ollama) or https://api.openai.com with
    /// `--judge-api openai`.
    #[arg(long)]
    judge_url: String,
    #[command(flatten)]
    server: super::model_server::ServerArgs,
    /// A JSON list of {instruction, input, output} (default: the bundled
    /// data/instruction-data.json).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the preference JSON (a rerun with the same file continues it).
    #[arg(long)]
    out: PathBuf,
    /// Only the first N entries.
    #[arg(long)]
    limit: Option<usize>,
    /// Fixes which entries are rewritten to be polite and which impolite.
    #[arg(long, default_value_t = 123)]
    seed: u64,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let data = match &a.data {
        Some(p) => read_instruction_json(p)?,
        None => parse_instruction_json(
            include_str!("../../data/instruction-data.json"),
            "data/instruction-data.json",
        )?,
    };
    let total = a.limit.unwrap_or(data.len()).min(data.len());
    // A pair needs an instruction and an answer to rewrite (the preference format refuses an
    // empty one, so such an entry would make the file unreadable).
    if let Some((i, e)) = data[..total]
        .iter()
        .enumerate()
        .find(|(_, e)| e.instruction.trim().is_empty() || e.output.trim().is_empty())
    {
        let field = if e.instruction.trim().is_empty() {
            "instruction"
        } else {
            "output"
        };
        bail!("entry {i} has an empty {field}: there is nothing to rewrite into a preference pair");
    }
    let server = a.server.connect(&a.judge_url)?;
    let mut done = match std::fs::read_to_string(&a.out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", a.out.display())),
        Ok(text) => {
            let what = a.out.display().to_string();
            let done = parse_preference_json(&text, &what).with_context(|| {
                format!(
                    "{what} exists but is not preference data; remove it or choose another --out"
                )
            })?;
            if done.len() > data.len() || done.iter().zip(&data).any(|(p, e)| p.entry != *e) {
                bail!("{what} holds entries of other instruction data; choose another --out");
            }
            // Which answer is the original tells which rewrite each entry got: a different
            // --seed would mix two runs' choices.
            let other_seed = done.iter().enumerate().any(|(i, p)| {
                let polite = polite_choice(a.seed, i);
                (polite && p.chosen == p.entry.output && p.rejected != p.entry.output)
                    || (!polite && p.rejected == p.entry.output && p.chosen != p.entry.output)
            });
            if other_seed {
                bail!("{what} was written with another --seed; continue it with the seed it was started with");
            }
            done
        }
    };
    if done.len() >= total {
        println!(
            "{}: all {total} entries are already written",
            a.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !done.is_empty() {
        println!(
            "{}: continuing after {} of {total} entries",
            a.out.display(),
            done.len()
        );
    }
    println!(
        "asking {} for {} rewrites",
        server.endpoint(),
        total - done.len()
    );
    let bar = progress(total);
    bar.set_position(done.len() as u64);
    for (i, entry) in data.iter().enumerate().take(total).skip(done.len()) {
        let polite = polite_choice(a.seed, i);
        match make_preference_entry(&server, entry, polite) {
            Ok(p) => done.push(p),
            Err(e) => {
                bar.finish_and_clear();
                eprintln!(
                    "entry {i}: {e}\n{} entries are saved in {}; run the same command again to continue",
                    done.len(),
                    a.out.display()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        write_atomic(&a.out, preference_json(&done).as_bytes())?;
        bar.inc(1);
        if i + 1 == total || (i + 1) % 100 == 0 {
            say(&bar, format!("{} of {total} entries written", i + 1));
        }
    }
    bar.finish_and_clear();
    println!("wrote {} entries to {}", done.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}
