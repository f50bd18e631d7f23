//! `scratchgpt finetune dpo`: the book's chapter 7 bonus — preference tuning with DPO. Splits the
//! 1,100 preference pairs 935/110/55, trains the policy against a frozen reference (a copy of the
//! starting weights, or with LoRA the same base with its adapters off), prints the book's lines,
//! plots the reward margins, shows a few validation responses before and after, and writes a
//! checkpoint `chat` uses with the Alpaca template.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::dpo_train::{
    reference_model, train_dpo_from, DpoData, DpoEvent, DpoModels, DpoRun, DpoTrainOptions,
    PreferenceDataset,
};
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::respond;
use scratchgpt::finetune::instruction_data::format_input;
use scratchgpt::finetune::preference_data::{
    parse_preference_json, read_preference_json, split_preferences,
};
use scratchgpt::train::checkpoint::{save_task_checkpoint, RunInfo, Task};
use scratchgpt::train::plot::plot_metric;
use scratchgpt::train::TrainState;
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
    /// A JSON list of {instruction, input, output, chosen, rejected} (default: the bundled
    /// data/instruction-data-with-preference.json).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
    /// DPO's β: how far the policy may move from the reference (the book: 0.1).
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Truncate collated batches to this many tokens (the book: 1024; at most the context).
    #[arg(long, default_value_t = 1024)]
    allowed_max_length: usize,
    /// Validation entries whose responses are shown before and after training.
    #[arg(long, default_value_t = 3)]
    show: usize,
    /// Longest generated response.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    a.common.apply_precision()?;
    const BUNDLED: &str = include_str!("../../data/instruction-data-with-preference.json");
    let data = match &a.data {
        Some(p) => read_preference_json(p)?,
        None => parse_preference_json(BUNDLED, "data/instruction-data-with-preference.json")?,
    };
    let book = BookOptimizer::DPO;
    let record = a.common.run_record(
        "dpo",
        &book,
        data_identity(&data_bytes(&a.data, BUNDLED)?, data.len()),
        json!({"eval-freq": a.eval_freq, "beta": a.beta,
               "allowed-max-length": a.allowed_max_length}),
    );
    let resumed = a.common.load_resume(&record)?;
    let (train_entries, test_entries, val_entries) = split_preferences(&data)?;
    let device = a.common.device()?;
    let (model, source, reference, mut optimizer, mut state) = match resumed {
        Some(run) => {
            let model = run.model;
            model.to_device(device)?;
            let reference = match run.reference {
                Some(r) => {
                    r.to_device(device)?;
                    r
                }
                None if model.has_lora() => reference_model(&model)?,
                None => anyhow::bail!(
                    "the {} holds no reference model to resume DPO against",
                    run.source
                ),
            };
            let mut opt = run.optimizer;
            opt.follow_params()?;
            (model, run.source, reference, opt, run.state)
        }
        None => {
            let start = load_start_with_task(&a.common, Some("dpo"))?;
            let (mut model, source, task) = (start.model, start.source, start.task);
            if model.cfg.num_classes.is_some() {
                anyhow::bail!("DPO needs a language-model head, not a classifier");
            }
            if task != Task::INSTRUCT_ALPACA {
                eprintln!(
                    "warning: {source} is not instruction-tuned; DPO refines a model that already answers Alpaca prompts (run `finetune instruct` first, as the book does)"
                );
            }
            if let Some(rank) = a.common.lora.lora_rank {
                model.add_lora(rank, a.common.lora.lora_alpha, a.common.seed)?;
            }
            model.to_device(device)?;
            let reference = reference_model(&model)?;
            let mut opt = a.common.optimizer(&model, &book);
            opt.follow_params()?;
            (model, source, reference, opt, TrainState::default())
        }
    };
    let tok = BpeTokenizer::gpt2();
    // DPO reads the book's Alpaca prompts on GPT-2's vocabulary.
    let book_format = InstructFormat::book();
    let train = PreferenceDataset::new(&train_entries, tok)?;
    let val = PreferenceDataset::new(&val_entries, tok)?;
    println!(
        "from {source}: {} parameters, {} trainable{}",
        model.num_parameters(),
        model.num_trainable_parameters(),
        a.common.lora.lora_rank.map_or(String::new(), |r| format!(
            " (LoRA rank {r}, alpha {}; the reference is the base without adapters)",
            a.common.lora.lora_alpha
        ))
    );
    println!(
        "data: {} pairs → {} train / {} test / {} validation; β {}",
        data.len(),
        train.len(),
        test_entries.len(),
        val.len(),
        a.beta
    );
    let dir = out_dir(&a.common, "dpo")?;
    let info = RunInfo {
        finetune: Some(record),
        ..a.common.run_info()
    };
    let signal = StopSignal::install()?;
    let control = a.common.run_control(&dir, &info, &signal)?;
    let shown = &val_entries[..a.show.min(val_entries.len())];
    let before = shown
        .iter()
        .map(|e| respond(&reference, tok, &book_format, &e.entry, a.max_new_tokens))
        .collect::<scratchgpt::Result<Vec<_>>>()?;
    let opts = DpoTrainOptions {
        num_epochs: a.epochs,
        batch_size: a.common.batch_size,
        eval_freq: a.eval_freq,
        eval_iter: a.common.eval_iter,
        lr: a.common.lr(&book),
        beta: a.beta,
        seed: a.common.seed,
        max_steps: a.common.max_steps,
        allowed_max_length: a.allowed_max_length,
        sample_entry: val_entries.first().map(|e| e.entry.clone()),
        sample_tokens: 35,
    };
    let total = a.common.total_steps(a.epochs, train.len());
    let bar = progress(total);
    if state.global_step > 0 {
        say(&bar, format!("resuming at step {}", state.global_step));
        bar.set_position(state.global_step.min(total) as u64);
    }
    let started = Instant::now();
    let examples_before = state.examples_seen;
    let models = DpoModels {
        policy: &model,
        reference: &reference,
    };
    let data = DpoData {
        train: &train,
        val: &val,
        tok,
    };
    let end = train_dpo_from(
        models,
        &mut optimizer,
        data,
        &opts,
        &control,
        &mut state,
        |e| {
            if let DpoEvent::Step {
                epoch,
                loss,
                step_secs,
                ..
            } = e
            {
                step_done(&bar, *epoch, *loss, *step_secs);
            }
            if let DpoEvent::Saved { path, .. } = e {
                say(&bar, format!("saved {}", path.display()));
            }
            if let Some(line) = e.book_line() {
                say(&bar, line);
            }
        },
    )?;
    bar.finish_and_clear();
    let resumable = ResumableRun {
        model: &model,
        optimizer: &optimizer,
        info: &info,
        task: &Task::INSTRUCT_ALPACA,
        reference: Some(&reference),
    };
    let saved = save_resumable(&dir, resumable, &state)?;
    if let Some(code) = report_interrupted(end, &state, saved.as_deref(), &signal)? {
        return Ok(code);
    }
    let examples = state.examples_seen - examples_before;
    println!(
        "Training completed in {:.2} minutes: {} steps, {} pairs in this run ({:.2} pairs/s in training steps); peak RSS {}",
        started.elapsed().as_secs_f64() / 60.0,
        state.global_step,
        examples,
        examples as f64 / state.train_secs.max(1e-9),
        peak_rss_gib().map_or("unknown".into(), |g| format!("{g:.2} GiB"))
    );
    let run = DpoRun::from_state(&state);
    if let (Some(first), Some(last)) = (run.evals.first(), run.evals.last()) {
        println!(
            "validation reward margin: {:.3} at step {} → {:.3} at step {}",
            first.val.margin(),
            first.step,
            last.val.margin(),
            last.step
        );
        let tokens: Vec<usize> = run.evals.iter().map(|e| e.tokens_seen).collect();
        let train_m: Vec<f64> = run.evals.iter().map(|e| e.train.margin()).collect();
        let val_m: Vec<f64> = run.evals.iter().map(|e| e.val.margin()).collect();
        let plot = dir.join("reward-margins.png");
        // The epochs actually covered (a --max-steps run stops early).
        let per_epoch = (train.len() / a.common.batch_size.max(1)).max(1);
        let epochs = (run.steps as f64 / per_epoch as f64).min(a.epochs as f64);
        plot_metric(&plot, epochs, &tokens, &train_m, &val_m, "reward margins")?;
        println!("plot: {}", plot.display());
    }
    for (e, before) in shown.iter().zip(&before) {
        let after = respond(&model, tok, &book_format, &e.entry, a.max_new_tokens)?;
        println!(
            "\n{}\n\nCorrect response:\n>> {}\n\nReference model response:\n>> {before}\n\nPolicy model response:\n>> {after}\n{}",
            format_input(&e.entry),
            e.entry.output,
            "-".repeat(40)
        );
    }
    let mut model = model;
    save_adapters_and_merge(&dir, &mut model)?;
    let ck = dir.join("dpo.safetensors");
    save_task_checkpoint(
        &ck,
        &model,
        None,
        &TrainState::default(),
        &a.common.run_info(),
        &Task::INSTRUCT_ALPACA,
    )?;
    println!(
        "checkpoint: {} (chat uses the Alpaca template with it)",
        ck.display()
    );
    Ok(ExitCode::SUCCESS)
}
