//! Whole-model checks of the one engine on a device (`GptModel` with its parameters on
//! `cuda:0`) against the same model on the CPU: run under the emulator (tests/engine_emu.rs) and,
//! when present, on a real GPU (tests/cuda_gpu.rs). The caller installs the backend of `cuda:0`.
#![allow(dead_code)]

use scratchgpt::backend::cuda::transfers;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::{Device, Ids, Tensor};

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

/// The same size as Llama 3 (`qwen3: false`) or Qwen3: RMSNorm, RoPE (Llama's with its
/// frequency scaling), SwiGLU, 4 query heads on 2 key/value heads (Qwen3's 16 wide, with q/k
/// norms), attention biases — every new op on the device at once.
pub fn tiny_decoder(qwen3: bool, drop_rate: f64, tie: bool) -> GptModel {
    let mut cfg = GptConfig::preset(if qwen3 { "qwen3-tiny" } else { "llama-tiny" }).unwrap();
    cfg.vocab_size = 101;
    cfg.drop_rate = drop_rate;
    cfg.tie_weights = tie;
    cfg.qkv_bias = true;
    if let scratchgpt::gpt::Architecture::Llama(d) = &mut cfg.arch {
        d.rope_scaling = Some(scratchgpt::ops::rope::Llama3Scaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        });
    }
    GptModel::new(&cfg, 5).unwrap()
}

/// Inputs and targets of shape (b, t), the fourth target ignored (−100).
pub fn batch(b: usize, t: usize, vocab: usize) -> (Ids, Ids) {
    let x: Vec<i64> = (0..b * t)
        .map(|i| ((i * 7919 + 13) % vocab) as i64)
        .collect();
    let mut y: Vec<i64> = (0..b * t)
        .map(|i| ((i * 104_729 + 5) % vocab) as i64)
        .collect();
    y[3] = -100;
    (Ids::new(x, &[b, t]).unwrap(), Ids::new(y, &[b, t]).unwrap())
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// One training step of the model `build` makes, on the CPU and on `dev` (the same weights, the
/// same dropout seed): the loss within 1e-5, every parameter gradient within 1e-5 relative to its
/// norm (norms below 1e-6 — rounding noise, e.g. the key bias, whose true gradient is 0 — are
/// listed and skipped), no device→host copy in forward + backward, and an AdamW step of the same
/// gradients within 1e-6.
pub fn compare_step(dev: Device, build: impl Fn() -> GptModel, ids: (Ids, Ids)) {
    let (cpu, on_dev) = (build(), build());
    on_dev.to_device(dev).unwrap();
    assert_eq!(on_dev.device(), dev);
    let (x, y) = ids;
    let loss_cpu = cpu
        .forward(&x, &ForwardCtx::train(77))
        .unwrap()
        .cross_entropy(&y)
        .unwrap();
    let before = transfers();
    let loss_dev = on_dev
        .forward(&x, &ForwardCtx::train(77))
        .unwrap()
        .cross_entropy(&y)
        .unwrap();
    assert_eq!(loss_dev.device(), dev);
    loss_cpu.backward().unwrap();
    loss_dev.backward().unwrap();
    let step = transfers().since(before);
    assert_eq!(
        step.to_host, 0,
        "forward + backward on the device copied to the host"
    );
    let (lc, ld) = (loss_cpu.item().unwrap(), loss_dev.item().unwrap());
    assert!(
        (lc - ld).abs() <= 1e-5 * lc.abs().max(1.0),
        "loss cpu {lc} device {ld}"
    );

    let mut tiny_norms = Vec::new();
    for ((name, pc), (_, pd)) in cpu.named_parameters().iter().zip(on_dev.named_parameters()) {
        match (pc.grad(), pd.grad()) {
            (None, None) => continue,
            (Some(gc), Some(gd)) => {
                assert_eq!(gd.device(), dev, "{name}");
                let (gc, gd) = (gc.to_vec().unwrap(), gd.to_vec().unwrap());
                let n = norm(&gc);
                if n < 1e-6 {
                    tiny_norms.push(name.clone());
                    continue;
                }
                let diff: Vec<f32> = gc.iter().zip(&gd).map(|(a, b)| a - b).collect();
                let rel = norm(&diff) / n;
                assert!(rel < 1e-5, "{name}: relative gradient error {rel:e}");
            }
            (a, b) => panic!(
                "{name}: gradient on cpu {} device {}",
                a.is_some(),
                b.is_some()
            ),
        }
    }
    eprintln!("gradients below 1e-6 in norm (not compared): {tiny_norms:?}");

    // AdamW with the same gradients: hand the device the CPU's gradients, step both. (Adam's
    // first step moves a weight by ≈ lr·g/|g|, which would amplify rounding in near-zero
    // gradients; this checks the optimizer — every parameter, its moments, decay, skips.)
    for ((_, pc), (_, pd)) in cpu.named_parameters().iter().zip(on_dev.named_parameters()) {
        if let Some(g) = pc.grad() {
            pd.zero_grad();
            pd.accumulate_grad(&g.to_device(dev).unwrap().storage())
                .unwrap();
        }
    }
    let cfg = AdamWConfig {
        lr: 1e-3,
        weight_decay: 0.1,
        exempt_biases_and_norms: true,
        ..AdamWConfig::default()
    };
    let before: Vec<Vec<f32>> = cpu
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let mut oc = AdamW::new(cpu.named_parameters(), cfg.clone());
    let mut od = AdamW::new(on_dev.named_parameters(), cfg);
    oc.step().unwrap();
    od.step().unwrap();
    for (((name, pc), (_, pd)), old) in cpu
        .named_parameters()
        .iter()
        .zip(on_dev.named_parameters())
        .zip(&before)
    {
        let (a, b) = (pc.to_vec().unwrap(), pd.to_vec().unwrap());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{name}: AdamW update differs by {worst:e}");
        // Frozen parameters are left alone on both devices; trained ones move.
        assert_eq!(pc.requires_grad(), &a != old, "{name}");
    }
}

/// The same seed gives the same loss and gradients on the device (no atomics anywhere), another
/// seed other masks, and eval mode no dropout.
pub fn dropout_is_seeded_and_changes_the_loss(dev: Device) {
    let model = tiny(0.1, false, false);
    model.to_device(dev).unwrap();
    let (x, y) = batch(2, 9, 101);
    let step = |seed: u64| {
        for p in model.parameters() {
            p.zero_grad();
        }
        let loss = model
            .forward(&x, &ForwardCtx::train(seed))
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        loss.backward().unwrap();
        let g = model.trf_blocks[0].att.w_query.weight.grad().unwrap();
        (loss.item().unwrap(), g.to_vec().unwrap())
    };
    let (l1, g1) = step(7);
    let (l2, g2) = step(7);
    assert_eq!(l1, l2, "same seed, same loss");
    assert_eq!(g1, g2, "same seed, same gradients");
    let (l3, _) = step(8);
    assert_ne!(l1, l3, "another seed, other masks");
    let l_eval = scratchgpt::no_grad(|| model.forward(&x, &ForwardCtx::eval())?.cross_entropy(&y))
        .unwrap()
        .item()
        .unwrap();
    assert_ne!(l1, l_eval, "eval mode has no dropout");
}

/// Four clipped AdamW steps on the device lower the loss, and clipping leaves norm ≤ 1.
pub fn training_steps_lower_the_loss(dev: Device) {
    let model = tiny(0.0, false, false);
    model.to_device(dev).unwrap();
    let (x, y) = batch(2, 8, 101);
    let mut opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr: 3e-3,
            ..AdamWConfig::default()
        },
    );
    let mut losses = Vec::new();
    for _ in 0..4 {
        opt.zero_grad();
        let loss = model
            .forward(&x, &ForwardCtx::eval())
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        loss.backward().unwrap();
        losses.push(loss.item().unwrap());
        scratchgpt::optim::clip_grad_norm(&model.parameters(), 1.0).unwrap();
        let after = scratchgpt::optim::clip_grad_norm(&model.parameters(), f64::INFINITY).unwrap();
        assert!(after <= 1.0 + 1e-4, "clipped norm {after}");
        opt.step().unwrap();
    }
    assert!(losses[3] < losses[0] - 0.1, "losses {losses:?}");
    for p in model.parameters() {
        assert_eq!(p.device(), dev);
    }
}

/// Bad batches on a device are the same clear errors as on the CPU.
pub fn bad_batches_are_clear_errors(dev: Device) {
    let model = tiny(0.0, false, false);
    model.to_device(dev).unwrap();
    let ctx = ForwardCtx::eval();
    let err = model
        .forward(&Ids::new(vec![0, 101], &[1, 2]).unwrap(), &ctx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("101") && err.contains("embedding"), "{err}");
    let logits = model
        .forward(&Ids::new(vec![0, 1], &[1, 2]).unwrap(), &ctx)
        .unwrap();
    let err = logits
        .cross_entropy(&Ids::new(vec![1], &[1]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("targets"), "{err}");
    let err = logits
        .cross_entropy(&Ids::new(vec![-100, -100], &[1, 2]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ignore_index"), "{err}");
    let err = model
        .forward(&Ids::new(vec![0; 33], &[1, 33]).unwrap(), &ctx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context length 32"), "{err}");
    let err = logits
        .add(&Tensor::<f32>::zeros(&[1, 2, 101]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different devices"), "{err}");
}

/// Greedy generation with the model on the device gives the CPU's tokens, with and without the
/// KV cache (kept on the device), and the cache crosses its capacity (re-encoding the window).
pub fn generation_matches_the_cpu(dev: Device) {
    generation_of_matches_the_cpu(dev, || tiny(0.1, true, true));
}

/// [`generation_matches_the_cpu`] for the model `build` makes.
pub fn generation_of_matches_the_cpu(dev: Device, build: impl Fn() -> GptModel) {
    use scratchgpt::gpt::generate::{generate, Sampling};
    use scratchgpt::gpt::kv_cache::generate_cached;
    let cpu = build();
    let on_dev = build();
    on_dev.to_device(dev).unwrap();
    let prompt = [5u32, 17, 3, 99, 42];
    let s = Sampling::default();
    let want = generate(&cpu, &prompt, 40, 32, &s).unwrap();
    assert_eq!(generate(&on_dev, &prompt, 40, 32, &s).unwrap(), want);
    assert_eq!(generate_cached(&cpu, &prompt, 40, 32, &s).unwrap(), want);
    let before = transfers();
    assert_eq!(generate_cached(&on_dev, &prompt, 40, 32, &s).unwrap(), want);
    // Device→host: the last position's logits, once per generated token (sampling is on the
    // host); the cache never leaves the device.
    let t = transfers().since(before);
    assert!(t.to_host <= 40, "{t:?}");
}

/// Chapter 6 on the device: a 2-class head, everything frozen but the last `blocks` blocks, the
/// final norm and the head, targets ignored except each text's last real token.
pub fn classifier_step_matches_the_cpu(dev: Device) {
    use scratchgpt::finetune::classifier::{Classifier, Trainable};
    for blocks in [1, 2] {
        let build = || {
            Classifier::new(tiny(0.1, false, true), 2, Trainable::LastBlocks(blocks), 3)
                .unwrap()
                .model
        };
        let (b, t) = (3, 9);
        let (x, _) = batch(b, t, 101);
        let (lengths, labels) = ([9usize, 4, 1], [1i64, 0, 1]);
        let mut y = vec![-100i64; b * t];
        for r in 0..b {
            y[r * t + lengths[r] - 1] = labels[r];
        }
        compare_step(dev, build, (x, Ids::new(y, &[b, t]).unwrap()));
    }
}
