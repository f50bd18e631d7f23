//! Every CUDA kernel, run on the CPU by the emulator (crates/cuda-emu) through the same host
//! launchers a GPU uses, compared with the CPU engine. Runs everywhere; no GPU needed.

mod common;

use common::cuda_checks as checks;
use scratchgpt::backend::cuda::emu::EmuGpu;
use scratchgpt::backend::cuda::kernels::all_entry_points;
use scratchgpt::backend::cuda::{DeviceBuffer, KernelArg};

#[test]
fn the_kernel_list_matches_the_sources() {
    let mut emu: Vec<String> = cuda_emu::kernel_names()
        .into_iter()
        .filter(|n| !n.starts_with("emu_selftest_"))
        .collect();
    emu.sort();
    let listed: Vec<String> = all_entry_points().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        emu, listed,
        "src/backend/cuda/kernels.rs must list exactly the entry points of kernels/*.cu"
    );
}

#[test]
fn elementwise_ops() {
    checks::check_elementwise(&EmuGpu::shared());
}

#[test]
fn gelu() {
    checks::check_gelu(&EmuGpu::shared());
}

#[test]
fn dropout() {
    checks::check_dropout(&EmuGpu::shared());
}

#[test]
fn matmul_all_transposes_batched_with_bias() {
    checks::check_matmul(&EmuGpu::shared());
}

#[test]
fn reductions() {
    checks::check_reductions(&EmuGpu::shared());
}

#[test]
fn softmax_and_log_softmax() {
    checks::check_softmax(&EmuGpu::shared());
}

#[test]
fn softmax_with_masked_entries() {
    checks::check_softmax_masked(&EmuGpu::shared());
}

#[test]
fn layer_norm() {
    checks::check_layer_norm(&EmuGpu::shared());
}

#[test]
fn cross_entropy_with_ignore_index() {
    checks::check_cross_entropy(&EmuGpu::shared());
}

#[test]
fn embeddings() {
    checks::check_embedding(&EmuGpu::shared());
}

#[test]
fn fused_causal_attention() {
    checks::check_attention(&EmuGpu::shared());
}

#[test]
fn fused_causal_attention_with_dropout() {
    checks::check_attention_dropout(&EmuGpu::shared());
}

#[test]
fn adamw_matches_the_cpu_optimizer() {
    checks::check_adamw(&EmuGpu::shared());
}

// ---- the emulator catches broken synchronisation ---------------------------------------------

fn launch(name: &str, block: u32, args: &[KernelArg]) -> Result<(), String> {
    let gpu = EmuGpu::shared();
    // SAFETY: the self-test kernels index at most `block` floats of their buffers, which the
    // callers allocate with at least that many.
    unsafe { gpu.launch(name, [1, 1, 1], [block, 1, 1], args) }.map_err(|e| e.to_string())
}

#[test]
fn a_correct_block_reduction_passes() {
    let gpu = EmuGpu::shared();
    let x = DeviceBuffer::from_slice(&gpu, &vec![1.0f32; 256]).unwrap();
    let out = DeviceBuffer::<f32>::uninit(&gpu, 1).unwrap();
    // SAFETY: 256 threads read x[0..256] and write out[0].
    unsafe {
        gpu.launch(
            "emu_selftest_block_sum",
            [1, 1, 1],
            [256, 1, 1],
            &[x.arg(), out.arg()],
        )
    }
    .unwrap();
    assert_eq!(out.to_vec().unwrap(), vec![256.0]);
}

#[test]
fn a_divergent_barrier_is_reported() {
    let gpu = EmuGpu::shared();
    let out = DeviceBuffer::<f32>::zeros(&gpu, 64).unwrap();
    let err = launch("emu_selftest_divergent_barrier", 64, &[out.arg()]).unwrap_err();
    assert!(err.contains("divergent barrier"), "{err}");
}

#[test]
fn a_divergent_warp_shuffle_is_reported() {
    let gpu = EmuGpu::shared();
    let out = DeviceBuffer::<f32>::zeros(&gpu, 32).unwrap();
    let err = launch("emu_selftest_divergent_shuffle", 32, &[out.arg()]).unwrap_err();
    assert!(err.contains("16 of 32 lanes"), "{err}");
}

#[test]
fn a_missing_barrier_gives_a_wrong_answer() {
    // Thread 0 runs to completion before the others start (fibers switch only at barriers), so
    // without the barrier it sums 255 unwritten (NaN-poisoned) slots: the bug shows as NaN.
    let gpu = EmuGpu::shared();
    let x = DeviceBuffer::from_slice(&gpu, &vec![1.0f32; 256]).unwrap();
    let out = DeviceBuffer::<f32>::uninit(&gpu, 1).unwrap();
    launch("emu_selftest_missing_barrier", 256, &[x.arg(), out.arg()]).unwrap();
    assert_ne!(out.to_vec().unwrap(), vec![256.0]);
}

#[test]
fn every_schedule_runs_a_correct_reduction_and_some_schedule_catches_each_missing_barrier() {
    use scratchgpt::backend::cuda::emu::Schedule;
    let mut caught_first = Vec::new();
    let mut caught_last = Vec::new();
    for s in Schedule::ALL {
        let gpu = EmuGpu::with_schedule(s);
        let x = DeviceBuffer::from_slice(&gpu, &vec![1.0f32; 256]).unwrap();
        let out = DeviceBuffer::<f32>::uninit(&gpu, 1).unwrap();
        let run = |name: &str| {
            // SAFETY: 256 threads read x[0..256] and write out[0].
            unsafe { gpu.launch(name, [1, 1, 1], [256, 1, 1], &[x.arg(), out.arg()]) }.unwrap();
            out.to_vec().unwrap()[0]
        };
        assert_eq!(run("emu_selftest_block_sum"), 256.0, "{s:?}");
        if run("emu_selftest_missing_barrier") != 256.0 {
            caught_first.push(s);
        }
        if run("emu_selftest_missing_barrier_last_reads_first") != 1.0 {
            caught_last.push(s);
        }
    }
    // Thread 0 reading everyone's slot shows when thread 0 runs first; the last thread reading
    // thread 0's slot shows when the last thread runs first.
    assert!(
        caught_first.contains(&Schedule::Forward),
        "{caught_first:?}"
    );
    assert!(caught_last.contains(&Schedule::Reverse), "{caught_last:?}");
}

#[test]
fn shared_memory_is_poisoned_at_every_launch() {
    let gpu = EmuGpu::shared();
    let x = DeviceBuffer::from_slice(&gpu, &[2.5f32; 32]).unwrap();
    let out = DeviceBuffer::<f32>::uninit(&gpu, 32).unwrap();
    for write in [1, 0] {
        // SAFETY: 32 threads read x[0..32] and write out[0..32].
        unsafe {
            gpu.launch(
                "emu_selftest_stale_shared",
                [1, 1, 1],
                [32, 1, 1],
                &[x.arg(), out.arg(), KernelArg::I32(write)],
            )
        }
        .unwrap();
        let got = out.to_vec().unwrap();
        if write == 1 {
            assert_eq!(got, vec![2.5; 32]);
        } else {
            assert!(
                got.iter().all(|v| v.is_nan()),
                "stale shared memory: {got:?}"
            );
        }
    }
}

#[test]
fn a_launch_with_the_wrong_arguments_names_the_argument() {
    let gpu = EmuGpu::shared();
    let out = DeviceBuffer::<f32>::uninit(&gpu, 4).unwrap();
    // fill(float* out, float value, long long n)
    let launch = |args: &[KernelArg]| {
        // SAFETY: the emulator refuses these launches before running the kernel.
        unsafe { gpu.launch("fill", [1, 1, 1], [32, 1, 1], args) }
            .unwrap_err()
            .to_string()
    };
    let e = launch(&[out.arg(), KernelArg::F32(1.0), KernelArg::I32(4)]);
    assert!(
        e.contains("argument 3 is a 64-bit integer in the kernel, a 32-bit integer at the launch"),
        "{e}"
    );
    let e = launch(&[out.arg(), KernelArg::F32(1.0)]);
    assert!(
        e.contains("fill takes 3 arguments, the launch passed 2"),
        "{e}"
    );
    let e = launch(&[KernelArg::I64(0), KernelArg::F32(1.0), KernelArg::I64(4)]);
    assert!(e.contains("argument 1 is a pointer"), "{e}");
}

#[test]
fn an_unknown_kernel_is_an_error() {
    let err = launch("no_such_kernel", 32, &[]).unwrap_err();
    assert!(err.contains("no kernel named no_such_kernel"), "{err}");
}

// ---- tensors in GPU memory ---------------------------------------------------------------------

#[test]
fn tensors_move_to_the_gpu_and_back() {
    use scratchgpt::{Device, Tensor};
    scratchgpt::backend::cuda::install_emulator(0);
    let t =
        Tensor::<f32>::from_vec((0..12).map(|v| v as f32 * 0.5 - 2.0).collect(), &[3, 4]).unwrap();
    let g = t.to_device(Device::Cuda(0)).unwrap();
    assert_eq!(g.device(), Device::Cuda(0));
    assert_eq!(g.shape(), vec![3, 4]);
    assert_eq!(g.to_vec().unwrap(), t.to_vec().unwrap());
    let back = g.to_cpu().unwrap();
    assert_eq!(back.device(), Device::Cpu);
    assert_eq!(back.to_vec().unwrap(), t.to_vec().unwrap());
    // A CPU array of device data is a clear error naming the op and the device, not a copy.
    let err = g.value().unwrap_err().to_string();
    assert!(err.contains("cuda:0"), "{err}");
    // A view on the device is a view (no copy), and reads back in row-major order.
    let tt = g.transpose(0, 1).unwrap();
    assert_eq!(
        tt.to_vec().unwrap(),
        t.transpose(0, 1).unwrap().to_vec().unwrap()
    );
    // f64 is refused rather than rounded to f32.
    let d = Tensor::<f64>::zeros(&[2]);
    assert!(d
        .to_device(Device::Cuda(0))
        .unwrap_err()
        .to_string()
        .contains("f32"));
}
