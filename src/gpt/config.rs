//! `GptConfig`: the book's `GPT_CONFIG_124M` dictionary as a struct, with the GPT-2 presets, and
//! the [`Architecture`] that makes the same model a Llama 3 or a Qwen3.

use crate::error::{Error, Result};
use crate::ops::rope::{Llama3Scaling, Rope};

/// Which decoder the blocks build: the three families differ in four places (the norm, where
/// positions enter, the MLP, and how many key/value heads attention has), and Qwen3 in a fifth
/// (a norm on each query and key head). docs/models.md sets them side by side.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    /// The book's GPT (GPT-2's layout): learned absolute positions, LayerNorm (scale and shift,
    /// eps 1e-5), a GELU MLP of 4·emb_dim, multi-head attention with heads of emb_dim/n_heads and
    /// a bias on out_proj.
    Gpt2,
    /// Llama 3: rotary positions, RMSNorm, a SwiGLU MLP, grouped-query attention; biases on the
    /// four attention projections only with `qkv_bias` (HF `attention_bias`).
    Llama(DecoderShape),
    /// Qwen3: Llama's layout plus an RMSNorm on every query and key head, before RoPE.
    Qwen3(DecoderShape),
}

/// The sizes and constants a Llama-style decoder adds to the book's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderShape {
    /// Key/value heads (grouped-query attention): divides `n_heads`; equal means plain MHA.
    pub n_kv_heads: usize,
    /// Size of one head; independent of emb_dim/n_heads (Qwen3-0.6B: 128 with 1024/16 = 64).
    pub head_dim: usize,
    /// Width of the SwiGLU MLP (HF `intermediate_size`).
    pub hidden_dim: usize,
    /// RMSNorm's ε (HF `rms_norm_eps`).
    pub norm_eps: f64,
    /// RoPE base (HF `rope_theta`).
    pub rope_theta: f64,
    /// Llama 3's frequency rescaling, if the model has it.
    pub rope_scaling: Option<Llama3Scaling>,
}

impl Architecture {
    /// `gpt2`, `llama` or `qwen3` (HF's `model_type`).
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Gpt2 => "gpt2",
            Architecture::Llama(_) => "llama",
            Architecture::Qwen3(_) => "qwen3",
        }
    }

    /// The decoder sizes of a Llama or Qwen3 model (`None` for GPT-2).
    pub fn decoder(&self) -> Option<&DecoderShape> {
        match self {
            Architecture::Gpt2 => None,
            Architecture::Llama(d) | Architecture::Qwen3(d) => Some(d),
        }
    }
}

/// The hyperparameters of a `GPTModel` (the book's config keys, plus weight tying).
#[derive(Clone, Debug, PartialEq)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub context_length: usize,
    pub emb_dim: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub drop_rate: f64,
    pub qkv_bias: bool,
    /// `out_head` shares `tok_emb`'s weight (one parameter, as GPT-2 does). The book's model does
    /// not tie (off by default).
    pub tie_weights: bool,
    /// `Some(n)`: `out_head` is chapter 6's classification head `Linear(emb_dim, n)` with a bias,
    /// in place of the vocabulary projection (and never tied). `None`: a language model.
    pub num_classes: Option<usize>,
    /// The decoder family ([`Architecture::Gpt2`] for the book's model).
    pub arch: Architecture,
}

impl GptConfig {
    /// Every preset name [`GptConfig::preset`] knows.
    pub const PRESETS: [&'static str; 14] = [
        "gpt2-small",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "small",
        "tiny",
        "llama-small",
        "llama-tiny",
        "qwen3-small",
        "qwen3-tiny",
        "llama3.2-1b",
        "llama3.2-3b",
        "qwen3-0.6b",
        "qwen3-1.7b",
    ];

    /// A named preset: `gpt2-small` (124M), `gpt2-medium` (355M), `gpt2-large` (774M), `gpt2-xl`
    /// (1558M), all with GPT-2's 1024-token context; `small` (emb 256, 4 layers, 4 heads,
    /// context 128; the PyTorch reference script's small preset); `tiny` (for tests).
    ///
    /// Llama 3 and Qwen3: `llama-small`/`qwen3-small` and `llama-tiny`/`qwen3-tiny` are `small`
    /// and `tiny` with the family's blocks (GPT-2's vocabulary, so they train on the bundled text);
    /// `llama3.2-1b`, `llama3.2-3b`, `qwen3-0.6b` and `qwen3-1.7b` have the published models'
    /// sizes, vocabularies, RoPE settings and tied heads (for random-weight benchmarks; their
    /// weights load with `--model`).
    pub fn preset(name: &str) -> Result<Self> {
        if let Some(cfg) = Self::decoder_preset(name) {
            return Ok(cfg);
        }
        let (emb_dim, n_layers, n_heads, context_length) = match name {
            "gpt2-small" | "124M" => (768, 12, 12, 1024),
            "gpt2-medium" | "355M" => (1024, 24, 16, 1024),
            "gpt2-large" | "774M" => (1280, 36, 20, 1024),
            "gpt2-xl" | "1558M" => (1600, 48, 25, 1024),
            "small" => (256, 4, 4, 128),
            "tiny" => (48, 2, 4, 32),
            other => {
                return Err(Error::invalid(
                    "GptConfig::preset",
                    format!(
                        "unknown preset {other:?}; known: {}",
                        Self::PRESETS.join(", ")
                    ),
                ))
            }
        };
        Ok(GptConfig {
            vocab_size: 50257,
            context_length,
            emb_dim,
            n_heads,
            n_layers,
            drop_rate: 0.1,
            qkv_bias: false,
            tie_weights: false,
            num_classes: None,
            arch: Architecture::Gpt2,
        })
    }

    /// The Llama 3 / Qwen3 presets (see [`GptConfig::preset`]).
    fn decoder_preset(name: &str) -> Option<Self> {
        let llama3_scaling = |factor: f64| Llama3Scaling {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        // (vocab, context, emb, layers, heads, kv heads, head dim, hidden, tied, qwen3)
        let (vocab, ctx, d, layers, heads, kv, hd, hidden, tied, qwen) = match name {
            "llama-small" => (50257, 128, 256, 4, 4, 2, 64, 768, false, false),
            "llama-tiny" => (50257, 32, 48, 2, 4, 2, 12, 128, false, false),
            "qwen3-small" => (50257, 128, 256, 4, 4, 2, 64, 768, false, true),
            "qwen3-tiny" => (50257, 32, 48, 2, 4, 2, 16, 128, false, true),
            "llama3.2-1b" => (128_256, 131_072, 2048, 16, 32, 8, 64, 8192, true, false),
            "llama3.2-3b" => (128_256, 131_072, 3072, 28, 24, 8, 128, 8192, true, false),
            "qwen3-0.6b" => (151_936, 40_960, 1024, 28, 16, 8, 128, 3072, true, true),
            "qwen3-1.7b" => (151_936, 40_960, 2048, 28, 16, 8, 128, 6144, true, true),
            _ => return None,
        };
        let real = matches!(
            name,
            "llama3.2-1b" | "llama3.2-3b" | "qwen3-0.6b" | "qwen3-1.7b"
        );
        let shape = DecoderShape {
            n_kv_heads: kv,
            head_dim: hd,
            hidden_dim: hidden,
            norm_eps: if qwen { 1e-6 } else { 1e-5 },
            rope_theta: if qwen { 1_000_000.0 } else { 500_000.0 },
            rope_scaling: (real && !qwen).then(|| llama3_scaling(32.0)),
        };
        Some(GptConfig {
            vocab_size: vocab,
            context_length: ctx,
            emb_dim: d,
            n_heads: heads,
            n_layers: layers,
            // The published models train without dropout; the small ones keep the book's 0.1.
            drop_rate: if real { 0.0 } else { 0.1 },
            qkv_bias: false,
            tie_weights: tied,
            num_classes: None,
            arch: if qwen {
                Architecture::Qwen3(shape)
            } else {
                Architecture::Llama(shape)
            },
        })
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        match self.arch.decoder() {
            Some(d) => d.head_dim,
            None => self.emb_dim / self.n_heads.max(1),
        }
    }

    /// Key/value heads (`n_heads` unless the model groups its queries).
    pub fn n_kv_heads(&self) -> usize {
        self.arch.decoder().map_or(self.n_heads, |d| d.n_kv_heads)
    }

    /// Width of the MLP's hidden layer (4·emb_dim for GPT-2).
    pub fn hidden_dim(&self) -> usize {
        self.arch
            .decoder()
            .map_or(4 * self.emb_dim, |d| d.hidden_dim)
    }

    /// The rotary embedding of a Llama or Qwen3 model (`None` for GPT-2's learned positions).
    pub fn rope(&self) -> Result<Option<Rope>> {
        self.arch
            .decoder()
            .map(|d| Rope::new(d.head_dim, d.rope_theta, d.rope_scaling))
            .transpose()
    }

    /// A preset with a shorter context (as the book's ch05 run uses 256 of GPT-2's 1024); a longer
    /// one than the preset's is an error naming both.
    pub fn preset_with_context(name: &str, context_length: usize) -> Result<Self> {
        let mut cfg = Self::preset(name)?;
        if context_length == 0 || context_length > cfg.context_length {
            return Err(Error::invalid(
                "GptConfig",
                format!("context length {context_length} exceeds the {name} preset's maximum of {} (or is 0)", cfg.context_length),
            ));
        }
        cfg.context_length = context_length;
        Ok(cfg)
    }

    /// Checks the numbers fit together (heads divide the embedding, nothing is zero).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("GptConfig", msg));
        if self.vocab_size == 0
            || self.context_length == 0
            || self.emb_dim == 0
            || self.n_heads == 0
            || self.n_layers == 0
        {
            return bad(format!("every size must be positive: {self:?}"));
        }
        match self.arch.decoder() {
            None if !self.emb_dim.is_multiple_of(self.n_heads) => {
                return bad(format!(
                    "emb_dim {} is not divisible by n_heads {}",
                    self.emb_dim, self.n_heads
                ));
            }
            None => {}
            Some(d) => {
                if d.n_kv_heads == 0 || !self.n_heads.is_multiple_of(d.n_kv_heads) {
                    return bad(format!(
                        "{} key/value heads do not divide {} query heads",
                        d.n_kv_heads, self.n_heads
                    ));
                }
                if d.hidden_dim == 0 {
                    return bad("the MLP's hidden_dim must be positive".into());
                }
                if !(d.norm_eps.is_finite() && d.norm_eps > 0.0) {
                    return bad(format!("norm_eps must be positive, got {}", d.norm_eps));
                }
                self.rope()
                    .map_err(|e| Error::invalid("GptConfig", e.to_string()))?;
            }
        }
        if !(0.0..1.0).contains(&self.drop_rate) {
            return bad(format!(
                "drop_rate must be in [0, 1), got {}",
                self.drop_rate
            ));
        }
        if let Some(n) = self.num_classes {
            if n < 2 {
                return bad(format!("a classifier needs at least 2 classes, got {n}"));
            }
            if self.tie_weights {
                return bad("a classification head cannot be tied to the token embedding".into());
            }
        }
        Ok(())
    }

    /// Width of the output head: the number of classes of a classifier, else the vocabulary.
    pub fn out_dim(&self) -> usize {
        self.num_classes.unwrap_or(self.vocab_size)
    }

    /// The number of parameters, counting a tied weight once.
    pub fn num_parameters(&self) -> usize {
        self.checked_num_parameters().unwrap_or(usize::MAX)
    }

    /// [`Self::num_parameters`], or `None` if the sizes overflow (a config read from a file is
    /// checked with this before anything is allocated).
    pub fn checked_num_parameters(&self) -> Option<usize> {
        // In u128: no product of these sizes can overflow it; the total must fit a usize.
        let w = |x: usize| x as u128;
        let d = w(self.emb_dim);
        let (block, emb) = match self.arch.decoder() {
            None => (
                3 * d * d + if self.qkv_bias { 3 * d } else { 0 } // W_query, W_key, W_value
                + d * d + d                                        // out_proj
                + 4 * d * d + 4 * d + 4 * d * d + d                // ff
                + 4 * d, // norm1, norm2
                w(self.vocab_size) * d + w(self.context_length) * d,
            ),
            Some(s) => {
                let hd = w(s.head_dim);
                let (q, kv) = (w(self.n_heads) * hd, w(s.n_kv_heads) * hd);
                let biases = if self.qkv_bias { q + 2 * kv + d } else { 0 };
                let qk_norm = match self.arch {
                    Architecture::Qwen3(_) => 2 * hd,
                    _ => 0,
                };
                (
                    d * q + 2 * d * kv + q * d + biases + qk_norm + 3 * d * w(s.hidden_dim) + 2 * d,
                    w(self.vocab_size) * d,
                )
            }
        };
        let head = match self.num_classes {
            Some(n) => w(n) * d + w(n),
            None if self.tie_weights => 0,
            None => w(self.vocab_size) * d,
        };
        let final_norm = if self.arch.decoder().is_some() {
            d
        } else {
            2 * d
        };
        let total = emb + w(self.n_layers) * block + final_norm + head;
        usize::try_from(total).ok()
    }
}
