//! Hugging Face's `tokenizer.json` (the `tokenizers` library's format, which Llama 3 and Qwen3
//! ship): a byte-level BPE like GPT-2's, described by the file instead of built in.
//!
//! What the file can say, and what of it is run here (anything else is a clear error naming the
//! field, never a tokenizer that silently encodes differently):
//! - `normalizer`: none, or `NFC` (Qwen) — applied to the text between added tokens;
//! - `pre_tokenizer`: `Split` by the file's regex (behaviour `Isolated`: the matches and the text
//!   between them are the pieces) followed by `ByteLevel` without its own regex — Llama 3's and
//!   Qwen's; or `ByteLevel` with its built-in regex — GPT-2's. The regex runs on `fancy-regex`,
//!   since Llama 3's `\s+(?!\S)` needs a look-ahead; a pattern it cannot compile is an error;
//! - `model`: `BPE` over the byte-level alphabet, no `unk_token`, no byte fallback, no dropout.
//!   Merges are ranked by **their position in the file**, as pairs: a piece starts as its bytes'
//!   symbols, and the adjacent pair with the lowest rank (leftmost on ties) merges until none
//!   is in the list. (GPT-2's files rank a merge by the id of the token it makes; the two agree
//!   when merges are listed in id order, which `tokenizer.json` does not promise.) With
//!   `ignore_merges` (Llama 3), a piece that is itself a vocabulary entry is taken whole first;
//! - `added_tokens`: cut out of the text before anything else, scanning left to right; special
//!   ones only where the caller allows them (as GPT-2's `<|endoftext|>`), the others always;
//! - `post_processor`: a `TemplateProcessing` that puts one special token before the sequence
//!   (Llama 3's `<|begin_of_text|>`) is remembered as the model's BOS ([`BpeTokenizer::bos_id`]);
//!   `ByteLevel` adds nothing; other templates are refused;
//! - `decoder`: `ByteLevel` (the bytes of the tokens, concatenated); `truncation`, `padding`:
//!   none.
//!
//! [`BpeTokenizer::save`] writes such a tokenizer back as the same `tokenizer.json`, so a
//! checkpoint's `tokenizer/` folder holds it unchanged.

use serde_json::Value;

use super::byte_unicode::{byte_to_char_table, token_to_bytes};
use super::merge::FxHashMap;
use super::{BpeTokenizer, Special};
use crate::error::{Error, Result};

/// The file name in a tokenizer folder.
pub const TOKENIZER_JSON: &str = "tokenizer.json";

/// What a `tokenizer.json` adds to GPT-2's byte-level BPE.
#[derive(Clone, Debug)]
pub(crate) struct HfRules {
    /// The file's pre-tokenizer regex (None: GPT-2's built-in pattern).
    pub(crate) split: Option<fancy_regex::Regex>,
    /// Normalize text to Unicode NFC first.
    pub(crate) nfc: bool,
    /// `(left id, right id) → (rank, merged id)`.
    pub(crate) pair_ranks: FxHashMap<(u32, u32), (u32, u32)>,
    /// Take a piece that is a vocabulary entry whole, before merging.
    pub(crate) ignore_merges: bool,
    /// The id of each byte's symbol.
    pub(crate) byte_ids: [u32; 256],
    /// The special token the post-processor puts first, if any.
    pub(crate) bos: Option<u32>,
    /// The file as read, for `save`.
    pub(crate) source: String,
}

/// Null or "" (GPT-2's file writes the unused affixes as empty strings).
fn empty(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn bad(what: &str, msg: impl Into<String>) -> Error {
    Error::parse(what.to_string(), msg.into())
}

/// Parses a `tokenizer.json`'s text; `what` names it in errors.
pub(crate) fn from_tokenizer_json(text: &str, what: &str) -> Result<BpeTokenizer> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(what, e.to_string()))?;
    let model = &v["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(bad(
            what,
            format!(
                "model type {} is not supported (byte-level BPE only)",
                model["type"]
            ),
        ));
    }
    for (key, ok) in [
        ("unk_token", model["unk_token"].is_null()),
        (
            "byte_fallback",
            !model["byte_fallback"].as_bool().unwrap_or(false),
        ),
        ("dropout", model["dropout"].is_null()),
        (
            "continuing_subword_prefix",
            empty(&model["continuing_subword_prefix"]),
        ),
        ("end_of_word_suffix", empty(&model["end_of_word_suffix"])),
    ] {
        if !ok {
            return Err(bad(
                what,
                format!(
                    "model.{key} = {} is not supported (byte-level BPE without it)",
                    model[key]
                ),
            ));
        }
    }
    let nfc = match &v["normalizer"] {
        Value::Null => false,
        n if n["type"] == "NFC" => true,
        n => {
            return Err(bad(
                what,
                format!("normalizer {n} is not supported (none or NFC)"),
            ))
        }
    };
    let split = pre_tokenizer(&v["pre_tokenizer"], what)?;

    // The vocabulary: every entry's bytes in the byte-level alphabet.
    let table = byte_to_char_table();
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad(what, "model.vocab is not an object"))?;
    let added_count = v["added_tokens"].as_array().map_or(0, Vec::len);
    // Ids are dense: every one below the count of entries names a token.
    let id_limit = vocab.len() + added_count;
    let mut by_id: Vec<Option<Vec<u8>>> = vec![None; vocab.len()];
    let mut ids_of: FxHashMap<String, u32> = FxHashMap::default();
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .filter(|&i| i < id_limit as u64)
            .ok_or_else(|| {
                bad(
                    what,
                    format!("vocab entry {token:?} has id {id}, not one of 0..{id_limit}"),
                )
            })? as usize;
        let bytes = token_to_bytes(token, &table).ok_or_else(|| {
            bad(
                what,
                format!("vocab entry {token:?} has characters outside the byte-level alphabet"),
            )
        })?;
        if id >= by_id.len() {
            by_id.resize(id + 1, None);
        }
        if by_id[id].replace(bytes).is_some() {
            return Err(bad(what, format!("two vocab entries have id {id}")));
        }
        ids_of.insert(token.clone(), id as u32);
    }
    let mut byte_ids = [0u32; 256];
    for b in 0..=255u8 {
        let symbol = table[b as usize].to_string();
        byte_ids[b as usize] = *ids_of.get(&symbol).ok_or_else(|| {
            bad(
                what,
                format!("the vocabulary lacks the byte symbol {symbol:?} (byte {b})"),
            )
        })?;
    }

    // The merges, ranked by position; "a b" strings (older files) or ["a", "b"] pairs.
    let list = model["merges"]
        .as_array()
        .ok_or_else(|| bad(what, "model.merges is not a list"))?;
    let mut pair_ranks = FxHashMap::default();
    let mut merges = Vec::with_capacity(list.len());
    for (rank, m) in list.iter().enumerate() {
        let (left, right) = match m {
            Value::String(s) => s
                .split_once(' ')
                .ok_or_else(|| bad(what, format!("merge {rank} {s:?} is not two tokens")))?,
            Value::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some(l), Some(r)) => (l, r),
                _ => return Err(bad(what, format!("merge {rank} is not two strings"))),
            },
            other => return Err(bad(what, format!("merge {rank} is {other}"))),
        };
        let id = |t: &str| {
            ids_of.get(t).copied().ok_or_else(|| {
                bad(
                    what,
                    format!("merge {rank} uses {t:?}, which is not in the vocabulary"),
                )
            })
        };
        let (a, b) = (id(left)?, id(right)?);
        let merged = id(&format!("{left}{right}"))?;
        // A pair listed twice takes its last rank, as the `tokenizers` library's map does.
        pair_ranks.insert((a, b), (rank as u32, merged));
        merges.push((a, b));
    }

    // Added tokens: ids beyond (or inside) the vocabulary, matched in raw text.
    let mut specials = Vec::new();
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        let content = t["content"]
            .as_str()
            .ok_or_else(|| bad(what, "an added token has no content"))?;
        if content.is_empty() {
            return Err(bad(what, "an added token has empty content"));
        }
        let id = t["id"]
            .as_u64()
            .filter(|&i| i < id_limit as u64)
            .ok_or_else(|| {
                bad(
                    what,
                    format!(
                        "added token {content:?} has id {}, not one of 0..{id_limit}",
                        t["id"]
                    ),
                )
            })? as usize;
        for flag in ["single_word", "lstrip", "rstrip", "normalized"] {
            if t[flag].as_bool().unwrap_or(false) {
                return Err(bad(
                    what,
                    format!("added token {content:?} has {flag}: true, which is not supported"),
                ));
            }
        }
        if id >= by_id.len() {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some(content.as_bytes().to_vec());
        specials.push(Special {
            text: content.to_string(),
            id: id as u32,
            always: !t["special"].as_bool().unwrap_or(true),
        });
    }
    let tokens = by_id
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.ok_or_else(|| bad(what, format!("no token has id {id}"))))
        .collect::<Result<Vec<_>>>()?;
    let mut ranks: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
    for (token, &id) in &ids_of {
        let bytes = token_to_bytes(token, &table).expect("checked above");
        ranks.insert(bytes, id);
    }
    let bos = post_processor_bos(&v["post_processor"], &specials, what)?;
    match &v["decoder"] {
        Value::Null => {}
        d if d["type"] == "ByteLevel" => {}
        d => {
            return Err(bad(
                what,
                format!("decoder {d} is not supported (ByteLevel)"),
            ))
        }
    }
    for key in ["truncation", "padding"] {
        if !v[key].is_null() {
            return Err(bad(
                what,
                format!("{key} {} is not supported (null)", v[key]),
            ));
        }
    }
    Ok(BpeTokenizer {
        ranks,
        tokens,
        merges,
        specials,
        hf: Some(Box::new(HfRules {
            split,
            nfc,
            pair_ranks,
            ignore_merges: model["ignore_merges"].as_bool().unwrap_or(false),
            byte_ids,
            bos,
            source: text.to_string(),
        })),
    })
}

/// The pre-tokenizer: `Split(regex, Isolated)` + `ByteLevel(use_regex: false)`, or
/// `ByteLevel(use_regex: true)` alone (GPT-2's pattern, built in).
fn pre_tokenizer(p: &Value, what: &str) -> Result<Option<fancy_regex::Regex>> {
    let steps: Vec<&Value> = match p["type"].as_str() {
        Some("Sequence") => p["pretokenizers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect(),
        Some(_) => vec![p],
        None => return Err(bad(what, "no pre_tokenizer: byte-level BPE needs one")),
    };
    let unsupported = |s: &Value| {
        bad(
            what,
            format!("pre-tokenizer {s} is not supported (Split by a regex, Isolated, then ByteLevel; or ByteLevel alone)"),
        )
    };
    match steps.as_slice() {
        [byte_level] if byte_level["type"] == "ByteLevel" => {
            if byte_level["add_prefix_space"].as_bool().unwrap_or(false)
                || !byte_level["use_regex"].as_bool().unwrap_or(true)
            {
                return Err(unsupported(byte_level));
            }
            Ok(None)
        }
        [split, byte_level] if split["type"] == "Split" && byte_level["type"] == "ByteLevel" => {
            if split["behavior"] != "Isolated"
                || split["invert"].as_bool().unwrap_or(false)
                || byte_level["add_prefix_space"].as_bool().unwrap_or(false)
                || byte_level["use_regex"].as_bool().unwrap_or(true)
            {
                return Err(unsupported(p));
            }
            let pattern = split["pattern"]["Regex"]
                .as_str()
                .ok_or_else(|| unsupported(split))?;
            let re = fancy_regex::Regex::new(pattern).map_err(|e| {
                bad(
                    what,
                    format!("the pre-tokenizer regex {pattern:?} cannot be run here: {e}"),
                )
            })?;
            Ok(Some(re))
        }
        _ => Err(unsupported(p)),
    }
}

/// The special token the post-processor puts before a single sequence (Llama 3's
/// `TemplateProcessing`: `[SpecialToken BOS, Sequence A]`), or none (`ByteLevel`, no
/// post-processor). Any other template — an EOS after the sequence, several tokens — is refused
/// rather than half applied.
fn post_processor_bos(p: &Value, specials: &[Special], what: &str) -> Result<Option<u32>> {
    let steps: Vec<&Value> = match p["type"].as_str() {
        None => return Ok(None),
        Some("Sequence") => p["processors"].as_array().into_iter().flatten().collect(),
        Some(_) => vec![p],
    };
    let unsupported = || {
        bad(
            what,
            format!("post-processor {p} is not supported (ByteLevel, or a TemplateProcessing that puts one special token first)"),
        )
    };
    let mut bos = None;
    for step in steps {
        match step["type"].as_str() {
            Some("ByteLevel") => {}
            Some("TemplateProcessing") => {
                let single = step["single"].as_array().ok_or_else(unsupported)?;
                let [first, second] = single.as_slice() else {
                    return Err(unsupported());
                };
                let name = first["SpecialToken"]["id"]
                    .as_str()
                    .ok_or_else(unsupported)?;
                if second["Sequence"]["id"] != "A" {
                    return Err(unsupported());
                }
                let id = step["special_tokens"][name]["ids"][0]
                    .as_u64()
                    .map(|i| i as u32)
                    .or_else(|| specials.iter().find(|s| s.text == name).map(|s| s.id))
                    .ok_or_else(unsupported)?;
                bos = Some(id);
            }
            _ => return Err(unsupported()),
        }
    }
    Ok(bos)
}

impl HfRules {
    /// The pieces BPE runs on: the (normalized) text split by the file's regex, the matches and
    /// the text between them (the `Isolated` behaviour).
    pub(crate) fn pieces(&self, text: &str, mut piece: impl FnMut(&str)) -> Result<()> {
        use unicode_normalization::UnicodeNormalization;
        let normalized;
        let text = if self.nfc {
            normalized = text.nfc().collect::<String>();
            normalized.as_str()
        } else {
            text
        };
        let Some(re) = &self.split else {
            super::pretokenize::pre_tokenize(text, piece);
            return Ok(());
        };
        let mut last = 0;
        for m in re.find_iter(text) {
            let m = m.map_err(|e| {
                Error::invalid(
                    "encode",
                    format!("the pre-tokenizer regex failed on this text: {e}"),
                )
            })?;
            if m.start() > last {
                piece(&text[last..m.start()]);
            }
            if m.end() > m.start() {
                piece(m.as_str());
            }
            last = m.end();
        }
        if last < text.len() {
            piece(&text[last..]);
        }
        Ok(())
    }

    /// The ids of one piece: its bytes' symbols, merged pair by pair in rank order (or the
    /// piece whole, with `ignore_merges`, when it is a vocabulary entry).
    pub(crate) fn encode_piece(&self, piece: &[u8], whole: Option<u32>, out: &mut Vec<u32>) {
        if let (true, Some(id)) = (self.ignore_merges, whole) {
            out.push(id);
            return;
        }
        let mut symbols: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.pair_ranks.get(&(w[0], w[1])).map(|&(r, m)| (r, i, m)))
                .min();
            let Some((_, i, merged)) = best else {
                break;
            };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        out.extend_from_slice(&symbols);
    }
}
