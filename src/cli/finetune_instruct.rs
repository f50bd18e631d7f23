//! `scratchgpt finetune instruct`: the book's chapter 7 run — split the 1,100 instruction
//! entries 935/110/55, train with the book's collate function, answer the test set, write
//! `instruction-data-with-response.json`, score the answers offline (exact match, token F1) and,
//! given `--judge-url`, with an Ollama-compatible judge as the book does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::evaluate::{judge_score, offline_scores};
use scratchgpt::finetune::instruct_train::{
    respond, train_instructions, InstructTrainOptions, InstructionDataset,
};
use scratchgpt::finetune::instruction_data::{
    format_input, parse_instruction_json, read_instruction_json, split_instructions,
};
use scratchgpt::finetune::lora::save_lora_adapters;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::checkpoint::{save_task_checkpoint, Task};
use scratchgpt::train::{CpuEngine, GpuEngine, StepEngine, TrainEvent, TrainState};

use super::finetune::{load_start, out_dir, peak_rss_gib, progress, say, LoraArgs, StartFrom};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    from: StartFrom,
    /// Preset of a `--random-init` model.
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// Context length of a `--random-init` model (default: the preset's).
    #[arg(long)]
    context_length: Option<usize>,
    /// A JSON list of {instruction, input, output} (default: the bundled
    /// data/instruction-data.json).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
    #[arg(long, default_value_t = 5)]
    eval_iter: usize,
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    #[arg(long, default_value_t = 123)]
    seed: u64,
    #[arg(long)]
    max_steps: Option<usize>,
    /// Truncate collated batches to this many tokens (the book: 1024; at most the context).
    #[arg(long, default_value_t = 1024)]
    allowed_max_length: usize,
    /// Exercise 7.2: mask the prompt's targets so only responses are learned.
    #[arg(long)]
    mask_instructions: bool,
    /// Longest generated response.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Answer only the first N test entries (default: all).
    #[arg(long)]
    test_limit: Option<usize>,
    #[command(flatten)]
    lora: LoraArgs,
    /// An Ollama-compatible server (e.g. http://localhost:11434) to score the responses 0–100.
    #[arg(long)]
    judge_url: Option<String>,
    /// The judge model's name on that server.
    #[arg(long, default_value = "llama3", requires = "judge_url")]
    judge_model: String,
    /// Run folder (default runs/instruct-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let data = match &a.data {
        Some(p) => read_instruction_json(p)?,
        None => parse_instruction_json(
            include_str!("../../data/instruction-data.json"),
            "data/instruction-data.json",
        )?,
    };
    let (train_entries, test_entries, val_entries) = split_instructions(&data)?;
    let (mut model, source) =
        load_start(&a.from, &a.preset, a.context_length, a.drop_rate, a.seed)?;
    if model.cfg.num_classes.is_some() {
        anyhow::bail!("instruction fine-tuning needs a language-model head, not a classifier");
    }
    if let Some(rank) = a.lora.lora_rank {
        model.add_lora(rank, a.lora.lora_alpha, a.seed)?;
    }
    let tok = BpeTokenizer::gpt2();
    let train = InstructionDataset::new(&train_entries, tok)?;
    let val = InstructionDataset::new(&val_entries, tok)?;
    let n_trainable: usize = model
        .named_parameters()
        .iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(_, p)| p.numel())
        .sum();
    println!(
        "from {source}: {} parameters, {n_trainable} trainable{}",
        model.num_parameters(),
        a.lora.lora_rank.map_or(String::new(), |r| format!(
            " (LoRA rank {r}, alpha {})",
            a.lora.lora_alpha
        ))
    );
    println!(
        "data: {} entries → {} train / {} test / {} validation",
        data.len(),
        train.len(),
        test_entries.len(),
        val.len()
    );
    let dir = out_dir(&a.out, "instruct")?;
    let opts = InstructTrainOptions {
        num_epochs: a.epochs,
        batch_size: a.batch_size,
        eval_freq: a.eval_freq,
        eval_iter: a.eval_iter,
        lr: a.lr,
        seed: a.seed,
        max_steps: a.max_steps,
        allowed_max_length: a.allowed_max_length,
        mask_instructions: a.mask_instructions,
        start_context: format_input(&val_entries[0]),
        sample_tokens: 35,
    };
    let per_epoch = train.len() / a.batch_size.max(1);
    let total = a
        .max_steps
        .map_or(a.epochs * per_epoch, |m| m.min(a.epochs * per_epoch));
    let bar = progress(total);
    let started = Instant::now();
    let run = {
        let mut optimizer = AdamW::new(
            model.named_parameters(),
            AdamWConfig {
                lr: a.lr,
                weight_decay: a.weight_decay,
                ..AdamWConfig::default()
            },
        );
        let gpu = super::device::resolve(a.device)?;
        let mut cpu_engine;
        let mut gpu_engine;
        let engine: &mut dyn StepEngine = match &gpu {
            Some(g) => {
                gpu_engine = GpuEngine::new(g, &model, &mut optimizer)?;
                &mut gpu_engine
            }
            None => {
                cpu_engine = CpuEngine::new(&model, &mut optimizer);
                &mut cpu_engine
            }
        };
        train_instructions(engine, &model, &train, &val, tok, &opts, |e| {
            if let TrainEvent::Step {
                epoch,
                loss,
                step_secs,
                ..
            } = e
            {
                bar.inc(1);
                bar.set_message(format!(
                    "epoch {} loss {loss:.3} ({step_secs:.2} s/step)",
                    epoch + 1
                ));
            }
            if let Some(line) = e.book_line() {
                say(&bar, line);
            }
        })?
    };
    bar.finish_and_clear();
    println!(
        "Training completed in {:.2} minutes: {} steps, {} examples ({:.2} examples/s, {:.0} tokens/s in training steps); peak RSS {}",
        started.elapsed().as_secs_f64() / 60.0,
        run.steps,
        run.examples_seen,
        run.examples_seen as f64 / run.train_secs.max(1e-9),
        run.tokens_seen as f64 / run.train_secs.max(1e-9),
        peak_rss_gib().map_or("unknown".into(), |g| format!("{g:.2} GiB"))
    );
    if model.has_lora() {
        let adapters = dir.join("adapters.safetensors");
        save_lora_adapters(&adapters, &model)?;
        println!("LoRA adapters: {}", adapters.display());
        model.merge_lora()?;
    }
    let ck = dir.join("instruct.safetensors");
    save_task_checkpoint(
        &ck,
        &model,
        None,
        &TrainState::default(),
        a.seed,
        &Task::Instruct,
    )?;
    println!(
        "checkpoint: {} (chat uses the Alpaca template with it)",
        ck.display()
    );

    // Answer the test set (the book's §7.7) and score the answers.
    let limit = a
        .test_limit
        .unwrap_or(test_entries.len())
        .min(test_entries.len());
    let gen_start = Instant::now();
    let mut with_responses = Vec::with_capacity(limit);
    let mut pairs = Vec::with_capacity(limit);
    let gen_bar = progress(limit);
    gen_bar.set_message("answering the test set");
    for e in &test_entries[..limit] {
        let response = respond(&model, tok, e, a.max_new_tokens)?;
        pairs.push((response.clone(), e.output.clone()));
        with_responses.push(
            serde_json::json!({"instruction": e.instruction, "input": e.input,
            "output": e.output, "model_response": response}),
        );
        gen_bar.inc(1);
    }
    gen_bar.finish_and_clear();
    let responses_path = dir.join("instruction-data-with-response.json");
    let text = serde_json::to_string_pretty(&with_responses)?;
    scratchgpt::data::text_file::write_atomic(&responses_path, text.as_bytes())
        .with_context(|| format!("writing {}", responses_path.display()))?;
    if let Some((e, (r, _))) = test_entries.iter().zip(&pairs).next() {
        println!(
            "{}\n\nCorrect response:\n>> {}\n\nModel response:\n>> {r}",
            format_input(e),
            e.output
        );
    }
    if limit > 0 {
        let (em, f1) = offline_scores(&pairs)?;
        println!(
            "test set ({limit} entries, {:.1} s to answer): exact match {:.2}%, token F1 {:.3}; responses: {}",
            gen_start.elapsed().as_secs_f64(),
            em * 100.0,
            f1,
            responses_path.display()
        );
    }
    if let Some(url) = &a.judge_url {
        let mut scores = Vec::new();
        for (i, (e, (r, _))) in test_entries.iter().zip(&pairs).enumerate() {
            // As the book: a reply that is not a score is reported and skipped.
            match judge_score(url, &a.judge_model, e, r) {
                Ok(score) => scores.push(score as f64),
                Err(err) => eprintln!("test entry {i}: no score ({err})"),
            }
        }
        println!(
            "Number of scores: {} of {}\nAverage score: {:.2}",
            scores.len(),
            pairs.len(),
            scores.iter().sum::<f64>() / scores.len().max(1) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}
