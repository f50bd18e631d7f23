//! `scratchgpt classify --checkpoint PATH TEXT…`: the book's `classify_review` (§6.8) — each
//! text's predicted label and its probability, read at the last token. As the book, a text keeps
//! its first `min(max_length, context_length)` tokens, `max_length` being the training texts'
//! padded length (120 for the spam data), recorded in the checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::classifier::Classifier;
use scratchgpt::train::checkpoint::{load_checkpoint, Task};

#[derive(clap::Args)]
pub struct Args {
    /// A classifier written by `finetune classify`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The texts to classify (one result line each).
    #[arg(required = true)]
    texts: Vec<String>,
    /// Print one JSON object per text instead.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let ck = load_checkpoint(&a.checkpoint)?;
    let Task::Classify { labels, max_length } = ck.task else {
        bail!(
            "{} has no classifier head (a language model): train one with `scratchgpt finetune classify`",
            a.checkpoint.display()
        );
    };
    let classifier = Classifier::from_trained(ck.model)?;
    let tok = BpeTokenizer::gpt2();
    let ctx = classifier
        .model
        .cfg
        .context_length
        .min(max_length.unwrap_or(usize::MAX));
    for text in &a.texts {
        let mut ids = tok.encode(text)?;
        if ids.is_empty() {
            bail!("an empty text has no token to classify");
        }
        // Keep the first min(max_length, context_length) tokens.
        ids.truncate(ctx);
        let n = ids.len();
        let logits = scratchgpt::autograd::no_grad(|| {
            classifier.logits(&[ids], &[n], &scratchgpt::nn::ForwardCtx::eval())
        })?
        .to_vec()?;
        // Softmax over the classes, in f64.
        let top = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - top).exp()).collect();
        let total: f64 = exps.iter().sum();
        let (best, p) = exps.iter().enumerate().fold((0, 0.0), |b, (i, &e)| {
            if e / total > b.1 {
                (i, e / total)
            } else {
                b
            }
        });
        let label = labels
            .get(best)
            .cloned()
            .unwrap_or_else(|| best.to_string());
        if a.json {
            println!(
                "{}",
                serde_json::json!({"text": text, "label": label, "class": best, "probability": p,
                    "probabilities": exps.iter().map(|e| e / total).collect::<Vec<_>>()})
            );
        } else {
            println!("{label}\t{p:.4}\t{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
