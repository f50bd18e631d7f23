//! `scratchgpt finetune classify`: the book's chapter 6 run — balance and split the SMS Spam
//! Collection, put a 2-class head on a GPT, train the last block + final norm + head (or all
//! layers, or LoRA adapters) with `train_classifier_simple`, report accuracies, save a classifier
//! checkpoint that `scratchgpt classify` reads.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::classifier::{Classifier, Trainable};
use scratchgpt::finetune::classify_train::{
    accuracy, spam_task, train_classifier_from, ClassifierEvent, ClassifierTrainOptions,
};
use scratchgpt::finetune::spam_data::{
    balance_and_split, parse_spam_tsv, read_spam_tsv, SpamDataset,
};
use scratchgpt::train::checkpoint::{save_task_checkpoint, RunInfo, Task};
use scratchgpt::train::{engine_for, TrainState};
use serde_json::json;

use super::finetune::{
    data_bytes, data_identity, load_start, out_dir, peak_rss_gib, progress, report_interrupted,
    save_adapters_and_merge, save_resumable, say, BookOptimizer, FinetuneArgs, ResumableRun,
};
use super::interrupt::StopSignal;
use super::metrics_log::open_metrics;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: FinetuneArgs,
    /// `label<TAB>text` lines (default: the bundled data/SMSSpamCollection.tsv).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 50)]
    eval_freq: usize,
    /// Train the last N transformer blocks (+ final norm + head); the book: 1.
    #[arg(long, default_value_t = 1, conflicts_with = "train_all")]
    last_blocks: usize,
    /// Train every parameter (the book's ablation from random weights does).
    #[arg(long)]
    train_all: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    a.common.apply_precision()?;
    const BUNDLED: &str = include_str!("../../data/SMSSpamCollection.tsv");
    let messages = match &a.data {
        Some(p) => read_spam_tsv(p)?,
        None => parse_spam_tsv(BUNDLED, "data/SMSSpamCollection.tsv")?,
    };
    let book = BookOptimizer::SUPERVISED;
    let record = a.common.run_record(
        "classify",
        &book,
        data_identity(&data_bytes(&a.data, BUNDLED)?, messages.len()),
        json!({"eval-freq": a.eval_freq, "last-blocks": (!a.train_all).then_some(a.last_blocks),
               "train-all": a.train_all}),
    );
    let resumed = a.common.load_resume(&record)?;
    let splits = balance_and_split(&messages, a.common.seed)?;
    let tok = BpeTokenizer::gpt2();
    let trainable = if a.train_all {
        Trainable::All
    } else {
        Trainable::LastBlocks(a.last_blocks)
    };
    let (mut model, source, mut optimizer, mut state) = match resumed {
        Some(r) => {
            if !matches!(r.task, Task::Classify { .. }) {
                bail!("the checkpoint to resume holds a {:?} model", r.task);
            }
            (r.model, r.source, r.optimizer, r.state)
        }
        None => {
            let (model, source) = load_start(&a.common, "classify")?;
            let classifier = Classifier::new(model, 2, trainable, a.common.seed)?;
            let mut model = classifier.model;
            if let Some(rank) = a.common.lora.lora_rank {
                model.add_lora(rank, a.common.lora.lora_alpha, a.common.seed)?;
            }
            let opt = a.common.optimizer(&model, &book);
            (model, source, opt, TrainState::default())
        }
    };
    let ctx = model.cfg.context_length;
    let mut train = SpamDataset::new(&splits.train, tok, None).context("training split")?;
    if train.max_length > ctx {
        println!(
            "the longest training text has {} tokens; truncating to the context length {ctx}",
            train.max_length
        );
        train = SpamDataset::new(&splits.train, tok, Some(ctx))?;
    }
    let max_len = Some(train.max_length);
    let val = SpamDataset::new(&splits.validation, tok, max_len).context("validation split")?;
    let test = SpamDataset::new(&splits.test, tok, max_len).context("test split")?;

    let n_trainable = model.num_trainable_parameters();
    println!(
        "from {source}: {} parameters, {n_trainable} trainable ({}){}",
        model.num_parameters(),
        match (a.common.lora.lora_rank, trainable) {
            (Some(r), _) => format!("LoRA rank {r}, alpha {}", a.common.lora.lora_alpha),
            (None, Trainable::All) => "all layers".to_string(),
            (None, Trainable::LastBlocks(n)) => format!("last {n} block(s), final norm, head"),
        },
        if a.common.drop_rate > 0.0 {
            format!(", dropout {}", a.common.drop_rate)
        } else {
            String::new()
        }
    );
    println!(
        "data: {} messages → {} train / {} validation / {} test, padded to {} tokens",
        messages.len(),
        train.len(),
        val.len(),
        test.len(),
        train.max_length
    );

    let device = a.common.device()?;
    let dir = out_dir(&a.common, "classify")?;
    let info = RunInfo {
        finetune: Some(record),
        ..a.common.run_info()
    };
    let signal = StopSignal::install()?;
    let control = a.common.run_control(&dir, &info, &signal)?;
    let task = spam_task(train.max_length);
    // A resumed run continues the file of the run it continues.
    let mut metrics = open_metrics(&dir.join("metrics.jsonl"), &state)?;
    let examples_before = state.examples_seen;
    // The engine borrows the model; the block ends that borrow before adapters are merged.
    let (wall, accuracies) = {
        let mut engine = engine_for(device, &model, &mut optimizer)?;
        let engine = engine.as_mut();
        let opts = ClassifierTrainOptions {
            num_epochs: a.epochs,
            eval_freq: a.eval_freq,
            eval_iter: a.common.eval_iter,
            batch_size: a.common.batch_size,
            seed: a.common.seed,
            max_steps: a.common.max_steps,
            lr: a.common.lr(&book),
        };
        if state.global_step == 0 {
            // Before training, as the book's §6.6 (10 batches of each).
            let first10 = |d: &SpamDataset| -> Vec<Vec<usize>> {
                d.batch_indices(a.common.batch_size, None, false)
                    .into_iter()
                    .take(10)
                    .collect()
            };
            let initial = [
                accuracy(engine, &train, &first10(&train))?,
                accuracy(engine, &val, &first10(&val))?,
                accuracy(engine, &test, &first10(&test))?,
            ];
            println!(
                "before fine-tuning: training accuracy {:.2}%, validation {:.2}%, test {:.2}%",
                initial[0] * 100.0,
                initial[1] * 100.0,
                initial[2] * 100.0
            );
        }

        let total = a.common.total_steps(a.epochs, train.len());
        let bar = progress(total);
        if state.global_step > 0 {
            say(&bar, format!("resuming at step {}", state.global_step));
            bar.set_position(state.global_step.min(total) as u64);
        }
        let started = Instant::now();
        let end =
            train_classifier_from(engine, (&train, &val), &opts, &control, &mut state, |e| {
                match e {
                    ClassifierEvent::Step { epoch, loss, .. } => {
                        bar.inc(1);
                        bar.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
                    }
                    ClassifierEvent::Eval {
                        epoch,
                        step,
                        train_loss,
                        val_loss,
                    } => {
                        let _ = writeln!(
                            metrics,
                            "{}",
                            serde_json::json!({"epoch": epoch + 1, "step": step,
                            "train_loss": train_loss, "val_loss": val_loss})
                        );
                    }
                    ClassifierEvent::EpochAccuracy {
                        epoch,
                        train_accuracy,
                        val_accuracy,
                    } => {
                        let _ = writeln!(
                            metrics,
                            "{}",
                            serde_json::json!({"epoch": epoch + 1, "train_accuracy": train_accuracy,
                            "val_accuracy": val_accuracy})
                        );
                    }
                    ClassifierEvent::Saved { path, .. } => {
                        say(&bar, format!("saved {}", path.display()));
                    }
                }
                if let Some(line) = e.book_line() {
                    say(&bar, line);
                }
            })?;
        bar.finish_and_clear();
        let wall = started.elapsed().as_secs_f64();
        // The loop left the weights and moments on the host: save before measuring the full
        // sets, which a Ctrl-C may then end at once.
        let resumable = ResumableRun {
            model: engine.model(),
            optimizer: engine.optimizer(),
            info: &info,
            task: &task,
            reference: None,
        };
        let saved = save_resumable(&dir, resumable, &state)?;
        if let Some(code) = report_interrupted(end, &state, saved.as_deref(), &signal)? {
            return Ok(code);
        }
        let all = |d: &SpamDataset| d.batch_indices(a.common.batch_size, None, false);
        let accuracies = [
            accuracy(engine, &train, &all(&train))?,
            accuracy(engine, &val, &all(&val))?,
            accuracy(engine, &test, &all(&test))?,
        ];
        (wall, accuracies)
    };
    let [tr, va, te] = accuracies;
    println!("Training accuracy: {:.2}%", tr * 100.0);
    println!("Validation accuracy: {:.2}%", va * 100.0);
    println!("Test accuracy: {:.2}%", te * 100.0);
    let examples = state.examples_seen - examples_before;
    println!(
        "{} steps, {} examples in this run in {:.1} s ({:.1} s in training steps: {:.2} examples/s); peak RSS {}",
        state.global_step,
        examples,
        wall,
        state.train_secs,
        examples as f64 / state.train_secs.max(1e-9),
        peak_rss_gib().map_or("unknown".into(), |g| format!("{g:.2} GiB"))
    );
    let _ = writeln!(
        metrics,
        "{}",
        serde_json::json!({"final": {"train_accuracy": tr, "val_accuracy": va, "test_accuracy": te,
            "examples_per_s": examples as f64 / state.train_secs.max(1e-9),
            "steps": state.global_step, "train_secs": state.train_secs}})
    );
    save_adapters_and_merge(&dir, &mut model)?;
    let path = dir.join("classifier.safetensors");
    save_task_checkpoint(
        &path,
        &model,
        None,
        &TrainState::default(),
        &a.common.run_info(),
        &task,
    )?;
    println!("classifier: {}", path.display());
    if state.global_step == 0 {
        bail!("no training step was taken (check --max-steps and the data size)");
    }
    Ok(ExitCode::SUCCESS)
}
