//! Chapter 7's training and generation: the instruction dataset (each entry's full Alpaca text,
//! tokenized once), its loaders (shuffled, drop_last for training; collated per batch), the
//! book's `train_model_simple` over them with a sample after each epoch, and the responses to
//! the test set extracted after `### Response:`.

use std::time::Instant;

use super::instruction_data::{collate, format_example, format_input, InstructionEntry};
use super::spam_data::PAD_ID;
use crate::data::dataset::{batch_order, Batch};
use crate::data::BpeTokenizer;
use crate::error::{Error, Result};
use crate::gpt::{generate_cached, GptModel, Sampling};
use crate::ops::embedding::Ids;
use crate::tensor::rng::{mix64, Rng};
use crate::train::{engine_loss_loader, StepEngine, TrainEvent};

/// The book's `InstructionDataset`: every entry's `format_example` text tokenized, plus the
/// length of its prompt part (`format_input` + `\n\n### Response:\n`) for instruction masking.
#[derive(Clone, Debug)]
pub struct InstructionDataset {
    pub encoded: Vec<Vec<u32>>,
    pub prompt_lengths: Vec<usize>,
}

impl InstructionDataset {
    pub fn new(entries: &[InstructionEntry], tok: &BpeTokenizer) -> Result<Self> {
        let mut encoded = Vec::with_capacity(entries.len());
        let mut prompt_lengths = Vec::with_capacity(entries.len());
        for e in entries {
            encoded.push(tok.encode(&format_example(e))?);
            prompt_lengths.push(
                tok.encode(&format!("{}\n\n### Response:\n", format_input(e)))?
                    .len(),
            );
        }
        Ok(InstructionDataset {
            encoded,
            prompt_lengths,
        })
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Items `idx` collated (the book's `custom_collate_fn`) into a [`Batch`].
    pub fn batch(
        &self,
        idx: &[usize],
        allowed_max_length: usize,
        mask_instructions: bool,
    ) -> Result<Batch> {
        let items: Vec<Vec<u32>> = idx.iter().map(|&i| self.encoded[i].clone()).collect();
        let prompts: Vec<usize> = idx.iter().map(|&i| self.prompt_lengths[i]).collect();
        let b = collate(
            &items,
            Some(allowed_max_length),
            mask_instructions.then_some(prompts.as_slice()),
        )?;
        let t = b.inputs[0].len();
        Ok(Batch {
            inputs: Ids::new(b.inputs.concat(), &[idx.len(), t])?,
            targets: Ids::new(b.targets.concat(), &[idx.len(), t])?,
        })
    }

    /// One pass in batches: shuffled by `rng` if given; the last short batch dropped if
    /// `drop_last` (the book's training loader) or kept (its validation and test loaders).
    pub fn batch_indices(
        &self,
        batch_size: usize,
        rng: Option<&mut Rng>,
        drop_last: bool,
    ) -> Vec<Vec<usize>> {
        batch_order(self.len(), batch_size, rng, drop_last)
    }
}

/// Settings of [`train_instructions`] (the book: 2 epochs, batch 8, eval every 5 steps on 5
/// batches, AdamW lr 5e-5 wd 0.1 — the rates live in the engine's optimizer).
#[derive(Clone, Debug)]
pub struct InstructTrainOptions {
    pub num_epochs: usize,
    pub batch_size: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub lr: f64,
    pub seed: u64,
    pub max_steps: Option<usize>,
    /// The book's `allowed_max_length` (1024), capped at the model's context.
    pub allowed_max_length: usize,
    /// Exercise 7.2: do not learn to predict the prompt.
    pub mask_instructions: bool,
    /// The per-epoch sample's prompt (the book: the first validation entry's `format_input`).
    pub start_context: String,
    pub sample_tokens: usize,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct InstructRun {
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    pub tokens_seen: usize,
    pub examples_seen: usize,
    pub steps: usize,
    pub train_secs: f64,
}

/// The book's `train_model_simple` on instruction batches: every `eval_freq` steps (from step 0)
/// the mean loss of `eval_iter` training batches (a fresh shuffle, as iterating the book's
/// loader) and validation batches; after each epoch a greedy sample of the start context.
/// Reports the book's lines through [`TrainEvent`]. `model` is the CPU copy for samples.
pub fn train_instructions(
    engine: &mut dyn StepEngine,
    model: &GptModel,
    train: &InstructionDataset,
    val: &InstructionDataset,
    tok: &BpeTokenizer,
    opts: &InstructTrainOptions,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<InstructRun> {
    if opts.batch_size == 0 || opts.eval_freq == 0 || opts.eval_iter == 0 {
        return Err(Error::invalid(
            "train_instructions",
            "batch size, eval_freq and eval_iter must be at least 1",
        ));
    }
    if train.len() < opts.batch_size {
        return Err(Error::invalid(
            "train_instructions",
            format!(
                "{} training entries make no complete batch of {}",
                train.len(),
                opts.batch_size
            ),
        ));
    }
    if val.is_empty() {
        return Err(Error::invalid(
            "train_instructions",
            "the validation split is empty",
        ));
    }
    let max_len = opts.allowed_max_length.min(model.cfg.context_length);
    let collated = |d: &InstructionDataset, batches: Vec<Vec<usize>>| -> Result<Vec<Batch>> {
        batches
            .into_iter()
            .take(opts.eval_iter)
            .map(|idx| d.batch(&idx, max_len, opts.mask_instructions))
            .collect()
    };
    let val_batches = collated(val, val.batch_indices(opts.batch_size, None, false))?;
    let start_ids = tok.encode(&opts.start_context)?;
    let mut rng = Rng::new(opts.seed);
    let mut run = InstructRun::default();
    'epochs: for epoch in 0..opts.num_epochs {
        for idx in train.batch_indices(opts.batch_size, Some(&mut rng), true) {
            if opts.max_steps.is_some_and(|m| run.steps >= m) {
                break 'epochs;
            }
            let step = run.steps;
            let batch = train.batch(&idx, max_len, opts.mask_instructions)?;
            let t0 = Instant::now();
            let seed = mix64(opts.seed ^ mix64(step as u64 + 1));
            let stats = engine.train_step(std::slice::from_ref(&batch), &[seed], None, opts.lr)?;
            let loss = stats.loss;
            for (what, value) in [("training loss", loss), ("gradient norm", stats.grad_norm)] {
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        what: format!("the {what} at step {step} (epoch {})", epoch + 1),
                        value,
                        note: String::new(),
                    });
                }
            }
            let step_secs = t0.elapsed().as_secs_f64();
            run.train_secs += step_secs;
            run.tokens_seen += batch.inputs.len();
            run.examples_seen += idx.len();
            run.steps += 1;
            on_event(&TrainEvent::Step {
                epoch,
                step,
                loss,
                lr: opts.lr,
                grad_norm: stats.grad_norm,
                step_secs,
                tokens: batch.inputs.len(),
            });
            if step.is_multiple_of(opts.eval_freq) {
                let shuffled = collated(
                    train,
                    train.batch_indices(opts.batch_size, Some(&mut rng), true),
                )?;
                let train_loss = engine_loss_loader(engine, &shuffled, opts.eval_iter)?;
                let val_loss = engine_loss_loader(engine, &val_batches, opts.eval_iter)?;
                run.train_losses.push(train_loss);
                run.val_losses.push(val_loss);
                on_event(&TrainEvent::Eval {
                    epoch,
                    step,
                    train_loss,
                    val_loss,
                    tokens_seen: run.tokens_seen,
                });
            }
        }
        engine.sync_to_cpu()?;
        if !start_ids.is_empty() && opts.sample_tokens > 0 {
            let ids = generate_cached(
                model,
                &start_ids,
                opts.sample_tokens,
                model.cfg.context_length,
                &greedy(),
            )?;
            let text = tok.decode(&ids)?.replace('\n', " ");
            on_event(&TrainEvent::Sample { epoch, text });
        }
    }
    engine.sync_to_cpu()?;
    Ok(run)
}

fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        top_k: None,
        top_p: None,
        eos_id: Some(PAD_ID),
        seed: 0,
    }
}

/// The book's response extraction: the generated text after the prompt, with `### Response:`
/// removed and surrounding whitespace trimmed.
pub fn extract_response(generated: &str, prompt: &str) -> String {
    generated
        .get(prompt.len()..)
        .unwrap_or(generated)
        .replace("### Response:", "")
        .trim()
        .to_string()
}

/// Greedy response of `model` to an entry (stopping at `<|endoftext|>`, at most
/// `max_new_tokens`), extracted as the book does.
pub fn respond(
    model: &GptModel,
    tok: &BpeTokenizer,
    entry: &InstructionEntry,
    max_new_tokens: usize,
) -> Result<String> {
    let prompt = format_input(entry);
    let ids = tok.encode(&prompt)?;
    let ctx = model.cfg.context_length;
    // Keep the prompt's end if it is longer than the context (generation crops the same way).
    let out = generate_cached(model, &ids, max_new_tokens, ctx, &greedy())?;
    let text = tok.decode(&out)?;
    Ok(extract_response(&text, &prompt))
}
