//! DPO against PyTorch: the book's `compute_logprobs` and `compute_dpo_loss` on the book's GPT
//! (tests/fixtures/book-gpt-tiny's weights as the policy, the same ×0.9 as the reference), one
//! preference batch of 3 pairs with prompts and padding masked — the four log-probability vectors,
//! the loss, both rewards and every policy gradient must equal PyTorch's
//! (benches/reference/torch_dpo.py wrote tests/fixtures/dpo-tiny).

use std::collections::HashMap;

use scratchgpt::gpt::safetensors_io::{read_safetensors, Loaded};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::ops::dpo::dpo_loss;
use scratchgpt::{no_grad, Ids, Tensor};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn model(weights: &HashMap<String, Loaded>, scale: f32) -> GptModel {
    let cfg = GptConfig {
        vocab_size: 512,
        context_length: 32,
        emb_dim: 48,
        n_heads: 4,
        n_layers: 2,
        drop_rate: 0.0,
        qkv_bias: false,
        tie_weights: false,
        num_classes: None,
        arch: scratchgpt::gpt::Architecture::Gpt2,
    };
    let m = GptModel::new(&cfg, 0).unwrap();
    m.load_named(|name| {
        let t = weights.get(name)?.to_tensor(name).ok()?;
        t.mul_scalar(scale as f64).ok()
    })
    .unwrap();
    m
}

fn ids_and_mask(batch: &HashMap<String, Loaded>, name: &str) -> (Ids, Vec<Vec<bool>>) {
    let Loaded::I64(ids, shape) = &batch[name] else {
        panic!("{name}: I64")
    };
    let Loaded::I64(mask, _) = &batch[&format!("{name}_mask")] else {
        panic!("{name}_mask: I64")
    };
    let rows = mask
        .chunks(shape[1])
        .map(|r| r.iter().map(|&m| m != 0).collect())
        .collect();
    (Ids::new(ids.clone(), shape).unwrap(), rows)
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    let err = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(err <= tol, "{what}: max abs err {err:e} > {tol:e}");
}

#[test]
fn dpo_loss_rewards_and_every_policy_gradient_match_pytorch() {
    let weights = read_safetensors(format!("{DIR}/book-gpt-tiny/weights.safetensors")).unwrap();
    let batch = read_safetensors(format!("{DIR}/dpo-tiny/batch.safetensors")).unwrap();
    let grads = read_safetensors(format!("{DIR}/dpo-tiny/grads.safetensors")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DIR}/dpo-tiny/expected.json")).unwrap(),
    )
    .unwrap();
    let vector = |k: &str| -> Vec<f64> {
        expected[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let policy = model(&weights, 1.0);
    let reference = model(&weights, 0.9);
    let (chosen, chosen_mask) = ids_and_mask(&batch, "chosen");
    let (rejected, rejected_mask) = ids_and_mask(&batch, "rejected");
    let eval = ForwardCtx::eval();
    let logprobs = |m: &GptModel, ids: &Ids, mask: &[Vec<bool>]| -> Tensor {
        m.forward(ids, &eval)
            .unwrap()
            .sequence_logprobs(ids, Some(mask))
            .unwrap()
    };
    let pc = logprobs(&policy, &chosen, &chosen_mask);
    let pr = logprobs(&policy, &rejected, &rejected_mask);
    let (rc, rr) = no_grad(|| {
        (
            logprobs(&reference, &chosen, &chosen_mask),
            logprobs(&reference, &rejected, &rejected_mask),
        )
    });
    for (what, t) in [
        ("policy_chosen_logprobs", &pc),
        ("policy_rejected_logprobs", &pr),
        ("reference_chosen_logprobs", &rc),
        ("reference_rejected_logprobs", &rr),
    ] {
        close(what, &t.to_vec().unwrap(), &vector(what), 2e-5);
    }
    let beta = expected["beta"].as_f64().unwrap();
    let out = dpo_loss(&pc, &pr, &rc, &rr, beta).unwrap();
    let want = |k: &str| expected[k].as_f64().unwrap();
    close("loss", &[out.loss.item().unwrap()], &[want("loss")], 1e-6);
    assert!((out.chosen_rewards - want("chosen_rewards")).abs() < 2e-5);
    assert!((out.rejected_rewards - want("rejected_rewards")).abs() < 2e-5);

    out.loss.backward().unwrap();
    let params = policy.named_parameters();
    assert_eq!(params.len(), grads.len());
    for (name, p) in params {
        let Loaded::F32(want, _) = &grads[&name] else {
            panic!("{name}")
        };
        let scale = want.iter().fold(1e-12f32, |m, v| m.max(v.abs())) as f64;
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        close(
            &name,
            &p.grad().unwrap().to_vec().unwrap(),
            &want,
            1e-4 * scale.max(1e-3),
        );
    }
}
