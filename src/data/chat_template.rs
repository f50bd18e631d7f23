//! Chat templates, written in code (the hub ships them as Jinja in `tokenizer_config.json`; we
//! write the ones we run instead of interpreting Jinja): the book's Alpaca instruction format
//! (chapter 7); Llama 3's header tokens — 3.0's, and 3.1+'s, whose template always opens with a
//! system turn carrying a knowledge-cutoff and a date line (we write the template's own fallback
//! date, 26 Jul 2024, so a prompt's ids do not change with the day); and Qwen's ChatML
//! (`<|im_start|>` … `<|im_end|>`). For Qwen3 (a vocabulary with `<think>` and `</think>`) the
//! reply is opened with the empty thinking block, as its template does with
//! `enable_thinking=False`: that empty block is what switches Qwen3 to answering without thinking.
//!
//! A rendered prompt ends where the assistant's reply begins; generation stops at the turn's end
//! token (`<|eot_id|>`, `<|im_end|>`), which [`crate::data::BpeTokenizer::end_ids`] lists.

use crate::data::BpeTokenizer;
use crate::error::{Error, Result};

/// How a user message is put to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// The text as it is.
    Plain,
    /// The book's instruction template (chapter 7): the Alpaca preamble, `### Instruction:`,
    /// `### Response:`.
    Alpaca,
    /// Llama 3.0 Instruct: `<|begin_of_text|>` then each message as
    /// `<|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>`.
    Llama3,
    /// Llama 3.1, 3.2, 3.3 Instruct: the same, with a system turn always first, beginning
    /// `Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n`.
    Llama31,
    /// Qwen (ChatML): `<|im_start|>ROLE\nTEXT<|im_end|>\n`.
    Qwen,
    /// Qwen3 without thinking: ChatML, the reply opened with `<think>\n\n</think>\n\n`.
    Qwen3,
}

impl ChatTemplate {
    /// By name: `plain`, `alpaca`, `llama3`, `llama3.1`, `qwen`, `qwen3` (and `none`, `chatml`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "plain" | "none" => ChatTemplate::Plain,
            "alpaca" => ChatTemplate::Alpaca,
            "llama3" => ChatTemplate::Llama3,
            "llama3.1" => ChatTemplate::Llama31,
            "qwen" | "chatml" => ChatTemplate::Qwen,
            "qwen3" => ChatTemplate::Qwen3,
            other => {
                return Err(Error::invalid(
                    "chat template",
                    format!(
                        "unknown template {other:?} (plain, alpaca, llama3, llama3.1, qwen, qwen3)"
                    ),
                ))
            }
        })
    }

    /// The name [`Self::from_name`] reads (what checkpoints record).
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::Plain => "plain",
            ChatTemplate::Alpaca => "alpaca",
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::Llama31 => "llama3.1",
            ChatTemplate::Qwen => "qwen",
            ChatTemplate::Qwen3 => "qwen3",
        }
    }

    /// The template a vocabulary was made for: Llama 3's if it has the header tokens (3.1+'s
    /// when it also names `<|eom_id|>`, a reserved token in 3.0), Qwen's if it has `<|im_start|>`
    /// and `<|im_end|>` (Qwen3's with `<think>` and `</think>`); `None` otherwise (GPT-2's
    /// vocabulary has neither).
    pub fn for_tokenizer(tok: &BpeTokenizer) -> Option<Self> {
        let has = |t: &str| tok.special_id(t).is_some();
        if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") {
            Some(if has("<|eom_id|>") {
                ChatTemplate::Llama31
            } else {
                ChatTemplate::Llama3
            })
        } else if has("<|im_start|>") && has("<|im_end|>") {
            Some(if has("<think>") && has("</think>") {
                ChatTemplate::Qwen3
            } else {
                ChatTemplate::Qwen
            })
        } else {
            None
        }
    }

    /// The prompt for one user message (and an optional system message), ending where the
    /// assistant's reply starts.
    pub fn render(&self, user: &str, system: Option<&str>) -> String {
        match self {
            ChatTemplate::Plain => user.to_string(),
            ChatTemplate::Alpaca => format!(
                "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{user}\n\n### Response:\n"
            ),
            ChatTemplate::Llama3 | ChatTemplate::Llama31 => {
                let turn = |role: &str, text: &str| {
                    format!("<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>")
                };
                let mut out = String::from("<|begin_of_text|>");
                if *self == ChatTemplate::Llama31 {
                    let system = system.map(str::trim).unwrap_or("");
                    out.push_str(&turn(
                        "system",
                        &format!(
                            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}"
                        ),
                    ));
                } else if let Some(s) = system {
                    out.push_str(&turn("system", s));
                }
                out.push_str(&turn("user", user));
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                out
            }
            ChatTemplate::Qwen | ChatTemplate::Qwen3 => {
                let turn = |role: &str, text: &str| format!("<|im_start|>{role}\n{text}<|im_end|>\n");
                let mut out = String::new();
                if let Some(s) = system {
                    out.push_str(&turn("system", s));
                }
                out.push_str(&turn("user", user));
                out.push_str("<|im_start|>assistant\n");
                if *self == ChatTemplate::Qwen3 {
                    out.push_str("<think>\n\n</think>\n\n");
                }
                out
            }
        }
    }

    /// The prompt's token ids: the special tokens in the template matched as tokens, and no
    /// second `<|begin_of_text|>` (the Llama template writes its own, as transformers'
    /// `apply_chat_template(tokenize=True)` does). A template whose tokens the vocabulary lacks
    /// is an error naming the first.
    pub fn encode(&self, tok: &BpeTokenizer, user: &str, system: Option<&str>) -> Result<Vec<u32>> {
        let needed: &[&str] = match self {
            ChatTemplate::Plain | ChatTemplate::Alpaca => &[],
            ChatTemplate::Llama3 | ChatTemplate::Llama31 => &[
                "<|begin_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ],
            ChatTemplate::Qwen => &["<|im_start|>", "<|im_end|>"],
            ChatTemplate::Qwen3 => &["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        };
        if let Some(missing) = needed.iter().find(|t| tok.special_id(t).is_none()) {
            return Err(Error::invalid(
                "chat template",
                format!(
                    "the {self:?} template needs {missing}, which this vocabulary does not have"
                ),
            ));
        }
        let text = self.render(user, system);
        match self {
            // Plain text and Alpaca are what the model reads as text: the tokenizer's own
            // sequence start (if any) goes first.
            ChatTemplate::Plain | ChatTemplate::Alpaca => tok.encode_for_model(&text),
            _ => {
                let names: Vec<String> = tok.special_tokens().into_iter().map(|(t, _)| t).collect();
                let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
                tok.encode_with_special(&text, &allowed)
            }
        }
    }
}
