//! `scratchgpt chat`: read prompts from standard input, one per line, and stream each reply's
//! tokens as they are generated (KV cache). A checkpoint written by `finetune instruct` gets its
//! prompts wrapped in the template it learned (the book's Alpaca, or a Llama 3 / Qwen chat
//! template); a Llama 3 or Qwen model in its vocabulary's.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use scratchgpt::data::chat_template::ChatTemplate;
use scratchgpt::gpt::{generate_cached_streaming, Sampling};
use scratchgpt::train::checkpoint::Task;

use super::generate::ModelSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: ModelSource,
    #[arg(long, default_value_t = 100)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Wrap each prompt in the book's Alpaca instruction template (chapter 7); automatic for a
    /// checkpoint that `finetune instruct` trained on it. The same as `--template alpaca`.
    #[arg(long)]
    alpaca: bool,
    /// How each prompt is put to the model: plain, alpaca, llama3 (Llama 3.0 Instruct's
    /// headers), llama3.1 (3.1+: a system turn with the knowledge-cutoff lines), qwen (ChatML),
    /// qwen3 (ChatML with the empty thinking block: answers without thinking). Default: the
    /// template a `finetune instruct` checkpoint was trained on, else the template of the
    /// tokenizer's vocabulary, else plain.
    #[arg(long)]
    template: Option<String>,
    /// A system message (the llama3 and qwen templates).
    #[arg(long)]
    system: Option<String>,
    /// Where the model runs: cpu, cuda, auto, or emu (the KV cache lives there too).
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let (model, task, tok) = a.source.load_all()?;
    if model.cfg.num_classes.is_some() {
        anyhow::bail!("this checkpoint is a classifier: use `scratchgpt classify`");
    }
    model.to_device(super::device::resolve(a.device)?)?;
    // An instruction-tuned checkpoint learned a template (the book's Alpaca, or the model's
    // chat template) and names it: use it without being asked; a Llama 3 or Qwen vocabulary
    // brings its own.
    let template = match (&a.template, a.alpaca, task) {
        (Some(_), true, _) => anyhow::bail!("give --alpaca or --template, not both"),
        (Some(name), false, _) => ChatTemplate::from_name(name)?,
        (None, true, _) => ChatTemplate::Alpaca,
        (None, false, Task::Instruct { template }) => template,
        (None, false, _) => ChatTemplate::for_tokenizer(&tok).unwrap_or(ChatTemplate::Plain),
    };
    if a.system.is_some() && matches!(template, ChatTemplate::Plain | ChatTemplate::Alpaca) {
        anyhow::bail!("--system needs the llama3 or qwen template (this one is {template:?})");
    }
    let ctx = model.cfg.context_length;
    let eos = tok.end_ids();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    if interactive {
        eprintln!(
            "{} parameters, context {ctx}{}. One prompt per line; Ctrl-D ends.",
            model.num_parameters(),
            match template {
                ChatTemplate::Plain => String::new(),
                t => format!(", {t:?} template"),
            }
        );
    }
    for (turn, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let user = match template {
            ChatTemplate::Plain => line.as_str(),
            _ => line.trim(),
        };
        let prompt = template.encode(&tok, user, a.system.as_deref())?;
        if prompt.len() >= ctx {
            eprintln!(
                "error: the prompt is {} tokens; the model's context is {ctx}",
                prompt.len()
            );
            continue;
        }
        let sampling = Sampling {
            temperature: a.temperature,
            top_k: Some(a.top_k).filter(|&k| k > 0),
            top_p: a.top_p,
            eos_ids: eos.clone(),
            seed: a.seed.wrapping_add(turn as u64),
        };
        // Stream: decode the reply's bytes so far and print what became valid UTF-8 (a BPE token
        // can end in the middle of a multi-byte character).
        let mut bytes: Vec<u8> = Vec::new();
        let mut printed = 0;
        if interactive {
            write!(out, "> ")?;
        }
        generate_cached_streaming(&model, &prompt, a.max_new_tokens, ctx, &sampling, |id| {
            bytes.extend_from_slice(tok.token_bytes(id)?);
            let valid = match std::str::from_utf8(&bytes[printed..]) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            let _ = out.write_all(&bytes[printed..printed + valid]);
            let _ = out.flush();
            printed += valid;
            Ok(())
        })?;
        if printed < bytes.len() {
            out.write_all(String::from_utf8_lossy(&bytes[printed..]).as_bytes())?;
        }
        writeln!(out)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
