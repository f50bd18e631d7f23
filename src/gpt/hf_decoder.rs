//! The `config.json` of a Hugging Face Llama 3 (`LlamaForCausalLM`) or Qwen3
//! (`Qwen3ForCausalLM`) folder: what a decoder of those families needs, read from either of the
//! two forms transformers writes.
//!
//! - **RoPE.** transformers 5 writes one dict, `"rope_parameters": {"rope_type": "llama3",
//!   "rope_theta": 500000.0, "factor": 8.0, …}`; transformers 4 (the hub's Llama 3.x and Qwen3
//!   files) a top-level `"rope_theta"` and a `"rope_scaling"` dict with the same keys, or `null`
//!   (older files say `"type"` for `"rope_type"`). The first form wins when both are present;
//!   with no type the rotation is "default" (unscaled), with no theta 10,000. Types other than
//!   "default" and "llama3" (YaRN, dynamic NTK, …) are an error naming the type.
//! - **Sizes.** `head_dim` is its own field (Qwen3's 128 with hidden 1024 and 16 heads is not
//!   hidden/heads); when absent it is `hidden_size / num_attention_heads`. `num_key_value_heads`
//!   (absent: as many as query heads) must divide the query heads (grouped-query attention).
//! - **Family.** `model_type` "llama" or "qwen3"; Qwen3 adds the per-head q/k RMSNorm.
//! - What the family's forward does not do is refused rather than ignored: an activation other
//!   than SiLU, a sliding window that is switched on, MLP biases, Llama's tensor-parallel
//!   `pretraining_tp` > 1 (which only changes the order of float sums in transformers, but is
//!   checked by nobody here).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::ops::rope::{Llama3Scaling, Rope};

/// Which decoder a config describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderFamily {
    /// Llama 3 / 3.1 / 3.2: RMSNorm, SwiGLU, RoPE (with Llama 3 scaling), GQA.
    Llama,
    /// Qwen3: Llama's layout plus an RMSNorm on each query and key head before RoPE.
    Qwen3,
}

/// The fields of a Llama / Qwen3 `config.json` the model needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HfDecoderConfig {
    pub family: DecoderFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k, v (and o) projections.
    pub attention_bias: bool,
}

impl HfDecoderConfig {
    /// Parses `config.json`'s text; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::parse(what, format!("not valid JSON: {e}")))?;
        let bad = |msg: String| Error::parse(what, msg);
        let int = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("missing or non-integer field {k:?}")))
        };
        let family = match v["model_type"].as_str() {
            Some("llama") => DecoderFamily::Llama,
            Some("qwen3") => DecoderFamily::Qwen3,
            other => {
                return Err(bad(format!(
                    "model_type {other:?} is not a supported decoder (llama, qwen3; GPT-2 folders load as gpt2)"
                )))
            }
        };
        if let Some(act) = v["hidden_act"].as_str() {
            if act != "silu" {
                return Err(bad(format!(
                    "hidden_act {act:?}: the SwiGLU here uses SiLU"
                )));
            }
        }
        if v["use_sliding_window"].as_bool() == Some(true) {
            return Err(bad(
                "use_sliding_window is true: sliding-window attention is not supported".into(),
            ));
        }
        if v["mlp_bias"].as_bool() == Some(true) {
            return Err(bad("mlp_bias is true: MLP biases are not supported".into()));
        }
        if v["pretraining_tp"].as_u64().is_some_and(|tp| tp > 1) {
            return Err(bad(format!(
                "pretraining_tp {} > 1 is not supported",
                v["pretraining_tp"]
            )));
        }
        let hidden_size = int("hidden_size")?;
        let num_attention_heads = int("num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(bad("num_attention_heads is 0".into()));
        }
        let num_key_value_heads = match v.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => int("num_key_value_heads")?,
        };
        if num_key_value_heads == 0 || !num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(bad(format!(
                "{num_key_value_heads} key/value heads do not divide {num_attention_heads} query heads"
            )));
        }
        let head_dim = match v.get("head_dim") {
            None | Some(Value::Null) => {
                if !hidden_size.is_multiple_of(num_attention_heads) {
                    return Err(bad(format!(
                        "no head_dim, and hidden_size {hidden_size} is not a multiple of {num_attention_heads} heads"
                    )));
                }
                hidden_size / num_attention_heads
            }
            Some(_) => int("head_dim")?,
        };
        let (rope_theta, rope_scaling) = rope_settings(&v, what)?;
        let cfg = HfDecoderConfig {
            family,
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            max_position_embeddings: int("max_position_embeddings")?,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
            attention_bias: v["attention_bias"].as_bool().unwrap_or(false),
        };
        // Checks the rotation can be built (an even head size).
        cfg.rope().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    /// The rotary embedding these settings describe.
    pub fn rope(&self) -> Result<Rope> {
        Rope::new(self.head_dim, self.rope_theta, self.rope_scaling)
    }
}

/// `(rope_theta, Llama 3 scaling)` from `rope_parameters` (transformers 5) or `rope_theta` +
/// `rope_scaling` (transformers 4).
fn rope_settings(v: &Value, what: &str) -> Result<(f64, Option<Llama3Scaling>)> {
    let bad = |msg: String| Error::parse(what, msg);
    let params = match &v["rope_parameters"] {
        Value::Object(_) => v["rope_parameters"].clone(),
        _ => {
            let mut p = match &v["rope_scaling"] {
                Value::Object(m) => Value::Object(m.clone()),
                Value::Null => serde_json::json!({}),
                other => return Err(bad(format!("rope_scaling {other} is not an object"))),
            };
            if let Some(theta) = v.get("rope_theta") {
                p["rope_theta"] = theta.clone();
            }
            p
        }
    };
    // The theta: the dict's, else a top-level one (a file mixing the two forms), else 10,000.
    let theta = match (params.get("rope_theta"), v.get("rope_theta")) {
        (Some(t), _) | (None, Some(t)) if !t.is_null() => t
            .as_f64()
            .ok_or_else(|| bad(format!("rope_theta {t} is not a number")))?,
        _ => 10_000.0,
    };
    let kind = params["rope_type"]
        .as_str()
        .or_else(|| params["type"].as_str())
        .unwrap_or("default");
    let scaling = match kind {
        "default" => None,
        "llama3" => {
            let num = |k: &str| {
                params[k]
                    .as_f64()
                    .ok_or_else(|| bad(format!("llama3 RoPE scaling without {k:?}")))
            };
            Some(Llama3Scaling {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
            })
        }
        other => {
            return Err(bad(format!(
                "RoPE type {other:?} is not supported (default, llama3)"
            )))
        }
    };
    Ok((theta, scaling))
}
