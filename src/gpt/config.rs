//! `GptConfig`: the book's `GPT_CONFIG_124M` dictionary as a struct, with the GPT-2 presets.

use crate::error::{Error, Result};

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
}

impl GptConfig {
    /// A named preset: `gpt2-small` (124M), `gpt2-medium` (355M), `gpt2-large` (774M), `gpt2-xl`
    /// (1558M), all with GPT-2's 1024-token context; `small` (emb 256, 4 layers, 4 heads,
    /// context 128; the PyTorch reference script's small preset); `tiny` (for tests).
    pub fn preset(name: &str) -> Result<Self> {
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
                    format!("unknown preset {other:?}; known: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, small, tiny"),
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
        })
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
        if !self.emb_dim.is_multiple_of(self.n_heads) {
            return bad(format!(
                "emb_dim {} is not divisible by n_heads {}",
                self.emb_dim, self.n_heads
            ));
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
        let d = self.emb_dim;
        let block = 3 * d * d + if self.qkv_bias { 3 * d } else { 0 } // W_query, W_key, W_value
            + d * d + d                                                // out_proj
            + 4 * d * d + 4 * d + 4 * d * d + d                        // ff
            + 4 * d; // norm1, norm2
        let emb = self.vocab_size * d + self.context_length * d;
        let head = match self.num_classes {
            Some(n) => n * d + n,
            None if self.tie_weights => 0,
            None => self.vocab_size * d,
        };
        emb + self.n_layers * block + 2 * d + head
    }
}
