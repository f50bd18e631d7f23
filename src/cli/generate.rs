//! `scratchgpt generate` and `scratchgpt eval`: use a trained checkpoint.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use std::borrow::Cow;

use anyhow::bail;
use scratchgpt::autograd::no_grad;
use scratchgpt::data::text_file::read_text;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::gpt::hf_llama::load_hf;
use scratchgpt::gpt::hub_cache::resolve_model;
use scratchgpt::gpt::{generate, generate_cached, GptModel, Sampling};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::train::checkpoint::{load_checkpoint, Task};
use scratchgpt::Ids;

/// The tokenizer of a Hugging Face model folder: GPT-2's own (built in) for a GPT-2 model; for a
/// Llama or Qwen3 the folder's `tokenizer.json` (or GPT-2-format `vocab.json` + `merges.txt`,
/// as `export` writes them), which must hold only ids the model has.
pub fn folder_tokenizer(
    dir: &std::path::Path,
    model: &GptModel,
) -> anyhow::Result<Cow<'static, BpeTokenizer>> {
    if model.cfg.arch == scratchgpt::gpt::Architecture::Gpt2 {
        return Ok(Cow::Borrowed(BpeTokenizer::gpt2()));
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let tok = if dir.join("tokenizer.json").is_file() {
        BpeTokenizer::from_dir(dir)?
    } else if vocab.is_file() && merges.is_file() {
        // GPT-2's format under transformers' names: what `export` writes for a model trained
        // here with a GPT-2-style tokenizer.
        BpeTokenizer::from_gpt2_format(
            &read_text(&vocab)?,
            &read_text(&merges)?,
            &dir.display().to_string(),
        )?
    } else {
        bail!(
            "{} has no tokenizer.json (nor vocab.json and merges.txt): a {} model needs its own tokenizer",
            dir.display(),
            model.cfg.arch.name()
        );
    };
    if tok.vocab_size() > model.cfg.vocab_size {
        bail!(
            "{}: the tokenizer has {} ids, the model only {}",
            dir.display(),
            tok.vocab_size(),
            model.cfg.vocab_size
        );
    }
    Ok(Cow::Owned(tok))
}

/// Where the weights come from: a checkpoint of ours, or a Hugging Face folder (GPT-2, Llama 3,
/// Qwen3).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct ModelSource {
    /// A checkpoint written by `train`.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A Hugging Face model — GPT-2, Llama 3 or Qwen3: its folder (config.json, then
    /// model.safetensors or sharded files with their index; Llama and Qwen3 with their
    /// tokenizer.json), or a hub name (gpt2 … gpt2-xl, org/name) already in the local Hugging
    /// Face cache. `--gpt2` is the old name of this flag.
    #[arg(long = "model", visible_alias = "gpt2", value_name = "NAME|DIR")]
    model: Option<String>,
}

impl ModelSource {
    /// The model, its task and its tokenizer: GPT-2's, or the custom one a training run saved
    /// beside its checkpoint (`tokenizer/`), found without being told.
    pub fn load_all(&self) -> anyhow::Result<(GptModel, Task, Cow<'static, BpeTokenizer>)> {
        Ok(match (&self.checkpoint, &self.model) {
            (Some(path), _) => {
                let ck = load_checkpoint(path)?;
                let tok = super::train::checkpoint_tokenizer(&ck.info.tokenizer, path)?;
                if tok.vocab_size() > ck.model.cfg.vocab_size {
                    bail!(
                        "the tokenizer has {} ids, the model only {}",
                        tok.vocab_size(),
                        ck.model.cfg.vocab_size
                    );
                }
                (ck.model, ck.task, tok)
            }
            (None, Some(spec)) => {
                let dir = resolve_model(spec)?;
                let model = load_hf(&dir)?;
                let tok = folder_tokenizer(&dir, &model)?;
                (model, Task::Pretrain, tok)
            }
            (None, None) => bail!("give --checkpoint or --model"),
        })
    }
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    source: ModelSource,
    #[arg(long, default_value = "Every effort moves you")]
    prompt: String,
    #[arg(long, default_value_t = 50)]
    max_new_tokens: usize,
    /// 0 = greedy; otherwise sample from softmax(logits / T).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling: only among the most likely tokens holding this much probability.
    #[arg(long)]
    top_p: Option<f64>,
    /// Rerun the whole window for every token instead of using the KV cache (same tokens, slower).
    #[arg(long)]
    no_kv_cache: bool,
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Stop at the end of the text: `<|endoftext|>` (GPT-2, Qwen), `<|end_of_text|>` or
    /// `<|eot_id|>` (Llama 3), `<|im_end|>` (Qwen chat) — whichever the tokenizer has.
    #[arg(long)]
    eos: bool,
    /// Where the model runs: cpu, cuda, or auto.
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
}

pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let (model, _, tok) = args.source.load_all()?;
    if model.cfg.num_classes.is_some() {
        bail!(
            "this checkpoint is a classifier (no language-model head): use `scratchgpt classify`"
        );
    }
    let prompt = tok.encode_for_model(&args.prompt)?;
    let ctx = model.cfg.context_length;
    if prompt.len() > ctx {
        bail!(
            "the prompt is {} tokens, longer than the model's context of {ctx}",
            prompt.len()
        );
    }
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        eos_ids: if args.eos { tok.end_ids() } else { Vec::new() },
        seed: args.seed,
    };
    model.to_device(super::device::resolve(args.device)?)?;
    let ids = if args.no_kv_cache {
        generate(&model, &prompt, args.max_new_tokens, ctx, &sampling)?
    } else {
        generate_cached(&model, &prompt, args.max_new_tokens, ctx, &sampling)?
    };
    println!("{}", tok.decode(&ids)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: ModelSource,
    /// The text to score (or --file).
    #[arg(long, conflicts_with = "file")]
    text: Option<String>,
    #[arg(long)]
    file: Option<PathBuf>,
    /// One JSON object: loss, perplexity, tokens, next_top5.
    #[arg(long)]
    json: bool,
    /// Where the model runs: cpu, cuda, or auto.
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
}

pub fn run_eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let text = match (&args.text, &args.file) {
        (Some(t), None) => t.clone(),
        (None, Some(p)) => read_text(p)?,
        _ => bail!("give the text with --text or --file"),
    };
    let (loaded, _, tok) = args.source.load_all()?;
    if loaded.cfg.num_classes.is_some() {
        bail!(
            "this checkpoint is a classifier (no language-model head): use `scratchgpt classify`"
        );
    }
    let model = &loaded;
    let ids: Vec<i64> = tok
        .encode_for_model(&text)?
        .into_iter()
        .map(i64::from)
        .collect();
    if ids.len() < 2 {
        bail!(
            "the text is {} token(s); the loss needs at least 2",
            ids.len()
        );
    }
    let ctx_len = model.cfg.context_length;
    let eval = ForwardCtx::eval();
    model.to_device(super::device::resolve(args.device)?)?;
    // Every next-token prediction once, in windows of at most the context length.
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut start = 0;
    while start + 1 < ids.len() {
        let end = (start + ctx_len).min(ids.len() - 1);
        let n = end - start;
        let inputs = Ids::new(ids[start..end].to_vec(), &[1, n])?;
        let targets = Ids::new(ids[start + 1..end + 1].to_vec(), &[1, n])?;
        let loss =
            no_grad(|| model.forward(&inputs, &eval)?.cross_entropy(&targets))?.item()? as f64;
        total += loss * n as f64;
        count += n;
        start = end;
    }
    let loss = total / count as f64;
    // top-5 next tokens after the whole text
    let tail = &ids[ids.len().saturating_sub(ctx_len)..];
    let last = {
        let logits = no_grad(|| model.forward(&Ids::new(tail.to_vec(), &[1, tail.len()])?, &eval))?;
        logits
            .select(1, tail.len() - 1)?
            .reshape(&[model.cfg.vocab_size])?
            .to_vec()?
    };
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]).then(a.cmp(&b)));
    let top5: Vec<(u32, String, f32)> = order[..5.min(order.len())]
        .iter()
        .map(|&i| Ok((i as u32, tok.decode(&[i as u32])?, last[i])))
        .collect::<scratchgpt::Result<_>>()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let j = serde_json::json!({
            "loss": loss, "perplexity": loss.exp(), "tokens": ids.len(),
            "next_top5": top5.iter().map(|(id, t, l)| serde_json::json!({"id": id, "text": t, "logit": l})).collect::<Vec<_>>(),
        });
        writeln!(out, "{j}")?;
    } else {
        writeln!(
            out,
            "loss {loss:.4}, perplexity {:.2}, {} tokens",
            loss.exp(),
            ids.len()
        )?;
        writeln!(out, "next token, top 5:")?;
        for (id, t, l) in &top5 {
            writeln!(out, "  {id:>6}  {t:?}  logit {l:.3}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
