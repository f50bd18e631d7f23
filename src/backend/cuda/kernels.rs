//! The kernel sources, embedded in the binary, and the entry points each file defines.
//!
//! NVRTC compiles these at run time (`driver.rs`), with [`COMMON_HEADER`] prepended because NVRTC
//! has no include path here. The CPU emulator (the dev-only crate `crates/cuda-emu`) compiles the
//! same files with g++. A test checks that [`KERNEL_FILES`] lists exactly the entry points the
//! emulator's preprocessor scan finds, so this list cannot drift from the sources.

/// Helpers shared by all kernel files (warp/block reductions, the dropout hash).
pub const COMMON_HEADER: &str = include_str!("../../../kernels/common.cuh");

/// One `kernels/*.cu` file: its name, source and `extern "C"` entry points.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    pub entry_points: &'static [&'static str],
}

impl KernelFile {
    /// The source NVRTC compiles: the common header, then the file.
    pub fn full_source(&self) -> String {
        format!(
            "{COMMON_HEADER}\n#line 1 \"{}\"\n{}",
            self.name, self.source
        )
    }
}

macro_rules! kernel_file {
    ($name:literal, [$($k:literal),* $(,)?]) => {
        KernelFile {
            name: $name,
            source: include_str!(concat!("../../../kernels/", $name)),
            entry_points: &[$($k),*],
        }
    };
}

/// Every kernel file and its entry points.
pub const KERNEL_FILES: &[KernelFile] = &[
    kernel_file!("adamw.cu", ["adamw_update_multi"]),
    kernel_file!(
        "attention.cu",
        [
            "attention_backward_delta",
            "attention_backward_dkdv_d16",
            "attention_backward_dkdv_d32",
            "attention_backward_dkdv_d64",
            "attention_backward_dq_d16",
            "attention_backward_dq_d32",
            "attention_backward_dq_d64",
            "attention_forward_d16",
            "attention_forward_d32",
            "attention_forward_d64",
        ]
    ),
    kernel_file!(
        "attention_naive.cu",
        ["attention_naive_output", "attention_naive_scores"]
    ),
    kernel_file!("binary.cu", ["binary_broadcast"]),
    kernel_file!(
        "cross_entropy.cu",
        ["cross_entropy_backward", "cross_entropy_forward"]
    ),
    kernel_file!(
        "elementwise.cu",
        [
            "accumulate",
            "add_forward",
            "dropout_backward",
            "dropout_forward",
            "fill",
            "gelu_backward",
            "gelu_forward",
            "scale_forward",
        ]
    ),
    kernel_file!(
        "embedding.cu",
        ["embedding_backward_tokens", "embedding_gather"]
    ),
    kernel_file!("gather.cu", ["gather_last", "gather_last_backward"]),
    kernel_file!(
        "layer_norm.cu",
        [
            "layer_norm_backward_input",
            "layer_norm_backward_params_partial",
            "layer_norm_forward",
        ]
    ),
    kernel_file!(
        "masked_fill.cu",
        ["masked_fill_backward", "masked_fill_forward"]
    ),
    kernel_file!("matmul.cu", ["matmul"]),
    kernel_file!(
        "reduce.cu",
        [
            "column_sum_finish",
            "column_sum_partial",
            "max_axis_backward",
            "max_axis_forward",
            "sum_finish",
            "sum_partial",
        ]
    ),
    kernel_file!(
        "rms_norm.cu",
        [
            "rms_norm_backward_input",
            "rms_norm_backward_weight_partial",
            "rms_norm_forward",
        ]
    ),
    kernel_file!("rope.cu", ["rope_rotate"]),
    kernel_file!(
        "softmax.cu",
        [
            "log_softmax_backward",
            "log_softmax_forward",
            "softmax_backward",
            "softmax_forward",
        ]
    ),
    kernel_file!("unary.cu", ["unary_backward", "unary_forward"]),
    kernel_file!("view.cu", ["strided_copy"]),
];

/// All entry points, sorted.
pub fn all_entry_points() -> Vec<&'static str> {
    let mut v: Vec<&str> = KERNEL_FILES
        .iter()
        .flat_map(|f| f.entry_points.iter().copied())
        .collect();
    v.sort_unstable();
    v
}
