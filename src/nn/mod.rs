//! Layers with parameters (book names). The GPT issue adds the rest; the embeddings of chapter 2
//! live here already.

pub mod embedding;

pub use embedding::Embedding;
