//! Instruction data for chapter 7: the book's Alpaca prompt format, its 85/10/5 split, and its
//! collate function (pad, shift, mask padding targets with −100).

use std::path::Path;

use serde_json::Value;

use crate::data::text_file::read_text;
use crate::error::{Error, Result};

/// The target id that cross-entropy ignores (PyTorch's default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// One instruction example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionEntry {
    pub instruction: String,
    /// May be empty (then the prompt has no `### Input:` section).
    pub input: String,
    pub output: String,
}

/// Parse the book's `instruction-data.json`: a list of objects with string fields
/// `instruction`, `input`, `output`. A missing or non-string field is an error naming the entry.
pub fn parse_instruction_json(text: &str, what: &str) -> Result<Vec<InstructionEntry>> {
    json_entries(text, what)?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(InstructionEntry {
                instruction: string_field(e, i, "instruction", what)?,
                input: string_field(e, i, "input", what)?,
                output: string_field(e, i, "output", what)?,
            })
        })
        .collect()
}

/// The JSON list of entries in `text` (`what` names the file in errors).
pub(crate) fn json_entries(text: &str, what: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::parse(what, format!("not valid JSON: {e}")))?;
    match v {
        Value::Array(list) => Ok(list),
        _ => Err(Error::parse(what, "expected a JSON list of entries")),
    }
}

/// Entry `i`'s string field `k`; a missing or non-string field is an error naming both.
pub(crate) fn string_field(e: &Value, i: usize, k: &str, what: &str) -> Result<String> {
    e.get(k)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::parse(what, format!("entry {i}: missing string field {k:?}")))
}

/// Read and parse an instruction file.
pub fn read_instruction_json(path: impl AsRef<Path>) -> Result<Vec<InstructionEntry>> {
    let path = path.as_ref();
    parse_instruction_json(&read_text(path)?, &path.display().to_string())
}

/// The book's `format_input`: the Alpaca preamble, the instruction, and the input if any.
pub fn format_input(e: &InstructionEntry) -> String {
    let mut s = format!(
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{}",
        e.instruction
    );
    if !e.input.is_empty() {
        s.push_str(&format!("\n\n### Input:\n{}", e.input));
    }
    s
}

/// The full training text: prompt, then `### Response:` and the output.
pub fn format_example(e: &InstructionEntry) -> String {
    format!("{}\n\n### Response:\n{}", format_input(e), e.output)
}

/// The book's split, in file order: train = the first ⌊0.85·n⌋, test = the next ⌊0.1·n⌋,
/// validation = the rest (1,100 entries → 935 / 110 / 55). Returns (train, test, validation).
pub fn split_instructions(
    data: &[InstructionEntry],
) -> Result<(
    Vec<InstructionEntry>,
    Vec<InstructionEntry>,
    Vec<InstructionEntry>,
)> {
    let n = data.len();
    let train_end = n * 85 / 100;
    let test_end = train_end + n / 10;
    let parts = (
        data[..train_end].to_vec(),
        data[train_end..test_end].to_vec(),
        data[test_end..].to_vec(),
    );
    for (name, p) in [
        ("train", &parts.0),
        ("test", &parts.1),
        ("validation", &parts.2),
    ] {
        if p.is_empty() {
            return Err(Error::invalid(
                "split_instructions",
                format!("the {name} split of {n} entries is empty"),
            ));
        }
    }
    Ok(parts)
}

/// One collated batch: `inputs` and `targets` are `[batch][len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionBatch {
    pub inputs: Vec<Vec<i64>>,
    pub targets: Vec<Vec<i64>>,
}

/// The book's `custom_collate_fn`: append one `pad_token_id` (the book's default: 50256,
/// `<|endoftext|>`; a chat template's turn end, see [`super::instruct_format`]) to every item,
/// pad with it to the longest item + 1, inputs = all but the last id, targets = all but the
/// first (shifted by one); every padding target except the first of each row becomes −100 (the
/// first teaches the model to end its answer). `allowed_max_length` truncates; `prompt_lengths`
/// (exercise 7.2) also masks the targets that predict prompt tokens, so only the response is
/// learned.
pub fn collate(
    items: &[Vec<u32>],
    pad_token_id: u32,
    allowed_max_length: Option<usize>,
    prompt_lengths: Option<&[usize]>,
) -> Result<InstructionBatch> {
    if items.is_empty() {
        return Err(Error::invalid("collate", "empty batch"));
    }
    if prompt_lengths.is_some_and(|p| p.len() != items.len()) {
        return Err(Error::invalid("collate", "one prompt length per item"));
    }
    let max_len = items.iter().map(|i| i.len() + 1).max().expect("non-empty");
    let pad = pad_token_id as i64;
    let mut batch = InstructionBatch {
        inputs: Vec::new(),
        targets: Vec::new(),
    };
    for (k, item) in items.iter().enumerate() {
        let mut padded: Vec<i64> = item.iter().map(|&t| t as i64).collect();
        padded.resize(max_len, pad); // the item, one end-of-text, then padding up to max_len
        let mut inputs = padded[..max_len - 1].to_vec();
        let mut targets = padded[1..].to_vec();
        // Keep the first padding target, ignore the rest.
        let mut seen_pad = false;
        for t in targets.iter_mut().skip(item.len().saturating_sub(1)) {
            if *t == pad {
                if seen_pad {
                    *t = IGNORE_INDEX;
                }
                seen_pad = true;
            }
        }
        if let Some(p) = prompt_lengths {
            // targets[i] is the token at i + 1: the prompt's tokens 1..p are not learned.
            for t in targets.iter_mut().take(p[k].saturating_sub(1)) {
                *t = IGNORE_INDEX;
            }
        }
        if let Some(m) = allowed_max_length {
            inputs.truncate(m);
            targets.truncate(m);
        }
        batch.inputs.push(inputs);
        batch.targets.push(targets);
    }
    Ok(batch)
}
