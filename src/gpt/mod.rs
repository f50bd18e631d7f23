//! The GPT model of the book (chapters 3–5): configuration and presets, the modules, generation.

pub mod config;
pub mod generate;
pub mod hf;
pub mod hf_decoder;
pub mod hf_llama;
pub mod hf_weights;
pub mod hub_cache;
pub mod kv_cache;
pub mod model;

pub use config::{Architecture, DecoderShape, GptConfig};
pub use generate::{generate, generate_text_simple, generate_with, Sampling};
pub use kv_cache::{generate_cached, generate_cached_streaming, KvCache};
pub use model::{FeedForward, GptModel, MultiHeadAttention, TransformerBlock};
pub mod reference_check;
pub mod safetensors_io;
pub mod study_attention;
pub mod whole_model_check;
