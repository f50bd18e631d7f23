//! The study GPT: the book's `GPTModel.forward` (eval mode) written once over an [`OpSet`], with
//! *taps* — the boundaries whose gradients a study compares (each block's input and output, the
//! attention and feed-forward outputs, the logits) — and *scopes*, the stretch of the forward each
//! module owns, so a drawing can group the graph by module.
//!
//! With [`super::Fused`] this is `GptModel::forward` + `cross_entropy` op for op
//! (tests/study_gpt.rs proves the loss and every gradient bit-identical), so studying it studies
//! the real model.

use crate::autograd::next_tensor_id;
use crate::error::Result;
use crate::gpt::{FeedForward, GptConfig, GptModel};
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

use super::OpSet;

/// The study GPT: 2 layers, 2 heads, emb 8, vocabulary 20, context 6, qkv bias, tied head, and
/// no dropout (the study compares two graphs of one function; dropout's masks are checked in
/// `gradcheck --whole-model`).
pub fn study_config() -> GptConfig {
    GptConfig {
        drop_rate: 0.0,
        ..crate::gpt::whole_model_check::tiny_config()
    }
}

/// The study model in f64, its weights fixed by `seed`.
pub fn study_model(seed: u64) -> Result<GptModel<f64>> {
    GptModel::<f64>::build(&study_config(), &mut Rng::new(seed))
}

/// Token ids and next-token targets of a study batch.
#[derive(Clone, Debug)]
pub struct TinyBatch {
    pub ids: Ids,
    pub targets: Ids,
}

impl TinyBatch {
    /// Two sequences of five tokens (targets are the ids shifted by one, as the book's loader
    /// makes them).
    pub fn example() -> Self {
        TinyBatch {
            ids: Ids::new(vec![3, 17, 0, 9, 9, 12, 4, 19, 1, 6], &[2, 5]).expect("2×5"),
            targets: Ids::new(vec![17, 0, 9, 9, 2, 4, 19, 1, 6, 11], &[2, 5]).expect("2×5"),
        }
    }
}

/// What a forward recorded: the tapped boundaries (in forward order, each with `retain_grad`
/// on) and where each module's ops begin.
#[derive(Default)]
pub struct Taps {
    /// `(name, tensor)` per boundary, e.g. `("trf_blocks.0.att output", …)`.
    pub boundaries: Vec<(String, Tensor<f64>)>,
    /// `(module, first tensor id)`: every tensor made from that id until the next scope's
    /// belongs to the module (ids only grow).
    pub scopes: Vec<(String, u64)>,
}

impl Taps {
    fn tap(&mut self, name: impl Into<String>, t: &Tensor<f64>) {
        t.retain_grad();
        self.boundaries.push((name.into(), t.clone()));
    }

    fn enter(&mut self, module: impl Into<String>) {
        self.scopes.push((module.into(), next_tensor_id()));
    }

    /// The module whose scope made tensor `id` (`None` for tensors made before the forward, such
    /// as parameters).
    pub fn scope_of(&self, id: u64) -> Option<&str> {
        self.scopes
            .iter()
            .rev()
            .find(|(_, start)| id >= *start)
            .map(|(m, _)| m.as_str())
    }
}

/// The module a parameter belongs to, from its book name (`trf_blocks.1.norm2.scale` → the
/// feed-forward half of block 1, whose input norm2 normalises).
pub fn module_of_parameter(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["tok_emb" | "pos_emb", ..] => "embedding".into(),
        ["trf_blocks", i, "att" | "norm1", ..] => format!("trf_blocks.{i}.att"),
        ["trf_blocks", i, ..] => format!("trf_blocks.{i}.ff"),
        _ => "head".into(),
    }
}

/// The loss of `model` on `batch`, computed with `ops`; `taps` records the boundaries and scopes.
pub fn forward(
    ops: &dyn OpSet,
    model: &GptModel<f64>,
    batch: &TinyBatch,
    taps: &mut Taps,
) -> Result<Tensor<f64>> {
    let ids = &batch.ids;
    let (b, t) = (ids.shape()[0], ids.shape()[1]);
    taps.enter("embedding");
    let tok = ops.embedding(&model.tok_emb.weight, ids)?;
    let pos_emb = model.pos_emb.as_ref().ok_or_else(not_gpt)?;
    let pos = ops.embedding(&pos_emb.weight, &Ids::from_vec((0..t as i64).collect()))?;
    let mut x = tok.add(&pos)?; // (B,T,C) + (T,C): the batch broadcast
    taps.tap("embeddings (block 0 input)", &x);
    for (i, block) in model.trf_blocks.iter().enumerate() {
        taps.enter(format!("trf_blocks.{i}.att"));
        let att = &block.att;
        let n1 = layer_norm(&block.norm1)?;
        let h = ops.layer_norm(&x, &n1.scale, &n1.shift, n1.eps)?;
        let d_out = att.w_query.weight.shape()[0];
        let hd = d_out / att.num_heads;
        let project = |l: &crate::nn::Linear<f64>| -> Result<Tensor<f64>> {
            // (B,T,C) → (B,T,H,hd) → (B,H,T,hd)
            ops.linear(&h, &l.weight, l.bias.as_ref())?
                .reshape(&[b, t, att.num_heads, hd])?
                .transpose(1, 2)
        };
        let (q, k, v) = (
            project(&att.w_query)?,
            project(&att.w_key)?,
            project(&att.w_value)?,
        );
        let context = ops
            .causal_attention(&q, &k, &v)?
            .transpose(1, 2)?
            .reshape(&[b, t, d_out])?;
        let h = ops.linear(&context, &att.out_proj.weight, att.out_proj.bias.as_ref())?;
        taps.tap(format!("trf_blocks.{i}.att output"), &h);
        x = x.add(&h)?; // the shortcut: dx receives the block's gradient *and* dh's
        taps.enter(format!("trf_blocks.{i}.ff"));
        let n2 = layer_norm(&block.norm2)?;
        let h = ops.layer_norm(&x, &n2.scale, &n2.shift, n2.eps)?;
        let FeedForward::Gelu { fc1, fc2 } = &block.ff else {
            return Err(not_gpt());
        };
        let h = ops.gelu(&ops.linear(&h, &fc1.weight, fc1.bias.as_ref())?)?;
        let h = ops.linear(&h, &fc2.weight, fc2.bias.as_ref())?;
        taps.tap(format!("trf_blocks.{i}.ff output"), &h);
        x = x.add(&h)?;
        taps.tap(format!("trf_blocks.{i} output"), &x);
    }
    taps.enter("head");
    let fnorm = layer_norm(&model.final_norm)?;
    let h = ops.layer_norm(&x, &fnorm.scale, &fnorm.shift, fnorm.eps)?;
    let head = &model.out_head;
    let logits = ops.linear(&h, &head.weight, head.bias.as_ref())?;
    taps.tap("logits", &logits);
    taps.enter("loss");
    ops.cross_entropy(&logits, &batch.targets)
}

/// The study walks the book's GPT; a Llama or Qwen3 model is refused by name.
fn not_gpt() -> crate::error::Error {
    crate::error::Error::invalid("study gpt", "the study model must be the book's GPT (gpt2)")
}

fn layer_norm(norm: &crate::nn::Norm<f64>) -> Result<&crate::nn::LayerNorm<f64>> {
    match norm {
        crate::nn::Norm::Layer(n) => Ok(n),
        crate::nn::Norm::Rms(_) => Err(not_gpt()),
    }
}
