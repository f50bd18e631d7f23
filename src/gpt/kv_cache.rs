//! A KV cache for generation (the book's bonus material, ch04/03): each layer keeps the keys and
//! values of the tokens seen so far, so a new token costs one token's forward pass instead of the
//! whole window's.
//!
//! Why it is exact: with causal attention, a token's key and value depend only on it and the
//! tokens before it, so they never change once computed. Processing the prompt in one pass
//! (*prefill*) and then one token at a time gives the same logits as rerunning the whole window
//! every step — up to float rounding of different GEMM shapes (a test checks the logits agree to
//! 1e-5 and the generated tokens are identical).
//!
//! The overflow (the book's code keeps appending past the context length, and position
//! embeddings beyond it do not exist): when the cache is full, the next step re-encodes the last
//! `context_size` tokens from position 0 — exactly what uncached generation does when it crops
//! the window — so cached and uncached generation stay identical at any length. (Sliding the
//! cache without re-encoding would be wrong with absolute position embeddings, and with RoPE
//! too: every cached key was computed — or rotated — at a position that has since shifted.)

use super::generate::{pick, Sampling};
use super::GptModel;
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

/// Keys and values of every layer, preallocated for `capacity` tokens on the model's device,
/// stored token-major (`(capacity, kv_heads·head_dim)` = the layout the projections produce), so
/// appending is a copy of contiguous rows ([`Tensor::write_rows`]) — on a GPU, a copy on the
/// device. A grouped-query model caches only its KV heads (Llama-3.2-1B: 8 of 32, a quarter of
/// an MHA cache); the attention op shares them among the query heads without copying.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `model` holding up to `capacity` tokens (at most its context length),
    /// on the model's device.
    pub fn new(model: &GptModel, capacity: usize) -> Result<Self> {
        let capacity = capacity.min(model.cfg.context_length).max(1);
        let width = model.cfg.n_kv_heads() * model.cfg.head_dim();
        let layers = model.cfg.n_layers;
        // Keys and values of every layer, in f32: refuse what cannot be addressed rather than
        // abort in the allocator.
        capacity
            .checked_mul(width)
            .and_then(|n| n.checked_mul(2 * layers * 4))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| {
                Error::invalid(
                    "KvCache",
                    format!(
                        "{capacity} tokens × {layers} layers × {width} values do not fit in memory"
                    ),
                )
            })?;
        let device = model.device();
        let zeros = || Tensor::full_on(&[capacity, width], 0.0, device);
        Ok(KvCache {
            keys: (0..layers).map(|_| zeros()).collect::<Result<_>>()?,
            values: (0..layers).map(|_| zeros()).collect::<Result<_>>()?,
            len: 0,
            capacity,
        })
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another token still fits.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Forget everything (the buffers stay allocated).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes the cache holds (f32 keys and values of every layer).
    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|t| t.numel() * 4)
            .sum()
    }
}

impl GptModel {
    /// Run `new_ids` (at positions `cache.len()..`) through the model, appending their keys and
    /// values to `cache`, and return the logits of the last new token. Eval mode, no graph.
    ///
    /// The blocks are the model's own ([`super::MultiHeadAttention::heads_qkv`] projects, norms
    /// and rotates exactly as training does); only the keys and values of earlier positions
    /// come from the cache. A rotary model's new keys are cached rotated: a key's rotation
    /// depends on its own position only, so it never changes.
    pub fn forward_cached(&self, new_ids: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let n = new_ids.len();
        let start = cache.len;
        if n == 0 {
            return Err(Error::invalid("forward_cached", "no new tokens"));
        }
        if start + n > cache.capacity {
            return Err(Error::invalid(
                "forward_cached",
                format!(
                    "{start} cached + {n} new tokens exceed the cache's {} (the context length)",
                    cache.capacity
                ),
            ));
        }
        let (kvh, hd) = (self.cfg.n_kv_heads(), self.cfg.head_dim());
        no_grad(|| -> Result<Vec<f32>> {
            let ids = Ids::new(new_ids.iter().map(|&t| t as i64).collect(), &[1, n])?;
            let mut x = self.tok_emb.forward(&ids)?;
            if let Some(pos_emb) = &self.pos_emb {
                let pos = Ids::from_vec((start as i64..(start + n) as i64).collect());
                x = x.add(&pos_emb.forward(&pos)?)?;
            }
            let table = self.rope.as_ref().map(|r| r.table(start, n));
            let total = start + n;
            for (l, block) in self.trf_blocks.iter().enumerate() {
                let a = &block.att;
                let (q, k_new, v_new) = a.heads_qkv(&block.norm1.forward(&x)?, table.as_ref())?;
                // (1, KV, n, hd) → token-major rows (n, KV·hd).
                let rows = |t: Tensor| t.transpose(1, 2)?.reshape(&[n, kvh * hd]);
                cache.keys[l].write_rows(start, &rows(k_new)?)?;
                cache.values[l].write_rows(start, &rows(v_new)?)?;
                let heads = |t: &Tensor| {
                    t.narrow(0, 0, total)?
                        .reshape(&[1, total, kvh, hd])?
                        .transpose(1, 2)
                };
                let (k_all, v_all) = (heads(&cache.keys[l])?, heads(&cache.values[l])?);
                // Queries are the last n of `total` positions: the op's causal mask is aligned to
                // the bottom right, as a cache needs.
                let o = Tensor::attention(&q, &k_all, &v_all, &AttentionOptions::default())?;
                let x_mid = x.add(&a.merge_heads(&o)?)?;
                x = x_mid.add(&block.ff.forward(&block.norm2.forward(&x_mid)?)?)?;
            }
            cache.len = total;
            // Only the last position's logits are needed.
            let last = self.final_norm.forward(&x.select(1, n - 1)?)?;
            self.out_head
                .forward(&last)?
                .reshape(&[self.cfg.out_dim()])?
                .to_vec()
        })
    }
}

/// [`super::generate`] with a KV cache: the same tokens, one token's work per step.
pub fn generate_cached(
    model: &GptModel,
    prompt: &[u32],
    max_new_tokens: usize,
    context_size: usize,
    sampling: &Sampling,
) -> Result<Vec<u32>> {
    generate_cached_streaming(
        model,
        prompt,
        max_new_tokens,
        context_size,
        sampling,
        |_| Ok(()),
    )
}

/// [`generate_cached`], calling `on_token` with each new token as soon as it is chosen (for
/// streaming output in `chat`).
pub fn generate_cached_streaming(
    model: &GptModel,
    prompt: &[u32],
    max_new_tokens: usize,
    context_size: usize,
    sampling: &Sampling,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(Error::invalid("generate", "the prompt is empty"));
    }
    sampling.validate()?;
    let context_size = context_size.min(model.cfg.context_length).max(1);
    // Only as many positions as this call can use: the prompt's window and the new tokens
    // (a Llama 3.2's context is 131,072 tokens — 4 GiB of cache it would never touch). When
    // they fit in the context the cache never fills, so the re-encode below is never needed.
    let used = prompt
        .len()
        .min(context_size)
        .saturating_add(max_new_tokens);
    let mut cache = KvCache::new(model, context_size.min(used))?;
    let mut rng = Rng::new(sampling.seed);
    let mut ids = prompt.to_vec();
    let window = |ids: &[u32]| ids[ids.len().saturating_sub(context_size)..].to_vec();
    let mut logits = model.forward_cached(&window(&ids), &mut cache)?;
    for step in 0..max_new_tokens {
        let next = pick(&logits, sampling, &mut rng);
        if sampling.eos_ids.contains(&next) {
            break;
        }
        ids.push(next);
        on_token(next)?;
        if step + 1 == max_new_tokens {
            break;
        }
        logits = if cache.is_full() {
            // Past the context: re-encode the cropped window from position 0 (see module docs).
            cache.clear();
            model.forward_cached(&window(&ids), &mut cache)?
        } else {
            model.forward_cached(&[next], &mut cache)?
        };
    }
    Ok(ids)
}
