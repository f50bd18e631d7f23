//! # scratchgpt
//!
//! A GPT-2 built the way *Build a Large Language Model (From Scratch)* teaches it, on a tensor
//! engine written here: every op's forward and hand-derived backward sit side by side in
//! [`ops`], and every backward is checked against central differences by
//! [`autograd::gradcheck`].
//!
//! A tour for readers:
//! - [`tensor`]: the `Tensor` handle, storage, creation, shapes, seeded random numbers.
//! - [`autograd`]: the graph, `backward()`, `no_grad`, Graphviz export, numeric gradient checks.
//! - [`ops`]: one folder per op family; the gradient of each op is derived in its doc comment
//!   (and gathered in `docs/gradients.md`).
//! - [`data`]: tokenizers (simple, GPT-2 BPE, BPE trainer), sliding-window dataset and loader.
//! - [`nn`]: layers with parameters.
//! - [`study`]: a tiny GPT built from primitive and from fused ops, compared gradient by
//!   gradient, and backward-rule exercises (`scratchgpt study gpt`, `study exercises`).
//! - [`dist`]: data-parallel training: the transport trait (MPI, NCCL), the gradient all-reduce,
//!   the watchdog for a rank that stops answering.
//! - [`backend`]: what ops share per device: CPU kernels (GEMM, vectorised reductions, parallel
//!   maps) and the CUDA device (buffers, caching allocator, NVRTC, launchers, the emulator).

pub mod autograd;
pub mod backend;

pub mod data;
pub mod dist;
pub mod error;
pub mod finetune;
pub mod gpt;
pub mod net;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod study;
pub mod tensor;
pub mod train;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use error::{Error, Result};
pub use ops::embedding::Ids;
pub use tensor::{DType, Device, Element, Tensor};
