//! Helpers shared by the CUDA test files.
#![allow(dead_code)]

pub mod cuda_checks;
pub mod emu_gpu;
pub mod gpt_checks;
