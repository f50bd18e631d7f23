//! `--precision f32|bf16`: the number format of the CPU's matrix products for a training run
//! (`train`, `finetune`, `bench train-step`, `bench finetune`). bf16 needs AVX-512 BF16 and the
//! CPU; the GPU has no bf16 kernels yet.

use scratchgpt::backend::gemm::Precision;

use super::device::DeviceChoice;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// f32 products (the book's numbers).
    F32,
    /// bf16 operands, f32 sums (`vdpbf16ps`); weights, optimizer state, statistics and the loss
    /// stay f32.
    Bf16,
}

impl PrecisionChoice {
    pub fn precision(self) -> Precision {
        match self {
            PrecisionChoice::F32 => Precision::F32,
            PrecisionChoice::Bf16 => Precision::Bf16,
        }
    }

    /// Makes the run's products use it, for a run on `device` — called first, before a run
    /// touches its data or folder: bf16 is refused for a GPU (or `auto`, which may pick one) and
    /// on a CPU without the instructions, each with its own message.
    pub fn apply(self, device: DeviceChoice) -> anyhow::Result<Precision> {
        let p = self.precision();
        if p == Precision::Bf16 && device != DeviceChoice::Cpu {
            anyhow::bail!(
                "--precision bf16 runs on the CPU (AVX-512 BF16); the GPU has no bf16 kernels yet: use --device cpu, or f32 on the GPU"
            );
        }
        p.apply()?;
        if p == Precision::Bf16 {
            eprintln!("precision: bf16 products (vdpbf16ps), f32 weights, optimizer and loss");
        }
        Ok(p)
    }
}
