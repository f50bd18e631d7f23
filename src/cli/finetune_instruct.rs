//! `scratchgpt finetune instruct`: the book's chapter 7 run — split the 1,100 instruction
//! entries 935/110/55, train with the book's collate function, answer the test set, write
//! `instruction-data-with-response.json`, score the answers offline (exact match, token F1) and,
//! given `--judge-url`, with an Ollama-compatible judge as the book does. A Llama 3 or Qwen model
//! trains on its own tokenizer and chat template (see `finetune::instruct_format`); the run
//! folder keeps that tokenizer in `tokenizer/`, and the checkpoint names the template.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use scratchgpt::data::chat_template::ChatTemplate;
use scratchgpt::data::manifest::{TokenizerRef, TOKENIZER_DIR};
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::evaluate::{judge_score, offline_scores};
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::{
    respond, train_instructions_from, InstructData, InstructTrainOptions, InstructionDataset,
};
use scratchgpt::finetune::instruction_data::{
    parse_instruction_json, read_instruction_json, split_instructions,
};
use scratchgpt::train::checkpoint::{save_task_checkpoint, RunInfo, Task};
use scratchgpt::train::{engine_for, TrainEvent, TrainState};
use serde_json::json;

use super::finetune::{
    data_bytes, data_identity, load_start_with_task, out_dir, peak_rss_gib, progress,
    report_interrupted, save_adapters_and_merge, save_resumable, say, step_done, BookOptimizer,
    FinetuneArgs, ResumableRun,
};
use super::interrupt::StopSignal;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: FinetuneArgs,
    /// A JSON list of {instruction, input, output} (default: the bundled
    /// data/instruction-data.json).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
    /// Truncate collated batches to this many tokens (the book: 1024; at most the context).
    #[arg(long, default_value_t = 1024)]
    allowed_max_length: usize,
    /// Exercise 7.2: mask the prompt's targets so only responses are learned.
    #[arg(long)]
    mask_instructions: bool,
    /// How each entry is put to the model: alpaca (the book's), llama3, llama3.1, qwen or qwen3
    /// (the instruction, then the input after a blank line, as the user's turn; the response
    /// ends with the turn's end token). Default: the template of the model's vocabulary — a
    /// Llama 3 or Qwen model's own chat template — else alpaca.
    #[arg(long)]
    template: Option<String>,
    /// Longest generated response.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Answer only the first N test entries (default: all).
    #[arg(long)]
    test_limit: Option<usize>,
    /// A model server (e.g. http://localhost:11434 for Ollama) to score the responses 0–100, as
    /// the book does with Llama 3.
    #[arg(long)]
    judge_url: Option<String>,
    #[command(flatten)]
    judge: super::model_server::ServerArgs,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    a.common.apply_precision()?;
    const BUNDLED: &str = include_str!("../../data/instruction-data.json");
    let data = match &a.data {
        Some(p) => read_instruction_json(p)?,
        None => parse_instruction_json(BUNDLED, "data/instruction-data.json")?,
    };
    let book = BookOptimizer::SUPERVISED;
    let record = a.common.run_record(
        "instruct",
        &book,
        data_identity(&data_bytes(&a.data, BUNDLED)?, data.len()),
        json!({"eval-freq": a.eval_freq, "allowed-max-length": a.allowed_max_length,
               "mask-instructions": a.mask_instructions}),
    );
    // Checked before any weights load; the template itself is recorded in the checkpoints' task.
    let asked = a
        .template
        .as_deref()
        .map(ChatTemplate::from_name)
        .transpose()?;
    if asked == Some(ChatTemplate::Plain) {
        bail!("--template plain does not mark where a response begins: use alpaca or the model's chat template");
    }
    let resumed = a.common.load_resume(&record)?;
    let (train_entries, test_entries, val_entries) = split_instructions(&data)?;
    let (mut model, source, mut optimizer, mut state, tok, tokenizer_ref, resumed_task) =
        match resumed {
            Some(r) => {
                if !r.task.is_instruct() {
                    bail!("the checkpoint to resume holds a {:?} model", r.task);
                }
                let path = a
                    .common
                    .resume
                    .as_deref()
                    .expect("a resumed run has a path");
                let tok = super::train::checkpoint_tokenizer(&r.tokenizer, path)?;
                (
                    r.model,
                    r.source,
                    r.optimizer,
                    r.state,
                    tok,
                    r.tokenizer,
                    Some(r.task),
                )
            }
            None => {
                let start = load_start_with_task(&a.common, None)?;
                let mut model = start.model;
                if model.cfg.num_classes.is_some() {
                    bail!("instruction fine-tuning needs a language-model head, not a classifier");
                }
                if let Some(rank) = a.common.lora.lora_rank {
                    model.add_lora(rank, a.common.lora.lora_alpha, a.common.seed)?;
                }
                let opt = a.common.optimizer(&model, &book);
                (
                    model,
                    start.source,
                    opt,
                    TrainState::default(),
                    start.tokenizer,
                    start.tokenizer_ref,
                    None,
                )
            }
        };
    // A resumed run continues in its own template; a fresh one takes the vocabulary's.
    let trained_in = match resumed_task {
        Some(Task::Instruct { template }) => Some(template),
        _ => None,
    };
    let template = match (asked, trained_in) {
        (Some(asked), Some(was)) if asked != was => bail!(
            "the checkpoint to resume was trained with --template {}, this run asks for {}: resume with the run's own settings",
            was.name(),
            asked.name()
        ),
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => ChatTemplate::for_tokenizer(&tok).unwrap_or(ChatTemplate::Alpaca),
    };
    let format = InstructFormat::new(template, &tok)?;
    let task = Task::Instruct { template };
    if tok.vocab_size() > model.cfg.vocab_size {
        bail!(
            "the tokenizer has {} ids, the model only {}",
            tok.vocab_size(),
            model.cfg.vocab_size
        );
    }
    let tok: &BpeTokenizer = &tok;
    let train = InstructionDataset::new(&train_entries, tok, &format)?;
    let val = InstructionDataset::new(&val_entries, tok, &format)?;
    let n_trainable = model.num_trainable_parameters();
    println!(
        "from {source}: {} parameters, {n_trainable} trainable{}",
        model.num_parameters(),
        a.common.lora.lora_rank.map_or(String::new(), |r| format!(
            " (LoRA rank {r}, alpha {})",
            a.common.lora.lora_alpha
        ))
    );
    println!(
        "data: {} entries → {} train / {} test / {} validation; {} template",
        data.len(),
        train.len(),
        test_entries.len(),
        val.len(),
        template.name()
    );
    let dir = out_dir(&a.common, "instruct")?;
    if tokenizer_ref == TokenizerRef::Folder {
        // The run's checkpoints are read back with this vocabulary: it travels with them.
        tok.save(dir.join(TOKENIZER_DIR))?;
    }
    let opts = InstructTrainOptions {
        num_epochs: a.epochs,
        batch_size: a.common.batch_size,
        eval_freq: a.eval_freq,
        eval_iter: a.common.eval_iter,
        lr: a.common.lr(&book),
        seed: a.common.seed,
        max_steps: a.common.max_steps,
        allowed_max_length: a.allowed_max_length,
        mask_instructions: a.mask_instructions,
        start_ids: format.prompt(tok, &val_entries[0])?,
        sample_tokens: 35,
    };
    let weights_info = RunInfo {
        tokenizer: tokenizer_ref,
        ..a.common.run_info()
    };
    let info = RunInfo {
        finetune: Some(record),
        ..weights_info.clone()
    };
    let signal = StopSignal::install()?;
    let control = a.common.run_control(&dir, &info, &signal)?;
    let total = a.common.total_steps(a.epochs, train.len());
    let bar = progress(total);
    if state.global_step > 0 {
        say(&bar, format!("resuming at step {}", state.global_step));
        bar.set_position(state.global_step.min(total) as u64);
    }
    let started = Instant::now();
    let examples_before = state.examples_seen;
    let end = {
        let device = a.common.device()?;
        let mut engine = engine_for(device, &model, &mut optimizer)?;
        let data = InstructData {
            train: &train,
            val: &val,
            tok,
            format: &format,
        };
        train_instructions_from(
            engine.as_mut(),
            &model,
            data,
            &opts,
            &control,
            &mut state,
            |e| {
                if let TrainEvent::Step {
                    epoch,
                    loss,
                    step_secs,
                    ..
                } = e
                {
                    step_done(&bar, *epoch, *loss, *step_secs);
                }
                if let TrainEvent::Saved { path, .. } = e {
                    say(&bar, format!("saved {}", path.display()));
                }
                if let Some(line) = e.book_line() {
                    say(&bar, line);
                }
            },
        )?
    };
    bar.finish_and_clear();
    let resumable = ResumableRun {
        model: &model,
        optimizer: &optimizer,
        info: &info,
        task: &task,
        reference: None,
    };
    let saved = save_resumable(&dir, resumable, &state)?;
    if let Some(code) = report_interrupted(end, &state, saved.as_deref(), &signal)? {
        return Ok(code);
    }
    let examples = state.examples_seen - examples_before;
    println!(
        "Training completed in {:.2} minutes: {} steps, {} examples in this run ({:.2} examples/s, {:.0} tokens/s in training steps); peak RSS {}",
        started.elapsed().as_secs_f64() / 60.0,
        state.global_step,
        examples,
        examples as f64 / state.train_secs.max(1e-9),
        state.session_tokens as f64 / state.train_secs.max(1e-9),
        peak_rss_gib().map_or("unknown".into(), |g| format!("{g:.2} GiB"))
    );
    save_adapters_and_merge(&dir, &mut model)?;
    let ck = dir.join("instruct.safetensors");
    save_task_checkpoint(
        &ck,
        &model,
        None,
        &TrainState::default(),
        &weights_info,
        &task,
    )?;
    println!(
        "checkpoint: {} (chat uses the {} template with it)",
        ck.display(),
        template.name()
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
        let response = respond(&model, tok, &format, e, a.max_new_tokens)?;
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
            tok.decode(&format.prompt(tok, e)?)?,
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
        let server = a.judge.connect(url)?;
        let mut scores = Vec::new();
        for (i, (e, (r, _))) in test_entries.iter().zip(&pairs).enumerate() {
            // As the book: a reply that is not a score is reported and skipped.
            match judge_score(&server, e, r) {
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
