//! Chapter 7's training and generation: the instruction dataset (each entry tokenized once, in
//! the run's [`InstructFormat`]: the book's Alpaca text or the model's chat template), its
//! loaders (shuffled, drop_last for training; collated per batch), the book's
//! `train_model_simple` over them with a sample after each epoch, and the responses to the test
//! set (after `### Response:`, or the assistant's turn).

use std::path::Path;

use super::epochs::{check_plan, run_epochs, EpochHooks, EpochPlan, RunControl, StepResult};
use super::instruct_format::InstructFormat;
use super::instruction_data::{collate, InstructionEntry};
use crate::data::dataset::{batch_order, Batch};
use crate::data::BpeTokenizer;
use crate::error::Result;
use crate::gpt::{generate_cached, GptModel, Sampling};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::train::checkpoint::{save_finetune_checkpoint, RunInfo, Task};
use crate::train::{engine_loss_loader, RunEnd, StepEngine, TrainEvent, TrainState};

/// The book's `InstructionDataset`: every entry tokenized in `format` (the book:
/// `format_example`'s Alpaca text), plus the length of its prompt part for instruction masking
/// and the end token collate appends.
#[derive(Clone, Debug)]
pub struct InstructionDataset {
    pub encoded: Vec<Vec<u32>>,
    pub prompt_lengths: Vec<usize>,
    /// Appended to every example and padding the batches (the book: 50256).
    pub end_id: u32,
}

impl InstructionDataset {
    pub fn new(
        entries: &[InstructionEntry],
        tok: &BpeTokenizer,
        format: &InstructFormat,
    ) -> Result<Self> {
        let mut encoded = Vec::with_capacity(entries.len());
        let mut prompt_lengths = Vec::with_capacity(entries.len());
        for e in entries {
            let (ids, prompt_len) = format.example(tok, e)?;
            encoded.push(ids);
            prompt_lengths.push(prompt_len);
        }
        Ok(InstructionDataset {
            encoded,
            prompt_lengths,
            end_id: format.end_id(),
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
            self.end_id,
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
    /// The per-epoch sample's prompt ids (the book: the first validation entry's prompt,
    /// [`InstructFormat::prompt`]); none for no sample.
    pub start_ids: Vec<u32>,
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

impl InstructRun {
    /// The run's measurements so far, from its state.
    pub fn from_state(state: &TrainState) -> Self {
        InstructRun {
            train_losses: state.train_losses.clone(),
            val_losses: state.val_losses.clone(),
            tokens_seen: state.tokens_seen,
            examples_seen: state.examples_seen,
            steps: state.global_step,
            train_secs: state.train_secs,
        }
    }
}

/// The book's `train_model_simple` on instruction batches: every `eval_freq` steps (from step 0)
/// the mean loss of `eval_iter` training batches (a fresh shuffle, as iterating the book's
/// loader) and validation batches; after each epoch a greedy sample of the start context.
/// Reports the book's lines through [`TrainEvent`]. `model` is the CPU copy for samples.
#[allow(clippy::too_many_arguments)]
pub fn train_instructions(
    engine: &mut dyn StepEngine,
    model: &GptModel,
    train: &InstructionDataset,
    val: &InstructionDataset,
    tok: &BpeTokenizer,
    format: &InstructFormat,
    opts: &InstructTrainOptions,
    on_event: impl FnMut(&TrainEvent),
) -> Result<InstructRun> {
    let mut state = TrainState::default();
    let data = InstructData {
        train,
        val,
        tok,
        format,
    };
    train_instructions_from(
        engine,
        model,
        data,
        opts,
        &RunControl::default(),
        &mut state,
        on_event,
    )?;
    Ok(InstructRun::from_state(&state))
}

/// The data of an instruction run: both splits, the tokenizer of the samples and the format
/// (where samples stop).
#[derive(Clone, Copy)]
pub struct InstructData<'a> {
    pub train: &'a InstructionDataset,
    pub val: &'a InstructionDataset,
    pub tok: &'a BpeTokenizer,
    pub format: &'a InstructFormat,
}

/// [`train_instructions`] from `state` (a fresh one, or a checkpoint's to resume), with periodic
/// checkpoints and a stop flag; leaves `state` where the run ended, and says how it ended.
pub fn train_instructions_from(
    engine: &mut dyn StepEngine,
    model: &GptModel,
    data: InstructData<'_>,
    opts: &InstructTrainOptions,
    control: &RunControl,
    state: &mut TrainState,
    on_event: impl FnMut(&TrainEvent),
) -> Result<RunEnd> {
    let InstructData {
        train,
        val,
        tok,
        format,
    } = data;
    let plan = EpochPlan {
        num_epochs: opts.num_epochs,
        batch_size: opts.batch_size,
        eval_freq: opts.eval_freq,
        max_steps: opts.max_steps,
        seed: opts.seed,
        train_len: train.len(),
    };
    check_plan(
        "train_instructions",
        &plan,
        opts.eval_iter,
        val.len(),
        "entries",
    )?;
    let max_len = opts.allowed_max_length.min(model.cfg.context_length);
    let val_order: Vec<Vec<usize>> = val
        .batch_indices(opts.batch_size, None, false)
        .into_iter()
        .take(opts.eval_iter)
        .collect();
    let val_batches = val_order
        .iter()
        .map(|idx| val.batch(idx, max_len, opts.mask_instructions))
        .collect::<Result<Vec<_>>>()?;
    let mut hooks = InstructHooks {
        engine,
        model,
        train,
        tok,
        opts,
        max_len,
        val_batches,
        sampling: greedy(format),
        task: Task::Instruct {
            template: format.template(),
        },
        on_event,
    };
    let end = run_epochs(&plan, control, state, &mut hooks);
    hooks.engine.sync_to_cpu()?;
    end
}

/// Instruction tuning's part of the shared loop.
struct InstructHooks<'a, F> {
    engine: &'a mut dyn StepEngine,
    model: &'a GptModel,
    train: &'a InstructionDataset,
    tok: &'a BpeTokenizer,
    opts: &'a InstructTrainOptions,
    max_len: usize,
    val_batches: Vec<Batch>,
    sampling: Sampling,
    /// What checkpoints record (the template, so `chat` uses it).
    task: Task,
    on_event: F,
}

impl<F: FnMut(&TrainEvent)> EpochHooks for InstructHooks<'_, F> {
    fn loss_name(&self) -> &'static str {
        "training loss"
    }

    fn step(&mut self, idx: &[usize], dropout_seed: u64) -> Result<StepResult> {
        let batch = self
            .train
            .batch(idx, self.max_len, self.opts.mask_instructions)?;
        let stats = self.engine.train_step(
            std::slice::from_ref(&batch),
            &[dropout_seed],
            None,
            self.opts.lr,
        )?;
        Ok(StepResult {
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            tokens: batch.inputs.len(),
        })
    }

    fn stepped(&mut self, epoch: usize, step: usize, r: &StepResult, step_secs: f64) {
        (self.on_event)(&TrainEvent::Step {
            epoch,
            step,
            loss: r.loss,
            lr: self.opts.lr,
            grad_norm: r.grad_norm,
            step_secs,
            tokens: r.tokens,
        });
    }

    fn eval(
        &mut self,
        epoch: usize,
        step: usize,
        shuffled: Vec<Vec<usize>>,
        state: &mut TrainState,
    ) -> Result<()> {
        let n = self.opts.eval_iter;
        let train_batches = shuffled
            .iter()
            .take(n)
            .map(|idx| {
                self.train
                    .batch(idx, self.max_len, self.opts.mask_instructions)
            })
            .collect::<Result<Vec<_>>>()?;
        let train_loss = engine_loss_loader(self.engine, &train_batches, n)?;
        let val_loss = engine_loss_loader(self.engine, &self.val_batches, n)?;
        state.train_losses.push(train_loss);
        state.val_losses.push(val_loss);
        state.track_tokens_seen.push(state.tokens_seen);
        (self.on_event)(&TrainEvent::Eval {
            epoch,
            step,
            train_loss,
            val_loss,
            tokens_seen: state.tokens_seen,
        });
        Ok(())
    }

    fn epoch_end(&mut self, epoch: usize, _rng: &mut Rng, _state: &mut TrainState) -> Result<()> {
        self.engine.sync_to_cpu()?;
        if !self.opts.start_ids.is_empty() && self.opts.sample_tokens > 0 {
            let ids = generate_cached(
                self.model,
                &self.opts.start_ids,
                self.opts.sample_tokens,
                self.model.cfg.context_length,
                &self.sampling,
            )?;
            let text = self.tok.decode(&ids)?.replace('\n', " ");
            (self.on_event)(&TrainEvent::Sample { epoch, text });
        }
        Ok(())
    }

    fn save(&mut self, path: &Path, info: &RunInfo, state: &TrainState) -> Result<()> {
        self.engine.sync_to_cpu()?;
        save_finetune_checkpoint(
            path,
            self.engine.model(),
            self.engine.optimizer(),
            state,
            info,
            &self.task,
            None,
        )
    }

    fn saved(&mut self, step: usize, path: &Path) {
        (self.on_event)(&TrainEvent::Saved {
            step,
            path: path.to_path_buf(),
        });
    }
}

/// Greedy decoding that stops at the format's end tokens (the book: `<|endoftext|>`).
fn greedy(format: &InstructFormat) -> Sampling {
    Sampling {
        temperature: 0.0,
        top_k: None,
        top_p: None,
        eos_ids: format.stop_ids().to_vec(),
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

/// Greedy response of `model` to an entry (stopping at the format's end tokens — the book:
/// `<|endoftext|>` — after at most `max_new_tokens`): the reply after the prompt, extracted as
/// the book does ([`InstructFormat::extract`]; for Alpaca the same text as
/// [`extract_response`] of the whole decoded sequence, since the prompt decodes to itself).
pub fn respond(
    model: &GptModel,
    tok: &BpeTokenizer,
    format: &InstructFormat,
    entry: &InstructionEntry,
    max_new_tokens: usize,
) -> Result<String> {
    let ids = format.prompt(tok, entry)?;
    let ctx = model.cfg.context_length;
    // Keep the prompt's end if it is longer than the context (generation crops the same way).
    let out = generate_cached(model, &ids, max_new_tokens, ctx, &greedy(format))?;
    Ok(format.extract(&tok.decode(&out[ids.len()..])?))
}
