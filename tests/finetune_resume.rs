//! Fine-tuning runs never lose work: `finetune instruct`, `classify` and `dpo` continue exactly
//! from a checkpoint — whichever way the run ended (max steps, the stop flag that Ctrl-C raises,
//! a crash after a periodic checkpoint, all epochs done and more asked for) — with dropout on, the
//! weights, the AdamW moments and every recorded metric equal to an uninterrupted run's, bit for
//! bit. LoRA adapters stay unmerged in the checkpoint, frozen layers stay frozen, DPO's reference
//! is restored (or, under LoRA, is the policy's own base again). And from the command line: a
//! resume that would not be exact (other command, data or settings) is refused; SIGINT and
//! SIGTERM exit with 130 and 143 after saving, and the printed command continues the run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::classifier::{Classifier, Trainable};
use scratchgpt::finetune::classify_train::{
    spam_task, train_classifier_from, ClassifierEvent, ClassifierRun, ClassifierTrainOptions,
};
use scratchgpt::finetune::dpo_train::{
    reference_model, train_dpo_from, DpoData, DpoEvent, DpoModels, DpoRun, DpoTrainOptions,
    PreferenceDataset,
};
use scratchgpt::finetune::epochs::RunControl;
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::{
    train_instructions_from, InstructData, InstructTrainOptions, InstructionDataset,
};
use scratchgpt::finetune::instruction_data::{parse_instruction_json, InstructionEntry};
use scratchgpt::finetune::preference_data::parse_preference_json;
use scratchgpt::finetune::spam_data::{balance_and_split, parse_spam_tsv, SpamDataset};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::checkpoint::{
    load_checkpoint, load_resumable, save_finetune_checkpoint, RunInfo, Task,
};
use scratchgpt::train::{Engine, PeriodicSave, RunEnd, TrainEvent, TrainState};

const BIN: &str = env!("CARGO_BIN_EXE_scratchgpt");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Instruct,
    Classify,
    Dpo,
}

/// One fine-tuning setup: the command and whether it trains LoRA adapters.
#[derive(Clone, Copy, Debug)]
struct Setup {
    kind: Kind,
    lora: bool,
}

/// Where a run starts.
enum Start<'a> {
    Fresh,
    Resume(&'a Path),
}

/// How far a run goes: its epochs, a step cap, the step after which the stop flag is raised
/// (as Ctrl-C would, mid-run), and periodic checkpoints.
#[derive(Clone, Default)]
struct Until {
    epochs: usize,
    max_steps: Option<usize>,
    stop_after: Option<usize>,
    save: Option<PeriodicSave>,
}

impl Until {
    fn epochs(epochs: usize) -> Self {
        Until {
            epochs,
            ..Until::default()
        }
    }
}

/// What a run left behind.
struct Outcome {
    model: GptModel,
    optimizer: AdamW,
    state: TrainState,
    reference: Option<GptModel>,
    end: RunEnd,
}

const SEED: u64 = 7;
const BATCH: usize = 2;
const TRAIN: usize = 12; // 6 steps an epoch

fn config(classes: bool) -> GptConfig {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.context_length = if classes { 48 } else { 128 };
    cfg.qkv_bias = true;
    cfg.drop_rate = 0.1; // dropout on: its masks must follow the position too
    cfg
}

fn instruction_entries() -> Vec<InstructionEntry> {
    let all = parse_instruction_json(
        include_str!("../data/instruction-data.json"),
        "instruction-data.json",
    )
    .unwrap();
    // Short ones, so the tiny context holds them.
    all.into_iter()
        .filter(|e| e.instruction.len() + e.input.len() + e.output.len() < 120)
        .take(TRAIN + 4)
        .collect()
}

fn spam_sets(tok: &BpeTokenizer) -> (SpamDataset, SpamDataset) {
    let messages = parse_spam_tsv(include_str!("../data/SMSSpamCollection.tsv"), "spam").unwrap();
    let splits = balance_and_split(&messages[..600], SEED).unwrap();
    (
        SpamDataset::new(&splits.train[..TRAIN], tok, Some(40)).unwrap(),
        SpamDataset::new(&splits.validation[..4], tok, Some(40)).unwrap(),
    )
}

fn preference_sets(tok: &BpeTokenizer) -> (PreferenceDataset, PreferenceDataset) {
    let all = parse_preference_json(
        include_str!("../data/instruction-data-with-preference.json"),
        "prefs",
    )
    .unwrap();
    let short: Vec<_> = all
        .into_iter()
        .filter(|p| {
            let e = &p.entry;
            e.instruction.len() + e.input.len() + p.chosen.len().max(p.rejected.len()) < 150
        })
        .take(TRAIN + 4)
        .collect();
    (
        PreferenceDataset::new(&short[..TRAIN], tok).unwrap(),
        PreferenceDataset::new(&short[TRAIN..], tok).unwrap(),
    )
}

/// A fresh starting point: the model (a classifier training its last block, or a language
/// model), adapters if LoRA, and its optimizer.
fn fresh_model(setup: Setup) -> (GptModel, AdamW) {
    let base = GptModel::new(&config(setup.kind == Kind::Classify), 3).unwrap();
    let mut model = match setup.kind {
        Kind::Classify => {
            Classifier::new(base, 2, Trainable::LastBlocks(1), SEED)
                .unwrap()
                .model
        }
        _ => base,
    };
    if setup.lora {
        model.add_lora(4, 8.0, SEED).unwrap();
    }
    let opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr: 2e-3,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        },
    );
    (model, opt)
}

fn task(setup: Setup) -> Task {
    match setup.kind {
        Kind::Classify => spam_task(40),
        _ => Task::INSTRUCT_ALPACA,
    }
}

fn train(setup: Setup, start: Start<'_>, until: &Until) -> Outcome {
    let tok = BpeTokenizer::gpt2();
    let (model, mut optimizer, mut state, saved_reference) = match start {
        Start::Fresh => {
            let (m, o) = fresh_model(setup);
            (m, o, TrainState::default(), None)
        }
        Start::Resume(path) => {
            let ck = load_resumable(path).unwrap();
            (ck.model, ck.optimizer.unwrap(), ck.state, ck.reference)
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let control = RunControl {
        save: until.save.clone(),
        stop: Some(Arc::clone(&stop)),
    };
    let raise = |step: usize| {
        if until.stop_after == Some(step) {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let mut reference = None;
    let end = match setup.kind {
        Kind::Instruct => {
            let entries = instruction_entries();
            let format = InstructFormat::book();
            let train = InstructionDataset::new(&entries[..TRAIN], tok, &format).unwrap();
            let val = InstructionDataset::new(&entries[TRAIN..], tok, &format).unwrap();
            let opts = InstructTrainOptions {
                num_epochs: until.epochs,
                batch_size: BATCH,
                eval_freq: 2,
                eval_iter: 2,
                lr: 2e-3,
                seed: SEED,
                max_steps: until.max_steps,
                allowed_max_length: 128,
                mask_instructions: true,
                start_ids: tok.encode("Hi").unwrap(),
                sample_tokens: 3,
            };
            let mut engine = Engine::new(&model, &mut optimizer);
            let data = InstructData {
                train: &train,
                val: &val,
                tok,
                format: &format,
            };
            train_instructions_from(
                &mut engine,
                &model,
                data,
                &opts,
                &control,
                &mut state,
                |e| {
                    if let TrainEvent::Step { step, .. } = e {
                        raise(*step)
                    }
                },
            )
            .unwrap()
        }
        Kind::Classify => {
            let (train, val) = spam_sets(tok);
            let opts = ClassifierTrainOptions {
                num_epochs: until.epochs,
                eval_freq: 2,
                eval_iter: 2,
                batch_size: BATCH,
                seed: SEED,
                max_steps: until.max_steps,
                lr: 2e-3,
            };
            let mut engine = Engine::new(&model, &mut optimizer);
            train_classifier_from(
                &mut engine,
                (&train, &val),
                &opts,
                &control,
                &mut state,
                |e| {
                    if let ClassifierEvent::Step { step, .. } = e {
                        raise(*step)
                    }
                },
            )
            .unwrap()
        }
        Kind::Dpo => {
            let (train, val) = preference_sets(tok);
            let r = match saved_reference {
                Some(r) => r,
                None => reference_model(&model).unwrap(),
            };
            let opts = DpoTrainOptions {
                num_epochs: until.epochs,
                batch_size: BATCH,
                eval_freq: 2,
                eval_iter: 2,
                lr: 2e-3,
                beta: 0.1,
                seed: SEED,
                max_steps: until.max_steps,
                allowed_max_length: 128,
                sample_entry: None,
                sample_tokens: 0,
            };
            let models = DpoModels {
                policy: &model,
                reference: &r,
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
                    if let DpoEvent::Step { step, .. } = e {
                        raise(*step)
                    }
                },
            )
            .unwrap();
            reference = Some(r);
            end
        }
    };
    Outcome {
        model,
        optimizer,
        state,
        reference,
        end,
    }
}

fn info() -> RunInfo {
    RunInfo {
        finetune: Some(serde_json::json!({"command": "test"})),
        ..RunInfo::gpt2(SEED)
    }
}

/// Saves what a run reached, as the CLI does when a run ends.
fn save(setup: Setup, o: &Outcome, path: &Path) {
    save_finetune_checkpoint(
        path,
        &o.model,
        &o.optimizer,
        &o.state,
        &info(),
        &task(setup),
        o.reference.as_ref(),
    )
    .unwrap();
}

fn values(m: &GptModel) -> Vec<(String, Vec<f32>)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().unwrap()))
        .collect()
}

/// Bit-for-bit the same run: weights, which of them train, moments, position and metrics.
fn assert_same(a: &Outcome, b: &Outcome, what: &str) {
    assert_eq!(a.end, b.end, "{what}: how the runs ended");
    let (sa, sb) = (&a.state, &b.state);
    assert_eq!(sa.global_step, sb.global_step, "{what}: steps");
    assert_eq!(
        (sa.epoch, sa.batch_in_epoch, sa.epoch_rng_state),
        (sb.epoch, sb.batch_in_epoch, sb.epoch_rng_state),
        "{what}: position"
    );
    assert_eq!(sa.train_losses, sb.train_losses, "{what}: train losses");
    assert_eq!(sa.val_losses, sb.val_losses, "{what}: val losses");
    assert_eq!(sa.track_tokens_seen, sb.track_tokens_seen, "{what}");
    assert_eq!(sa.metrics, sb.metrics, "{what}: metrics");
    assert_eq!(
        (sa.tokens_seen, sa.examples_seen),
        (sb.tokens_seen, sb.examples_seen),
        "{what}"
    );
    assert_eq!(values(&a.model), values(&b.model), "{what}: weights");
    let trains = |m: &GptModel| -> Vec<bool> {
        m.named_parameters()
            .iter()
            .map(|(_, p)| p.requires_grad())
            .collect()
    };
    assert_eq!(trains(&a.model), trains(&b.model), "{what}: frozen set");
    assert_eq!(a.optimizer.t, b.optimizer.t, "{what}: AdamW's step count");
    assert_eq!(a.optimizer.state.len(), b.optimizer.state.len(), "{what}");
    for (x, y) in a.optimizer.state.iter().zip(&b.optimizer.state) {
        assert_eq!(x.name, y.name, "{what}");
        assert_eq!(x.m.to_vec().unwrap(), y.m.to_vec().unwrap(), "{what}: m");
        assert_eq!(x.v.to_vec().unwrap(), y.v.to_vec().unwrap(), "{what}: v");
    }
    if let (Some(ra), Some(rb)) = (&a.reference, &b.reference) {
        assert_eq!(values(ra), values(rb), "{what}: reference");
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scratchgpt-ftresume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn periodic(dir: &Path, every: usize, keep_last: Option<usize>) -> PeriodicSave {
    PeriodicSave {
        dir: dir.to_path_buf(),
        every,
        keep_last,
        info: info(),
    }
}

/// Two epochs (12 steps) straight, with periodic checkpoints every 5 steps; then the same run
/// ended early in each way and continued from its checkpoint.
fn resumes_exactly(setup: Setup) {
    let dir = temp(&format!("{:?}-{}", setup.kind, setup.lora));
    let mut straight_until = Until::epochs(2);
    straight_until.save = Some(periodic(&dir, 5, None));
    let straight = train(setup, Start::Fresh, &straight_until);
    assert_eq!(straight.end, RunEnd::Finished);
    assert_eq!(straight.state.global_step, 12);
    let ck = dir.join("end.safetensors");
    let continued = |first: &Outcome| -> Outcome {
        save(setup, first, &ck);
        train(setup, Start::Resume(&ck), &Until::epochs(2))
    };

    // Max steps, mid-epoch (step 4 of 6, between evaluations' shuffles).
    let first = train(
        setup,
        Start::Fresh,
        &Until {
            max_steps: Some(3),
            ..Until::epochs(2)
        },
    );
    assert_eq!(first.end, RunEnd::MaxSteps);
    assert_same(&straight, &continued(&first), "after --max-steps 3");

    // A crash after a periodic checkpoint: step 5's file, written during the straight run.
    let step5 = dir.join("checkpoint-step00000005.safetensors");
    let from_periodic = train(setup, Start::Resume(&step5), &Until::epochs(2));
    assert_same(&straight, &from_periodic, "from checkpoint-step00000005");

    // Ctrl-C: the flag raised during step 7 (in the second epoch); the step finishes.
    let first = train(
        setup,
        Start::Fresh,
        &Until {
            stop_after: Some(7),
            ..Until::epochs(2)
        },
    );
    assert_eq!(first.end, RunEnd::Stopped);
    assert_eq!(first.state.global_step, 8);
    assert_same(&straight, &continued(&first), "after a stop at step 8");

    // Stopped exactly at an epoch's end (the epoch-end work done, the next epoch not begun).
    let first = train(
        setup,
        Start::Fresh,
        &Until {
            stop_after: Some(5),
            ..Until::epochs(2)
        },
    );
    assert_eq!((first.state.epoch, first.state.batch_in_epoch), (1, 0));
    assert_same(
        &straight,
        &continued(&first),
        "after a stop at the epoch's end",
    );

    // All epochs done (one), then a second asked for.
    let first = train(setup, Start::Fresh, &Until::epochs(1));
    assert_eq!(first.end, RunEnd::Finished);
    assert_same(&straight, &continued(&first), "one epoch, then two");

    // Resuming a finished run trains nothing and changes nothing.
    let again = continued(&straight);
    assert_same(&straight, &again, "a finished run resumed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instruction_tuning_continues_exactly_however_the_run_ended() {
    resumes_exactly(Setup {
        kind: Kind::Instruct,
        lora: false,
    });
}

#[test]
fn instruction_tuning_with_lora_keeps_its_adapters_unmerged_and_continues_exactly() {
    let setup = Setup {
        kind: Kind::Instruct,
        lora: true,
    };
    resumes_exactly(setup);
    // The checkpoint holds the adapters with their rank and alpha, over a frozen base.
    let dir = temp("lora-file");
    let o = train(
        setup,
        Start::Fresh,
        &Until {
            max_steps: Some(2),
            ..Until::epochs(1)
        },
    );
    let path = dir.join("ck.safetensors");
    save(setup, &o, &path);
    let ck = load_resumable(&path).unwrap();
    assert_eq!(ck.model.lora_settings(), Some((4, 8.0)));
    let trainable: Vec<String> = ck
        .model
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(n, _)| n)
        .collect();
    assert!(!trainable.is_empty() && trainable.iter().all(|n| n.contains(".lora.")));
    // Loaded as a model (chat, export, the start of another run), the adapters are merged: a
    // plain GPT with the same outputs, every parameter trainable, no adapter moments.
    let plain = load_checkpoint(&path).unwrap();
    assert!(!plain.model.has_lora() && plain.optimizer.is_none());
    assert!(plain
        .model
        .named_parameters()
        .iter()
        .all(|(_, p)| p.requires_grad()));
    let ids = scratchgpt::Ids::new(vec![1, 2, 3, 4], &[1, 4]).unwrap();
    let eval = scratchgpt::nn::ForwardCtx::eval();
    let logits = |m: &GptModel| m.forward(&ids, &eval).unwrap().to_vec().unwrap();
    let (a, b) = (logits(&ck.model), logits(&plain.model));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "merged vs adapters: {worst}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn classification_continues_exactly_with_its_frozen_layers_and_accuracies() {
    let setup = Setup {
        kind: Kind::Classify,
        lora: false,
    };
    resumes_exactly(setup);
    let o = train(setup, Start::Fresh, &Until::epochs(2));
    let run = ClassifierRun::from_state(&o.state);
    assert_eq!((run.train_accs.len(), run.val_accs.len()), (2, 2));
    assert_eq!(run.steps, 12);
}

#[test]
fn dpo_continues_exactly_with_its_reference_restored() {
    let setup = Setup {
        kind: Kind::Dpo,
        lora: false,
    };
    resumes_exactly(setup);
    let dir = temp("dpo-file");
    let o = train(
        setup,
        Start::Fresh,
        &Until {
            max_steps: Some(2),
            ..Until::epochs(1)
        },
    );
    // The policy moved; the reference saved beside it did not.
    let path = dir.join("ck.safetensors");
    save(setup, &o, &path);
    let ck = load_checkpoint(&path).unwrap();
    let reference = ck.reference.expect("a reference in the file");
    let (start, _) = fresh_model(setup);
    assert_eq!(values(&reference), values(&start));
    assert_ne!(values(&ck.model), values(&start));
    assert!(reference
        .named_parameters()
        .iter()
        .all(|(_, p)| !p.requires_grad()));
    let run = DpoRun::from_state(&o.state);
    assert_eq!(run.evals.len(), 1);
    assert_eq!(run.evals[0].step, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dpo_with_lora_saves_no_second_reference_and_continues_exactly() {
    let setup = Setup {
        kind: Kind::Dpo,
        lora: true,
    };
    resumes_exactly(setup);
    let dir = temp("dpo-lora-file");
    let o = train(
        setup,
        Start::Fresh,
        &Until {
            max_steps: Some(1),
            ..Until::epochs(1)
        },
    );
    let path = dir.join("ck.safetensors");
    save(setup, &o, &path);
    assert!(load_checkpoint(&path).unwrap().reference.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keep_last_prunes_periodic_checkpoints() {
    let setup = Setup {
        kind: Kind::Instruct,
        lora: false,
    };
    let dir = temp("keep");
    let until = Until {
        save: Some(periodic(&dir, 2, Some(2))),
        max_steps: Some(7),
        ..Until::epochs(2)
    };
    train(setup, Start::Fresh, &until);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "checkpoint-step00000004.safetensors",
            "checkpoint-step00000006.safetensors"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- The command line ----

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(o: std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A tiny instruction-tuning run from random weights (data: the first 40 bundled entries).
fn instruct_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "finetune",
        "instruct",
        "--random-init",
        "--preset",
        "tiny",
        "--context-length",
        "32",
        "--allowed-max-length",
        "32",
        "--drop-rate",
        "0.1",
        "--batch-size",
        "4",
        "--eval-iter",
        "1",
        "--eval-freq",
        "1",
        "--test-limit",
        "1",
        "--max-new-tokens",
        "3",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.extend(["--data".into(), s(data), "--out".into(), s(out)]);
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn small_instruction_file(dir: &Path) -> PathBuf {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../data/instruction-data.json")).unwrap();
    let path = dir.join("data.json");
    std::fs::write(&path, serde_json::to_string(&all[..60]).unwrap()).unwrap();
    path
}

fn final_weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    values(&load_checkpoint(path).unwrap().model)
}

#[test]
fn cli_resume_continues_exactly_and_refuses_what_would_not() {
    let dir = temp("cli");
    let data = small_instruction_file(&dir);
    let refs = |v: &[String]| -> Vec<String> { v.to_vec() };
    let args = |out: &Path, extra: &[&str]| refs(&instruct_args(&data, out, extra));
    let go = |v: Vec<String>| run(&v.iter().map(String::as_str).collect::<Vec<_>>());

    // 60 entries → 51 train → 12 steps an epoch; 8 steps straight vs 3 + 5.
    let straight = dir.join("straight");
    ok(go(args(&straight, &["--max-steps", "8"])));
    let part = dir.join("part");
    let out = ok(go(args(&part, &["--max-steps", "3", "--save-every", "2"])));
    assert!(out.contains("checkpoint: "), "{out}");
    let ck = part.join("checkpoint.safetensors");
    assert!(ck.is_file() && part.join("checkpoint-step00000002.safetensors").is_file());
    let out = ok(go(args(&part, &["--max-steps", "8", "--resume", &s(&ck)])));
    assert!(out.contains("resuming at step 3"), "{out}");
    assert!(
        !out.contains("Step 000002)"),
        "done steps are not redone: {out}"
    );
    assert!(out.contains("Ep 1 (Step 000007)"), "{out}");
    assert_eq!(
        final_weights(&straight.join("instruct.safetensors")),
        final_weights(&part.join("instruct.safetensors"))
    );

    // What would not continue exactly is refused, naming why.
    let err = |o: std::process::Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let changed = |flag: &str, value: &str| {
        let mut v = args(&part, &["--resume", &s(&ck)]);
        let i = v.iter().position(|a| a == flag).unwrap();
        v[i + 1] = value.into();
        go(v)
    };
    let e = err(changed("--batch-size", "2"));
    assert!(e.contains("--batch-size 4"), "{e}");
    let e = err(changed("--drop-rate", "0.0"));
    assert!(e.contains("--drop-rate"), "{e}");
    let e = err(changed("--data", "data/instruction-data.json"));
    assert!(e.contains("other data"), "{e}");
    let e = err(run(&[
        "finetune",
        "classify",
        "--resume",
        &s(&ck),
        "--out",
        &s(&part),
    ]));
    assert!(e.contains("finetune instruct"), "{e}");
    let e = err(run(&["train", "--resume", &s(&ck)]));
    assert!(e.contains("finetune instruct --resume"), "{e}");
    let e = err(run(&["finetune", "dpo", "--out", &s(&part)]));
    assert!(e.contains("--random-init"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_saves_exits_with_128_plus_the_signal_and_the_printed_command_continues() {
    let dir = temp("sig");
    let data = small_instruction_file(&dir);
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let out = dir.join(format!("run{signal}"));
        let args = instruct_args(&data, &out, &["--epochs", "50"]);
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let go = line.starts_with("Ep 1 (Step 000003)");
            seen.push(line);
            if go {
                break;
            }
        }
        // SAFETY: sends a signal to our own child process, whose id we hold and have not
        // waited on.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        seen.extend(lines.map(|l| l.unwrap()));
        let status = child.wait().unwrap();
        let text = seen.join("\n");
        assert_eq!(status.code(), Some(code), "{text}");
        let ck = out.join("checkpoint.safetensors");
        let stopped_at = load_checkpoint(&ck).unwrap().state.global_step;
        assert!(stopped_at >= 4, "{stopped_at}");
        assert!(
            !out.join("instruct.safetensors").exists(),
            "an interrupted run writes no final model"
        );
        // The printed command, run as printed (it keeps --random-init: ignored on a resume),
        // with a step cap, equals a straight run to the same step.
        let printed = text
            .lines()
            .skip_while(|l| !l.contains("continue exactly with"))
            .nth(1)
            .expect("a resume command")
            .trim()
            .to_string();
        let mut words: Vec<String> = printed.split(' ').skip(1).map(String::from).collect();
        assert!(words.contains(&"--resume".to_string()), "{printed}");
        let target = (stopped_at + 2).to_string();
        words.extend(["--max-steps".to_string(), target.clone()]);
        ok(run(&words.iter().map(String::as_str).collect::<Vec<_>>()));
        let straight = dir.join(format!("straight{signal}"));
        let v = instruct_args(
            &data,
            &straight,
            &["--epochs", "50", "--max-steps", &target],
        );
        ok(run(&v.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(
            final_weights(&straight.join("instruct.safetensors")),
            final_weights(&out.join("instruct.safetensors"))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `finetune classify` and `finetune dpo` (LoRA) from the command line: 3 steps straight equal
/// 1 step, then a resume from the periodic checkpoint to 3.
#[test]
fn cli_classify_and_dpo_with_lora_resume_exactly() {
    let dir = temp("cli-cd");
    let prefs: Vec<serde_json::Value> = serde_json::from_str(include_str!(
        "../data/instruction-data-with-preference.json"
    ))
    .unwrap();
    let short: Vec<&serde_json::Value> = prefs
        .iter()
        .filter(|p| p.to_string().len() < 420)
        .take(40)
        .collect();
    let pref_file = dir.join("prefs.json");
    std::fs::write(&pref_file, serde_json::to_string(&short).unwrap()).unwrap();
    let commands: [(&str, Vec<String>, &str); 2] = [
        (
            "classify",
            ["--preset", "tiny", "--eval-freq", "1"]
                .map(String::from)
                .to_vec(),
            "classifier.safetensors",
        ),
        (
            "dpo",
            [
                "--preset",
                "small",
                "--context-length",
                "128",
                "--allowed-max-length",
                "128",
                "--lora-rank",
                "2",
                "--eval-freq",
                "1",
                "--show",
                "0",
                "--data",
                &s(&pref_file),
            ]
            .map(String::from)
            .to_vec(),
            "dpo.safetensors",
        ),
    ];
    for (command, extra, product) in commands {
        let args = |out: &Path, more: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = [
                "finetune",
                command,
                "--random-init",
                "--batch-size",
                "2",
                "--eval-iter",
                "1",
                "--drop-rate",
                "0.1",
                "--out",
            ]
            .map(String::from)
            .to_vec();
            v.push(s(out));
            v.extend(extra.iter().cloned());
            v.extend(more.iter().map(|x| x.to_string()));
            v
        };
        let go = |v: Vec<String>| ok(run(&v.iter().map(String::as_str).collect::<Vec<_>>()));
        let straight = dir.join(format!("{command}-straight"));
        go(args(&straight, &["--max-steps", "3"]));
        let part = dir.join(format!("{command}-part"));
        go(args(&part, &["--max-steps", "1", "--save-every", "1"]));
        let periodic = part.join("checkpoint-step00000001.safetensors");
        let out = go(args(
            &part,
            &["--max-steps", "3", "--resume", &s(&periodic)],
        ));
        assert!(out.contains("resuming at step 1"), "{command}: {out}");
        assert_eq!(
            final_weights(&straight.join(product)),
            final_weights(&part.join(product)),
            "{command}"
        );
        if command == "classify" {
            // metrics.jsonl holds each evaluation once, as the straight run's does (the
            // closing lines differ only in their timings).
            let lines = |d: &Path| -> Vec<String> {
                std::fs::read_to_string(d.join("metrics.jsonl"))
                    .unwrap()
                    .lines()
                    .filter(|l| !l.contains("final"))
                    .map(String::from)
                    .collect()
            };
            assert_eq!(lines(&straight), lines(&part));
            assert_eq!(lines(&part).len(), 3, "3 evaluations");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run whose loss stops being finite ends with an error naming the step, and leaves no
/// checkpoint holding the weights that diverged.
#[test]
fn a_diverging_finetune_run_keeps_no_checkpoint_of_the_bad_weights() {
    let dir = temp("nan");
    let data = small_instruction_file(&dir);
    let out = dir.join("run");
    let v = instruct_args(
        &data,
        &out,
        &["--lr", "1e30", "--save-every", "1", "--max-steps", "40"],
    );
    let o = run(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("not finite"), "{err}");
    assert!(!out.join("checkpoint.safetensors").exists());
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    // The first bad weights: those after step N's update when step N's loss is not finite
    // ("at step N"), or those after step N + 1 when the evaluation after step N is not.
    let number_after = |marker: &str| -> Option<usize> {
        err.split(marker)
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
    };
    let bad = number_after("at step ")
        .or_else(|| number_after("after step ").map(|n| n + 1))
        .expect("the failing step");
    let step_of = |n: &str| -> usize {
        n.trim_start_matches("checkpoint-step")
            .trim_end_matches(".safetensors")
            .parse()
            .unwrap()
    };
    // Only periodic checkpoints whose weights a later step proved finite may remain.
    assert!(
        left.iter().all(|n| step_of(n) < bad),
        "{left:?} with the first bad weights after {bad} steps"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
