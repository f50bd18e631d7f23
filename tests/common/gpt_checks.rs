//! Whole-model checks of GpuGpt (a GPT training step through the CUDA kernels) against the CPU
//! autograd on the same weights; run under the emulator and, when present, on a real GPU.
#![allow(dead_code)]

use super::cuda_checks::{assert_close, random};
use scratchgpt::backend::cuda::Gpu;
use scratchgpt::cuda::GpuGpt;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::Ids;

/// The tiny preset (emb 48, 2 layers, 4 heads of 12, context 32) with a 101-token vocabulary, so
/// the emulated output head stays small.
pub fn tiny(drop_rate: f64, tie: bool, qkv_bias: bool) -> GptModel {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.vocab_size = 101;
    cfg.drop_rate = drop_rate;
    cfg.tie_weights = tie;
    cfg.qkv_bias = qkv_bias;
    GptModel::new(&cfg, 5).unwrap()
}

fn batch(b: usize, t: usize, vocab: usize, seed: u64) -> (Vec<i32>, Vec<i32>) {
    let r = random(2 * b * t, seed);
    let ids: Vec<i32> = r
        .iter()
        .map(|x| ((x.abs() * 7919.0) as usize % vocab) as i32)
        .collect();
    (ids[..b * t].to_vec(), ids[b * t..].to_vec())
}

fn as_ids(v: &[i32], b: usize, t: usize) -> Ids {
    Ids::new(v.iter().map(|&x| x as i64).collect(), &[b, t]).unwrap()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn compare_step(gpu: &Gpu, tie: bool, qkv_bias: bool) {
    let model = tiny(0.0, tie, qkv_bias);
    compare_model_step(gpu, &model, 2, 11);
}

/// One training step of `model` through GpuGpt against the CPU autograd: loss, every gradient,
/// AdamW, eval loss.
pub fn compare_model_step(gpu: &Gpu, model: &GptModel, b: usize, t: usize) {
    let (tie, qkv_bias) = (model.cfg.tie_weights, model.cfg.qkv_bias);
    let (x, mut y) = batch(b, t, model.cfg.vocab_size, 1);
    y[3] = -100; // an ignored target
                 // CPU autograd.
    let loss = model
        .forward(&as_ids(&x, b, t), &ForwardCtx::eval())
        .unwrap()
        .cross_entropy_with(&as_ids(&y, b, t), -100)
        .unwrap();
    loss.backward().unwrap();
    let cpu_loss = loss.item().unwrap();
    // The GPU path.
    let mut g = GpuGpt::from_model(gpu, model).unwrap();
    let gpu_loss = g.forward_backward(&x, &y, b, t, None).unwrap();
    assert!(
        (gpu_loss as f64 - cpu_loss as f64).abs() <= 1e-5 * cpu_loss.abs() as f64,
        "loss: GPU path {gpu_loss} vs CPU {cpu_loss}"
    );
    for (name, p) in model.named_parameters() {
        let want = to64(
            &p.grad()
                .expect("grad")
                .value()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
        );
        let got = g.param(&name).unwrap().grad().unwrap().to_vec().unwrap();
        if name.ends_with("W_key.bias") {
            // Adding b to every key adds q_i·b to all of query i's scores alike, and softmax is
            // shift-invariant: the true gradient is exactly 0, and both sides hold rounding noise.
            assert!(got.iter().all(|v| v.abs() < 1e-6), "{name}: {got:?}");
            assert!(
                want.iter().all(|v| v.abs() < 1e-6),
                "{name} (CPU): {want:?}"
            );
            continue;
        }
        assert_close(
            &format!("grad of {name} (tie={tie}, qkv_bias={qkv_bias})"),
            &got,
            &want,
            1e-5,
        );
    }
    // One AdamW step on each side gives the same weights. Adam's first step moves each weight by
    // ≈ lr·g/(|g| + eps), which amplifies rounding differences in near-zero gradients, so the
    // GPU side steps with the CPU's gradients (just shown equal): this checks the optimizer's
    // wiring — every parameter, its moments, decay — not the gradients again.
    for (name, p) in model.named_parameters() {
        let cpu_grad: Vec<f32> = p
            .grad()
            .expect("grad")
            .value()
            .unwrap()
            .iter()
            .copied()
            .collect();
        g.params
            .iter()
            .find(|q| q.name == name)
            .unwrap()
            .grad()
            .unwrap()
            .write(&cpu_grad)
            .unwrap();
    }
    let cfg = AdamWConfig {
        lr: 1e-3,
        exempt_biases_and_norms: true,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(model.named_parameters(), cfg.clone());
    opt.step().unwrap();
    g.adamw_step(&cfg, cfg.lr).unwrap();
    for (name, p) in model.named_parameters() {
        let want = to64(&p.to_vec().unwrap());
        assert_close(
            &format!("{name} after AdamW"),
            &g.param(&name).unwrap().value.to_vec().unwrap(),
            &want,
            1e-4,
        );
    }
    // Eval loss after the step matches the CPU model's.
    let cpu_eval = model
        .forward(&as_ids(&x, b, t), &ForwardCtx::eval())
        .unwrap()
        .cross_entropy_with(&as_ids(&y, b, t), -100)
        .unwrap()
        .item()
        .unwrap();
    let gpu_eval = g.eval_loss(&x, &y, b, t).unwrap();
    assert!(
        (gpu_eval - cpu_eval).abs() <= 1e-5 * cpu_eval.abs(),
        "eval loss {gpu_eval} vs {cpu_eval}"
    );
}

pub fn dropout_is_seeded_and_changes_the_loss(gpu: &Gpu) {
    let model = tiny(0.1, false, false);
    let (b, t) = (2, 9);
    let (x, y) = batch(b, t, model.cfg.vocab_size, 2);
    let mut g = GpuGpt::from_model(gpu, &model).unwrap();
    let l1 = g.forward_backward(&x, &y, b, t, Some(7)).unwrap();
    let g1 = g
        .param("trf_blocks.0.att.W_query.weight")
        .unwrap()
        .grad()
        .unwrap()
        .to_vec()
        .unwrap();
    g.zero_grad().unwrap();
    let l2 = g.forward_backward(&x, &y, b, t, Some(7)).unwrap();
    let g2 = g
        .param("trf_blocks.0.att.W_query.weight")
        .unwrap()
        .grad()
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(l1, l2, "same seed, same loss");
    assert_eq!(g1, g2, "same seed, same gradients (no atomics anywhere)");
    let l3 = g.forward_backward(&x, &y, b, t, Some(8)).unwrap();
    assert_ne!(l1, l3, "another seed, other masks");
    let l_eval = g.eval_loss(&x, &y, b, t).unwrap();
    assert_ne!(l1, l_eval, "eval mode has no dropout");
}

pub fn training_steps_lower_the_loss(gpu: &Gpu) {
    let model = tiny(0.0, false, false);
    let (b, t) = (2, 8);
    let (x, y) = batch(b, t, model.cfg.vocab_size, 3);
    let mut g = GpuGpt::from_model(gpu, &model).unwrap();
    let cfg = AdamWConfig {
        lr: 3e-3,
        ..AdamWConfig::default()
    };
    let mut losses = Vec::new();
    for _ in 0..4 {
        g.zero_grad().unwrap();
        losses.push(g.forward_backward(&x, &y, b, t, None).unwrap());
        g.clip_grad_norm(1.0).unwrap();
        g.adamw_step(&cfg, cfg.lr).unwrap();
    }
    assert!(losses[3] < losses[0] - 0.1, "losses {losses:?}");
    // Gradients were clipped to norm ≤ 1.
    assert!(g.grad_norm().unwrap() <= 1.0 + 1e-4);
    // And the weights come back into a CPU model.
    g.write_to_model(&model).unwrap();
    let cpu = model
        .forward(&as_ids(&x, b, t), &ForwardCtx::eval())
        .unwrap()
        .cross_entropy(&as_ids(&y, b, t))
        .unwrap()
        .item()
        .unwrap();
    let on_gpu = g.eval_loss(&x, &y, b, t).unwrap();
    assert!((cpu - on_gpu).abs() < 1e-4 * cpu.abs(), "{cpu} vs {on_gpu}");
}

pub fn bad_batches_are_clear_errors(gpu: &Gpu) {
    let model = tiny(0.0, false, false);
    let mut g = GpuGpt::from_model(gpu, &model).unwrap();
    let v = model.cfg.vocab_size as i32;
    let err = g
        .forward_backward(&[0, v], &[1, 2], 1, 2, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0..101"), "{err}");
    let err = g
        .forward_backward(&[0, 1], &[1], 1, 2, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("targets"), "{err}");
    let too_long = vec![0; 33];
    let err = g
        .forward_backward(&too_long, &too_long, 1, 33, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context length 32"), "{err}");
    let err = g
        .forward_backward(&[0, 1], &[-100, -100], 1, 2, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ignored"), "{err}");
}

/// Greedy generation through GpuGpt's next-token logits gives the CPU model's tokens, and the
/// logits themselves agree.
pub fn generation_matches_the_cpu(gpu: &Gpu) {
    use scratchgpt::gpt::{generate, generate_with, Sampling};
    let model = tiny(0.0, false, false);
    let prompt: Vec<u32> = vec![3, 14, 15, 92, 65];
    let ctx = 8; // shorter than the prompt + new tokens: the window slides
    let cpu = generate(&model, &prompt, 12, ctx, &Sampling::default()).unwrap();
    let mut g = GpuGpt::from_model(gpu, &model).unwrap();
    let on_gpu = generate_with(
        |w| g.next_token_logits(&w.iter().map(|&t| t as i32).collect::<Vec<_>>()),
        &prompt,
        12,
        ctx,
        &Sampling::default(),
    )
    .unwrap();
    assert_eq!(on_gpu, cpu);
    let logits = g.next_token_logits(&[1, 2, 3]).unwrap();
    let want = model
        .forward(&as_ids(&[1, 2, 3], 1, 3), &ForwardCtx::eval())
        .unwrap()
        .select(1, 2)
        .unwrap()
        .reshape(&[model.cfg.vocab_size])
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close("next-token logits", &logits, &to64(&want), 1e-5);
    assert!(g.next_token_logits(&[]).is_err());
    assert!(g.next_token_logits(&[101]).is_err());
}

/// Chapter 6 on the GPU path: a 2-class head, everything frozen but the last block, final norm
/// and head, targets ignored except each text's last real token. Loss and every trained
/// gradient match the CPU; frozen parameters have no gradient on either side and AdamW leaves
/// them alone; the logits read at the last real tokens match.
pub fn classifier_step_matches_the_cpu(gpu: &Gpu) {
    // The last block; and every block with the embeddings still frozen (the backward must reach
    // block 0 but not the embedding tables).
    for blocks in [1, 2] {
        classifier_step_with_trained_blocks(gpu, blocks);
    }
}

fn classifier_step_with_trained_blocks(gpu: &Gpu, blocks: usize) {
    use scratchgpt::finetune::classifier::{Classifier, Trainable};
    let model = Classifier::new(tiny(0.0, false, true), 2, Trainable::LastBlocks(blocks), 3)
        .unwrap()
        .model;
    let (b, t) = (3, 9);
    let (x, _) = batch(b, t, model.cfg.vocab_size, 4);
    let lengths = [9usize, 4, 1];
    let labels = [1i32, 0, 1];
    let mut y = vec![-100i32; b * t];
    for r in 0..b {
        y[r * t + lengths[r] - 1] = labels[r];
    }
    let loss = model
        .forward(&as_ids(&x, b, t), &ForwardCtx::eval())
        .unwrap()
        .cross_entropy_with(&as_ids(&y, b, t), -100)
        .unwrap();
    loss.backward().unwrap();
    let cpu_loss = loss.item().unwrap();
    let mut g = GpuGpt::from_model(gpu, &model).unwrap();
    let gpu_loss = g.forward_backward(&x, &y, b, t, None).unwrap();
    assert!(
        (gpu_loss - cpu_loss).abs() <= 1e-5 * cpu_loss.abs(),
        "classifier loss: GPU {gpu_loss} vs CPU {cpu_loss}"
    );
    let before: Vec<(String, Vec<f32>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().unwrap()))
        .collect();
    for (name, p) in model.named_parameters() {
        let gp = g.param(&name).unwrap();
        assert_eq!(gp.trainable(), p.requires_grad(), "{name}");
        match p.grad() {
            // Exactly zero in theory (softmax is shift-invariant; see compare_model_step).
            Some(_) if name.ends_with("W_key.bias") => assert!(gp
                .grad()
                .unwrap()
                .to_vec()
                .unwrap()
                .iter()
                .all(|v| v.abs() < 1e-6)),
            Some(want) => assert_close(
                &format!("classifier grad of {name}"),
                &gp.grad().unwrap().to_vec().unwrap(),
                &to64(&want.to_vec().unwrap()),
                1e-5,
            ),
            None => assert!(
                gp.grad().is_err(),
                "{name} is frozen but has a GPU gradient"
            ),
        }
    }
    let cfg = AdamWConfig::default();
    g.adamw_step(&cfg, 1e-3).unwrap();
    for (name, old) in &before {
        let now = g.param(name).unwrap().value.to_vec().unwrap();
        let frozen = !model
            .named_parameters()
            .iter()
            .any(|(n, p)| n == name && p.requires_grad());
        assert_eq!(frozen, &now == old, "{name}: frozen={frozen}");
    }
    // Logits at the last real tokens, against the CPU forward of the updated weights.
    g.write_to_model(&model).unwrap();
    let positions: Vec<usize> = lengths.iter().map(|l| l - 1).collect();
    let got = g.logits_at(&x, b, t, &positions).unwrap();
    let all = model
        .forward(&as_ids(&x, b, t), &ForwardCtx::eval())
        .unwrap()
        .to_vec()
        .unwrap();
    for (r, row) in got.iter().enumerate() {
        let want = to64(&all[(r * t + positions[r]) * 2..][..2]);
        assert_close("classifier logits", row, &want, 1e-5);
    }
}
