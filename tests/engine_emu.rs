//! The one engine on emulated CUDA storage: `GptModel` — the same model code, the same graph and
//! backward — with every parameter on `cuda:0` (the kernel emulator installed in its place),
//! against the CPU engine on the same weights: the loss, every parameter gradient and an AdamW
//! update, with dropout (the same masks on both devices), qkv bias, a tied head, ignored targets,
//! frozen layers and LoRA adapters. And the step copies nothing to the host but the loss.

use scratchgpt::backend::cuda::{self, transfers};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::{Device, Ids, Tensor};

const DEV: Device = Device::Cuda(0);

fn tiny(drop_rate: f64, tie: bool, qkv_bias: bool) -> GptModel {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.vocab_size = 101;
    cfg.drop_rate = drop_rate;
    cfg.tie_weights = tie;
    cfg.qkv_bias = qkv_bias;
    GptModel::new(&cfg, 5).unwrap()
}

fn batch(b: usize, t: usize, vocab: usize) -> (Ids, Ids) {
    let x: Vec<i64> = (0..b * t)
        .map(|i| ((i * 7919 + 13) % vocab) as i64)
        .collect();
    let mut y: Vec<i64> = (0..b * t)
        .map(|i| ((i * 104_729 + 5) % vocab) as i64)
        .collect();
    y[3] = -100; // an ignored target
    (Ids::new(x, &[b, t]).unwrap(), Ids::new(y, &[b, t]).unwrap())
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Builds the model twice (CPU, device), applies `prepare` to both, runs one training step on
/// each and compares them.
fn compare(drop_rate: f64, tie: bool, qkv_bias: bool, prepare: impl Fn(&mut GptModel)) {
    cuda::install_emulator(0);
    let mut cpu = tiny(drop_rate, tie, qkv_bias);
    let mut dev = tiny(drop_rate, tie, qkv_bias);
    prepare(&mut cpu);
    prepare(&mut dev);
    dev.to_device(DEV).unwrap();
    assert_eq!(dev.device(), DEV);
    let (x, y) = batch(2, 11, 101);

    let loss_cpu = cpu
        .forward(&x, &ForwardCtx::train(77))
        .unwrap()
        .cross_entropy(&y)
        .unwrap();
    let before = transfers();
    let loss_dev = dev
        .forward(&x, &ForwardCtx::train(77))
        .unwrap()
        .cross_entropy(&y)
        .unwrap();
    assert_eq!(loss_dev.device(), DEV);
    loss_cpu.backward().unwrap();
    loss_dev.backward().unwrap();
    let step = transfers().since(before);
    assert_eq!(
        step.to_host, 0,
        "forward + backward on the device copied to the host"
    );
    let (lc, ld) = (loss_cpu.item().unwrap(), loss_dev.item().unwrap());
    assert!((lc - ld).abs() < 1e-5, "loss cpu {lc} device {ld}");

    // Every parameter gradient, relative to its norm.
    let mut tiny_norms = Vec::new();
    for ((name, pc), (_, pd)) in cpu.named_parameters().iter().zip(dev.named_parameters()) {
        match (pc.grad(), pd.grad()) {
            (None, None) => continue,
            (Some(gc), Some(gd)) => {
                assert_eq!(gd.device(), DEV, "{name}");
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

    // AdamW with the same gradients: hand the device the CPU's gradients, step both.
    for ((_, pc), (_, pd)) in cpu.named_parameters().iter().zip(dev.named_parameters()) {
        if let Some(g) = pc.grad() {
            pd.zero_grad();
            pd.accumulate_grad(&g.to_device(DEV).unwrap().storage())
                .unwrap();
        }
    }
    let cfg = AdamWConfig {
        lr: 1e-3,
        weight_decay: 0.1,
        exempt_biases_and_norms: true,
        ..AdamWConfig::default()
    };
    let mut oc = AdamW::new(cpu.named_parameters(), cfg.clone());
    let mut od = AdamW::new(dev.named_parameters(), cfg);
    oc.step().unwrap();
    od.step().unwrap();
    for ((name, pc), (_, pd)) in cpu.named_parameters().iter().zip(dev.named_parameters()) {
        let (a, b) = (pc.to_vec().unwrap(), pd.to_vec().unwrap());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{name}: AdamW update differs by {worst:e}");
    }
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_dropout_bias_and_tied_head() {
    compare(0.1, true, true, |_| {});
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_untied_without_dropout() {
    compare(0.0, false, false, |_| {});
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_frozen_layers() {
    compare(0.1, false, true, |m| {
        m.freeze_all();
        m.unfreeze("trf_blocks.1.");
        m.unfreeze("final_norm.");
        m.unfreeze("out_head.");
    });
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_lora() {
    compare(0.1, false, true, |m| {
        m.add_lora(4, 8.0, 3).unwrap();
        // B starts at zero (the adapter is a no-op at first); give it values so ∂A is not zero.
        for (name, p) in m.named_parameters() {
            if name.ends_with(".B") || name.ends_with("lora.B") {
                let r = Tensor::<f32>::randn(&p.shape(), 9)
                    .mul_scalar(0.02)
                    .unwrap();
                p.set_value(r.value().unwrap()).unwrap();
            }
        }
    });
}

#[test]
fn a_device_tensor_refuses_an_op_without_a_device_path_by_name() {
    cuda::install_emulator(0);
    let x = Tensor::<f32>::randn(&[3, 4], 1).to_device(DEV).unwrap();
    let e = x.max(-1, false).unwrap_err().to_string();
    assert!(e.contains("max") && e.contains("cuda:0"), "{e}");
    let y = Tensor::<f32>::randn(&[3, 4], 2);
    let e = x.add(&y).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
}

#[test]
fn greedy_generation_on_the_device_gives_the_cpu_tokens_with_and_without_the_kv_cache() {
    use scratchgpt::gpt::generate::{generate, Sampling};
    use scratchgpt::gpt::kv_cache::generate_cached;
    cuda::install_emulator(0);
    let cpu = tiny(0.1, true, true);
    let dev = tiny(0.1, true, true);
    dev.to_device(DEV).unwrap();
    let prompt = [5u32, 17, 3, 99, 42];
    let s = Sampling::default();
    // 40 new tokens with a context of 32: the cache fills and re-encodes the cropped window.
    let want = generate(&cpu, &prompt, 40, 32, &s).unwrap();
    assert_eq!(generate(&dev, &prompt, 40, 32, &s).unwrap(), want);
    assert_eq!(generate_cached(&cpu, &prompt, 40, 32, &s).unwrap(), want);
    let before = transfers();
    assert_eq!(generate_cached(&dev, &prompt, 40, 32, &s).unwrap(), want);
    // Device→host: the last position's logits, once per generated token (sampling is on the
    // host); the cache never leaves the device.
    let t = transfers().since(before);
    assert!(t.to_host <= 40, "{t:?}");
}
