//! Text → token ids → training batches (book chapter 2): the simple regex tokenizers, GPT-2's
//! byte-level BPE (identical to tiktoken) and its trainer, the sliding-window dataset and loader.

pub mod bpe;
pub mod chat_template;
pub mod dataset;
pub mod manifest;
pub mod prepare;
pub mod shards;
pub mod simple;
pub mod text_file;

pub use bpe::BpeTokenizer;
pub use dataset::{split_train_val, DataLoader, EpochOrder, GptDataset, TokenSource};
pub use simple::{SimpleTokenizerV1, SimpleTokenizerV2};
