//! Checkpoints: one safetensors file holding the model's parameters under their book names, the
//! AdamW moments (`optimizer.m.<name>`, `optimizer.v.<name>`), and in its metadata the model
//! config, the optimizer settings and step count, and the run's position (`TrainState`) as JSON.
//! Written atomically (temporary file, fsync, rename): a crash never leaves half a checkpoint.
//! Loading checks every tensor's presence and shape, naming the first that is wrong.
//!
//! A fine-tuning run's checkpoint (what `--resume` reads) adds three things: LoRA adapters kept
//! unmerged (`….lora.A`/`B` tensors, rank and alpha in `scratchgpt.lora`), DPO's frozen
//! reference weights when they are not the policy's own base (`reference.<name>`), and the
//! command's settings (`scratchgpt.finetune`), which a resume must repeat. Which parameters
//! train is not stored separately: exactly those with optimizer moments do.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

use super::TrainState;
use crate::backend::gemm::Precision;
use crate::data::chat_template::ChatTemplate;
use crate::data::manifest::TokenizerRef;
use crate::data::text_file::write_atomic;
use crate::error::{Error, Result};
use crate::gpt::{Architecture, DecoderShape, GptConfig, GptModel};
use crate::ops::rope::Llama3Scaling;
use crate::optim::{AdamW, AdamWConfig};
use crate::tensor::Tensor;

/// What a checkpoint's model was trained for (metadata `scratchgpt.task`), so `classify` can
/// refuse a language model and `chat` can switch to the Alpaca prompt by itself.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Task {
    /// Next-token prediction (pretraining; also OpenAI's GPT-2 weights).
    #[default]
    Pretrain,
    /// Chapter 6: a classification head; `labels[i]` names class i; `max_length` is the padded
    /// length of the training texts, where the book cuts texts it classifies.
    Classify {
        labels: Vec<String>,
        max_length: Option<usize>,
    },
    /// Chapter 7: instruction-tuned on prompts in `template` (the book's Alpaca, or the
    /// model's chat template), which `chat` then uses by itself.
    Instruct { template: ChatTemplate },
}

impl Task {
    /// The book's chapter 7 task: instruction-tuned on Alpaca prompts.
    pub const INSTRUCT_ALPACA: Task = Task::Instruct {
        template: ChatTemplate::Alpaca,
    };

    /// Whether the model was instruction-tuned (in any template).
    pub fn is_instruct(&self) -> bool {
        matches!(self, Task::Instruct { .. })
    }
}

impl Task {
    fn to_json(&self) -> Value {
        match self {
            Task::Pretrain => json!({"kind": "pretrain"}),
            Task::Classify { labels, max_length } => {
                json!({"kind": "classify", "labels": labels, "max_length": max_length})
            }
            Task::Instruct { template } => {
                json!({"kind": "instruct", "template": template.name()})
            }
        }
    }

    fn from_json(v: &Value) -> Option<Task> {
        match v["kind"].as_str()? {
            "pretrain" => Some(Task::Pretrain),
            // Files from before templates were recorded hold Alpaca-tuned models.
            "instruct" => Some(Task::Instruct {
                template: match v["template"].as_str() {
                    None => ChatTemplate::Alpaca,
                    Some(name) => ChatTemplate::from_name(name).ok()?,
                },
            }),
            "classify" => Some(Task::Classify {
                labels: v["labels"]
                    .as_array()?
                    .iter()
                    .map(|l| l.as_str().map(str::to_string))
                    .collect::<Option<_>>()?,
                max_length: v["max_length"].as_u64().map(|n| n as usize),
            }),
            _ => None,
        }
    }
}

/// What a pretraining checkpoint records about its run besides the weights and the position:
/// the seed, which tokenizer the ids belong to, and what data it trained on (so a resume on
/// other data is caught).
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub seed: u64,
    /// `Folder`: the tokenizer is in `tokenizer/` beside the checkpoint.
    pub tokenizer: TokenizerRef,
    /// The training data's identity (source, token counts), as JSON.
    pub data: Option<Value>,
    /// A fine-tuning run's command and settings (what fixes its position and its maths), as
    /// JSON; a resume compares its own with these.
    pub finetune: Option<Value>,
    /// The matrix products' number format (metadata `scratchgpt.precision`; f32 when absent).
    pub precision: Precision,
}

impl RunInfo {
    /// A run on GPT-2's tokenizer with no data identity recorded.
    pub fn gpt2(seed: u64) -> Self {
        RunInfo {
            seed,
            tokenizer: TokenizerRef::Gpt2,
            data: None,
            finetune: None,
            precision: Precision::F32,
        }
    }
}

/// Everything a checkpoint restores.
pub struct Checkpoint {
    /// Seed, tokenizer and data of the run (GPT-2 and no data for files without them).
    pub info: RunInfo,
    pub task: Task,
    pub model: GptModel,
    pub optimizer: Option<AdamW>,
    pub state: TrainState,
    /// DPO's frozen reference model, when the file holds one (`reference.*` tensors).
    pub reference: Option<GptModel>,
}

/// The name prefix of DPO's reference weights in a resumable checkpoint.
const REFERENCE_PREFIX: &str = "reference.";

fn config_json(c: &GptConfig) -> Value {
    let mut v = json!({"vocab_size": c.vocab_size, "context_length": c.context_length,
           "emb_dim": c.emb_dim, "n_heads": c.n_heads, "n_layers": c.n_layers,
           "drop_rate": c.drop_rate, "qkv_bias": c.qkv_bias, "tie_weights": c.tie_weights,
           "num_classes": c.num_classes, "architecture": c.arch.name()});
    if let Some(d) = c.arch.decoder() {
        v["n_kv_heads"] = json!(d.n_kv_heads);
        v["head_dim"] = json!(d.head_dim);
        v["hidden_dim"] = json!(d.hidden_dim);
        v["norm_eps"] = json!(d.norm_eps);
        v["rope_theta"] = json!(d.rope_theta);
        v["rope_scaling"] = match d.rope_scaling {
            None => Value::Null,
            Some(s) => json!({"factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings}),
        };
    }
    v
}

/// The architecture recorded in a checkpoint's config (absent in files written before Llama
/// and Qwen3 existed here: the book's GPT).
fn architecture_of(c: &Value, what: &str) -> Result<Architecture> {
    let name = match c.get("architecture") {
        None | Some(Value::Null) => return Ok(Architecture::Gpt2),
        Some(v) => v.as_str().unwrap_or(""),
    };
    let bad = |msg: String| Error::parse(what.to_string(), format!("metadata: {msg}"));
    let num = |k: &str| {
        c.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("missing {k}")))
    };
    let int = |k: &str| {
        c.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| bad(format!("missing or non-integer {k}")))
    };
    if name == "gpt2" {
        return Ok(Architecture::Gpt2);
    }
    let rope_scaling = match c.get("rope_scaling") {
        None | Some(Value::Null) => None,
        Some(s) => {
            let f = |k: &str| {
                s.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad(format!("rope_scaling without {k}")))
            };
            Some(Llama3Scaling {
                factor: f("factor")?,
                low_freq_factor: f("low_freq_factor")?,
                high_freq_factor: f("high_freq_factor")?,
                original_max_position_embeddings: f("original_max_position_embeddings")? as usize,
            })
        }
    };
    let shape = DecoderShape {
        n_kv_heads: int("n_kv_heads")?,
        head_dim: int("head_dim")?,
        hidden_dim: int("hidden_dim")?,
        norm_eps: num("norm_eps")?,
        rope_theta: num("rope_theta")?,
        rope_scaling,
    };
    match name {
        "llama" => Ok(Architecture::Llama(shape)),
        "qwen3" => Ok(Architecture::Qwen3(shape)),
        other => Err(bad(format!(
            "unknown architecture {other:?} (gpt2, llama, qwen3)"
        ))),
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Saves model, optimizer and run state of a pretraining run to `path` atomically.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &GptModel,
    optimizer: &AdamW,
    state: &TrainState,
    seed: u64,
) -> Result<()> {
    save_run_checkpoint(path, model, optimizer, state, &RunInfo::gpt2(seed))
}

/// [`save_checkpoint`] recording the run's tokenizer and data as well.
pub fn save_run_checkpoint(
    path: impl AsRef<Path>,
    model: &GptModel,
    optimizer: &AdamW,
    state: &TrainState,
    info: &RunInfo,
) -> Result<()> {
    save_full(
        path,
        model,
        Some(optimizer),
        state,
        info,
        &Task::Pretrain,
        None,
    )
}

/// [`save_checkpoint`] for a model trained for `task` (recorded in the metadata); without an
/// optimizer the file holds the weights alone (what fine-tuning saves: it does not resume).
pub fn save_task_checkpoint(
    path: impl AsRef<Path>,
    model: &GptModel,
    optimizer: Option<&AdamW>,
    state: &TrainState,
    info: &RunInfo,
    task: &Task,
) -> Result<()> {
    save_full(path, model, optimizer, state, info, task, None)
}

/// A fine-tuning run's resumable checkpoint: the model with its LoRA adapters unmerged (if it
/// has them), the optimizer, the position and metric history, the settings in `info.finetune`,
/// and DPO's `reference` model when it is a copy of its own (with LoRA it is the policy's base,
/// already in the file, and is not saved twice).
pub fn save_finetune_checkpoint(
    path: impl AsRef<Path>,
    model: &GptModel,
    optimizer: &AdamW,
    state: &TrainState,
    info: &RunInfo,
    task: &Task,
    reference: Option<&GptModel>,
) -> Result<()> {
    let reference = reference.filter(|_| !model.has_lora());
    save_full(path, model, Some(optimizer), state, info, task, reference)
}

fn save_full(
    path: impl AsRef<Path>,
    model: &GptModel,
    optimizer: Option<&AdamW>,
    state: &TrainState,
    info: &RunInfo,
    task: &Task,
    reference: Option<&GptModel>,
) -> Result<()> {
    let seed = info.seed;
    let path = path.as_ref();
    // A weights-only file is what `chat`, `classify` and `export` read: a plain GPT. Adapters
    // stay unmerged only in a resumable checkpoint, beside the moments that train them.
    if model.has_lora() && optimizer.is_none() {
        return Err(Error::invalid(
            "save_checkpoint",
            "the model has LoRA adapters: merge them (GptModel::merge_lora) or save them alone (save_lora_adapters)",
        ));
    }
    if let Task::Classify { labels, .. } = task {
        if model.cfg.num_classes != Some(labels.len()) {
            return Err(Error::invalid(
                "save_checkpoint",
                format!(
                    "{} class labels for a model with {:?} classes",
                    labels.len(),
                    model.cfg.num_classes
                ),
            ));
        }
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in model.named_parameters() {
        tensors.push((name, p.shape(), f32_bytes(&p.to_vec()?)));
    }
    for (name, p) in reference.iter().flat_map(|r| r.named_parameters()) {
        tensors.push((
            format!("{REFERENCE_PREFIX}{name}"),
            p.shape(),
            f32_bytes(&p.to_vec()?),
        ));
    }
    for s in optimizer.iter().flat_map(|o| &o.state) {
        let shape = s.m.shape().to_vec();
        tensors.push((
            format!("optimizer.m.{}", s.name),
            shape.clone(),
            f32_bytes(&s.m.to_vec()?),
        ));
        tensors.push((
            format!("optimizer.v.{}", s.name),
            shape,
            f32_bytes(&s.v.to_vec()?),
        ));
    }
    let views = tensors
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::parse(path.display().to_string(), e.to_string()))?;
    let mut meta: HashMap<String, String> = [
        ("format".to_string(), "pt".to_string()),
        ("scratchgpt.config".to_string(), config_json(&model.cfg).to_string()),
        ("scratchgpt.task".to_string(), task.to_json().to_string()),
        (
            "scratchgpt.train".to_string(),
            json!({"seed": seed, "global_step": state.global_step, "epoch": state.epoch,
                   "batch_in_epoch": state.batch_in_epoch, "epoch_rng_state": state.epoch_rng_state.to_string(),
                   "tokens_seen": state.tokens_seen, "train_losses": state.train_losses,
                   "val_losses": state.val_losses, "track_tokens_seen": state.track_tokens_seen,
                   "examples_seen": state.examples_seen, "metrics": state.metrics})
            .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    meta.insert(
        "scratchgpt.tokenizer".to_string(),
        info.tokenizer.as_str().to_string(),
    );
    meta.insert(
        "scratchgpt.precision".to_string(),
        info.precision.name().to_string(),
    );
    if let Some(data) = &info.data {
        meta.insert("scratchgpt.data".to_string(), data.to_string());
    }
    if let Some(run) = &info.finetune {
        meta.insert("scratchgpt.finetune".to_string(), run.to_string());
    }
    if let Some((rank, alpha)) = model.lora_settings() {
        meta.insert(
            "scratchgpt.lora".to_string(),
            json!({"rank": rank, "alpha": alpha}).to_string(),
        );
    }
    if let Some(optimizer) = optimizer {
        let oc = &optimizer.cfg;
        meta.insert(
            "scratchgpt.optimizer".to_string(),
            json!({"t": optimizer.t, "lr": oc.lr, "betas": [oc.betas.0, oc.betas.1], "eps": oc.eps,
                   "weight_decay": oc.weight_decay, "exempt_biases_and_norms": oc.exempt_biases_and_norms})
            .to_string(),
        );
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::parse(path.display().to_string(), e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Loads a checkpoint written by [`save_checkpoint`] (or model weights alone, without optimizer
/// and run metadata, in which case `optimizer` is `None` and `state` is fresh) as the model it
/// holds: a fine-tuning run's LoRA adapters are merged into the weights (and the optimizer,
/// whose moments are the adapters', dropped), every parameter trainable — what `chat`,
/// `export` or the start of another run want. [`load_resumable`] keeps the run as it was.
pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let mut ck = load_resumable(path)?;
    if ck.model.has_lora() {
        ck.model.merge_lora()?;
        ck.optimizer = None;
    }
    for (_, p) in ck.model.named_parameters() {
        let _ = p.requires_grad_(true);
    }
    Ok(ck)
}

/// Loads a checkpoint to continue its run: LoRA adapters unmerged over their frozen base, and
/// only the parameters with optimizer moments trainable (a classifier's frozen blocks stay
/// frozen).
pub fn load_resumable(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::parse(
            what.clone(),
            format!("not a valid (or a truncated) checkpoint: {e}"),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::parse(what.clone(), e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get_json = |key: &str| -> Result<Option<Value>> {
        meta.get(key)
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| Error::parse(what.clone(), format!("metadata {key}: {e}")))
            })
            .transpose()
    };
    let c = get_json("scratchgpt.config")?.ok_or_else(|| {
        Error::parse(
            what.clone(),
            "no scratchgpt.config metadata: not a scratchgpt checkpoint",
        )
    })?;
    let num = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| Error::parse(what.clone(), format!("metadata: missing {k}")))
    };
    let cfg = GptConfig {
        vocab_size: num(&c, "vocab_size")? as usize,
        context_length: num(&c, "context_length")? as usize,
        emb_dim: num(&c, "emb_dim")? as usize,
        n_heads: num(&c, "n_heads")? as usize,
        n_layers: num(&c, "n_layers")? as usize,
        drop_rate: num(&c, "drop_rate")?,
        qkv_bias: c["qkv_bias"].as_bool().unwrap_or(false),
        tie_weights: c["tie_weights"].as_bool().unwrap_or(false),
        num_classes: c["num_classes"].as_u64().map(|n| n as usize),
        arch: architecture_of(&c, &what)?,
    };
    let tensor = |name: &str| -> Result<Tensor> {
        let v = st
            .tensor(name)
            .map_err(|_| Error::parse(what.clone(), format!("missing tensor {name}")))?;
        if v.dtype() != Dtype::F32 {
            return Err(Error::parse(
                what.clone(),
                format!("tensor {name} is {:?}, expected F32", v.dtype()),
            ));
        }
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
            .collect();
        Tensor::from_vec(data, v.shape())
    };
    let task = match get_json("scratchgpt.task")? {
        None => Task::Pretrain,
        Some(v) => Task::from_json(&v)
            .ok_or_else(|| Error::parse(what.clone(), format!("metadata: bad task {v}")))?,
    };
    if let Task::Classify { labels, .. } = &task {
        if cfg.num_classes != Some(labels.len()) {
            return Err(Error::parse(
                what,
                format!(
                    "the task names {} classes, the config has {:?}",
                    labels.len(),
                    cfg.num_classes
                ),
            ));
        }
    }
    let mut model = GptModel::new_from(&cfg, &mut crate::tensor::rng::Rng::placeholder())?;
    match get_json("scratchgpt.lora")? {
        // A resumable fine-tuning checkpoint: the adapters, unmerged, over a frozen base.
        Some(l) => {
            let rank = num(&l, "rank")? as usize;
            model.add_lora(rank, num(&l, "alpha")?, 0).map_err(|e| {
                Error::parse(what.clone(), format!("metadata scratchgpt.lora: {e}"))
            })?;
        }
        None => {
            if let Some(name) = st.names().into_iter().find(|n| n.contains(".lora.")) {
                return Err(Error::parse(
                    what,
                    format!(
                        "holds LoRA tensor {name}: load adapters with their base model instead"
                    ),
                ));
            }
        }
    }
    let load_into = |m: &GptModel, prefix: &str| -> Result<()> {
        for (name, p) in m.named_parameters() {
            let full = format!("{prefix}{name}");
            let t = tensor(&full)?;
            if t.shape() != p.shape() {
                return Err(Error::parse(
                    what.clone(),
                    format!(
                        "tensor {full} has shape {:?}, the config implies {:?}",
                        t.shape(),
                        p.shape()
                    ),
                ));
            }
            p.set_value(t.value()?)?;
        }
        Ok(())
    };
    load_into(&model, "")?;
    let reference = match st.names().iter().any(|n| n.starts_with(REFERENCE_PREFIX)) {
        false => None,
        true => {
            let r = GptModel::new_from(&cfg, &mut crate::tensor::rng::Rng::placeholder())?;
            load_into(&r, REFERENCE_PREFIX)?;
            r.freeze_all();
            Some(r)
        }
    };
    let optimizer = match get_json("scratchgpt.optimizer")? {
        None => None,
        Some(o) => {
            let cfg = AdamWConfig {
                lr: num(&o, "lr")?,
                betas: (
                    o["betas"][0].as_f64().unwrap_or(0.9),
                    o["betas"][1].as_f64().unwrap_or(0.999),
                ),
                eps: num(&o, "eps")?,
                weight_decay: num(&o, "weight_decay")?,
                exempt_biases_and_norms: o["exempt_biases_and_norms"].as_bool().unwrap_or(false),
            };
            // Moments exist for the parameters that trained: all of them in pretraining (a
            // missing one is an error), the unfrozen ones after fine-tuning.
            let trained: Vec<_> = model
                .named_parameters()
                .into_iter()
                .filter(|(name, _)| {
                    task == Task::Pretrain || st.tensor(&format!("optimizer.m.{name}")).is_ok()
                })
                .collect();
            // A fine-tuning run froze the rest (LoRA's base, a classifier's lower blocks).
            if task != Task::Pretrain {
                model.freeze_all();
                for (_, p) in &trained {
                    let _ = p.clone().requires_grad_(true);
                }
            }
            let mut opt = AdamW::new(trained, cfg);
            opt.t = num(&o, "t")? as u64;
            for s in &mut opt.state {
                let param = s.param.clone();
                for (which, slot) in [("m", &mut s.m), ("v", &mut s.v)] {
                    let t = tensor(&format!("optimizer.{which}.{}", s.name))?;
                    if t.shape() != slot.shape() {
                        return Err(Error::parse(
                            what,
                            format!("optimizer.{which}.{} has the wrong shape", s.name),
                        ));
                    }
                    *slot = t.to_device_like(&param)?;
                }
            }
            Some(opt)
        }
    };
    let (state, seed) = match get_json("scratchgpt.train")? {
        None => (TrainState::default(), 0),
        Some(t) => {
            // A value that is not a number is an error, not a gap: the lists run in step.
            let list_f = |k: &str| -> Result<Vec<f64>> {
                t[k].as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| {
                                v.as_f64().ok_or_else(|| {
                                    Error::parse(what.clone(), format!("metadata: {k} holds {v}"))
                                })
                            })
                            .collect()
                    })
                    .unwrap_or(Ok(Vec::new()))
            };
            let state = TrainState {
                train_losses: list_f("train_losses")?,
                val_losses: list_f("val_losses")?,
                track_tokens_seen: t["track_tokens_seen"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .map(|x| x as usize)
                            .collect()
                    })
                    .unwrap_or_default(),
                global_step: num(&t, "global_step")? as usize,
                epoch: num(&t, "epoch")? as usize,
                batch_in_epoch: num(&t, "batch_in_epoch")? as usize,
                epoch_rng_state: t["epoch_rng_state"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::parse(what.clone(), "metadata: bad epoch_rng_state"))?,
                tokens_seen: num(&t, "tokens_seen")? as usize,
                examples_seen: t["examples_seen"].as_u64().unwrap_or(0) as usize,
                metrics: match t.get("metrics") {
                    None | Some(Value::Null) => Default::default(),
                    Some(m) => serde_json::from_value(m.clone()).map_err(|e| {
                        Error::parse(what.clone(), format!("metadata: bad metrics: {e}"))
                    })?,
                },
                train_secs: 0.0,
                session_tokens: 0,
            };
            (state, t["seed"].as_u64().unwrap_or(0))
        }
    };
    let tokenizer = match meta.get("scratchgpt.tokenizer") {
        None => TokenizerRef::Gpt2,
        Some(t) => TokenizerRef::parse(t).ok_or_else(|| {
            Error::parse(what.clone(), format!("metadata: unknown tokenizer {t:?}"))
        })?,
    };
    let info = RunInfo {
        seed,
        tokenizer,
        data: get_json("scratchgpt.data")?,
        finetune: get_json("scratchgpt.finetune")?,
        precision: match meta.get("scratchgpt.precision") {
            None => Precision::F32,
            Some(p) => Precision::from_name(p).ok_or_else(|| {
                Error::parse(what.clone(), format!("metadata: unknown precision {p:?}"))
            })?,
        },
    };
    Ok(Checkpoint {
        info,
        task,
        model,
        optimizer,
        state,
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instruct_task_names_its_template_and_old_files_mean_alpaca() {
        for template in [
            ChatTemplate::Alpaca,
            ChatTemplate::Llama3,
            ChatTemplate::Llama31,
            ChatTemplate::Qwen,
            ChatTemplate::Qwen3,
        ] {
            let task = Task::Instruct { template };
            assert_eq!(Task::from_json(&task.to_json()), Some(task));
        }
        // Written before templates were recorded: the book's Alpaca.
        assert_eq!(
            Task::from_json(&json!({"kind": "instruct"})),
            Some(Task::INSTRUCT_ALPACA)
        );
        assert_eq!(
            Task::from_json(&json!({"kind": "instruct", "template": "jinja"})),
            None
        );
    }
}
