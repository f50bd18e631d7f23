//! Fine-tuning (book chapters 6 and 7). So far: the spam-classification data and the classifier
//! model of chapter 6.

pub mod classifier;
pub mod instruction_data;
pub mod spam_data;
