//! The whole-model gradient check: every parameter tensor of a tiny GPT — with dropout (fixed
//! masks: they are a pure function of the seed), a tied head, query/key/value biases and
//! `ignore_index` targets — differentiated by central differences in f64 and compared with what
//! one `backward()` through the whole model gives. The op checks (`ops::gradcheck_suite`) verify
//! each rule alone; this verifies their wiring: residual fan-in, the head split and merge, the
//! positional embedding's batch sum, the tied weight's two contributions, the loss's 1/N.

use crate::autograd::gradcheck::GradcheckOptions;
use crate::autograd::no_grad;
use crate::error::Result;
use crate::nn::ForwardCtx;
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::Tensor;

use super::{GptConfig, GptModel};

/// The result for one parameter tensor.
#[derive(Clone, Debug)]
pub struct ParamCheck {
    /// The book/PyTorch name, e.g. `trf_blocks.1.att.W_query.bias`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Entries compared (a seeded sample of the tensor's entries).
    pub checked: usize,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub ok: bool,
}

/// The tiny GPT the check differentiates: 2 layers, 2 heads, emb 8, vocabulary 20, context 6,
/// dropout 0.1, qkv bias, tied head.
pub fn tiny_config() -> GptConfig {
    GptConfig {
        vocab_size: 20,
        context_length: 6,
        emb_dim: 8,
        n_heads: 2,
        n_layers: 2,
        drop_rate: 0.1,
        qkv_bias: true,
        tie_weights: true,
        num_classes: None,
        arch: crate::gpt::Architecture::Gpt2,
    }
}

/// The tiny Llama and Qwen3 of the check: the GPT's sizes with one key/value head shared by
/// the two query heads, a SwiGLU of width 12, biases on the attention projections (HF
/// `attention_bias`, so their gradients are checked too), a tied head; Qwen3's heads are 6
/// wide (not emb/heads = 4), and its q/k norms add two parameters per layer.
pub fn tiny_decoder_config(qwen3: bool) -> GptConfig {
    let shape = crate::gpt::DecoderShape {
        n_kv_heads: 1,
        head_dim: if qwen3 { 6 } else { 4 },
        hidden_dim: 12,
        norm_eps: 1e-6,
        rope_theta: 10_000.0,
        // Llama 3's scaling with a short original context, so some frequencies are scaled and
        // one is smoothed at these sizes.
        rope_scaling: (!qwen3).then_some(crate::ops::rope::Llama3Scaling {
            factor: 4.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        }),
    };
    GptConfig {
        arch: if qwen3 {
            crate::gpt::Architecture::Qwen3(shape)
        } else {
            crate::gpt::Architecture::Llama(shape)
        },
        ..tiny_config()
    }
}

/// Checks `samples` entries (all, if fewer) of every parameter of the tiny GPT.
pub fn check_whole_model(samples: usize, opts: &GradcheckOptions) -> Result<Vec<ParamCheck>> {
    check_whole_model_of(&tiny_config(), samples, opts)
}

/// [`check_whole_model`] for any configuration (the tiny Llama and Qwen3 of
/// [`tiny_decoder_config`]; its vocabulary must hold ids 0..20 and its context 5 tokens).
pub fn check_whole_model_of(
    cfg: &GptConfig,
    samples: usize,
    opts: &GradcheckOptions,
) -> Result<Vec<ParamCheck>> {
    let cfg = cfg.clone();
    let model: GptModel<f64> = GptModel::new(&cfg, 7)?.cast()?;
    // Two sequences of 5 tokens; two targets ignored (−100), so N = 8, not 10.
    let ids = Ids::new(vec![3, 17, 0, 9, 9, 12, 4, 19, 1, 6], &[2, 5])?;
    let targets = Ids::new(vec![17, 0, -100, 9, 2, 4, 19, 1, -100, 11], &[2, 5])?;
    const DROPOUT_SEED: u64 = 2024;
    let loss = |m: &GptModel<f64>| -> Result<Tensor<f64>> {
        m.forward(&ids, &ForwardCtx::train(DROPOUT_SEED))?
            .cross_entropy_with(&targets, -100)
    };
    let params = model.named_parameters();
    for (_, p) in &params {
        p.zero_grad();
    }
    loss(&model)?.backward()?;
    let mut rng = Rng::new(opts.seed);
    let mut out = Vec::new();
    for (name, p) in &params {
        let analytic = p.grad().expect("every parameter trains").to_vec()?;
        let base = p.to_vec()?;
        let n = base.len();
        let mut picks: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut picks);
        picks.truncate(samples.min(n));
        let (mut max_abs, mut max_rel, mut ok) = (0.0f64, 0.0f64, true);
        for &i in &picks {
            let at = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[i] += delta;
                p.set_value(Tensor::from_vec(v, &p.shape())?.value()?)?;
                no_grad(|| loss(&model))?.item()
            };
            let numeric = (at(opts.eps)? - at(-opts.eps)?) / (2.0 * opts.eps);
            p.set_value(Tensor::from_vec(base.clone(), &p.shape())?.value()?)?;
            let err = (analytic[i] - numeric).abs();
            max_abs = max_abs.max(err);
            // Relative to the numeric value, floored at 1e-6: a gradient that is exactly zero
            // (a key bias: softmax ignores a shift of all scores) has only rounding to compare.
            max_rel = max_rel.max(err / numeric.abs().max(1e-6));
            ok &= err <= opts.atol + opts.rtol * numeric.abs();
        }
        out.push(ParamCheck {
            name: name.clone(),
            shape: p.shape(),
            checked: picks.len(),
            max_abs_err: max_abs,
            max_rel_err: max_rel,
            ok,
        });
    }
    Ok(out)
}
