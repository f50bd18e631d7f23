//! How an instruction entry becomes the token ids a model trains on and answers from: the book's
//! Alpaca text (chapter 7) on any vocabulary, or a Llama 3 / Qwen model's own chat template.
//!
//! Both put an entry as *prompt, response, end token*:
//!
//! | format  | prompt                                                  | end token       |
//! |---------|---------------------------------------------------------|-----------------|
//! | Alpaca  | preamble, `### Instruction:`, `### Input:`, `### Response:` | `<|endoftext|>` (GPT-2, Qwen), `<|end_of_text|>` (Llama) |
//! | Llama 3 | `<|begin_of_text|>`, the user's turn, the assistant's header | `<|eot_id|>`  |
//! | Qwen    | the user's `<|im_start|>` turn, `<|im_start|>assistant\n` | `<|im_end|>`  |
//!
//! The book's collate function appends the end token to every example and pads the batch with
//! it; the first padding target (the end token) is learned, so the model learns to end its
//! answer there, and generation stops at it. Under a chat template that token is the turn's end,
//! exactly what the model's chat template expects after a reply.
//!
//! The Alpaca examples are tokenized as the book does, as one text (so GPT-2 runs reproduce the
//! book's numbers). A chat example is its prompt's ids (special tokens matched, as
//! `apply_chat_template` does) followed by the response's ids (plain text: a special token in
//! the data is an error, not a token): the ids a model trains on are then the ids it will see
//! when `chat` encodes the same prompt alone.

use super::instruction_data::{format_example, format_input, InstructionEntry};
use crate::data::chat_template::ChatTemplate;
use crate::data::BpeTokenizer;
use crate::error::{Error, Result};

/// The prompt format and the end token of an instruction-tuning run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructFormat {
    template: ChatTemplate,
    /// Appended after every response, and the padding id of collated batches.
    end_id: u32,
    /// Generation stops at any of these (the end token, and the vocabulary's other end tokens).
    stop_ids: Vec<u32>,
    /// The vocabulary's sequence-start token, put before Alpaca text (a chat template writes its
    /// own).
    bos_id: Option<u32>,
}

impl InstructFormat {
    /// The book's format: Alpaca text on GPT-2's vocabulary, ended by `<|endoftext|>` (50256).
    pub fn book() -> Self {
        InstructFormat::new(ChatTemplate::Alpaca, BpeTokenizer::gpt2())
            .expect("GPT-2's vocabulary has <|endoftext|>")
    }

    /// `template` on `tok`'s vocabulary. The plain template is refused (nothing marks where a
    /// response begins), as is a template whose tokens the vocabulary lacks.
    pub fn new(template: ChatTemplate, tok: &BpeTokenizer) -> Result<Self> {
        let end = match template {
            ChatTemplate::Plain => {
                return Err(Error::invalid(
                    "instruction format",
                    "the plain template does not mark where a response begins: use alpaca or the model's chat template",
                ))
            }
            ChatTemplate::Alpaca => ["<|endoftext|>", "<|end_of_text|>"]
                .into_iter()
                .find(|t| tok.special_id(t).is_some())
                .ok_or_else(|| {
                    Error::invalid(
                        "instruction format",
                        "the alpaca format ends each response with <|endoftext|> or <|end_of_text|>, and this vocabulary has neither",
                    )
                })?,
            ChatTemplate::Llama3 | ChatTemplate::Llama31 => "<|eot_id|>",
            ChatTemplate::Qwen | ChatTemplate::Qwen3 => "<|im_end|>",
        };
        // Encoding a prompt checks that the vocabulary has every token of the template.
        template.encode(tok, "x", None)?;
        let end_id = tok.special_id(end).ok_or_else(|| {
            Error::invalid(
                "instruction format",
                format!("this vocabulary has no {end}"),
            )
        })?;
        let mut stop_ids = tok.end_ids();
        if !stop_ids.contains(&end_id) {
            stop_ids.push(end_id);
        }
        Ok(InstructFormat {
            template,
            end_id,
            stop_ids,
            bos_id: tok.bos_id(),
        })
    }

    /// The template `tok`'s vocabulary was made for (Llama 3's, Qwen's), else Alpaca.
    pub fn for_tokenizer(tok: &BpeTokenizer) -> Result<Self> {
        Self::new(
            ChatTemplate::for_tokenizer(tok).unwrap_or(ChatTemplate::Alpaca),
            tok,
        )
    }

    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// The token every response ends with (and batches are padded with).
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// Where generation stops.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// An entry as a chat template's user turn: the instruction, then its input (if any) after
    /// a blank line.
    pub fn user_message(e: &InstructionEntry) -> String {
        if e.input.is_empty() {
            e.instruction.clone()
        } else {
            format!("{}\n\n{}", e.instruction, e.input)
        }
    }

    /// An entry's training ids — prompt then response, without the end token (collate appends
    /// it) — and how many of them are the prompt (what exercise 7.2 masks).
    pub fn example(&self, tok: &BpeTokenizer, e: &InstructionEntry) -> Result<(Vec<u32>, usize)> {
        if self.template == ChatTemplate::Alpaca {
            let ids = self.with_bos(tok.encode(&format_example(e))?);
            let prompt = tok.encode(&format!("{}\n\n### Response:\n", format_input(e)))?;
            return Ok((ids, prompt.len() + usize::from(self.bos_id.is_some())));
        }
        let mut ids = self.prompt(tok, e)?;
        let prompt_len = ids.len();
        ids.extend(tok.encode(&e.output)?);
        Ok((ids, prompt_len))
    }

    /// The prompt a model answers an entry from. Alpaca: the book's `format_input` (the model
    /// writes `### Response:` itself); a chat template: up to the assistant's header.
    pub fn prompt(&self, tok: &BpeTokenizer, e: &InstructionEntry) -> Result<Vec<u32>> {
        match self.template {
            ChatTemplate::Alpaca => Ok(self.with_bos(tok.encode(&format_input(e))?)),
            t => t.encode(tok, &Self::user_message(e), None),
        }
    }

    /// The response in the decoded reply (the ids after the prompt): trimmed, and for Alpaca
    /// without the `### Response:` header, as the book extracts it.
    pub fn extract(&self, reply: &str) -> String {
        match self.template {
            ChatTemplate::Alpaca => reply.replace("### Response:", "").trim().to_string(),
            _ => reply.trim().to_string(),
        }
    }

    fn with_bos(&self, ids: Vec<u32>) -> Vec<u32> {
        match self.bos_id {
            Some(b) => std::iter::once(b).chain(ids).collect(),
            None => ids,
        }
    }
}
