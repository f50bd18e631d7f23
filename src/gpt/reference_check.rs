//! `check-reference`: recompute a PyTorch-written golden fixture (the format of
//! `tests/fixtures/book-gpt-tiny`, see its README upstream) and compare every quantity — logits,
//! loss, the gradient of every parameter, ten AdamW steps, greedy generations — within the
//! tolerances the fixture gives for f32. llm.c's `test_gpt2`, for our engine.

use std::path::Path;

use serde_json::Value;

use super::safetensors_io::{read_safetensors, Loaded};
use super::{generate_text_simple, GptConfig, GptModel};
use crate::autograd::no_grad;
use crate::data::dataset::Batch;
use crate::data::text_file::read_text;
use crate::error::{Error, Result};
use crate::nn::ForwardCtx;
use crate::ops::embedding::Ids;
use crate::optim::{AdamW, AdamWConfig};
use crate::train::calc_loss_batch;

/// One compared quantity.
#[derive(Clone, Debug)]
pub struct CheckLine {
    pub quantity: String,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub tolerance: f64,
    pub ok: bool,
}

fn compare(quantity: impl Into<String>, got: &[f32], want: &[f32], tolerance: f64) -> CheckLine {
    let (mut abs, mut rel) = (0.0f64, 0.0f64);
    let mut ok = got.len() == want.len();
    for (&g, &w) in got.iter().zip(want) {
        let e = (g as f64 - w as f64).abs();
        abs = abs.max(e);
        if w != 0.0 {
            rel = rel.max(e / (w as f64).abs());
        }
        if e.is_nan() || e > tolerance {
            ok = false;
        }
    }
    CheckLine {
        quantity: quantity.into(),
        max_abs_err: abs,
        max_rel_err: rel,
        tolerance,
        ok,
    }
}

fn exact(quantity: impl Into<String>, got: &[u32], want: &[u32]) -> CheckLine {
    let wrong =
        got.iter().zip(want).filter(|(a, b)| a != b).count() + got.len().abs_diff(want.len());
    CheckLine {
        quantity: quantity.into(),
        max_abs_err: wrong as f64,
        max_rel_err: wrong as f64 / want.len().max(1) as f64,
        tolerance: 0.0,
        ok: wrong == 0,
    }
}

fn num(v: &Value, key: &str, what: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::parse(what.to_string(), format!("missing number {key}")))
}

fn ids(v: &Value, key: &str, what: &str) -> Result<Vec<u32>> {
    v.get(key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect())
        .ok_or_else(|| Error::parse(what.to_string(), format!("missing id list {key}")))
}

/// Runs every check of a book-format fixture folder.
pub fn check_book_fixture(dir: impl AsRef<Path>) -> Result<Vec<CheckLine>> {
    let dir = dir.as_ref();
    let what = dir.display().to_string();
    let config: Value = serde_json::from_str(&read_text(dir.join("config.json"))?)
        .map_err(|e| Error::parse(format!("{what}/config.json"), e.to_string()))?;
    let expected: Value = serde_json::from_str(&read_text(dir.join("expected.json"))?)
        .map_err(|e| Error::parse(format!("{what}/expected.json"), e.to_string()))?;
    let usize_of = |k: &str| num(&config, k, "config.json").map(|v| v as usize);
    let cfg = GptConfig {
        vocab_size: usize_of("vocab_size")?,
        context_length: usize_of("context_length")?,
        emb_dim: usize_of("emb_dim")?,
        n_heads: usize_of("n_heads")?,
        n_layers: usize_of("n_layers")?,
        drop_rate: num(&config, "drop_rate", "config.json")?,
        qkv_bias: config
            .get("qkv_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tie_weights: false,
        num_classes: None,
        arch: crate::gpt::Architecture::Gpt2,
    };
    let tol = &expected["tolerances_hint"];
    let weights = read_safetensors(dir.join("weights.safetensors"))?;
    let batch_file = read_safetensors(dir.join("batch.safetensors"))?;
    let exp = read_safetensors(dir.join("expected.safetensors"))?;
    let ids_of = |name: &str| -> Result<Ids> {
        match batch_file.get(name) {
            Some(Loaded::I64(v, s)) => Ids::new(v.clone(), s),
            _ => Err(Error::parse(
                format!("{what}/batch.safetensors"),
                format!("missing I64 tensor {name}"),
            )),
        }
    };
    let f32_of = |name: &str| -> Result<Vec<f32>> {
        match exp.get(name) {
            Some(Loaded::F32(v, _)) => Ok(v.clone()),
            _ => Err(Error::parse(
                format!("{what}/expected.safetensors"),
                format!("missing F32 tensor {name}"),
            )),
        }
    };
    let batch = Batch {
        inputs: ids_of("inputs")?,
        targets: ids_of("targets")?,
    };
    let fresh_model = || -> Result<GptModel> {
        let model = GptModel::new_from(&cfg, &mut crate::tensor::rng::Rng::placeholder())?;
        model.load_named(|name| weights.get(name).and_then(|l| l.to_tensor(name).ok()))?;
        Ok(model)
    };
    let mut lines = Vec::new();

    // parameter names and order
    let model = fresh_model()?;
    let ours: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let theirs: Vec<String> = expected["parameters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get(0).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    lines.push(CheckLine {
        quantity: format!("parameter names and order ({})", ours.len()),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        tolerance: 0.0,
        ok: ours == theirs,
    });

    // logits (eval) and loss
    let logits = no_grad(|| model.forward(&batch.inputs, &ForwardCtx::eval()))?;
    lines.push(compare(
        "logits",
        &logits.to_vec()?,
        &f32_of("logits")?,
        num(tol, "logits_atol", "tolerances_hint")?,
    ));
    let loss = calc_loss_batch(&model, &batch, &ForwardCtx::train(0))?;
    let loss_tol = num(tol, "loss_atol", "tolerances_hint")?;
    lines.push(compare(
        "loss",
        &[loss.item()?],
        &[num(&expected, "loss", "expected.json")? as f32],
        loss_tol,
    ));

    // every gradient
    loss.backward()?;
    let (g_atol, g_rtol) = (
        num(tol, "grad_atol", "tolerances_hint")?,
        num(tol, "grad_rtol_to_param_max", "tolerances_hint")?,
    );
    for (name, p) in model.named_parameters() {
        let want = f32_of(&format!("grad.{name}"))?;
        let got = p
            .grad()
            .ok_or_else(|| {
                Error::invalid("check-reference", format!("no gradient reached {name}"))
            })?
            .to_vec()?;
        let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        lines.push(compare(
            format!("grad {name}"),
            &got,
            &want,
            g_atol.max(g_rtol * scale),
        ));
    }

    // ten AdamW steps from the initial weights, the loss before each
    let adam = &expected["adamw"];
    let model = fresh_model()?;
    let cfg_adam = AdamWConfig {
        lr: num(adam, "lr", "adamw")?,
        betas: (
            adam["betas"][0].as_f64().unwrap_or(0.9),
            adam["betas"][1].as_f64().unwrap_or(0.999),
        ),
        eps: num(adam, "eps", "adamw")?,
        weight_decay: num(adam, "weight_decay", "adamw")?,
        exempt_biases_and_norms: false,
    };
    let mut opt = AdamW::new(model.named_parameters(), cfg_adam);
    let want_losses: Vec<f32> = adam["losses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|v| v as f32)
                .collect()
        })
        .unwrap_or_default();
    let mut got_losses = Vec::new();
    for _ in 0..want_losses.len() {
        opt.zero_grad();
        let l = calc_loss_batch(&model, &batch, &ForwardCtx::train(0))?;
        got_losses.push(l.item()?);
        l.backward()?;
        opt.step()?;
    }
    let a_tol = num(tol, "adamw_losses_atol", "tolerances_hint")?;
    lines.push(compare(
        "adamw losses (10 steps)",
        &got_losses,
        &want_losses,
        a_tol,
    ));
    let final_loss = no_grad(|| calc_loss_batch(&model, &batch, &ForwardCtx::eval()))?.item()?;
    lines.push(compare(
        "adamw final loss",
        &[final_loss],
        &[num(adam, "final_loss", "adamw")? as f32],
        a_tol,
    ));

    // greedy generation, and with context cropping
    let model = fresh_model()?;
    for key in ["generate", "generate_cropped"] {
        let g = &expected[key];
        let prompt = ids(g, "prompt_ids", key)?;
        let want = ids(g, "greedy_ids", key)?;
        let n = num(g, "max_new_tokens", key)? as usize;
        let ctx = num(g, "context_size", key)? as usize;
        lines.push(exact(
            format!("{key} greedy ids"),
            &generate_text_simple(&model, &prompt, n, ctx)?,
            &want,
        ));
    }
    Ok(lines)
}

/// Whether `dir` holds a Hugging Face fixture (config.json + model.safetensors or a sharded
/// index) rather than a book-format one.
pub fn is_hf_fixture(dir: impl AsRef<Path>) -> bool {
    let d = dir.as_ref();
    (d.join("model.safetensors").is_file() || d.join(super::hf_weights::INDEX_FILE).is_file())
        && !d.join("weights.safetensors").is_file()
}

/// Runs every check of a Hugging Face fixture (the `hf-gpt2-tiny`, `hf-llama-tiny` and
/// `hf-qwen3-tiny` format): load the weights (GPT-2, Llama or Qwen3, by `config.json`), then
/// compare the last-position logits (first 8, sum, top 5, argmax), the logits' sum, L2 norm and
/// argmax at every position when the fixture has them, the loss, the L2 norm of every
/// parameter's gradient (by transformers' names; GPT-2's q, k and v together form `c_attn`) and
/// a greedy continuation.
pub fn check_hf_fixture(dir: impl AsRef<Path>) -> Result<Vec<CheckLine>> {
    let dir = dir.as_ref();
    let what = format!("{}/expected.json", dir.display());
    let expected: Value = serde_json::from_str(&read_text(dir.join("expected.json"))?)
        .map_err(|e| Error::parse(what.clone(), e.to_string()))?;
    let tol = &expected["tolerances_hint"];
    let tol_of = |k: &str, default: f64| tol.get(k).and_then(Value::as_f64).unwrap_or(default);
    let model = super::hf_llama::load_hf(dir)?;
    let input = ids(&expected, "input_ids", &what)?;
    let n = input.len();
    if n < 2 {
        return Err(Error::parse(what, "input_ids needs at least 2 tokens"));
    }
    let as_ids = |v: &[u32]| Ids::new(v.iter().map(|&t| t as i64).collect(), &[1, v.len()]);
    let eval = ForwardCtx::eval();
    let mut lines = Vec::new();

    // Last-position logits.
    let logits = no_grad(|| model.forward(&as_ids(&input)?, &eval))?;
    let last = logits
        .select(1, n - 1)?
        .reshape(&[model.cfg.vocab_size])?
        .to_vec()?;
    let atol = tol_of("logits_atol", 1e-5);
    let first8: Vec<f32> = expected["last_position_logits_first8"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default();
    lines.push(compare(
        "last-position logits [0..8]",
        &last[..first8.len().min(last.len())],
        &first8,
        atol,
    ));
    let sum: f64 = last.iter().map(|&x| x as f64).sum();
    let want_sum = num(&expected, "last_position_logits_sum", &what)?;
    let sum_tol = tol_of("last_position_logits_sum_atol", 1e-4);
    lines.push(CheckLine {
        quantity: "sum of the last-position logits".into(),
        max_abs_err: (sum - want_sum).abs(),
        max_rel_err: (sum - want_sum).abs() / want_sum.abs().max(1e-30),
        tolerance: sum_tol,
        ok: (sum - want_sum).abs() <= sum_tol,
    });
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]).then(a.cmp(&b)));
    let top5 = &expected["last_position_top5"];
    let want_ids = ids(top5, "ids", &what)?;
    let got_ids: Vec<u32> = order[..want_ids.len()].iter().map(|&i| i as u32).collect();
    lines.push(exact("last-position top-5 ids", &got_ids, &want_ids));
    let want_top: Vec<f32> = top5["logits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default();
    let got_top: Vec<f32> = got_ids.iter().map(|&i| last[i as usize]).collect();
    lines.push(compare(
        "last-position top-5 logits",
        &got_top,
        &want_top,
        atol,
    ));
    lines.push(exact(
        "last-position argmax",
        &[order[0] as u32],
        &[num(&expected, "last_position_argmax", &what)? as u32],
    ));

    // Every position's logits (a RoPE error shows at t > 0 only).
    if let Some(per) = expected.get("logits_per_position") {
        let v = model.cfg.vocab_size;
        let all = logits.to_vec()?;
        let rows: Vec<&[f32]> = all.chunks(v).collect();
        let of = |key: &str| -> Result<Vec<f64>> {
            per[key]
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect())
                .ok_or_else(|| Error::parse(what.clone(), format!("logits_per_position.{key}")))
        };
        let sums: Vec<f64> = rows
            .iter()
            .map(|r| r.iter().map(|&x| x as f64).sum())
            .collect();
        let l2s: Vec<f64> = rows
            .iter()
            .map(|r| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt())
            .collect();
        for (label, got, want) in [("sum", &sums, of("sum")?), ("L2 norm", &l2s, of("l2")?)] {
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f64, f64::max);
            lines.push(CheckLine {
                quantity: format!("logits' {label} at each of {n} positions"),
                max_abs_err: worst,
                max_rel_err: worst / want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-30),
                tolerance: sum_tol,
                ok: got.len() == want.len() && worst <= sum_tol,
            });
        }
        let argmax: Vec<u32> = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a)))
                    .unwrap_or(0) as u32
            })
            .collect();
        lines.push(exact(
            format!("argmax at each of {n} positions"),
            &argmax,
            &ids(per, "argmax", &what)?,
        ));
    }

    // Loss over the n−1 predictions, and every gradient's L2 norm.
    let loss = model
        .forward(&as_ids(&input[..n - 1])?, &eval)?
        .cross_entropy(&as_ids(&input[1..])?)?;
    let want_loss = num(&expected["loss"], "value", &what)? as f32;
    lines.push(compare(
        "loss",
        &[loss.item()?],
        &[want_loss],
        tol_of("loss_atol", 1e-5),
    ));
    loss.backward()?;
    let mut sq: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for (name, p) in model.named_parameters() {
        let hf = match model.cfg.arch {
            super::Architecture::Gpt2 => super::hf::hf_name(&name),
            _ => super::hf_llama::decoder_hf_name(&name),
        };
        let Some(hf) = hf else {
            continue;
        };
        let g = p
            .grad()
            .ok_or_else(|| Error::parse(name.clone(), "no gradient"))?;
        *sq.entry(hf).or_default() += g
            .to_vec()?
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>();
    }
    let rtol = tol_of("grad_l2_norm_rtol", 1e-5);
    let want_norms = expected["grad_l2_norms"]
        .as_object()
        .ok_or_else(|| Error::parse(what.clone(), "missing grad_l2_norms"))?;
    let (mut worst_abs, mut worst_rel, mut missing) = (0.0f64, 0.0f64, Vec::new());
    for (hf, want) in want_norms {
        let want = want.as_f64().unwrap_or(f64::NAN);
        match sq.get(hf) {
            Some(s) => {
                let e = (s.sqrt() - want).abs();
                worst_abs = worst_abs.max(e);
                worst_rel = worst_rel.max(e / want.abs().max(1e-30));
            }
            None => missing.push(hf.clone()),
        }
    }
    lines.push(CheckLine {
        quantity: format!(
            "gradient L2 norms ({} parameters, relative)",
            want_norms.len()
        ),
        max_abs_err: worst_abs,
        max_rel_err: worst_rel,
        tolerance: rtol,
        ok: missing.is_empty() && worst_rel <= rtol && want_norms.len() == sq.len(),
    });

    // Greedy continuation (full recompute each step, as the fixture).
    let greedy = &expected["greedy"];
    let want_new = ids(greedy, "new_ids", &what)?;
    let got = generate_text_simple(&model, &input, want_new.len(), model.cfg.context_length)?;
    lines.push(exact(
        format!("greedy {} new ids", want_new.len()),
        &got[n..],
        &want_new,
    ));
    let cached = super::generate_cached(
        &model,
        &input,
        want_new.len(),
        model.cfg.context_length,
        &super::Sampling {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            eos_ids: Vec::new(),
            seed: 0,
        },
    )?;
    lines.push(exact(
        format!("greedy {} new ids with the KV cache", want_new.len()),
        &cached[n..],
        &want_new,
    ));
    Ok(lines)
}
