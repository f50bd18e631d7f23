//! Fine-tuning (book chapters 6 and 7, appendix E): the spam-classification data, the classifier
//! and its training loop; the instruction data; preference tuning with DPO; LoRA adapters.

pub mod classifier;
pub mod classify_train;
pub mod dpo_train;
pub mod epochs;
pub mod evaluate;
pub mod instruct_format;
pub mod instruct_train;
pub mod instruction_data;
pub mod lora;
pub mod model_server;
pub mod preference_data;
pub mod preference_generation;
pub mod spam_data;
