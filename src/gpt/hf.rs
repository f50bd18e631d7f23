//! Loading OpenAI's GPT-2 weights in the Hugging Face layout (book §5.5): a folder with
//! `config.json` and `model.safetensors` (or shards, read by [`super::hf_weights`]), as
//! `save_pretrained` or the hub writes it. Llama and Qwen3 folders: [`super::hf_llama`].
//!
//! What the loader has to know about that layout:
//! - keys may carry a `transformer.` prefix (transformers' own saves) or not (OpenAI's uploads);
//!   the buffers `h.N.attn.bias` / `h.N.attn.masked_bias` (causal masks) may be present and are
//!   ignored; `lm_head.weight` is usually absent because the head is tied to `wte`;
//! - GPT-2 uses `Conv1D` layers, whose weights are `(in, out)` with `y = x·W + b` — the transpose
//!   of `nn.Linear`'s `(out, in)` that the book's model uses — so every projection is transposed;
//! - `c_attn` is the query, key and value projections side by side: columns `0..D` are q,
//!   `D..2D` k, `2D..3D` v (each later split into heads of `D/n_head` columns, as ours);
//! - tensors may be stored as f32, f16 or bf16; we compute in f32.
//!
//! The file is memory-mapped, so its bytes are read straight from the page cache into each
//! parameter: the process never holds a second full copy of the weights.

use std::path::Path;

use safetensors::Dtype;
use serde_json::Value;

use super::hf_weights::{WeightMaps, Weights};
use super::{FeedForward, GptConfig, GptModel};
use crate::data::text_file::read_text;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The fields of a GPT-2 `config.json` the model needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HfGpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub layer_norm_epsilon: f64,
}

impl HfGpt2Config {
    /// Parse `config.json`, refusing what the book's model cannot represent.
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::parse(what, format!("not valid JSON: {e}")))?;
        let int = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| Error::parse(what, format!("missing or non-integer field {k:?}")))
        };
        if let Some(act) = v.get("activation_function").and_then(Value::as_str) {
            if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
                return Err(Error::parse(
                    what,
                    format!("activation_function {act:?} is not GPT-2's tanh GELU (gelu_new)"),
                ));
            }
        }
        let cfg = HfGpt2Config {
            vocab_size: int("vocab_size")?,
            n_positions: int("n_positions")?,
            n_embd: int("n_embd")?,
            n_layer: int("n_layer")?,
            n_head: int("n_head")?,
            layer_norm_epsilon: v
                .get("layer_norm_epsilon")
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
        };
        if cfg.n_head == 0 || !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(Error::parse(
                what,
                format!(
                    "n_embd {} is not a multiple of n_head {}",
                    cfg.n_embd, cfg.n_head
                ),
            ));
        }
        Ok(cfg)
    }

    /// The book's configuration for these weights: qkv biases on (GPT-2 has them), tied output
    /// head (OpenAI's checkpoints; an `lm_head.weight` of its own unties it), context =
    /// n_positions, no dropout (set it for fine-tuning).
    pub fn gpt_config(&self) -> GptConfig {
        GptConfig {
            vocab_size: self.vocab_size,
            context_length: self.n_positions,
            emb_dim: self.n_embd,
            n_heads: self.n_head,
            n_layers: self.n_layer,
            drop_rate: 0.0,
            qkv_bias: true,
            tie_weights: true,
            num_classes: None,
            arch: crate::gpt::Architecture::Gpt2,
        }
    }
}

pub use super::hf_weights::{bf16_to_f32, f16_to_f32};

/// Transpose a row-major (rows, cols) matrix.
pub(crate) fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// GPT-2's learned position embedding (a Llama or Qwen3 model has none: an error, not a panic).
fn gpt2_pos_emb(model: &GptModel) -> Result<&crate::nn::Embedding> {
    model.pos_emb.as_ref().ok_or_else(|| not_gpt2(model))
}

/// LayerNorm's shift β (RMSNorm has none).
fn shift_of(norm: &crate::nn::Norm) -> Result<&Tensor> {
    norm.shift()
        .ok_or_else(|| Error::invalid("GPT-2 layout", "an RMSNorm has no shift: not a GPT-2 model"))
}

/// The GELU MLP's two layers.
fn gelu_mlp(ff: &FeedForward) -> Result<(&crate::nn::Linear, &crate::nn::Linear)> {
    match ff {
        FeedForward::Gelu { fc1, fc2 } => Ok((fc1, fc2)),
        FeedForward::SwiGlu { .. } => Err(Error::invalid(
            "GPT-2 layout",
            "a SwiGLU MLP has no GPT-2 form: not a GPT-2 model",
        )),
    }
}

fn not_gpt2(model: &GptModel) -> Error {
    Error::invalid(
        "GPT-2 layout",
        format!(
            "the model is a {} model; its Hugging Face form is written by export_hf_decoder",
            model.cfg.arch.name()
        ),
    )
}

/// GPT-2's tensors: the names without the optional `transformer.` prefix.
struct Gpt2Weights<'a> {
    files: &'a Weights<'a>,
    prefix: &'static str,
}

impl Gpt2Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.files.get(&format!("{}{name}", self.prefix), shape)
    }
}

/// Moves `data` into the parameter as its value (no copy: loading holds the model plus one
/// tensor, not two).
pub(crate) fn set(model_param: &Tensor, data: Vec<f32>) -> Result<()> {
    let shape = model_param.shape();
    let value = crate::tensor::CpuArray::from_shape_vec(ndarray::IxDyn(&shape), data)
        .map_err(|e| Error::invalid("load", format!("values for shape {shape:?}: {e}")))?;
    model_param.set_value(value)
}

impl GptModel {
    /// The book's GPTModel with OpenAI's GPT-2 weights from a Hugging Face folder
    /// (`config.json` + `model.safetensors`).
    pub fn from_hf_gpt2(dir: impl AsRef<Path>) -> Result<GptModel> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::parse(
                dir.display().to_string(),
                "not a Hugging Face model folder: config.json is missing",
            ));
        }
        let hf = HfGpt2Config::parse(
            &read_text(&config_path)?,
            &config_path.display().to_string(),
        )?;
        let maps = WeightMaps::open(dir)?;
        let files = maps.tensors()?;
        let prefix = if files.names().any(|n| n.starts_with("transformer.")) {
            "transformer."
        } else {
            ""
        };
        let w = Gpt2Weights {
            files: &files,
            prefix,
        };
        let mut cfg = hf.gpt_config();
        // A separate output head (a fine-tune or an export of an untied model) unties it.
        let lm_head = files.has("lm_head.weight");
        if lm_head {
            cfg.tie_weights = false;
        }
        let model = GptModel::new_from(&cfg, &mut crate::tensor::rng::Rng::placeholder())?;
        let (d, v, t) = (cfg.emb_dim, cfg.vocab_size, cfg.context_length);
        set(&model.tok_emb.weight, w.get("wte.weight", &[v, d])?)?;
        set(&gpt2_pos_emb(&model)?.weight, w.get("wpe.weight", &[t, d])?)?;
        for (i, block) in model.trf_blocks.iter().enumerate() {
            let h = |s: &str| format!("h.{i}.{s}");
            set(block.norm1.scale(), w.get(&h("ln_1.weight"), &[d])?)?;
            set(shift_of(&block.norm1)?, w.get(&h("ln_1.bias"), &[d])?)?;
            // c_attn: (d, 3d) = [q | k | v] along the output axis; ours are (out, in) each.
            let qkv = w.get(&h("attn.c_attn.weight"), &[d, 3 * d])?;
            let qkv_t = transpose(&qkv, d, 3 * d); // (3d, d): rows 0..d are q's outputs, …
            let qkv_b = w.get(&h("attn.c_attn.bias"), &[3 * d])?;
            let att = &block.att;
            for (j, lin) in [&att.w_query, &att.w_key, &att.w_value]
                .into_iter()
                .enumerate()
            {
                set(&lin.weight, qkv_t[j * d * d..(j + 1) * d * d].to_vec())?;
                let bias = lin.bias.as_ref().expect("qkv_bias is on for GPT-2");
                set(bias, qkv_b[j * d..(j + 1) * d].to_vec())?;
            }
            set(
                &att.out_proj.weight,
                transpose(&w.get(&h("attn.c_proj.weight"), &[d, d])?, d, d),
            )?;
            set(
                att.out_proj.bias.as_ref().expect("out_proj has a bias"),
                w.get(&h("attn.c_proj.bias"), &[d])?,
            )?;
            set(block.norm2.scale(), w.get(&h("ln_2.weight"), &[d])?)?;
            set(shift_of(&block.norm2)?, w.get(&h("ln_2.bias"), &[d])?)?;
            let (fc1, fc2) = gelu_mlp(&block.ff)?;
            set(
                &fc1.weight,
                transpose(&w.get(&h("mlp.c_fc.weight"), &[d, 4 * d])?, d, 4 * d),
            )?;
            set(
                fc1.bias.as_ref().expect("bias"),
                w.get(&h("mlp.c_fc.bias"), &[4 * d])?,
            )?;
            set(
                &fc2.weight,
                transpose(&w.get(&h("mlp.c_proj.weight"), &[4 * d, d])?, 4 * d, d),
            )?;
            set(
                fc2.bias.as_ref().expect("bias"),
                w.get(&h("mlp.c_proj.bias"), &[d])?,
            )?;
        }
        set(model.final_norm.scale(), w.get("ln_f.weight", &[d])?)?;
        set(shift_of(&model.final_norm)?, w.get("ln_f.bias", &[d])?)?;
        // Tied: the head is wte itself (one shared parameter, set above). Untied: its own matrix,
        // (vocab, d) as nn.Linear stores it (lm_head is a Linear in transformers, not a Conv1D).
        if lm_head {
            set(
                &model.out_head.weight,
                files.get("lm_head.weight", &[v, d])?,
            )?;
        }
        let eps = hf.layer_norm_epsilon;
        let mut model = model;
        for b in &mut model.trf_blocks {
            b.norm1.set_eps(eps);
            b.norm2.set_eps(eps);
        }
        model.final_norm.set_eps(eps);
        Ok(model)
    }
}

/// Write `model` as a Hugging Face GPT-2 folder (`config.json` + `model.safetensors`, F32) that
/// `transformers.GPT2LMHeadModel.from_pretrained` loads: Conv1D `(in, out)` layouts, q/k/v joined
/// into `c_attn`, keys with the `transformer.` prefix; a tied head is stored once (as `wte`), an
/// untied one as `lm_head.weight` with `tie_word_embeddings: false`. A model without qkv biases
/// (the book's default) gets zero `c_attn` biases — the same function. Files are written
/// atomically (temp file + rename).
pub fn export_hf_gpt2(model: &GptModel, dir: impl AsRef<Path>) -> Result<()> {
    use safetensors::tensor::TensorView;
    let dir = dir.as_ref();
    if model.cfg.arch != crate::gpt::Architecture::Gpt2 {
        return Err(not_gpt2(model));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cfg = &model.cfg;
    let d = cfg.emb_dim;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        tensors.push((format!("transformer.{name}"), shape, data))
    };
    push(
        "wte.weight".into(),
        vec![cfg.vocab_size, d],
        model.tok_emb.weight.to_vec()?,
    );
    push(
        "wpe.weight".into(),
        vec![cfg.context_length, d],
        gpt2_pos_emb(model)?.weight.to_vec()?,
    );
    for (i, b) in model.trf_blocks.iter().enumerate() {
        let h = |s: &str| format!("h.{i}.{s}");
        push(h("ln_1.weight"), vec![d], b.norm1.scale().to_vec()?);
        push(h("ln_1.bias"), vec![d], shift_of(&b.norm1)?.to_vec()?);
        let att = &b.att;
        let mut qkv_t = Vec::with_capacity(3 * d * d); // (3d, d): our three (out, in) stacked
        let mut qkv_b = Vec::with_capacity(3 * d);
        for lin in [&att.w_query, &att.w_key, &att.w_value] {
            qkv_t.extend(lin.weight.to_vec()?);
            match &lin.bias {
                Some(bias) => qkv_b.extend(bias.to_vec()?),
                None => qkv_b.extend(std::iter::repeat_n(0.0, d)),
            }
        }
        push(
            h("attn.c_attn.weight"),
            vec![d, 3 * d],
            transpose(&qkv_t, 3 * d, d),
        );
        push(h("attn.c_attn.bias"), vec![3 * d], qkv_b);
        push(
            h("attn.c_proj.weight"),
            vec![d, d],
            transpose(&att.out_proj.weight.to_vec()?, d, d),
        );
        let bias_of = |l: &crate::nn::Linear| -> Result<Vec<f32>> {
            l.bias
                .as_ref()
                .map_or_else(|| Ok(vec![0.0; l.weight.shape()[0]]), |b| b.to_vec())
        };
        push(h("attn.c_proj.bias"), vec![d], bias_of(&att.out_proj)?);
        push(h("ln_2.weight"), vec![d], b.norm2.scale().to_vec()?);
        push(h("ln_2.bias"), vec![d], shift_of(&b.norm2)?.to_vec()?);
        let (fc1, fc2) = gelu_mlp(&b.ff)?;
        push(
            h("mlp.c_fc.weight"),
            vec![d, 4 * d],
            transpose(&fc1.weight.to_vec()?, 4 * d, d),
        );
        push(h("mlp.c_fc.bias"), vec![4 * d], bias_of(fc1)?);
        push(
            h("mlp.c_proj.weight"),
            vec![4 * d, d],
            transpose(&fc2.weight.to_vec()?, d, 4 * d),
        );
        push(h("mlp.c_proj.bias"), vec![d], bias_of(fc2)?);
    }
    push(
        "ln_f.weight".into(),
        vec![d],
        model.final_norm.scale().to_vec()?,
    );
    push(
        "ln_f.bias".into(),
        vec![d],
        shift_of(&model.final_norm)?.to_vec()?,
    );
    if !cfg.tie_weights {
        tensors.push((
            "lm_head.weight".into(),
            vec![cfg.vocab_size, d],
            model.out_head.weight.to_vec()?,
        ));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid("export_hf_gpt2", e.to_string()))?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::invalid("export_hf_gpt2", e.to_string()))?;
    crate::data::text_file::write_atomic(dir.join("model.safetensors"), &data)?;
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_ctx": cfg.context_length,
        "n_embd": d,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": model.final_norm.eps(),
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "scale_attn_weights": true,
        "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    });
    let text = serde_json::to_string_pretty(&config).expect("serialisable");
    crate::data::text_file::write_atomic(dir.join("config.json"), text.as_bytes())
}

/// The Hugging Face name of one of our parameters (`None` for the tied head), for comparing
/// per-parameter figures with transformers. q/k/v map to the shared `c_attn` tensor.
pub fn hf_name(ours: &str) -> Option<String> {
    let map = [
        ("tok_emb.weight", "transformer.wte.weight"),
        ("pos_emb.weight", "transformer.wpe.weight"),
        ("final_norm.scale", "transformer.ln_f.weight"),
        ("final_norm.shift", "transformer.ln_f.bias"),
    ];
    if let Some((_, h)) = map.iter().find(|(o, _)| *o == ours) {
        return Some(h.to_string());
    }
    let rest = ours.strip_prefix("trf_blocks.")?;
    let (i, tail) = rest.split_once('.')?;
    let hf_tail = match tail {
        "norm1.scale" => "ln_1.weight",
        "norm1.shift" => "ln_1.bias",
        "norm2.scale" => "ln_2.weight",
        "norm2.shift" => "ln_2.bias",
        "att.W_query.weight" | "att.W_key.weight" | "att.W_value.weight" => "attn.c_attn.weight",
        "att.W_query.bias" | "att.W_key.bias" | "att.W_value.bias" => "attn.c_attn.bias",
        "att.out_proj.weight" => "attn.c_proj.weight",
        "att.out_proj.bias" => "attn.c_proj.bias",
        "ff.layers.0.weight" => "mlp.c_fc.weight",
        "ff.layers.0.bias" => "mlp.c_fc.bias",
        "ff.layers.2.weight" => "mlp.c_proj.weight",
        "ff.layers.2.bias" => "mlp.c_proj.bias",
        _ => return None,
    };
    Some(format!("transformer.h.{i}.{hf_tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("trf_blocks.3.att.W_key.bias").unwrap(),
            "transformer.h.3.attn.c_attn.bias"
        );
        assert_eq!(
            hf_name("trf_blocks.0.ff.layers.2.weight").unwrap(),
            "transformer.h.0.mlp.c_proj.weight"
        );
        assert_eq!(hf_name("tok_emb.weight").unwrap(), "transformer.wte.weight");
        assert!(hf_name("out_head.weight").is_none());
    }
}
