//! `scratchgpt bench finetune`: time fine-tuning steps on the real chapter 6 / 7 batches —
//! examples/s, tokens/s, peak memory, and how much gradient and optimizer state the frozen
//! model holds — with or without LoRA, on the CPU or a GPU.

use std::process::ExitCode;
use std::time::Instant;

use scratchgpt::data::dataset::Batch;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::classifier::{Classifier, Trainable};
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::InstructionDataset;
use scratchgpt::finetune::instruction_data::{parse_instruction_json, split_instructions};
use scratchgpt::finetune::spam_data::{balance_and_split, parse_spam_tsv, SpamDataset};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::train::engine_for;

use super::device::{resolve, DeviceChoice};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FinetuneTask {
    /// Chapter 6: spam classification batches (8 × 120 tokens).
    Classify,
    /// Chapter 7: collated instruction batches (8 × the longest entry of each batch).
    Instruct,
}

#[derive(clap::Args)]
pub struct FinetuneBenchArgs {
    #[arg(long, value_enum, default_value = "classify")]
    task: FinetuneTask,
    #[arg(long, default_value = "gpt2-small")]
    preset: String,
    /// Train every parameter (default for instruct); classify trains the last block otherwise.
    #[arg(long)]
    train_all: bool,
    /// LoRA adapters of this rank (alpha 16) instead of training weights.
    #[arg(long)]
    lora_rank: Option<usize>,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// The matrix products' number format: f32, or bf16 on a CPU with AVX-512 BF16.
    #[arg(long, value_enum, default_value = "f32")]
    precision: super::precision::PrecisionChoice,
}

pub fn run(a: &FinetuneBenchArgs) -> anyhow::Result<ExitCode> {
    if a.steps == 0 || a.batch_size == 0 {
        anyhow::bail!("--steps and --batch-size must be at least 1");
    }
    a.precision.apply(a.device)?;
    let mut cfg = GptConfig::preset(&a.preset)?;
    cfg.qkv_bias = true;
    cfg.drop_rate = 0.0;
    let tok = BpeTokenizer::gpt2();
    let mut rng = Rng::new(123);
    let n = a.steps + 1;
    let (mut model, batches, examples): (GptModel, Vec<Batch>, &str) = match a.task {
        FinetuneTask::Classify => {
            let messages = parse_spam_tsv(
                include_str!("../../data/SMSSpamCollection.tsv"),
                "data/SMSSpamCollection.tsv",
            )?;
            let split = balance_and_split(&messages, 123)?;
            let train = SpamDataset::new(&split.train, tok, Some(cfg.context_length.min(120)))?;
            let batches = train
                .batch_indices(a.batch_size, Some(&mut rng), true)
                .iter()
                .cycle()
                .take(n)
                .map(|idx| train.batch(idx))
                .collect();
            let trainable = if a.train_all {
                Trainable::All
            } else {
                Trainable::LastBlocks(1)
            };
            let model = Classifier::new(GptModel::new(&cfg, 1)?, 2, trainable, 2)?.model;
            (model, batches, "spam messages")
        }
        FinetuneTask::Instruct => {
            let data = parse_instruction_json(
                include_str!("../../data/instruction-data.json"),
                "data/instruction-data.json",
            )?;
            let (train, _, _) = split_instructions(&data)?;
            let train = InstructionDataset::new(&train, tok, &InstructFormat::book())?;
            let batches = train
                .batch_indices(a.batch_size, Some(&mut rng), true)
                .iter()
                .cycle()
                .take(n)
                .map(|idx| train.batch(idx, cfg.context_length, false))
                .collect::<scratchgpt::Result<_>>()?;
            (GptModel::new(&cfg, 1)?, batches, "instructions")
        }
    };
    if batches.is_empty() {
        anyhow::bail!(
            "no complete batch of {} {examples} in the training split",
            a.batch_size
        );
    }
    if let Some(rank) = a.lora_rank {
        model.add_lora(rank, 16.0, 3)?;
    }
    let n_trainable = model.num_trainable_parameters();
    let mut optimizer = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let device = resolve(a.device)?;
    let mut engine = engine_for(device, &model, &mut optimizer)?;
    let engine = engine.as_mut();
    engine.train_step(std::slice::from_ref(&batches[0]), &[1], None, 5e-5)?; // warm-up
    let t0 = Instant::now();
    let mut tokens = 0;
    for (i, b) in batches[1..].iter().enumerate() {
        engine.train_step(std::slice::from_ref(b), &[2 + i as u64], None, 5e-5)?;
        tokens += b.inputs.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    let with_grad: Vec<usize> = model
        .named_parameters()
        .iter()
        .filter_map(|(_, p)| p.grad().map(|g| g.numel()))
        .collect();
    println!(
        "bench finetune {:?} ({}, {} on {}): {} parameters, {n_trainable} trainable{}",
        a.task,
        a.preset,
        examples,
        engine.describe(),
        model.num_parameters(),
        a.lora_rank
            .map_or(String::new(), |r| format!(" (LoRA rank {r}, alpha 16)"))
    );
    println!(
        "{:.0} ms/step, {:.2} examples/s, {:.0} tokens/s over {} steps of {} examples (mean {:.0} tokens each)",
        1e3 * secs / a.steps as f64,
        (a.steps * a.batch_size) as f64 / secs,
        tokens as f64 / secs,
        a.steps,
        a.batch_size,
        tokens as f64 / (a.steps * a.batch_size) as f64
    );
    println!(
        "gradient buffers: {} tensors, {:.1} MB (CPU autograd; frozen parameters hold none); AdamW moments: {:.1} MB; peak RSS {}",
        with_grad.len(),
        with_grad.iter().sum::<usize>() as f64 * 4e-6,
        n_trainable as f64 * 8e-6,
        super::bench::peak_rss().map_or("unknown".into(), |b| format!(
            "{:.2} GiB",
            b as f64 / (1u64 << 30) as f64
        ))
    );
    Ok(ExitCode::SUCCESS)
}
