//! DPO training on a tiny instruction-tuned GPT: 20 steps at lr 1e-3 raise the validation reward
//! margin (from exactly 0, where policy = reference) by more than 0.1 while the reference stays
//! frozen; with LoRA the reference is the same base weights without adapters; bad runs are clear
//! errors. And `finetune dpo` end to end.

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::dpo_train::{
    dpo_metrics, reference_model, train_dpo, DpoEvent, DpoModels, DpoTrainOptions,
    PreferenceDataset,
};
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::{
    train_instructions, InstructTrainOptions, InstructionDataset,
};
use scratchgpt::finetune::instruction_data::parse_instruction_json;
use scratchgpt::finetune::preference_data::{parse_preference_json, split_preferences};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::checkpoint::{save_task_checkpoint, Task};
use scratchgpt::train::{engine_for, TrainState};
use scratchgpt::{Device, Ids};

const CONTEXT: usize = 128;

/// The tiny preset's 2 layers and 4 heads, widened to emb 96 (at emb 48, 20 steps move the
/// margin only ~0.08), GPT-2's vocabulary, and a 128-token context long enough for the book's
/// prompts.
fn tiny_config() -> GptConfig {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.context_length = CONTEXT;
    cfg.emb_dim = 96;
    cfg.qkv_bias = true;
    cfg.drop_rate = 0.0;
    cfg
}

fn adamw(model: &GptModel, lr: f64) -> AdamW {
    AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    )
}

/// [`tiny_config`], instruction-tuned for 15 steps on the book's instruction data.
fn tiny_instruct_model() -> GptModel {
    let model = GptModel::new(&tiny_config(), 11).unwrap();
    let data = parse_instruction_json(
        include_str!("../data/instruction-data.json"),
        "instruction-data.json",
    )
    .unwrap();
    let tok = BpeTokenizer::gpt2();
    let train = InstructionDataset::new(&data[..60], tok, &InstructFormat::book()).unwrap();
    let val = InstructionDataset::new(&data[60..64], tok, &InstructFormat::book()).unwrap();
    let mut opt = adamw(&model, 1e-3);
    let mut engine = engine_for(Device::Cpu, &model, &mut opt).unwrap();
    let opts = InstructTrainOptions {
        num_epochs: 1,
        batch_size: 4,
        eval_freq: 100,
        eval_iter: 1,
        lr: 1e-3,
        seed: 1,
        max_steps: Some(15),
        allowed_max_length: CONTEXT,
        mask_instructions: false,
        start_ids: Vec::new(),
        sample_tokens: 0,
    };
    let run = train_instructions(
        engine.as_mut(),
        &model,
        &train,
        &val,
        tok,
        &InstructFormat::book(),
        &opts,
        |_| {},
    )
    .unwrap();
    assert_eq!(run.steps, 15);
    drop(engine);
    model
}

fn preference_splits(train_n: usize, val_n: usize) -> (PreferenceDataset, PreferenceDataset) {
    let data = parse_preference_json(
        include_str!("../data/instruction-data-with-preference.json"),
        "instruction-data-with-preference.json",
    )
    .unwrap();
    let (train, _, val) = split_preferences(&data).unwrap();
    let tok = BpeTokenizer::gpt2();
    (
        PreferenceDataset::new(&train[..train_n], tok).unwrap(),
        PreferenceDataset::new(&val[..val_n], tok).unwrap(),
    )
}

fn options(steps: usize) -> DpoTrainOptions {
    DpoTrainOptions {
        num_epochs: 1,
        batch_size: 8,
        eval_freq: 5,
        eval_iter: 1,
        lr: 1e-3,
        beta: 0.1,
        seed: 123,
        max_steps: Some(steps),
        allowed_max_length: CONTEXT,
        sample_entry: None,
        sample_tokens: 0,
    }
}

#[test]
fn twenty_dpo_steps_raise_the_validation_reward_margin_and_leave_the_reference_frozen() {
    let policy = tiny_instruct_model();
    let reference = reference_model(&policy).unwrap();
    let (train, val) = preference_splits(160, 8);
    let val_batches = vec![
        val.batch(&[0, 1, 2, 3], CONTEXT).unwrap(),
        val.batch(&[4, 5, 6, 7], CONTEXT).unwrap(),
    ];
    let before = dpo_metrics(&policy, &reference, &val_batches, 0.1).unwrap();
    // Policy = reference: every log-ratio is 0, the loss ln 2.
    assert!(before.margin().abs() < 1e-6, "{before:?}");
    assert!(
        (before.loss - std::f64::consts::LN_2).abs() < 1e-6,
        "{before:?}"
    );
    let reference_head = reference.out_head.weight.to_vec().unwrap();

    let mut opt = adamw(&policy, 1e-3);
    let mut lines = Vec::new();
    let run = train_dpo(
        DpoModels {
            policy: &policy,
            reference: &reference,
        },
        &mut opt,
        &train,
        &val,
        BpeTokenizer::gpt2(),
        &options(20),
        |e| lines.extend(e.book_line()),
    )
    .unwrap();
    assert_eq!(run.steps, 20);
    assert_eq!(run.evals.len(), 4, "steps 0, 5, 10, 15");
    assert_eq!(lines.len(), 4);
    assert!(
        lines[0].starts_with("Ep 1 (Step 000000): Train loss ")
            && lines[0].contains(", Val loss ")
            && lines[0].contains(", Train reward margins ")
            && lines[0].contains(", Val reward margins "),
        "{lines:?}"
    );
    let after = dpo_metrics(&policy, &reference, &val_batches, 0.1).unwrap();
    assert!(
        after.margin() - before.margin() >= 0.1,
        "validation reward margin {:.4} → {:.4}",
        before.margin(),
        after.margin()
    );
    assert!(after.loss < before.loss, "{before:?} → {after:?}");
    assert_eq!(reference.out_head.weight.to_vec().unwrap(), reference_head);
    assert_ne!(policy.out_head.weight.to_vec().unwrap(), reference_head);
}

#[test]
fn with_lora_the_reference_is_the_base_without_adapters_sharing_its_weights() {
    let mut policy = GptModel::new(&tiny_config(), 3).unwrap();
    policy.add_lora(4, 8.0, 1).unwrap();
    let reference = reference_model(&policy).unwrap();
    assert!(!reference.has_lora());
    // No second copy: the very same tensors.
    assert_eq!(reference.tok_emb.weight.id(), policy.tok_emb.weight.id());
    assert_eq!(
        reference.trf_blocks[1].att.w_query.weight.id(),
        policy.trf_blocks[1].att.w_query.weight.id()
    );
    let (train, val) = preference_splits(8, 4);
    let ids = Ids::from_rows(&[vec![1, 2, 3, 4]]).unwrap();
    let logits = |m: &GptModel| {
        scratchgpt::no_grad(|| m.forward(&ids, &ForwardCtx::eval()))
            .unwrap()
            .to_vec()
            .unwrap()
    };
    let base_before = logits(&reference);
    let mut opt = adamw(&policy, 1e-2);
    train_dpo(
        DpoModels {
            policy: &policy,
            reference: &reference,
        },
        &mut opt,
        &train,
        &val,
        BpeTokenizer::gpt2(),
        &options(2),
        |_| {},
    )
    .unwrap();
    // Only the adapters trained: the reference (base) is unchanged, the policy moved.
    assert_eq!(logits(&reference), base_before);
    assert_ne!(logits(&policy), base_before);
}

#[test]
fn bad_dpo_runs_are_clear_errors() {
    let policy = GptModel::new(&tiny_config(), 3).unwrap();
    let reference = reference_model(&policy).unwrap();
    let (train, val) = preference_splits(8, 4);
    let mut opt = adamw(&policy, 1e-3);
    let tok = BpeTokenizer::gpt2();
    let err = |opts: DpoTrainOptions, train: &PreferenceDataset, val: &PreferenceDataset| {
        let mut opt = adamw(&policy, 1e-3);
        train_dpo(
            DpoModels {
                policy: &policy,
                reference: &reference,
            },
            &mut opt,
            train,
            val,
            tok,
            &opts,
            |_| {},
        )
        .err()
        .unwrap()
        .to_string()
    };
    // Prompts that fill the allowed length leave nothing to score.
    let short = DpoTrainOptions {
        allowed_max_length: 20,
        ..options(1)
    };
    assert!(err(short, &train, &val).contains("fill the allowed length of 20 tokens"));
    let big = DpoTrainOptions {
        batch_size: 9,
        ..options(1)
    };
    assert!(err(big, &train, &val).contains("no complete batch of 9"));
    let empty = PreferenceDataset { items: vec![] };
    assert!(err(options(1), &train, &empty).contains("validation split is empty"));
    let zero_beta = DpoTrainOptions {
        beta: 0.0,
        ..options(1)
    };
    let e = train_dpo(
        DpoModels {
            policy: &policy,
            reference: &reference,
        },
        &mut opt,
        &train,
        &val,
        tok,
        &zero_beta,
        |_: &DpoEvent| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("β must be a positive number"), "{e}");
}

#[test]
fn cli_finetune_dpo_writes_a_checkpoint_a_plot_and_the_books_lines() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-dpo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A pretrained (not instruction-tuned) starting point: the run warns, then works.
    let start = dir.join("start.safetensors");
    let model = GptModel::new(&tiny_config(), 5).unwrap();
    save_task_checkpoint(
        &start,
        &model,
        None,
        &TrainState::default(),
        &scratchgpt::train::checkpoint::RunInfo::gpt2(1),
        &Task::Pretrain,
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args([
            "finetune",
            "dpo",
            "--checkpoint",
            start.to_str().unwrap(),
            "--allowed-max-length",
            "128",
            "--batch-size",
            "2",
            "--eval-iter",
            "1",
            "--max-steps",
            "2",
            "--show",
            "1",
            "--max-new-tokens",
            "4",
            "--out",
            dir.join("run").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("is not instruction-tuned"), "{err}");
    assert!(
        out.contains("data: 1100 pairs → 935 train / 110 test / 55 validation; β 0.1"),
        "{out}"
    );
    assert!(
        out.contains("Ep 1 (Step 000000): Train loss 0.693, Val loss 0.693"),
        "{out}"
    );
    assert!(out.contains("Reference model response:") && out.contains("Policy model response:"));
    assert!(dir.join("run/dpo.safetensors").is_file());
    assert!(dir.join("run/reward-margins.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
