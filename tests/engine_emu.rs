//! The one engine on emulated CUDA storage: `GptModel` — the same model code, the same graph and
//! backward — with every parameter on `cuda:0` (the kernel emulator installed in its place),
//! against the CPU engine on the same weights: the loss, every parameter gradient and an AdamW
//! update, with dropout (the same masks on both devices), qkv bias, a tied head, ignored targets,
//! frozen layers and LoRA adapters; generation; and the step copies nothing to the host but the
//! loss.

mod common;

use common::gpt_checks::{self as checks, batch, tiny};
use scratchgpt::backend::cuda;
use scratchgpt::{Device, Tensor};

const DEV: Device = Device::Cuda(0);

fn emu() -> Device {
    cuda::install_emulator(0);
    DEV
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_dropout_bias_and_tied_head() {
    checks::compare_step(emu(), || tiny(0.1, true, true), batch(2, 11, 101));
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_untied_without_dropout() {
    checks::compare_step(emu(), || tiny(0.0, false, false), batch(2, 11, 101));
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_frozen_layers() {
    let build = || {
        let m = tiny(0.1, false, true);
        m.freeze_all();
        m.unfreeze("trf_blocks.1.");
        m.unfreeze("final_norm.");
        m.unfreeze("out_head.");
        m
    };
    checks::compare_step(emu(), build, batch(2, 11, 101));
}

#[test]
fn gpt_step_on_emulated_cuda_matches_cpu_with_lora() {
    checks::compare_step(
        emu(),
        || with_lora(tiny(0.1, false, true)),
        batch(2, 11, 101),
    );
}

/// Rank-4 adapters on every linear layer of `m`, B drawn non-zero (it starts at zero, where the
/// adapter is a no-op and ∂A is zero).
fn with_lora(mut m: scratchgpt::gpt::GptModel) -> scratchgpt::gpt::GptModel {
    m.add_lora(4, 8.0, 3).unwrap();
    for (name, p) in m.named_parameters() {
        if name.ends_with("lora.B") {
            let r = Tensor::<f32>::randn(&p.shape(), 9)
                .mul_scalar(0.02)
                .unwrap();
            p.set_value(r.value().unwrap()).unwrap();
        }
    }
    m
}

/// Llama 3 and Qwen3 on the device: RMSNorm, RoPE, SiLU, grouped-query attention and Qwen3's
/// q/k norms through the same model code and backward, with dropout, tied and untied.
#[test]
fn llama_and_qwen3_steps_on_emulated_cuda_match_cpu() {
    for qwen3 in [false, true] {
        checks::compare_step(
            emu(),
            || checks::tiny_decoder(qwen3, 0.1, qwen3),
            batch(2, 11, 101),
        );
    }
}

#[test]
fn llama_and_qwen3_with_lora_on_emulated_cuda_match_cpu() {
    for qwen3 in [false, true] {
        let build = || with_lora(checks::tiny_decoder(qwen3, 0.0, false));
        checks::compare_step(emu(), build, batch(2, 11, 101));
    }
}

#[test]
fn llama_and_qwen3_generate_the_cpu_tokens_on_the_device() {
    for qwen3 in [false, true] {
        checks::generation_of_matches_the_cpu(emu(), || checks::tiny_decoder(qwen3, 0.0, true));
    }
}

#[test]
fn a_classifier_step_with_frozen_blocks_matches_the_cpu() {
    checks::classifier_step_matches_the_cpu(emu());
}

#[test]
fn dropout_is_seeded_and_changes_the_loss() {
    checks::dropout_is_seeded_and_changes_the_loss(emu());
}

#[test]
fn training_steps_lower_the_loss() {
    checks::training_steps_lower_the_loss(emu());
}

#[test]
fn bad_batches_are_clear_errors() {
    checks::bad_batches_are_clear_errors(emu());
}

#[test]
fn greedy_generation_on_the_device_gives_the_cpu_tokens_with_and_without_the_kv_cache() {
    checks::generation_matches_the_cpu(emu());
}

#[test]
#[ignore = "slow under the emulator (the 50257-way head); tests/cuda_gpu.rs runs it on a GPU"]
fn small_preset_step_with_the_full_vocabulary_matches_the_cpu() {
    let build = || {
        let mut cfg = scratchgpt::gpt::GptConfig::preset("small").unwrap();
        cfg.drop_rate = 0.1;
        scratchgpt::gpt::GptModel::new(&cfg, 3).unwrap()
    };
    checks::compare_step(emu(), build, batch(2, 64, 50257));
}

#[test]
fn a_device_tensor_refuses_an_op_without_a_device_path_by_name() {
    emu();
    let x = Tensor::<f32>::randn(&[3, 4], 1).to_device(DEV).unwrap();
    // Every op of the engine has a device path now; a CPU-only step — a cast (device tensors
    // are f32), or a user's own op reading the CPU array — is refused by name, never copied.
    let e = x.cast::<f64>().unwrap_err().to_string();
    assert!(e.contains("cast") && e.contains("cuda:0"), "{e}");
    let e = x.cpu("my_op").unwrap_err().to_string();
    assert!(e.contains("my_op") && e.contains("cuda:0"), "{e}");
    let y = Tensor::<f32>::randn(&[3, 4], 2);
    let e = x.add(&y).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
}

#[test]
fn a_second_training_step_allocates_nothing_from_the_driver() {
    use scratchgpt::nn::ForwardCtx;
    use scratchgpt::optim::{clip_grad_norm, AdamW, AdamWConfig};
    let gpu = cuda::install_emulator(0);
    let model = tiny(0.1, true, true);
    model.to_device(DEV).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let (x, y) = batch(2, 11, 101);
    let mut step = |seed: u64| {
        opt.zero_grad();
        let loss = model
            .forward(&x, &ForwardCtx::train(seed))
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        loss.backward().unwrap();
        clip_grad_norm(&model.parameters(), 1.0).unwrap();
        opt.step().unwrap();
        loss.item().unwrap()
    };
    step(1);
    let before = gpu.memory_stats().unwrap();
    let copies = cuda::transfers();
    step(2);
    let after = gpu.memory_stats().unwrap();
    let t = cuda::transfers().since(copies);
    assert_eq!(
        after.driver_allocs, before.driver_allocs,
        "{before:?} → {after:?}"
    );
    assert!(after.cache_hits > before.cache_hits);
    // Device → host: the gradient norm and the loss, nothing else.
    assert_eq!(t.to_host, 2, "{t:?}");
    assert_eq!(t.to_host_bytes, 8, "{t:?}");
}

#[test]
fn a_gpt_step_matches_the_cpu_under_every_thread_schedule() {
    use scratchgpt::backend::cuda::emu::Schedule;
    for s in Schedule::ALL {
        cuda::install_emulator_with(0, s);
        checks::compare_step(DEV, || tiny(0.1, true, true), batch(2, 11, 101));
    }
}

#[test]
fn sgd_with_momentum_and_weight_decay_on_the_device_matches_the_cpu() {
    use scratchgpt::optim::Sgd;
    emu();
    let init = Tensor::<f32>::randn(&[5, 7], 3);
    let grads = [
        Tensor::<f32>::randn(&[5, 7], 4),
        Tensor::<f32>::randn(&[5, 7], 5),
    ];
    let run = |device: Device| {
        // A fresh leaf: on the CPU `to_device` returns the tensor itself, as torch's `.to` does.
        let p = init
            .detach()
            .to_device(device)
            .unwrap()
            .requires_grad_(true);
        let mut opt = Sgd::new(vec![p.clone()], 0.1, 0.9, 0.01);
        for g in &grads {
            opt.zero_grad();
            p.accumulate_grad(&g.to_device(device).unwrap().storage())
                .unwrap();
            opt.step().unwrap();
        }
        assert_eq!(p.device(), device);
        p.to_vec().unwrap()
    };
    let (c, d) = (run(Device::Cpu), run(DEV));
    for (a, b) in c.iter().zip(&d) {
        assert!((a - b).abs() < 1e-6, "{c:?} vs {d:?}");
    }
}

#[test]
fn tensors_of_two_backends_on_one_ordinal_are_refused_not_mixed() {
    let a = {
        emu();
        Tensor::<f32>::randn(&[2, 3], 1).to_device(DEV).unwrap()
    };
    // A new backend for cuda:0: tensors made before keep the old one.
    emu();
    let b = Tensor::<f32>::randn(&[2, 3], 2).to_device(DEV).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("another backend"), "{e}");
    let p = a.detach().requires_grad_(true);
    let e = p.accumulate_grad(&b.storage()).unwrap_err().to_string();
    assert!(e.contains("another backend"), "{e}");
}

#[test]
fn writing_rows_in_place_on_the_device_leaves_other_views_unchanged() {
    emu();
    let base = Tensor::<f32>::zeros(&[4, 3]);
    let t = base.to_device(DEV).unwrap();
    let view = t.narrow(0, 0, 2).unwrap(); // shares t's buffer
    let rows = Tensor::<f32>::ones(&[2, 3]).to_device(DEV).unwrap();
    t.write_rows(1, &rows).unwrap();
    assert_eq!(
        view.to_vec().unwrap(),
        vec![0.0; 6],
        "the view kept the old data (copy-on-write)"
    );
    assert_eq!(
        t.to_vec().unwrap(),
        [vec![0.0; 3], vec![1.0; 6], vec![0.0; 3]].concat()
    );
    // Rows of the tensor itself, overlapping the destination: staged, as on the CPU.
    let cpu = Tensor::<f32>::arange(0.0, 12.0, 1.0)
        .unwrap()
        .reshape(&[4, 3])
        .unwrap();
    let dev = cpu.to_device(DEV).unwrap();
    cpu.write_rows(0, &cpu.narrow(0, 1, 3).unwrap()).unwrap();
    dev.write_rows(0, &dev.narrow(0, 1, 3).unwrap()).unwrap();
    assert_eq!(dev.to_vec().unwrap(), cpu.to_vec().unwrap());
}
