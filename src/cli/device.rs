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

fn open_gpu(ordinal: usize) -> scratchgpt::Result<Device> {
    let gpu = cuda::device(ordinal)?;
    eprintln!("device: cuda:{ordinal} — {}", gpu.describe());
    Ok(Device::Cuda(ordinal))
}

/// The device to use, saying on stderr which was chosen and, for `auto`, why.
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Device> {
    resolve_on(choice, 0)
}

/// [`resolve`] with GPU `ordinal` (a data-parallel rank's: its local rank) in place of `cuda:0`.
pub fn resolve_on(choice: DeviceChoice, ordinal: usize) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_gpu(ordinal).map_err(|e| anyhow::anyhow!("--device cuda: {e}")),
        DeviceChoice::Auto => match open_gpu(ordinal) {
            Ok(d) => Ok(d),
            Err(e) => {
                eprintln!("device: cpu ({e})");
                Ok(Device::Cpu)
            }
        },
        DeviceChoice::Emu => emulator(ordinal),
    }
}

#[cfg(feature = "cuda-emu")]
fn emulator(ordinal: usize) -> anyhow::Result<Device> {
    let gpu = cuda::install_emulator(ordinal);
    eprintln!(
        "device: cuda:{ordinal} — {} (the CUDA kernels emulated on the CPU)",
        gpu.describe()
    );
    Ok(Device::Cuda(ordinal))
}

#[cfg(not(feature = "cuda-emu"))]
fn emulator(_ordinal: usize) -> anyhow::Result<Device> {
    anyhow::bail!(
        "--device emu: this binary was built without the CUDA emulator; rebuild with `cargo run --release --features cuda-emu -- …` (it needs g++)"
    )
}
