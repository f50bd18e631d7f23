//! Helpers shared by the CUDA test files.
#![allow(dead_code)]

pub mod cuda_checks;

pub mod gpt_checks;
