//! Preference data for DPO (the book's chapter 7 bonus): entries with a `chosen` and a
//! `rejected` response to the same Alpaca prompt, the book's 85/10/5 split, and its collate
//! function — chosen and rejected padded into separate `(batch, len)` rows with masks that select
//! only the response tokens (the prompt and the padding are masked out).

use std::path::Path;

use serde_json::Value;

use super::instruction_data::{format_input, json_entries, string_field, InstructionEntry};
use super::spam_data::PAD_ID;
use crate::data::text_file::read_text;
use crate::data::BpeTokenizer;
use crate::error::{Error, Result};

/// One preference example: the instruction (and input), and the two answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferenceEntry {
    pub entry: InstructionEntry,
    pub chosen: String,
    pub rejected: String,
}

/// Parses the book's `instruction-data-with-preference.json`. An entry without a string
/// `chosen` or `rejected`, or with an empty one, is an error naming the entry and the field (a
/// preference pair needs both answers).
pub fn parse_preference_json(text: &str, what: &str) -> Result<Vec<PreferenceEntry>> {
    json_entries(text, what)?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = |k: &str, required: bool| -> Result<String> {
                let s = string_field(e, i, k, what)?;
                if required && s.trim().is_empty() {
                    return Err(Error::parse(
                        what,
                        format!("entry {i}: {k:?} is empty (a preference pair needs both answers)"),
                    ));
                }
                Ok(s)
            };
            Ok(PreferenceEntry {
                entry: InstructionEntry {
                    instruction: field("instruction", true)?,
                    input: field("input", false)?,
                    output: e
                        .get("output")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                },
                chosen: field("chosen", true)?,
                rejected: field("rejected", true)?,
            })
        })
        .collect()
}

/// Reads and parses a preference file.
pub fn read_preference_json(path: impl AsRef<Path>) -> Result<Vec<PreferenceEntry>> {
    let path = path.as_ref();
    parse_preference_json(&read_text(path)?, &path.display().to_string())
}

/// The book's split, in file order: train ⌊0.85·n⌋, test ⌊0.1·n⌋, validation the rest (1,100
/// entries → 935 / 110 / 55). Returns (train, test, validation).
pub fn split_preferences(
    data: &[PreferenceEntry],
) -> Result<(
    Vec<PreferenceEntry>,
    Vec<PreferenceEntry>,
    Vec<PreferenceEntry>,
)> {
    let n = data.len();
    let train_end = n * 85 / 100;
    let test_end = train_end + n / 10;
    if train_end == 0 || test_end == train_end || test_end == n {
        return Err(Error::invalid(
            "split_preferences",
            format!("{n} entries leave a split empty (85/10/5 needs at least 20)"),
        ));
    }
    Ok((
        data[..train_end].to_vec(),
        data[train_end..test_end].to_vec(),
        data[test_end..].to_vec(),
    ))
}

/// Entries as the book's JSON (a list of {instruction, input, output, chosen, rejected}),
/// pretty-printed; [`parse_preference_json`] reads it back.
pub fn preference_json(entries: &[PreferenceEntry]) -> String {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "instruction": e.entry.instruction,
                "input": e.entry.input,
                "output": e.entry.output,
                "chosen": e.chosen,
                "rejected": e.rejected,
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("JSON values serialise")
}

/// One example tokenized as the book's `PreferenceDataset`: the prompt alone, and the prompt
/// followed by `\n\n### Response:\n` and each answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPreference {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// Tokenizes one entry.
pub fn encode_preference(e: &PreferenceEntry, tok: &BpeTokenizer) -> Result<EncodedPreference> {
    let prompt = format_input(&e.entry);
    let full = |answer: &str| tok.encode(&format!("{prompt}\n\n### Response:\n{answer}"));
    Ok(EncodedPreference {
        prompt: tok.encode(&prompt)?,
        chosen: full(&e.chosen)?,
        rejected: full(&e.rejected)?,
    })
}

/// A collated batch: `chosen`/`rejected` token rows `(batch, len)`, padded with `<|endoftext|>`,
/// and their masks (true = a response token whose log-probability counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferenceBatch {
    pub chosen: Vec<Vec<i64>>,
    pub rejected: Vec<Vec<i64>>,
    pub chosen_mask: Vec<Vec<bool>>,
    pub rejected_mask: Vec<Vec<bool>>,
}

/// The book's `custom_collate_fn` for DPO: every sequence padded to one common length (the
/// longest chosen or rejected sequence + 1), a mask true on the sequence's own tokens and false
/// on padding, and (with `mask_prompt_tokens`) false on the first `prompt_len + 2` positions —
/// the book's rule, which covers the prompt and the `\n\n` after it — so only the response is
/// scored. `allowed_max_length` truncates every row and mask.
pub fn collate_preferences(
    batch: &[EncodedPreference],
    allowed_max_length: Option<usize>,
    mask_prompt_tokens: bool,
) -> Result<PreferenceBatch> {
    if batch.is_empty() {
        return Err(Error::invalid("collate_preferences", "empty batch"));
    }
    let common = batch
        .iter()
        .flat_map(|b| [b.chosen.len() + 1, b.rejected.len() + 1])
        .max()
        .expect("non-empty");
    let mut out = PreferenceBatch {
        chosen: Vec::new(),
        rejected: Vec::new(),
        chosen_mask: Vec::new(),
        rejected_mask: Vec::new(),
    };
    for item in batch {
        for (seq, rows, masks) in [
            (&item.chosen, &mut out.chosen, &mut out.chosen_mask),
            (&item.rejected, &mut out.rejected, &mut out.rejected_mask),
        ] {
            let mut padded: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
            padded.resize(common, PAD_ID as i64);
            let mut mask: Vec<bool> = (0..common).map(|i| i < seq.len()).collect();
            if mask_prompt_tokens {
                for m in mask.iter_mut().take(item.prompt.len() + 2) {
                    *m = false;
                }
            }
            if let Some(m) = allowed_max_length {
                padded.truncate(m);
                mask.truncate(m);
            }
            rows.push(padded);
            masks.push(mask);
        }
    }
    Ok(out)
}
