//! What ops share per device. `cpu`: parallel loops, vectorisable reductions, the GEMM entry
//! point. `fast_math`: vectorisable `exp`/`tanh` for f32. `tile_gemm`: the packing-free,
//! mask-aware small matrix multiply inside fused attention; `transpose`: its Kᵀ and Vᵀ copies.

pub mod cpu;
pub mod cuda;
pub mod fast_math;
pub mod gemm;
pub mod tile_gemm;
pub mod transpose;
