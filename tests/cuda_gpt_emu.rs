//! A whole GPT training step through the GPU code path (GpuGpt: explicit forward/backward over the
//! CUDA kernels), run by the CPU emulator and compared with the CPU autograd on the same weights:
//! the loss, every parameter's gradient, and the weights after AdamW.

mod common;

use common::gpt_checks as checks;
use scratchgpt::backend::cuda::emu::EmuGpu;

#[test]
fn a_training_step_matches_the_cpu_autograd() {
    checks::compare_step(&EmuGpu::shared(), false, false);
}

#[test]
fn a_training_step_matches_with_tied_weights_and_qkv_bias() {
    checks::compare_step(&EmuGpu::shared(), true, true);
}

#[test]
fn dropout_is_seeded_and_changes_the_loss() {
    checks::dropout_is_seeded_and_changes_the_loss(&EmuGpu::shared());
}

#[test]
fn training_steps_lower_the_loss() {
    checks::training_steps_lower_the_loss(&EmuGpu::shared());
}

#[test]
fn bad_batches_are_clear_errors() {
    checks::bad_batches_are_clear_errors(&EmuGpu::shared());
}

#[test]
#[ignore = "slow under the emulator (the 50257-way head); tests/cuda_gpu.rs runs it on a GPU"]
fn small_preset_step_with_the_full_vocabulary_matches_the_cpu() {
    let mut cfg = scratchgpt::gpt::GptConfig::preset("small").unwrap();
    cfg.drop_rate = 0.0;
    let model = scratchgpt::gpt::GptModel::new(&cfg, 3).unwrap();
    checks::compare_model_step(&EmuGpu::shared(), &model, 2, 64);
}

#[test]
fn generation_matches_the_cpu() {
    checks::generation_matches_the_cpu(&EmuGpu::shared());
}

#[test]
fn a_classifier_step_with_frozen_blocks_matches_the_cpu() {
    checks::classifier_step_matches_the_cpu(&EmuGpu::shared());
}
