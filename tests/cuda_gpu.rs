//! The CUDA kernels and the one engine on a real GPU — a whole GPT training step with the model on
//! `cuda:0`, compared with the CPU engine — the same checks the emulator runs, plus the GPT-2
//! head size (D = 64, vocab 50257).
//!
//! Without a usable GPU (no driver, no device, no NVRTC) every test prints why and passes; set
//! `SCRATCHGPT_REQUIRE_GPU=1` to make that a failure instead (the device-machine runs do).

mod common;

use std::rc::Rc;

use common::cuda_checks as ops;
use common::gpt_checks as gpt;
use scratchgpt::backend::cuda::{CudaGpu, Gpu};
use scratchgpt::gpt::{GptConfig, GptModel};

fn gpu() -> Option<Gpu> {
    match CudaGpu::new(0) {
        Ok(g) => Some(Rc::new(g)),
        Err(e) => {
            if std::env::var("SCRATCHGPT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("SCRATCHGPT_REQUIRE_GPU=1 but no GPU is usable: {e}");
            }
            eprintln!("skipping: no usable GPU ({e})");
            None
        }
    }
}

macro_rules! gpu_test {
    ($name:ident, $check:path) => {
        #[test]
        fn $name() {
            if let Some(g) = gpu() {
                $check(&g);
            }
        }
    };
}

gpu_test!(elementwise_ops, ops::check_elementwise);
gpu_test!(gelu, ops::check_gelu);
gpu_test!(dropout, ops::check_dropout);
gpu_test!(matmul_all_transposes_batched_with_bias, ops::check_matmul);
gpu_test!(reductions, ops::check_reductions);
gpu_test!(softmax_and_log_softmax, ops::check_softmax);
gpu_test!(softmax_with_masked_entries, ops::check_softmax_masked);
gpu_test!(layer_norm, ops::check_layer_norm);
gpu_test!(cross_entropy_with_ignore_index, ops::check_cross_entropy);
gpu_test!(embeddings, ops::check_embedding);
gpu_test!(fused_causal_attention, ops::check_attention);
gpu_test!(
    fused_causal_attention_with_dropout,
    ops::check_attention_dropout
);
gpu_test!(adamw_matches_the_cpu_optimizer, ops::check_adamw);
/// `cuda:0` through the registry (the real GPU behind the caching allocator), for the engine
/// checks.
fn device() -> Option<scratchgpt::Device> {
    gpu().map(|_| {
        scratchgpt::backend::cuda::device(0).expect("the GPU just opened");
        scratchgpt::Device::Cuda(0)
    })
}

macro_rules! engine_test {
    ($name:ident, $check:path) => {
        #[test]
        fn $name() {
            if let Some(d) = device() {
                $check(d);
            }
        }
    };
}

engine_test!(
    gpt_dropout_is_seeded,
    gpt::dropout_is_seeded_and_changes_the_loss
);
engine_test!(
    gpt_training_steps_lower_the_loss,
    gpt::training_steps_lower_the_loss
);
engine_test!(
    gpt_bad_batches_are_clear_errors,
    gpt::bad_batches_are_clear_errors
);
engine_test!(
    gpt_generation_matches_the_cpu,
    gpt::generation_matches_the_cpu
);
engine_test!(
    gpt_classifier_step_with_frozen_blocks_matches_the_cpu,
    gpt::classifier_step_matches_the_cpu
);

#[test]
fn gpt_training_step_matches_the_cpu_autograd() {
    if let Some(d) = device() {
        gpt::compare_step(d, || gpt::tiny(0.0, false, false), gpt::batch(2, 11, 101));
        gpt::compare_step(d, || gpt::tiny(0.1, true, true), gpt::batch(2, 11, 101));
    }
}

#[test]
fn llama_and_qwen3_steps_and_generation_match_the_cpu() {
    if let Some(d) = device() {
        for qwen3 in [false, true] {
            gpt::compare_step(
                d,
                || gpt::tiny_decoder(qwen3, 0.1, qwen3),
                gpt::batch(2, 11, 101),
            );
            gpt::generation_of_matches_the_cpu(d, || gpt::tiny_decoder(qwen3, 0.0, true));
        }
    }
}

#[test]
fn small_preset_step_with_the_full_vocabulary_matches_the_cpu() {
    // emb 256, 4 layers, 4 heads of 64 (GPT-2's head size), vocabulary 50257.
    if let Some(d) = device() {
        let build = || {
            let mut cfg = GptConfig::preset("small").unwrap();
            cfg.drop_rate = 0.1;
            GptModel::new(&cfg, 3).unwrap()
        };
        gpt::compare_step(d, build, gpt::batch(2, 64, 50257));
    }
}

#[test]
fn out_of_memory_is_an_error_with_the_size() {
    if let Some(g) = gpu() {
        let err = scratchgpt::backend::cuda::DeviceBuffer::<f32>::uninit(&g, 1 << 48)
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of GPU memory"), "{err}");
        assert!(
            err.contains(&(4u64 << 48).to_string()),
            "the error names the requested bytes: {err}"
        );
    }
}

#[test]
fn tensors_move_to_the_gpu_and_back() {
    if let Some(g) = gpu() {
        let t = scratchgpt::Tensor::<f32>::from_vec((0..10).map(|v| v as f32).collect(), &[2, 5])
            .unwrap();
        let _ = (&g, device());
        let d = t.to_device(scratchgpt::Device::Cuda(0)).unwrap();
        assert_eq!(d.device(), scratchgpt::Device::Cuda(0));
        assert_eq!(d.to_cpu().unwrap().to_vec().unwrap(), t.to_vec().unwrap());
    }
}
