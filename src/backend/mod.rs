//! What ops share per device. `cpu`: parallel loops, vectorisable reductions, the GEMM entry
//! point. `fast_math`: vectorisable `exp`/`tanh` for f32.

pub mod cpu;
pub mod fast_math;
