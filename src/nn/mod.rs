//! Layers with parameters, named as in the book and PyTorch: `Linear`, `Embedding`, `LayerNorm`,
//! `RmsNorm` (and `Norm`, either), `Dropout`, and the forward-pass context (train/eval mode, dropout seeds).

pub mod context;
pub mod dropout;
pub mod embedding;
pub mod layer_norm;
pub mod linear;
pub mod lora;
pub mod norm;
pub mod rms_norm;

pub use context::ForwardCtx;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use lora::LoRA;
pub use norm::Norm;
pub use rms_norm::RmsNorm;
