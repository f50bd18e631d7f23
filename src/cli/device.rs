//! `--device cpu|cuda|auto`: which backend a command runs on.

use std::rc::Rc;

use scratchgpt::backend::cuda::{CudaGpu, Gpu};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU engine (ndarray + rayon).
    Cpu,
    /// The first CUDA GPU; an error if none is usable.
    Cuda,
    /// CUDA when a GPU is usable, else the CPU.
    Auto,
}

/// The GPU to use (None = CPU), saying on stderr which was chosen and, for `auto`, why.
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Option<Gpu>> {
    match choice {
        DeviceChoice::Cpu => Ok(None),
        DeviceChoice::Cuda => {
            let gpu = CudaGpu::new(0).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            eprintln!(
                "device: cuda:0 — {}",
                scratchgpt::backend::cuda::GpuBackend::describe(&gpu)
            );
            Ok(Some(Rc::new(gpu)))
        }
        DeviceChoice::Auto => match CudaGpu::new(0) {
            Ok(gpu) => {
                eprintln!(
                    "device: cuda:0 — {}",
                    scratchgpt::backend::cuda::GpuBackend::describe(&gpu)
                );
                Ok(Some(Rc::new(gpu)))
            }
            Err(e) => {
                eprintln!("device: cpu ({e})");
                Ok(None)
            }
        },
    }
}
