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
        let model = GptModel::new(&cfg, 0)?;
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
            .grad_tensor()
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
