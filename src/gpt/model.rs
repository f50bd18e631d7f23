//! The book's GPT (chapters 3–4): `MultiHeadAttention`, `FeedForward`, `TransformerBlock`,
//! `GPTModel`, with parameters named exactly like the PyTorch `state_dict`.

use super::GptConfig;
use crate::error::{Error, Result};
use crate::nn::{Dropout, Embedding, ForwardCtx, LayerNorm, Linear};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// Causal multi-head self-attention (book §3.6): separate query/key/value projections, heads
/// split from the embedding, the fused causal attention op (with attention-weight dropout), and
/// an output projection.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention<T: Element = f32> {
    pub w_query: Linear<T>,
    pub w_key: Linear<T>,
    pub w_value: Linear<T>,
    pub out_proj: Linear<T>,
    pub num_heads: usize,
    pub dropout: f64,
}

impl<T: Element> MultiHeadAttention<T> {
    /// `d_in → d_out` attention with `num_heads` heads.
    pub fn new(
        d_in: usize,
        d_out: usize,
        num_heads: usize,
        dropout: f64,
        qkv_bias: bool,
        rng: &mut Rng,
    ) -> Self {
        MultiHeadAttention {
            w_query: Linear::new(d_in, d_out, qkv_bias, rng),
            w_key: Linear::new(d_in, d_out, qkv_bias, rng),
            w_value: Linear::new(d_in, d_out, qkv_bias, rng),
            out_proj: Linear::new(d_out, d_out, true, rng),
            num_heads,
            dropout,
        }
    }

    /// `(B, T, d_in) → (B, T, d_out)`.
    pub fn forward(&self, x: &Tensor<T>, ctx: &ForwardCtx) -> Result<Tensor<T>> {
        let s = x.shape();
        let (b, t) = (s[0], s[1]);
        let d_out = self.w_query.weight.shape()[0];
        let hd = d_out / self.num_heads;
        // (B, T, d_out) → (B, T, H, hd) → (B, H, T, hd): a strided view.
        let heads = |y: Tensor<T>| y.reshape(&[b, t, self.num_heads, hd])?.transpose(1, 2);
        let q = heads(self.w_query.forward(x)?)?;
        let k = heads(self.w_key.forward(x)?)?;
        let v = heads(self.w_value.forward(x)?)?;
        let opts = AttentionOptions {
            causal: true,
            dropout_p: if ctx.training() { self.dropout } else { 0.0 },
            seed: if ctx.training() && self.dropout > 0.0 {
                ctx.next_seed()
            } else {
                0
            },
        };
        let context = Tensor::attention(&q, &k, &v, &opts)?; // (B, H, T, hd)
        let context = context.transpose(1, 2)?.reshape(&[b, t, d_out])?;
        self.out_proj.forward(&context)
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        self.w_query.parameters(&format!("{prefix}.W_query"), out);
        self.w_key.parameters(&format!("{prefix}.W_key"), out);
        self.w_value.parameters(&format!("{prefix}.W_value"), out);
        self.out_proj.parameters(&format!("{prefix}.out_proj"), out);
    }
}

/// `Linear(D, 4D) → GELU → Linear(4D, D)` (book §4.3); named `layers.0` and `layers.2` as in the
/// book's `nn.Sequential`.
#[derive(Clone, Debug)]
pub struct FeedForward<T: Element = f32> {
    pub fc1: Linear<T>,
    pub fc2: Linear<T>,
}

impl<T: Element> FeedForward<T> {
    /// The 4× expansion MLP.
    pub fn new(emb_dim: usize, rng: &mut Rng) -> Self {
        FeedForward {
            fc1: Linear::new(emb_dim, 4 * emb_dim, true, rng),
            fc2: Linear::new(4 * emb_dim, emb_dim, true, rng),
        }
    }

    /// `(…, D) → (…, D)`.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu()?)
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        self.fc1.parameters(&format!("{prefix}.layers.0"), out);
        self.fc2.parameters(&format!("{prefix}.layers.2"), out);
    }
}

/// A pre-LayerNorm transformer block with shortcut connections (book §4.5):
/// `x + drop(att(norm1(x)))`, then `x + drop(ff(norm2(x)))`.
#[derive(Clone, Debug)]
pub struct TransformerBlock<T: Element = f32> {
    pub att: MultiHeadAttention<T>,
    pub ff: FeedForward<T>,
    pub norm1: LayerNorm<T>,
    pub norm2: LayerNorm<T>,
    pub drop_shortcut: Dropout,
}

impl<T: Element> TransformerBlock<T> {
    /// A block for `cfg`.
    pub fn new(cfg: &GptConfig, rng: &mut Rng) -> Self {
        TransformerBlock {
            att: MultiHeadAttention::new(
                cfg.emb_dim,
                cfg.emb_dim,
                cfg.n_heads,
                cfg.drop_rate,
                cfg.qkv_bias,
                rng,
            ),
            ff: FeedForward::new(cfg.emb_dim, rng),
            norm1: LayerNorm::new(cfg.emb_dim),
            norm2: LayerNorm::new(cfg.emb_dim),
            drop_shortcut: Dropout::new(cfg.drop_rate),
        }
    }

    /// `(B, T, D) → (B, T, D)`.
    pub fn forward(&self, x: &Tensor<T>, ctx: &ForwardCtx) -> Result<Tensor<T>> {
        let h = self.att.forward(&self.norm1.forward(x)?, ctx)?;
        let x = x.add(&self.drop_shortcut.forward(&h, ctx)?)?;
        let h = self.ff.forward(&self.norm2.forward(&x)?)?;
        x.add(&self.drop_shortcut.forward(&h, ctx)?)
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        // PyTorch registration order of the book's TransformerBlock: att, ff, norm1, norm2.
        self.att.parameters(&format!("{prefix}.att"), out);
        self.ff.parameters(&format!("{prefix}.ff"), out);
        self.norm1.parameters(&format!("{prefix}.norm1"), out);
        self.norm2.parameters(&format!("{prefix}.norm2"), out);
    }
}

/// The book's `GPTModel` (§4.6): token + position embeddings, dropout, transformer blocks, final
/// LayerNorm, linear output head.
#[derive(Clone, Debug)]
pub struct GptModel<T: Element = f32> {
    pub cfg: GptConfig,
    pub tok_emb: Embedding<T>,
    pub pos_emb: Embedding<T>,
    pub drop_emb: Dropout,
    pub trf_blocks: Vec<TransformerBlock<T>>,
    pub final_norm: LayerNorm<T>,
    pub out_head: Linear<T>,
}

impl GptModel {
    /// A freshly initialised model; `seed` fixes every initial weight.
    pub fn new(cfg: &GptConfig, seed: u64) -> Result<Self> {
        Self::new_from(cfg, &mut Rng::new(seed))
    }

    /// The weights PyTorch draws for the book's `GPTModel(cfg)` after `torch.manual_seed(seed)`:
    /// the same generator, distributions and order (tok_emb, pos_emb, then per block W_query,
    /// W_key, W_value, out_proj, ff.layers.0, ff.layers.2; then out_head), so the initial loss
    /// is the book's to the last digits.
    pub fn new_torch_init(cfg: &GptConfig, seed: u64) -> Result<Self> {
        Self::new_from(cfg, &mut Rng::torch(seed))
    }

    /// A model initialised from `rng` (parameters drawn in the book's module order).
    pub fn new_from(cfg: &GptConfig, rng: &mut Rng) -> Result<Self> {
        GptModel::build(cfg, rng)
    }
}

impl<T: Element> GptModel<T> {
    /// A model of element type `T` initialised from `rng` (f32 models: [`GptModel::new`]; f64
    /// ones for gradient checks, usually by [`GptModel::cast`]).
    pub fn build(cfg: &GptConfig, rng: &mut Rng) -> Result<Self> {
        cfg.validate()?;
        let tok_emb = Embedding::new(cfg.vocab_size, cfg.emb_dim, rng);
        let pos_emb = Embedding::new(cfg.context_length, cfg.emb_dim, rng);
        let trf_blocks = (0..cfg.n_layers)
            .map(|_| TransformerBlock::new(cfg, rng))
            .collect();
        let mut out_head = match cfg.num_classes {
            Some(n) => Linear::new(cfg.emb_dim, n, true, rng),
            None => Linear::new(cfg.emb_dim, cfg.vocab_size, false, rng),
        };
        if cfg.tie_weights && cfg.num_classes.is_none() {
            out_head.weight = tok_emb.weight.clone(); // the same parameter, not a copy
        }
        Ok(GptModel {
            cfg: cfg.clone(),
            tok_emb,
            pos_emb,
            drop_emb: Dropout::new(cfg.drop_rate),
            trf_blocks,
            final_norm: LayerNorm::new(cfg.emb_dim),
            out_head,
        })
    }

    /// Logits `(B, T, out_dim)` (vocabulary, or classes for a classifier) for token ids `(B, T)`; T may not exceed the context length.
    pub fn forward(&self, ids: &Ids, ctx: &ForwardCtx) -> Result<Tensor<T>> {
        let s = ids.shape();
        if s.len() != 2 {
            return Err(Error::invalid(
                "GPTModel",
                format!("ids must be (batch, seq), got shape {s:?}"),
            ));
        }
        let t = s[1];
        if t == 0 || t > self.cfg.context_length {
            return Err(Error::invalid(
                "GPTModel",
                format!(
                    "sequence length {t} must be between 1 and the context length {}",
                    self.cfg.context_length
                ),
            ));
        }
        let tok = self.tok_emb.forward(ids)?;
        let pos = self
            .pos_emb
            .forward(&Ids::from_vec((0..t as i64).collect()))?;
        let mut x = self.drop_emb.forward(&tok.add(&pos)?, ctx)?;
        for block in &self.trf_blocks {
            x = block.forward(&x, ctx)?;
        }
        self.out_head.forward(&self.final_norm.forward(&x)?)
    }

    /// Every parameter with its book/PyTorch name, in `model.parameters()` order. A tied
    /// `out_head.weight` is listed once (as `tok_emb.weight`).
    pub fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        out.push(("tok_emb.weight".to_string(), self.tok_emb.weight.clone()));
        out.push(("pos_emb.weight".to_string(), self.pos_emb.weight.clone()));
        for (i, b) in self.trf_blocks.iter().enumerate() {
            b.parameters(&format!("trf_blocks.{i}"), &mut out);
        }
        self.final_norm.parameters("final_norm", &mut out);
        if !self.cfg.tie_weights {
            self.out_head.parameters("out_head", &mut out);
        }
        out
    }

    /// Moves every parameter to `device` in place (`Tensor::to_device_`): the model keeps its
    /// parameters' identities, so a tied head stays tied, frozen layers stay frozen, and an
    /// optimizer built before the move still holds them.
    pub fn to_device(&self, device: crate::tensor::Device) -> Result<()> {
        for (_, p) in self.named_parameters() {
            p.to_device_(device)?;
        }
        Ok(())
    }

    /// The device of the parameters.
    pub fn device(&self) -> crate::tensor::Device {
        self.tok_emb.weight.device()
    }

    /// The parameters alone.
    pub fn parameters(&self) -> Vec<Tensor<T>> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Total number of parameters (a tied weight counted once).
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Number of parameters that train (`requires_grad`): after freezing or adding LoRA
    /// adapters, fewer than [`Self::num_parameters`].
    pub fn num_trainable_parameters(&self) -> usize {
        self.parameters()
            .iter()
            .filter(|p| p.requires_grad())
            .map(|p| p.numel())
            .sum()
    }

    /// Size of the parameters in MB (f32), as the book reports it.
    pub fn size_mb(&self) -> f64 {
        self.num_parameters() as f64 * 4.0 / (1024.0 * 1024.0)
    }

    /// Freezes every parameter (`requires_grad = false`): backward computes no gradient for them
    /// and optimizers skip them.
    pub fn freeze_all(&self) {
        for (_, p) in self.named_parameters() {
            let _ = p.requires_grad_(false);
        }
    }

    /// Makes the parameters whose names start with `prefix` trainable again (e.g.
    /// `"trf_blocks.11."`, `"final_norm."`, `"out_head."`); returns how many.
    pub fn unfreeze(&self, prefix: &str) -> usize {
        let mut n = 0;
        for (name, p) in self.named_parameters() {
            if name.starts_with(prefix) {
                let _ = p.requires_grad_(true);
                n += 1;
            }
        }
        n
    }

    /// The same model in another precision: every parameter cast (f32 → f64 is exact), the
    /// configuration and the tying kept. What the whole-model gradient check differentiates.
    pub fn cast<U: Element>(&self) -> Result<GptModel<U>> {
        let other = GptModel::<U>::build(&self.cfg, &mut Rng::new(0))?;
        let mine: std::collections::HashMap<String, Tensor<T>> =
            self.named_parameters().into_iter().collect();
        other.load_named(|name| mine.get(name).and_then(|t| t.detach().cast::<U>().ok()))?;
        Ok(other)
    }

    /// Loads parameter values by name (shapes must match); every parameter must be present.
    pub fn load_named(&self, mut get: impl FnMut(&str) -> Option<Tensor<T>>) -> Result<()> {
        for (name, p) in self.named_parameters() {
            let v = get(&name)
                .ok_or_else(|| Error::parse("weights", format!("missing tensor {name}")))?;
            if v.shape() != p.shape() {
                return Err(Error::parse(
                    "weights",
                    format!(
                        "tensor {name} has shape {:?}, the model expects {:?}",
                        v.shape(),
                        p.shape()
                    ),
                ));
            }
            p.set_value(v.value()?)?;
        }
        Ok(())
    }
}
