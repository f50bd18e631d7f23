//! Llama 3 (`LlamaForCausalLM`) and Qwen3 (`Qwen3ForCausalLM`) weights in the Hugging Face
//! layout: loaded into the one [`GptModel`] (configured by its [`Architecture`]) and written
//! back.
//!
//! What the layout holds (the fixtures' README gives every tensor): `nn.Linear` weights are
//! `(out, in)` like ours, so every tensor is a rename — `model.layers.{i}.self_attn.q_proj` is our
//! `trf_blocks.{i}.att.W_query`, `mlp.gate_proj`/`up_proj`/`down_proj` are the book's
//! `ff.fc1`/`fc2`/`fc3`, `input_layernorm` and `post_attention_layernorm` are `norm1` and
//! `norm2`, `model.norm` is `final_norm`. q/k/v rows are head-major, as our `view(T, H, hd)`
//! expects. A tied head is not stored (`tie_word_embeddings`); an untied one is
//! `lm_head.weight`. Old checkpoints' `rotary_emb.inv_freq` buffers are ignored (we compute the
//! frequencies); any other tensor we do not know is an error, not silently dropped.

use std::path::Path;

use safetensors::Dtype;
use serde_json::{json, Value};

use super::hf::set;
use super::hf_decoder::{DecoderFamily, HfDecoderConfig};
use super::hf_weights::{f32_to_bf16, WeightMaps, INDEX_FILE};
use super::{Architecture, DecoderShape, GptConfig, GptModel};
use crate::data::text_file::{read_text, write_atomic};
use crate::error::{Error, Result};

impl HfDecoderConfig {
    /// Our configuration for these weights: context = `max_position_embeddings`, no dropout
    /// (set it for fine-tuning), biases on the attention projections iff `attention_bias`.
    pub fn gpt_config(&self) -> GptConfig {
        let shape = DecoderShape {
            n_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            hidden_dim: self.intermediate_size,
            norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling: self.rope_scaling,
        };
        GptConfig {
            vocab_size: self.vocab_size,
            context_length: self.max_position_embeddings,
            emb_dim: self.hidden_size,
            n_heads: self.num_attention_heads,
            n_layers: self.num_hidden_layers,
            drop_rate: 0.0,
            qkv_bias: self.attention_bias,
            tie_weights: self.tie_word_embeddings,
            num_classes: None,
            arch: match self.family {
                DecoderFamily::Llama => Architecture::Llama(shape),
                DecoderFamily::Qwen3 => Architecture::Qwen3(shape),
            },
        }
    }
}

/// The Hugging Face name of one of our Llama/Qwen3 parameters (without the `model.` prefix for
/// the base model's tensors; `lm_head.weight` for an untied head), or `None` if it has none.
pub fn decoder_hf_name(ours: &str) -> Option<String> {
    match ours {
        "tok_emb.weight" => return Some("model.embed_tokens.weight".into()),
        "final_norm.scale" => return Some("model.norm.weight".into()),
        "out_head.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = ours.strip_prefix("trf_blocks.")?;
    let (i, tail) = rest.split_once('.')?;
    let (module, param) = tail.rsplit_once('.')?;
    let hf_module = match module {
        "norm1" => "input_layernorm",
        "norm2" => "post_attention_layernorm",
        "att.W_query" => "self_attn.q_proj",
        "att.W_key" => "self_attn.k_proj",
        "att.W_value" => "self_attn.v_proj",
        "att.out_proj" => "self_attn.o_proj",
        "att.q_norm" => "self_attn.q_norm",
        "att.k_norm" => "self_attn.k_norm",
        "ff.fc1" => "mlp.gate_proj",
        "ff.fc2" => "mlp.up_proj",
        "ff.fc3" => "mlp.down_proj",
        _ => return None,
    };
    let hf_param = match param {
        "scale" | "weight" => "weight",
        "bias" => "bias",
        _ => return None,
    };
    Some(format!("model.layers.{i}.{hf_module}.{hf_param}"))
}

/// The Hugging Face names of every parameter of a Llama/Qwen3 model of `cfg` (with the
/// `model.` prefix; `lm_head.weight` only when untied) — what its file must hold.
fn expected_hf_names(cfg: &GptConfig) -> Vec<String> {
    let mut out = vec!["model.embed_tokens.weight".to_string()];
    let qwen3 = matches!(cfg.arch, Architecture::Qwen3(_));
    for i in 0..cfg.n_layers {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        out.push(l("input_layernorm.weight"));
        out.push(l("post_attention_layernorm.weight"));
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            out.push(l(&format!("self_attn.{p}.weight")));
            if cfg.qkv_bias {
                out.push(l(&format!("self_attn.{p}.bias")));
            }
        }
        if qwen3 {
            out.push(l("self_attn.q_norm.weight"));
            out.push(l("self_attn.k_norm.weight"));
        }
        for p in ["gate_proj", "up_proj", "down_proj"] {
            out.push(l(&format!("mlp.{p}.weight")));
        }
    }
    out.push("model.norm.weight".to_string());
    if !cfg.tie_weights {
        out.push("lm_head.weight".to_string());
    }
    out
}

/// Whether `config.json` in `dir` describes a Llama or Qwen3 model (rather than GPT-2).
pub fn is_decoder_folder(dir: &Path) -> bool {
    read_text(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v["model_type"]
                .as_str()
                .map(|s| matches!(s, "llama" | "qwen3"))
        })
        .unwrap_or(false)
}

impl GptModel {
    /// A Llama 3 or Qwen3 model from a Hugging Face folder: `config.json` and `model.safetensors`
    /// or the shards of `model.safetensors.index.json`, in F32, F16 or BF16.
    pub fn from_hf_decoder(dir: impl AsRef<Path>) -> Result<GptModel> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::parse(
                dir.display().to_string(),
                "not a Hugging Face model folder: config.json is missing",
            ));
        }
        let hf = HfDecoderConfig::parse(
            &read_text(&config_path)?,
            &config_path.display().to_string(),
        )?;
        let mut cfg = hf.gpt_config();
        let maps = WeightMaps::open(dir)?;
        let files = maps.tensors()?;
        // A base-model save (`LlamaModel`) has no `model.` prefix.
        let prefixed = files.names().any(|n| n.starts_with("model."));
        let key = |hf: &str| -> String {
            if prefixed || hf == "lm_head.weight" {
                hf.to_string()
            } else {
                hf.trim_start_matches("model.").to_string()
            }
        };
        let embed_key = key("model.embed_tokens.weight");
        let has_head = files.has("lm_head.weight");
        if !cfg.tie_weights && !has_head {
            return Err(Error::parse(
                files.what("lm_head.weight").to_string(),
                "tie_word_embeddings is false but there is no lm_head.weight",
            ));
        }
        // A tied config with a head of its own in the file: the file's head is the function it
        // describes. Equal to the embedding, it is the tie written out; different, it unties.
        let mut head_is_embedding = false;
        if cfg.tie_weights && has_head {
            if !files.has(&embed_key) {
                // Deduplicated on save: the shared matrix kept under the head's name.
                head_is_embedding = true;
            } else {
                let shape = [cfg.vocab_size, cfg.emb_dim];
                if files.get("lm_head.weight", &shape)? != files.get(&embed_key, &shape)? {
                    cfg.tie_weights = false;
                }
            }
        }
        // What the file must hold, by name, before anything is allocated: no tensor the family
        // does not have (only old checkpoints' rotary buffers, and a head the config ties, are
        // ignored), none missing.
        let wanted: std::collections::HashSet<String> = expected_hf_names(&cfg)
            .iter()
            .map(|n| {
                if head_is_embedding && n == "model.embed_tokens.weight" {
                    "lm_head.weight".to_string()
                } else {
                    key(n)
                }
            })
            .collect();
        let mut unknown: Vec<&str> = files
            .names()
            .filter(|n| !wanted.contains(*n))
            .filter(|n| !n.ends_with("rotary_emb.inv_freq"))
            .filter(|n| !(cfg.tie_weights && *n == "lm_head.weight"))
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
            return Err(Error::parse(
                files.what(unknown[0]).to_string(),
                format!(
                    "{} tensor(s) a {} model does not have: {}{}",
                    unknown.len(),
                    cfg.arch.name(),
                    shown.join(", "),
                    if unknown.len() > 5 { ", …" } else { "" }
                ),
            ));
        }
        let mut missing: Vec<&String> = wanted.iter().filter(|n| !files.has(n)).collect();
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::parse(
                files.what(missing[0]).to_string(),
                format!("missing tensor {}", missing[0]),
            ));
        }
        // The sizes come from config.json: the file must hold that many numbers before they are
        // allocated (a wrong config is an error here, not an allocation of its fantasy sizes).
        let in_file: usize = wanted.iter().filter_map(|n| files.numel(n)).sum();
        let want = cfg
            .checked_num_parameters()
            .ok_or_else(|| Error::parse(config_path.display().to_string(), "the sizes overflow"))?;
        if in_file != want {
            return Err(Error::parse(
                dir.display().to_string(),
                format!(
                    "config.json describes {want} parameters, the weights hold {in_file} numbers"
                ),
            ));
        }
        let model = GptModel::new_from(&cfg, &mut crate::tensor::rng::Rng::placeholder())?;
        for (name, p) in model.named_parameters() {
            let hf_name = decoder_hf_name(&name).ok_or_else(|| {
                Error::invalid(
                    "from_hf_decoder",
                    format!("no Hugging Face name for {name}"),
                )
            })?;
            let k = if head_is_embedding && name == "tok_emb.weight" {
                "lm_head.weight".to_string()
            } else {
                key(&hf_name)
            };
            set(&p, files.get(&k, &p.shape())?)?;
        }
        Ok(model)
    }
}

/// The element type of exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    /// bfloat16, rounded to nearest even (as `model.to(torch.bfloat16)`).
    Bf16,
}

/// How [`export_hf_decoder`] writes the weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    pub dtype: ExportDtype,
    /// Split into `model-0000k-of-0000n.safetensors` shards of at most this many bytes (a tensor
    /// larger than this is a shard of its own), with `model.safetensors.index.json`; `None`: one
    /// `model.safetensors`.
    pub max_shard_bytes: Option<usize>,
    /// `config.json`'s `bos_token_id` (null if `None`).
    pub bos_token_id: Option<u32>,
    /// `config.json`'s `eos_token_id`: one id, a list, or null if empty.
    pub eos_token_ids: Vec<u32>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            dtype: ExportDtype::F32,
            max_shard_bytes: None,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }
}

/// Writes a Llama or Qwen3 `model` as a Hugging Face folder that `LlamaForCausalLM` /
/// `Qwen3ForCausalLM.from_pretrained` loads: `config.json` (with the RoPE settings in both the
/// transformers-5 `rope_parameters` form and the transformers-4 `rope_theta` + `rope_scaling`
/// form, so either version reads it) and the weights under HF names. Files are written
/// atomically; stale weight files of the other layout (single vs sharded) are removed.
pub fn export_hf_decoder(
    model: &GptModel,
    dir: impl AsRef<Path>,
    opts: ExportOptions,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    let dir = dir.as_ref();
    let cfg = &model.cfg;
    let (family, d) = match &cfg.arch {
        Architecture::Llama(d) => ("llama", d),
        Architecture::Qwen3(d) => ("qwen3", d),
        Architecture::Gpt2 => {
            return Err(Error::invalid(
                "export_hf_decoder",
                "a GPT-2 model is written by export_hf_gpt2",
            ))
        }
    };
    if cfg.num_classes.is_some() {
        return Err(Error::invalid(
            "export_hf_decoder",
            "a classifier has no language-model head to export",
        ));
    }
    if model.has_lora() {
        return Err(Error::invalid(
            "export_hf_decoder",
            "merge the LoRA adapters first (merge_lora)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dtype = match opts.dtype {
        ExportDtype::F32 => Dtype::F32,
        ExportDtype::Bf16 => Dtype::BF16,
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in model.named_parameters() {
        let hf = decoder_hf_name(&name).ok_or_else(|| {
            Error::invalid(
                "export_hf_decoder",
                format!("no Hugging Face name for {name}"),
            )
        })?;
        let values = p.to_vec()?;
        let bytes: Vec<u8> = match opts.dtype {
            ExportDtype::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ExportDtype::Bf16 => values
                .iter()
                .flat_map(|&x| f32_to_bf16(x).to_le_bytes())
                .collect(),
        };
        tensors.push((hf, p.shape(), bytes));
    }
    // Shards: consecutive tensors until the next would pass the limit.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0usize;
    for (i, (_, _, b)) in tensors.iter().enumerate() {
        if let Some(max) = opts.max_shard_bytes {
            let last = shards.last().expect("one shard");
            if !last.is_empty() && size + b.len() > max {
                shards.push(Vec::new());
                size = 0;
            }
        }
        size += b.len();
        shards.last_mut().expect("one shard").push(i);
    }
    let n = shards.len();
    let sharded = opts.max_shard_bytes.is_some();
    let file_name = |k: usize| {
        if sharded {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        } else {
            "model.safetensors".to_string()
        }
    };
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in shards.iter().enumerate() {
        let views = shard
            .iter()
            .map(|&i| {
                let (name, shape, bytes) = &tensors[i];
                TensorView::new(dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid("export_hf_decoder", e.to_string()))?;
        let data = safetensors::serialize(views, Some(metadata.clone()))
            .map_err(|e| Error::invalid("export_hf_decoder", e.to_string()))?;
        write_atomic(dir.join(file_name(k)), &data)?;
        for &i in shard {
            weight_map.insert(tensors[i].0.clone(), json!(file_name(k)));
        }
    }
    // Shards of an earlier export with another count would confuse a reader of the folder.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = (0..n).any(|k| file_name(k) == name);
            if !ours && name.starts_with("model-") && name.ends_with(".safetensors") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let total: usize = tensors.iter().map(|t| t.2.len()).sum();
    if sharded {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let text = serde_json::to_string_pretty(&index).expect("serialisable");
        write_atomic(dir.join(INDEX_FILE), text.as_bytes())?;
        let _ = std::fs::remove_file(dir.join("model.safetensors"));
    } else {
        let _ = std::fs::remove_file(dir.join(INDEX_FILE));
    }
    let (rope_parameters, rope_scaling) = match d.rope_scaling {
        None => (
            json!({"rope_type": "default", "rope_theta": d.rope_theta}),
            Value::Null,
        ),
        Some(s) => {
            let scaling = json!({"rope_type": "llama3", "factor": s.factor,
                "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings});
            let mut params = scaling.clone();
            params["rope_theta"] = json!(d.rope_theta);
            (params, scaling)
        }
    };
    let class = if family == "llama" {
        "LlamaForCausalLM"
    } else {
        "Qwen3ForCausalLM"
    };
    let mut config = json!({
        "architectures": [class],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.emb_dim,
        "intermediate_size": d.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": d.n_kv_heads,
        "head_dim": d.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": d.norm_eps,
        "rope_parameters": rope_parameters,
        "rope_theta": d.rope_theta,
        "rope_scaling": rope_scaling,
        "attention_bias": cfg.qkv_bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_weights,
        // Written out: left absent, LlamaConfig's defaults (1 and 2) would stop transformers'
        // generate() at token 2.
        "bos_token_id": opts.bos_token_id,
        "eos_token_id": match opts.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        },
        "pad_token_id": Value::Null,
        "torch_dtype": if opts.dtype == ExportDtype::Bf16 { "bfloat16" } else { "float32" },
        "use_cache": true,
    });
    if family == "llama" {
        config["mlp_bias"] = json!(false);
        config["pretraining_tp"] = json!(1);
    } else {
        config["use_sliding_window"] = json!(false);
    }
    let text = serde_json::to_string_pretty(&config).expect("serialisable");
    write_atomic(dir.join("config.json"), text.as_bytes())
}

/// Any model as a Hugging Face folder: GPT-2's layout for the book's GPT (F32, one file: see
/// [`super::hf::export_hf_gpt2`]), Llama's or Qwen3's for those.
pub fn export_hf(model: &GptModel, dir: impl AsRef<Path>, opts: ExportOptions) -> Result<()> {
    match model.cfg.arch {
        Architecture::Gpt2 => {
            if opts.dtype != ExportDtype::F32 || opts.max_shard_bytes.is_some() {
                return Err(Error::invalid(
                    "export",
                    "a GPT-2 export is one F32 model.safetensors (no --dtype or shards)",
                ));
            }
            super::hf::export_hf_gpt2(model, dir)
        }
        _ => export_hf_decoder(model, dir, opts),
    }
}

/// The configuration of a Hugging Face folder, read from its `config.json` alone (no weights
/// are touched): what `download` reports.
pub fn hf_config(dir: impl AsRef<Path>) -> Result<GptConfig> {
    let config = dir.as_ref().join("config.json");
    let what = config.display().to_string();
    let text = read_text(&config)?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::parse(what.clone(), format!("not valid JSON: {e}")))?;
    match v["model_type"].as_str() {
        Some("gpt2") => Ok(super::hf::HfGpt2Config::parse(&text, &what)?.gpt_config()),
        Some("llama" | "qwen3") => Ok(HfDecoderConfig::parse(&text, &what)?.gpt_config()),
        other => Err(Error::parse(
            what,
            format!("model_type {other:?} is not supported (gpt2, llama, qwen3)"),
        )),
    }
}

/// Any Hugging Face folder this crate reads: GPT-2, Llama or Qwen3, by `config.json`'s
/// `model_type` (another type is an error naming it).
pub fn load_hf(dir: impl AsRef<Path>) -> Result<GptModel> {
    let dir = dir.as_ref();
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(Error::parse(
            dir.display().to_string(),
            "not a Hugging Face model folder: config.json is missing",
        ));
    }
    let what = config.display().to_string();
    let v: Value = serde_json::from_str(&read_text(&config)?)
        .map_err(|e| Error::parse(what.clone(), format!("not valid JSON: {e}")))?;
    match v["model_type"].as_str() {
        Some("gpt2") => GptModel::from_hf_gpt2(dir),
        Some("llama" | "qwen3") => GptModel::from_hf_decoder(dir),
        other => Err(Error::parse(
            what,
            format!("model_type {other:?} is not supported (gpt2, llama, qwen3)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            decoder_hf_name("trf_blocks.3.att.W_key.weight").unwrap(),
            "model.layers.3.self_attn.k_proj.weight"
        );
        assert_eq!(
            decoder_hf_name("trf_blocks.0.att.q_norm.scale").unwrap(),
            "model.layers.0.self_attn.q_norm.weight"
        );
        assert_eq!(
            decoder_hf_name("trf_blocks.1.ff.fc3.weight").unwrap(),
            "model.layers.1.mlp.down_proj.weight"
        );
        assert_eq!(
            decoder_hf_name("trf_blocks.1.norm2.scale").unwrap(),
            "model.layers.1.post_attention_layernorm.weight"
        );
        assert_eq!(
            decoder_hf_name("out_head.weight").unwrap(),
            "lm_head.weight"
        );
        assert!(decoder_hf_name("trf_blocks.0.att.W_query.lora.A").is_none());
    }
}
