//! [`GpuGpt`]: the hand-scheduled GPT training step on the GPU (llm.c-style explicit backward),
//! which the one engine (GPU tensors in the autograd graph, `crate::backend::cuda`) is replacing.
//! It stays until every `--device cuda` command runs through the engine; see docs/cuda.md.

pub mod gpt;

pub use gpt::GpuGpt;
