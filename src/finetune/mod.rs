//! Fine-tuning (book chapters 6 and 7). So far: the spam-classification data of chapter 6.

pub mod spam_data;
