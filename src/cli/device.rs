//! `--device cpu|cuda|auto|emu`: where a command's model and its steps run. Every choice runs the
//! same engine; a device is only where the tensors live.

use scratchgpt::backend::cuda;
use scratchgpt::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (ndarray + rayon).
    Cpu,
    /// The first CUDA GPU; an error if none is usable.
    Cuda,
    /// CUDA when a GPU is usable, else the CPU.
    Auto,
    /// The CPU emulator of our CUDA kernels in place of a GPU: the GPU code path, on any machine
    /// (needs a build with `--features cuda-emu`).
    Emu,
}

fn open_gpu() -> scratchgpt::Result<Device> {
    let gpu = cuda::device(0)?;
    eprintln!("device: cuda:0 — {}", gpu.describe());
    Ok(Device::Cuda(0))
}

/// The device to use, saying on stderr which was chosen and, for `auto`, why.
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_gpu().map_err(|e| anyhow::anyhow!("--device cuda: {e}")),
        DeviceChoice::Auto => match open_gpu() {
            Ok(d) => Ok(d),
            Err(e) => {
                eprintln!("device: cpu ({e})");
                Ok(Device::Cpu)
            }
        },
        DeviceChoice::Emu => emulator(),
    }
}

#[cfg(feature = "cuda-emu")]
fn emulator() -> anyhow::Result<Device> {
    let gpu = cuda::install_emulator(0);
    eprintln!(
        "device: cuda:0 — {} (the CUDA kernels emulated on the CPU)",
        gpu.describe()
    );
    Ok(Device::Cuda(0))
}

#[cfg(not(feature = "cuda-emu"))]
fn emulator() -> anyhow::Result<Device> {
    anyhow::bail!(
        "--device emu: this binary was built without the CUDA emulator; rebuild with `cargo run --release --features cuda-emu -- …` (it needs g++)"
    )
}
