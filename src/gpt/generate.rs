//! Text generation (book §4.7 `generate_text_simple` and §5.3 `generate`): repeatedly run the
//! model on the last `context_size` tokens and append a next token — the argmax, or a sample with
//! temperature and top-k — under `no_grad`.

use super::GptModel;
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::nn::ForwardCtx;
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;

/// How to pick each next token.
#[derive(Clone, Debug)]
pub struct Sampling {
    /// 0 = greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f64,
    /// Keep only the k most likely tokens (None = all).
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probabilities (after
    /// temperature and top-k) sum to at least p (None = all).
    pub top_p: Option<f64>,
    /// Stop when one of these ids is generated (it is not appended): a tokenizer's
    /// [`end_ids`](crate::data::BpeTokenizer::end_ids), or none.
    pub eos_ids: Vec<u32>,
    /// Seed of the sampling stream.
    pub seed: u64,
}

impl Sampling {
    /// An error for settings that would otherwise be silently ignored or meaningless: a negative
    /// or non-finite temperature, top-k of 0, top-p outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::invalid(
                "generate",
                format!("temperature {} must be ≥ 0 (0 = greedy)", self.temperature),
            ));
        }
        if self.top_k == Some(0) {
            return Err(Error::invalid("generate", "top-k must be at least 1"));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid(
                    "generate",
                    format!("top-p {p} must be in (0, 1]"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            eos_ids: Vec::new(),
            seed: 123,
        }
    }
}

/// The book's `generate_text_simple`: greedy, `max_new_tokens` tokens, each step seeing at most
/// the last `context_size` tokens.
pub fn generate_text_simple(
    model: &GptModel,
    prompt: &[u32],
    max_new_tokens: usize,
    context_size: usize,
) -> Result<Vec<u32>> {
    generate(
        model,
        prompt,
        max_new_tokens,
        context_size,
        &Sampling::default(),
    )
}

/// The book's `generate` with temperature, top-k and an end-of-sequence id.
pub fn generate(
    model: &GptModel,
    prompt: &[u32],
    max_new_tokens: usize,
    context_size: usize,
    sampling: &Sampling,
) -> Result<Vec<u32>> {
    let ctx = ForwardCtx::eval();
    let vocab = model.cfg.vocab_size;
    let next_logits = |window: &[u32]| -> Result<Vec<f32>> {
        let n = window.len();
        let w: Vec<i64> = window.iter().map(|&t| t as i64).collect();
        let logits = no_grad(|| model.forward(&Ids::new(w, &[1, n])?, &ctx))?;
        logits.select(1, n - 1)?.reshape(&[vocab])?.to_vec()
    };
    let context_size = context_size.min(model.cfg.context_length);
    generate_with(next_logits, prompt, max_new_tokens, context_size, sampling)
}

/// The generation loop over any model: `next_logits(window)` returns the logits of the token
/// after `window` (at most `context_size` tokens). Used with the CPU model ([`generate`]) and with
/// the GPU model (`scratchgpt generate --device cuda`).
pub fn generate_with(
    mut next_logits: impl FnMut(&[u32]) -> Result<Vec<f32>>,
    prompt: &[u32],
    max_new_tokens: usize,
    context_size: usize,
    sampling: &Sampling,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(Error::invalid("generate", "the prompt is empty"));
    }
    if context_size == 0 {
        return Err(Error::invalid("generate", "the context size is 0"));
    }
    sampling.validate()?;
    let mut rng = Rng::new(sampling.seed);
    let mut ids = prompt.to_vec();
    for _ in 0..max_new_tokens {
        let start = ids.len().saturating_sub(context_size);
        let last = next_logits(&ids[start..])?;
        let next = pick(&last, sampling, &mut rng);
        if sampling.eos_ids.contains(&next) {
            break;
        }
        ids.push(next);
    }
    Ok(ids)
}

/// Greedy argmax, or a draw from softmax(logits / T) restricted to the top k.
pub(crate) fn pick(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if s.temperature <= 0.0 {
        // first maximum, as torch.argmax
        return idx
            .into_iter()
            .fold(0, |best, i| if logits[i] > logits[best] { i } else { best })
            as u32;
    }
    if let Some(k) = s.top_k.filter(|&k| k < logits.len()) {
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        idx.truncate(k);
    }
    let m = idx
        .iter()
        .map(|&i| logits[i] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i] as f64 - m) / s.temperature).exp())
        .collect();
    let mut total: f64 = w.iter().sum();
    let (mut idx, mut w) = (idx, w);
    if let Some(p) = s.top_p.filter(|&p| p < 1.0) {
        // Most likely first (ties by id), then cut after the cumulative mass reaches p.
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(idx[a].cmp(&idx[b])));
        let mut kept = Vec::new();
        let mut mass = 0.0;
        for j in order {
            kept.push(j);
            mass += w[j];
            if mass >= p * total {
                break;
            }
        }
        idx = kept.iter().map(|&j| idx[j]).collect();
        w = kept.iter().map(|&j| w[j]).collect();
        total = w.iter().sum();
    }
    let mut u = rng.uniform() * total;
    for (j, &wj) in w.iter().enumerate() {
        if u < wj {
            return idx[j] as u32;
        }
        u -= wj;
    }
    *idx.last().expect("non-empty vocabulary") as u32
}
