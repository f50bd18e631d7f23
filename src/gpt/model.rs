//! The book's GPT (chapters 3–4): `MultiHeadAttention`, `FeedForward`, `TransformerBlock`,
//! `GPTModel`, with parameters named exactly like the PyTorch `state_dict` — and, configured by
//! [`Architecture`], the same modules as the book's Llama 3 and Qwen3 from scratch (its
//! `standalone-llama32` and `standalone-qwen3` notebooks, whose parameter names they keep):
//! RMSNorm for LayerNorm, rotary positions for learned ones, SwiGLU for the GELU MLP, grouped
//! key/value heads, and Qwen3's per-head q/k norm. One model and one backward for all three.

use super::config::Architecture;
use super::GptConfig;
use crate::error::{Error, Result};
use crate::nn::{Dropout, Embedding, ForwardCtx, LayerNorm, Linear, Norm, RmsNorm};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::ops::rope::{Rope, RopeTable};
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// Causal multi-head self-attention (book §3.6): separate query/key/value projections, heads
/// split from the embedding, the fused causal attention op (with attention-weight dropout), and
/// an output projection.
///
/// The Llama/Qwen3 generalisation: `num_kv_heads` key/value heads shared by groups of query
/// heads (grouped-query attention, without copying them: the attention op reads head h's keys
/// from head h/g), heads of `head_dim` independent of the width, Qwen3's RMSNorm of every query
/// and key head (`q_norm`, `k_norm`), and the rotation of queries and keys by position (`rope`).
#[derive(Clone, Debug)]
pub struct MultiHeadAttention<T: Element = f32> {
    pub w_query: Linear<T>,
    pub w_key: Linear<T>,
    pub w_value: Linear<T>,
    pub out_proj: Linear<T>,
    pub num_heads: usize,
    /// Key/value heads; `num_heads` for the book's MHA.
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub dropout: f64,
    /// Qwen3: RMSNorm over each query head's `head_dim` values, before RoPE.
    pub q_norm: Option<RmsNorm<T>>,
    /// Qwen3: RMSNorm over each key head, before RoPE.
    pub k_norm: Option<RmsNorm<T>>,
    /// Rotary positions (Llama, Qwen3); `None`: the model adds learned positions instead.
    pub rope: Option<Rope>,
}

impl<T: Element> MultiHeadAttention<T> {
    /// The book's `d_in → d_out` attention with `num_heads` heads of `d_out / num_heads`.
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
            num_kv_heads: num_heads,
            head_dim: d_out / num_heads.max(1),
            dropout,
            q_norm: None,
            k_norm: None,
            rope: None,
        }
    }

    /// The attention of a Llama or Qwen3 block of `cfg`: `W_query (D → H·hd)`, `W_key` and
    /// `W_value (D → KV·hd)`, `out_proj (H·hd → D)`, biases only with `qkv_bias` (HF
    /// `attention_bias`, which covers all four).
    fn decoder(cfg: &GptConfig, rope: Option<Rope>, rng: &mut Rng) -> Self {
        let (d, hd, h, kv) = (cfg.emb_dim, cfg.head_dim(), cfg.n_heads, cfg.n_kv_heads());
        let eps = cfg.arch.decoder().map_or(1e-6, |s| s.norm_eps);
        let qk_norm = matches!(cfg.arch, Architecture::Qwen3(_));
        MultiHeadAttention {
            w_query: Linear::new(d, h * hd, cfg.qkv_bias, rng),
            w_key: Linear::new(d, kv * hd, cfg.qkv_bias, rng),
            w_value: Linear::new(d, kv * hd, cfg.qkv_bias, rng),
            out_proj: Linear::new(h * hd, d, cfg.qkv_bias, rng),
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
            dropout: cfg.drop_rate,
            q_norm: qk_norm.then(|| RmsNorm::new(hd, eps)),
            k_norm: qk_norm.then(|| RmsNorm::new(hd, eps)),
            rope,
        }
    }

    /// `(B, T, d_in) → (B, T, d_out)`, positions `0..T`.
    pub fn forward(&self, x: &Tensor<T>, ctx: &ForwardCtx) -> Result<Tensor<T>> {
        let t = x.shape().get(1).copied().unwrap_or(0);
        let table = self.rope.as_ref().map(|r| r.table(0, t));
        self.forward_at(x, ctx, table.as_ref())
    }

    /// [`Self::forward`] with the rotation's angle table computed once by the caller (the model
    /// shares one table among its layers).
    pub fn forward_at(
        &self,
        x: &Tensor<T>,
        ctx: &ForwardCtx,
        table: Option<&RopeTable>,
    ) -> Result<Tensor<T>> {
        let (q, k, v) = self.heads_qkv(x, table)?;
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
        self.merge_heads(&context)
    }

    /// Queries `(B, H, T, hd)`, keys and values `(B, KV, T, hd)` of `x (B, T, d_in)`: projected,
    /// split into heads (a strided view), Qwen3's head norms, then rotated by `table`'s
    /// positions.
    pub(crate) fn heads_qkv(
        &self,
        x: &Tensor<T>,
        table: Option<&RopeTable>,
    ) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
        let s = x.shape();
        if s.len() != 3 {
            return Err(Error::invalid(
                "MultiHeadAttention",
                format!("input must be (batch, seq, emb), got {s:?}"),
            ));
        }
        let (b, t, hd) = (s[0], s[1], self.head_dim);
        if self.rope.is_some() && table.is_none_or(|tb| tb.len != t) {
            return Err(Error::invalid(
                "MultiHeadAttention",
                format!("a rotary layer needs the angle table of its {t} positions"),
            ));
        }
        // (B, T, heads·hd) → (B, T, heads, hd), normed per head, → (B, heads, T, hd).
        let split = |y: Tensor<T>, heads: usize, norm: Option<&RmsNorm<T>>| -> Result<Tensor<T>> {
            let mut y = y.reshape(&[b, t, heads, hd])?;
            if let Some(n) = norm {
                y = n.forward(&y)?;
            }
            let y = y.transpose(1, 2)?;
            match table {
                Some(tb) if self.rope.is_some() => y.rope(tb),
                _ => Ok(y),
            }
        };
        let q = split(
            self.w_query.forward(x)?,
            self.num_heads,
            self.q_norm.as_ref(),
        )?;
        let k = split(
            self.w_key.forward(x)?,
            self.num_kv_heads,
            self.k_norm.as_ref(),
        )?;
        let v = self
            .w_value
            .forward(x)?
            .reshape(&[b, t, self.num_kv_heads, hd])?
            .transpose(1, 2)?;
        Ok((q, k, v))
    }

    /// `(B, H, T, hd)` → heads side by side `(B, T, H·hd)` → `out_proj`.
    pub(crate) fn merge_heads(&self, context: &Tensor<T>) -> Result<Tensor<T>> {
        let s = context.shape();
        let (b, t) = (s[0], s[2]);
        let context = context
            .transpose(1, 2)?
            .reshape(&[b, t, self.num_heads * self.head_dim])?;
        self.out_proj.forward(&context)
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        self.w_query.parameters(&format!("{prefix}.W_query"), out);
        self.w_key.parameters(&format!("{prefix}.W_key"), out);
        self.w_value.parameters(&format!("{prefix}.W_value"), out);
        self.out_proj.parameters(&format!("{prefix}.out_proj"), out);
        if let Some(n) = &self.q_norm {
            n.parameters(&format!("{prefix}.q_norm"), out);
        }
        if let Some(n) = &self.k_norm {
            n.parameters(&format!("{prefix}.k_norm"), out);
        }
    }

    /// The four projections by name (LoRA's targets).
    fn linears_mut(&mut self, prefix: &str) -> Vec<(String, &mut Linear<T>)> {
        vec![
            (format!("{prefix}.W_query"), &mut self.w_query),
            (format!("{prefix}.W_key"), &mut self.w_key),
            (format!("{prefix}.W_value"), &mut self.w_value),
            (format!("{prefix}.out_proj"), &mut self.out_proj),
        ]
    }
}

/// The MLP of a block.
///
/// - GPT (book §4.3): `Linear(D, 4D) → GELU → Linear(4D, D)`, named `layers.0` and `layers.2` as
///   in the book's `nn.Sequential`.
/// - Llama / Qwen3: SwiGLU, `fc3(SiLU(fc1(x)) ⊙ fc2(x))` with `fc1` the gate, `fc2` the up and
///   `fc3` the down projection (HF `gate_proj`, `up_proj`, `down_proj`), no biases. The gradient
///   of the gated product is the product rule over the two ops (`silu` in `src/ops/unary`,
///   `mul` in `src/ops/binary`): `∂/∂a (SiLU(a)⊙u) = SiLU′(a)⊙u`, `∂/∂u = SiLU(a)`.
#[derive(Clone, Debug)]
pub enum FeedForward<T: Element = f32> {
    Gelu {
        fc1: Linear<T>,
        fc2: Linear<T>,
    },
    SwiGlu {
        fc1: Linear<T>,
        fc2: Linear<T>,
        fc3: Linear<T>,
    },
}

impl<T: Element> FeedForward<T> {
    /// The book's 4× expansion GELU MLP.
    pub fn new(emb_dim: usize, rng: &mut Rng) -> Self {
        FeedForward::Gelu {
            fc1: Linear::new(emb_dim, 4 * emb_dim, true, rng),
            fc2: Linear::new(4 * emb_dim, emb_dim, true, rng),
        }
    }

    /// A SwiGLU MLP `D → hidden → D` without biases.
    pub fn swiglu(emb_dim: usize, hidden: usize, rng: &mut Rng) -> Self {
        FeedForward::SwiGlu {
            fc1: Linear::new(emb_dim, hidden, false, rng),
            fc2: Linear::new(emb_dim, hidden, false, rng),
            fc3: Linear::new(hidden, emb_dim, false, rng),
        }
    }

    /// `(…, D) → (…, D)`.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self {
            FeedForward::Gelu { fc1, fc2 } => fc2.forward(&fc1.forward(x)?.gelu()?),
            FeedForward::SwiGlu { fc1, fc2, fc3 } => {
                fc3.forward(&fc1.forward(x)?.silu()?.mul(&fc2.forward(x)?)?)
            }
        }
    }

    /// The layers' names in the book's modules: `nn.Sequential` indices for GELU, the
    /// standalone notebooks' `fc1`/`fc2`/`fc3` for SwiGLU.
    fn names(&self) -> &'static [&'static str] {
        match self {
            FeedForward::Gelu { .. } => &["layers.0", "layers.2"],
            FeedForward::SwiGlu { .. } => &["fc1", "fc2", "fc3"],
        }
    }

    /// The layers with their names under `prefix`.
    pub fn linears(&self, prefix: &str) -> Vec<(String, &Linear<T>)> {
        let layers: Vec<&Linear<T>> = match self {
            FeedForward::Gelu { fc1, fc2 } => vec![fc1, fc2],
            FeedForward::SwiGlu { fc1, fc2, fc3 } => vec![fc1, fc2, fc3],
        };
        let names = self.names();
        names
            .iter()
            .map(|n| format!("{prefix}.{n}"))
            .zip(layers)
            .collect()
    }

    /// [`Self::linears`], mutable (LoRA's targets).
    pub fn linears_mut(&mut self, prefix: &str) -> Vec<(String, &mut Linear<T>)> {
        let names = self.names();
        let layers: Vec<&mut Linear<T>> = match self {
            FeedForward::Gelu { fc1, fc2 } => vec![fc1, fc2],
            FeedForward::SwiGlu { fc1, fc2, fc3 } => vec![fc1, fc2, fc3],
        };
        names
            .iter()
            .map(|n| format!("{prefix}.{n}"))
            .zip(layers)
            .collect()
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        for (name, lin) in self.linears(prefix) {
            lin.parameters(&name, out);
        }
    }
}

/// A pre-norm transformer block with shortcut connections (book §4.5):
/// `x + drop(att(norm1(x)))`, then `x + drop(ff(norm2(x)))` — LayerNorm for GPT, RMSNorm for
/// Llama and Qwen3 (HF `input_layernorm`, `post_attention_layernorm`).
#[derive(Clone, Debug)]
pub struct TransformerBlock<T: Element = f32> {
    pub att: MultiHeadAttention<T>,
    pub ff: FeedForward<T>,
    pub norm1: Norm<T>,
    pub norm2: Norm<T>,
    pub drop_shortcut: Dropout,
}

impl<T: Element> TransformerBlock<T> {
    /// A block for `cfg`.
    pub fn new(cfg: &GptConfig, rng: &mut Rng) -> Result<Self> {
        let d = cfg.emb_dim;
        let (att, ff, norm) = match cfg.arch.decoder() {
            None => (
                MultiHeadAttention::new(d, d, cfg.n_heads, cfg.drop_rate, cfg.qkv_bias, rng),
                FeedForward::new(d, rng),
                None,
            ),
            Some(s) => {
                let att = MultiHeadAttention::decoder(cfg, cfg.rope()?, rng);
                (
                    att,
                    FeedForward::swiglu(d, s.hidden_dim, rng),
                    Some(s.norm_eps),
                )
            }
        };
        let make_norm = || match norm {
            None => Norm::Layer(LayerNorm::new(d)),
            Some(eps) => Norm::Rms(RmsNorm::new(d, eps)),
        };
        Ok(TransformerBlock {
            att,
            ff,
            norm1: make_norm(),
            norm2: make_norm(),
            drop_shortcut: Dropout::new(cfg.drop_rate),
        })
    }

    /// `(B, T, D) → (B, T, D)` at positions `0..T` (`table`: their RoPE angles, for a rotary
    /// model).
    pub fn forward(
        &self,
        x: &Tensor<T>,
        ctx: &ForwardCtx,
        table: Option<&RopeTable>,
    ) -> Result<Tensor<T>> {
        let h = self.att.forward_at(&self.norm1.forward(x)?, ctx, table)?;
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

    /// Every linear layer of the block by name (LoRA's targets).
    pub fn linears_mut(&mut self, prefix: &str) -> Vec<(String, &mut Linear<T>)> {
        let mut out = self.att.linears_mut(&format!("{prefix}.att"));
        out.extend(self.ff.linears_mut(&format!("{prefix}.ff")));
        out
    }
}

/// The book's `GPTModel` (§4.6): token + position embeddings, dropout, transformer blocks, final
/// norm, linear output head. Llama and Qwen3 have no position embedding (`pos_emb` is `None`):
/// their positions enter as rotations inside attention.
#[derive(Clone, Debug)]
pub struct GptModel<T: Element = f32> {
    pub cfg: GptConfig,
    pub tok_emb: Embedding<T>,
    pub pos_emb: Option<Embedding<T>>,
    pub drop_emb: Dropout,
    pub trf_blocks: Vec<TransformerBlock<T>>,
    pub final_norm: Norm<T>,
    pub out_head: Linear<T>,
    /// The rotary embedding of a Llama / Qwen3 model.
    pub rope: Option<Rope>,
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
        let rope = cfg.rope()?;
        let tok_emb = Embedding::new(cfg.vocab_size, cfg.emb_dim, rng);
        let pos_emb = rope
            .is_none()
            .then(|| Embedding::new(cfg.context_length, cfg.emb_dim, rng));
        let trf_blocks = (0..cfg.n_layers)
            .map(|_| TransformerBlock::new(cfg, rng))
            .collect::<Result<_>>()?;
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
            final_norm: match cfg.arch.decoder() {
                None => Norm::Layer(LayerNorm::new(cfg.emb_dim)),
                Some(s) => Norm::Rms(RmsNorm::new(cfg.emb_dim, s.norm_eps)),
            },
            out_head,
            rope,
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
        let mut x = self.tok_emb.forward(ids)?;
        if let Some(pos_emb) = &self.pos_emb {
            x = x.add(&pos_emb.forward(&Ids::from_vec((0..t as i64).collect()))?)?;
        }
        let mut x = self.drop_emb.forward(&x, ctx)?;
        // One angle table for every layer (positions 0..T).
        let table = self.rope.as_ref().map(|r| r.table(0, t));
        for block in &self.trf_blocks {
            x = block.forward(&x, ctx, table.as_ref())?;
        }
        self.out_head.forward(&self.final_norm.forward(&x)?)
    }

    /// Every parameter with its book/PyTorch name, in `model.parameters()` order. A tied
    /// `out_head.weight` is listed once (as `tok_emb.weight`).
    pub fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        out.push(("tok_emb.weight".to_string(), self.tok_emb.weight.clone()));
        if let Some(pos_emb) = &self.pos_emb {
            out.push(("pos_emb.weight".to_string(), pos_emb.weight.clone()));
        }
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
        let other = GptModel::<U>::build(&self.cfg, &mut Rng::placeholder())?;
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
