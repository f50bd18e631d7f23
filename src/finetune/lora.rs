//! LoRA on the whole GPT (book appendix E): `replace_linear_with_lora` on every linear layer —
//! the attention projections, the feed-forward layers and the output head (for a classifier,
//! the new head too) — with everything else frozen; adapter files holding only what training
//! changed; and merging for export. The layer itself, with its gradient, is
//! [`crate::nn::lora`].

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::json;

use crate::data::text_file::write_atomic;
use crate::error::{Error, Result};
use crate::gpt::GptModel;
use crate::nn::Linear;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

impl GptModel {
    /// Every linear layer with its parameter prefix, in `named_parameters` order.
    fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.trf_blocks.iter_mut().enumerate() {
            out.extend(b.linears_mut(&format!("trf_blocks.{i}")));
        }
        out.push(("out_head".to_string(), &mut self.out_head));
        out
    }

    /// The book's `replace_linear_with_lora`: freeze every parameter, then give every linear
    /// layer a fresh adapter of `rank` with scale `alpha / rank` (initialised from `seed`).
    /// Afterwards only the adapters train.
    pub fn add_lora(&mut self, rank: usize, alpha: f64, seed: u64) -> Result<()> {
        if self.has_lora() {
            return Err(Error::invalid("add_lora", "the model already has adapters"));
        }
        // A tied head shares tok_emb's weight, and `named_parameters` lists a tied head under
        // tok_emb only: its adapter would be invisible to the optimizer and the adapter file.
        // Untie first (the head keeps the same values, now as its own frozen parameter).
        if self.cfg.tie_weights {
            self.out_head.weight = self.out_head.weight.detach();
            self.cfg.tie_weights = false;
        }
        self.freeze_all();
        let mut rng = Rng::new(seed);
        for (_, linear) in self.linears_mut() {
            linear.attach_lora(rank, alpha, &mut rng)?;
        }
        Ok(())
    }

    /// Whether any linear layer carries an adapter.
    pub fn has_lora(&self) -> bool {
        self.named_parameters()
            .iter()
            .any(|(n, _)| n.contains(".lora."))
    }

    /// `(rank, alpha)` of the adapters, if any.
    pub fn lora_settings(&self) -> Option<(usize, f64)> {
        self.out_head.lora.as_ref().map(|l| (l.rank(), l.alpha))
    }

    /// The same model with every adapter switched off: a shallow copy whose layers share this
    /// model's base weights (no second copy of them) and carry no adapter — DPO's reference
    /// policy under LoRA.
    pub fn without_lora(&self) -> GptModel {
        let mut base = self.clone();
        for (_, linear) in base.linears_mut() {
            linear.lora = None;
        }
        base
    }

    /// Folds every adapter into its weight (`W ← W + (alpha/rank)·(A·B)ᵀ`) and removes it. A
    /// tied output head is untied first: its update must not leak into the token embedding.
    pub fn merge_lora(&mut self) -> Result<()> {
        if self.cfg.tie_weights && self.out_head.lora.is_some() {
            self.out_head.weight = self.out_head.weight.detach();
            self.cfg.tie_weights = false;
        }
        for (_, linear) in self.linears_mut() {
            linear.merge_lora()?;
        }
        Ok(())
    }
}

/// Saves what LoRA training changed: every adapter's A and B and — for a classifier, whose head
/// is not in any base model — the head's weight and bias; with the rank, alpha and the model
/// config in the metadata. A few MB instead of the whole model.
pub fn save_lora_adapters(path: impl AsRef<Path>, model: &GptModel) -> Result<()> {
    let path = path.as_ref();
    let (rank, alpha) = model
        .lora_settings()
        .ok_or_else(|| Error::invalid("save_lora_adapters", "the model has no adapters"))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in model.named_parameters() {
        let keep = name.contains(".lora.")
            || (model.cfg.num_classes.is_some() && name.starts_with("out_head."));
        if keep {
            let bytes = p.to_vec()?.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push((name, p.shape(), bytes));
        }
    }
    let views = tensors
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::parse(path.display().to_string(), e.to_string()))?;
    let meta: HashMap<String, String> = [
        (
            "scratchgpt.lora".to_string(),
            json!({"rank": rank, "alpha": alpha, "num_classes": model.cfg.num_classes,
                   "emb_dim": model.cfg.emb_dim, "n_layers": model.cfg.n_layers,
                   "architecture": model.cfg.arch.name()})
            .to_string(),
        ),
        ("format".to_string(), "pt".to_string()),
    ]
    .into_iter()
    .collect();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::parse(path.display().to_string(), e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Applies an adapter file to `base`: replaces the head by the saved classification head if the
/// adapters were trained for one, attaches adapters of the saved rank and alpha, loads A and B.
/// Every tensor must be present with the right shape, and the file must not hold extra ones.
pub fn load_lora_adapters(path: impl AsRef<Path>, base: GptModel) -> Result<GptModel> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::parse(what.clone(), format!("not a valid adapter file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::parse(what.clone(), e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("scratchgpt.lora"))
        .ok_or_else(|| {
            Error::parse(
                what.clone(),
                "no scratchgpt.lora metadata: not an adapter file",
            )
        })?;
    let meta: serde_json::Value = serde_json::from_str(meta)
        .map_err(|e| Error::parse(what.clone(), format!("scratchgpt.lora metadata: {e}")))?;
    let rank = meta["rank"]
        .as_u64()
        .ok_or_else(|| Error::parse(what.clone(), "metadata: no rank"))?;
    let alpha = meta["alpha"]
        .as_f64()
        .ok_or_else(|| Error::parse(what.clone(), "metadata: no alpha"))?;
    let num_classes = meta["num_classes"].as_u64().map(|n| n as usize);
    let (emb, layers) = (meta["emb_dim"].as_u64(), meta["n_layers"].as_u64());
    if emb != Some(base.cfg.emb_dim as u64) || layers != Some(base.cfg.n_layers as u64) {
        return Err(Error::parse(
            what,
            format!(
                "adapters for emb_dim {emb:?} and {layers:?} layers; the base model has {} and {}",
                base.cfg.emb_dim, base.cfg.n_layers
            ),
        ));
    }
    // A Llama's adapters have a Qwen3's names (and a GPT's the same attention names): the
    // family must match too. Files written before the field existed are GPT-2's.
    let arch = meta["architecture"].as_str().unwrap_or("gpt2");
    if arch != base.cfg.arch.name() {
        return Err(Error::parse(
            what,
            format!(
                "adapters for a {arch} model; the base model is {}",
                base.cfg.arch.name()
            ),
        ));
    }
    // Check the metadata against the tensors before allocating anything from it.
    let a0 = st.tensor("trf_blocks.0.att.W_query.lora.A").map_err(|_| {
        Error::parse(
            what.clone(),
            "missing tensor trf_blocks.0.att.W_query.lora.A",
        )
    })?;
    if a0.shape() != [base.cfg.emb_dim, rank as usize] {
        return Err(Error::parse(
            what,
            format!(
                "metadata says rank {rank}, but trf_blocks.0.att.W_query.lora.A has shape {:?}",
                a0.shape()
            ),
        ));
    }
    if let Some(n) = num_classes {
        let head = st
            .tensor("out_head.weight")
            .map_err(|_| Error::parse(what.clone(), "missing tensor out_head.weight"))?;
        if head.shape() != [n, base.cfg.emb_dim] {
            return Err(Error::parse(
                what,
                format!(
                    "metadata says {n} classes, but out_head.weight has shape {:?}",
                    head.shape()
                ),
            ));
        }
    }
    let mut model = base;
    if let Some(n) = num_classes {
        let mut rng = Rng::new(0);
        model.out_head = Linear::new(model.cfg.emb_dim, n, true, &mut rng);
        model.cfg.tie_weights = false;
        model.cfg.num_classes = Some(n);
    }
    model.add_lora(rank as usize, alpha, 0)?;
    let mut expected = 0;
    for (name, p) in model.named_parameters() {
        let keep =
            name.contains(".lora.") || (num_classes.is_some() && name.starts_with("out_head."));
        if !keep {
            continue;
        }
        expected += 1;
        let v = st
            .tensor(&name)
            .map_err(|_| Error::parse(what.clone(), format!("missing tensor {name}")))?;
        if v.dtype() != Dtype::F32 || v.shape() != p.shape().as_slice() {
            return Err(Error::parse(
                what,
                format!(
                    "tensor {name} is {:?} {:?}, expected F32 {:?}",
                    v.dtype(),
                    v.shape(),
                    p.shape()
                ),
            ));
        }
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
            .collect();
        p.set_value(Tensor::<f32>::from_vec(data, v.shape())?.value()?)?;
    }
    if st.len() != expected {
        return Err(Error::parse(
            what,
            format!("{} tensors, expected {expected} for this model", st.len()),
        ));
    }
    Ok(model)
}
