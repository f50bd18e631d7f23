//! GPT-2's byte-level BPE tokenizer, identical to tiktoken's `gpt2` encoding, plus a trainer.
//!
//! Encoding a text:
//! 1. split out special tokens (`<|endoftext|>`) — only where the caller allows them;
//! 2. pre-tokenize the rest with GPT-2's pattern ([`pretokenize`]): words with their leading space,
//!    numbers, punctuation runs, whitespace;
//! 3. byte-pair-merge each piece's UTF-8 bytes by rank ([`merge`]) — every byte is a token, so
//!    nothing is ever unknown.
//!
//! Decoding concatenates the tokens' bytes: `decode(encode(s)) == s` for every string.
//!
//! The vocabulary loads from OpenAI's two files: `encoder.json` (token → id, tokens written in
//! GPT-2's printable byte alphabet, see [`byte_unicode`]) and `vocab.bpe` (the merges, in order).
//! A merge's rank is the id of the token it makes; the loader checks the two files agree. Or from
//! Hugging Face's `tokenizer.json` (Llama 3, Qwen3: their own regex, NFC, pair-ranked merges,
//! added tokens; see [`hf_json`]). A tokenizer folder holds either.

pub mod byte_unicode;
pub mod hf_json;
pub mod merge;
pub mod pretokenize;
pub mod train;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::data::text_file::{read_text, write_atomic};
use crate::error::{Error, Result};
use byte_unicode::{byte_to_char_table, bytes_in_rank_order, bytes_to_token, token_to_bytes};
use merge::{byte_pair_encode, FxHashMap};

impl Special {
    /// A special token (matched only where allowed), from `(text, id)`.
    fn only_where_allowed((text, id): (String, u32)) -> Self {
        Special {
            text,
            id,
            always: false,
        }
    }
}

/// GPT-2's end-of-text token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A byte-level BPE tokenizer (GPT-2's, or one trained with [`train::train_bpe`]).
#[derive(Clone, Debug)]
pub struct BpeTokenizer {
    /// Token bytes → id (= merge rank) for ordinary tokens.
    ranks: FxHashMap<Vec<u8>, u32>,
    /// id → bytes, for every id (special tokens: their text).
    tokens: Vec<Vec<u8>>,
    /// The merges in rank order, as (left, right) token ids — what `vocab.bpe` stores.
    merges: Vec<(u32, u32)>,
    /// Special (added) tokens and their ids.
    specials: Vec<Special>,
    /// A `tokenizer.json`'s own rules (None: GPT-2's).
    hf: Option<Box<hf_json::HfRules>>,
}

/// Finds a text's special (or added) tokens left to right, the longest where two start at the
/// same byte. Each token's occurrences are located once per text (overlapping ones included), so
/// a text with many special tokens and a vocabulary with many of them (Llama 3 has 256) costs one
/// pass per token, not one per token per match.
struct SpecialScan<'a> {
    /// Each token, its occurrences in order, and the first not yet passed.
    tokens: Vec<(&'a Special, Vec<usize>, usize)>,
}

impl<'a> SpecialScan<'a> {
    /// The scan of `text` for every special token (`all`), or only the always-matched ones.
    fn new(tok: &'a BpeTokenizer, text: &str, all: bool) -> Self {
        let tokens = tok
            .specials
            .iter()
            .filter(|s| (all || s.always) && !s.text.is_empty())
            .map(|s| {
                let mut at = Vec::new();
                let mut from = 0;
                while let Some(p) = text[from..].find(s.text.as_str()) {
                    at.push(from + p);
                    // The next occurrence may overlap this one: resume one character on.
                    let step = text[from + p..].chars().next().map_or(1, char::len_utf8);
                    from += p + step;
                }
                (s, at, 0)
            })
            .collect();
        SpecialScan { tokens }
    }

    /// The first token at or after byte `from`: (offset, token). Calls must not go back.
    fn next(&mut self, from: usize) -> Option<(usize, &'a Special)> {
        let mut best: Option<(usize, &'a Special)> = None;
        for (s, at, cursor) in &mut self.tokens {
            while *cursor < at.len() && at[*cursor] < from {
                *cursor += 1;
            }
            if let Some(&p) = at.get(*cursor) {
                let better = match best {
                    None => true,
                    Some((bp, bs)) => p < bp || (p == bp && s.text.len() > bs.text.len()),
                };
                if better {
                    best = Some((p, *s));
                }
            }
        }
        best
    }
}

/// The per-call caches of merged pieces: borrowed pieces (GPT-2's path) and owned ones (a
/// `tokenizer.json`'s, which may be normalized).
type PieceCaches<'t> = (FxHashMap<&'t str, Vec<u32>>, FxHashMap<String, Vec<u32>>);

/// A special (or added) token.
#[derive(Clone, Debug)]
pub(crate) struct Special {
    pub(crate) text: String,
    pub(crate) id: u32,
    /// Matched in any text, allowed or not (a `tokenizer.json`'s non-special added tokens).
    pub(crate) always: bool,
}

static GPT2: OnceLock<BpeTokenizer> = OnceLock::new();

impl BpeTokenizer {
    /// OpenAI's GPT-2 tokenizer, from the copies of `encoder.json` and `vocab.bpe` embedded in the
    /// binary (so it works from any directory, with nothing to download). Loaded once.
    pub fn gpt2() -> &'static BpeTokenizer {
        GPT2.get_or_init(|| {
            Self::from_gpt2_format(
                include_str!("../../../data/gpt2/encoder.json"),
                include_str!("../../../data/gpt2/vocab.bpe"),
                "embedded data/gpt2",
            )
            .expect("the embedded GPT-2 vocabulary is valid (checked by the tests)")
        })
    }

    /// Loads a tokenizer folder: its `tokenizer.json` (Hugging Face's format) if it has one,
    /// else `encoder.json` and `vocab.bpe` (OpenAI's format). [`BpeTokenizer::save`] writes
    /// whichever the tokenizer came from.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::invalid(
                "tokenizer",
                format!(
                    "{} is not a folder with tokenizer.json, or encoder.json and vocab.bpe",
                    dir.display()
                ),
            ));
        }
        let json = dir.join(hf_json::TOKENIZER_JSON);
        if json.is_file() {
            return Self::from_tokenizer_json(&read_text(&json)?, &json.display().to_string());
        }
        let encoder = read_text(dir.join("encoder.json"))?;
        let merges = read_text(dir.join("vocab.bpe"))?;
        Self::from_gpt2_format(&encoder, &merges, &dir.display().to_string())
    }

    /// Parses a Hugging Face `tokenizer.json`'s text (see [`hf_json`]); `what` names it in
    /// errors.
    pub fn from_tokenizer_json(text: &str, what: &str) -> Result<Self> {
        hf_json::from_tokenizer_json(text, what)
    }

    /// Whether this tokenizer was read from a `tokenizer.json` (and `save` writes one).
    pub fn is_tokenizer_json(&self) -> bool {
        self.hf.is_some()
    }

    /// The id its `tokenizer.json` puts before every sequence it encodes for the model (Llama 3's
    /// `<|begin_of_text|>`), if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.hf.as_ref().and_then(|h| h.bos)
    }

    /// Parses the two files' contents; `what` names them in errors.
    pub fn from_gpt2_format(encoder_json: &str, vocab_bpe: &str, what: &str) -> Result<Self> {
        let table = byte_to_char_table();
        let encoder: HashMap<String, u32> = serde_json::from_str(encoder_json)
            .map_err(|e| Error::parse(format!("{what}/encoder.json"), e.to_string()))?;
        let merges_what = format!("{what}/vocab.bpe");

        // Ranks: the 256 bytes, then one per merge.
        let mut tokens: Vec<Vec<u8>> = bytes_in_rank_order().into_iter().map(|b| vec![b]).collect();
        let mut ranks: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        for (i, t) in tokens.iter().enumerate() {
            ranks.insert(t.clone(), i as u32);
        }
        let mut merges = Vec::new();
        for (line_no, line) in vocab_bpe.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split(' ').collect();
            let bad = |msg: String| {
                Error::parse(merges_what.clone(), format!("line {}: {msg}", line_no + 1))
            };
            if parts.len() != 2 {
                return Err(bad(format!(
                    "expected two tokens separated by one space, got {line:?}"
                )));
            }
            let mut ids = [0u32; 2];
            for (k, p) in parts.iter().enumerate() {
                let bytes = token_to_bytes(p, &table).ok_or_else(|| {
                    bad(format!(
                        "{p:?} has characters outside GPT-2's byte alphabet"
                    ))
                })?;
                ids[k] = *ranks.get(&bytes).ok_or_else(|| {
                    bad(format!("{p:?} is not a token defined by an earlier line"))
                })?;
            }
            let merged = [
                tokens[ids[0] as usize].as_slice(),
                tokens[ids[1] as usize].as_slice(),
            ]
            .concat();
            if ranks.contains_key(&merged) {
                return Err(bad(format!(
                    "merge {line:?} makes a token that already exists"
                )));
            }
            ranks.insert(merged.clone(), tokens.len() as u32);
            tokens.push(merged);
            merges.push((ids[0], ids[1]));
        }

        // encoder.json must give every token the id of its rank; other entries are special tokens.
        let mut specials = Vec::new();
        for (tok, &id) in &encoder {
            match token_to_bytes(tok, &table).and_then(|b| ranks.get(&b).copied()) {
                Some(rank) if rank == id => {}
                Some(rank) => {
                    return Err(Error::parse(
                        format!("{what}/encoder.json"),
                        format!("token {tok:?} has id {id} but vocab.bpe gives it rank {rank}"),
                    ))
                }
                None => specials.push((tok.clone(), id)),
            }
        }
        if encoder.len() - specials.len() != tokens.len() {
            return Err(Error::parse(
                format!("{what}/encoder.json"),
                format!(
                    "has {} ordinary tokens, but the 256 bytes and {} merges of vocab.bpe make {}",
                    encoder.len() - specials.len(),
                    merges.len(),
                    tokens.len()
                ),
            ));
        }
        specials.sort_by_key(|s| s.1);
        for (i, (s, id)) in specials.iter().enumerate() {
            if *id as usize != tokens.len() + i {
                return Err(Error::parse(
                    format!("{what}/encoder.json"),
                    format!(
                        "special token {s:?} has id {id}, expected {} (ids must be dense)",
                        tokens.len() + i
                    ),
                ));
            }
        }
        for (s, _) in &specials {
            tokens.push(s.as_bytes().to_vec());
        }
        Ok(BpeTokenizer {
            ranks,
            tokens,
            merges,
            specials: specials
                .into_iter()
                .map(Special::only_where_allowed)
                .collect(),
            hf: None,
        })
    }

    /// Builds a tokenizer from merges (as pairs of token ids, in order) over the 256 bytes in
    /// GPT-2's rank order, plus special tokens appended after them (used by the trainer).
    pub fn from_merges(merges: Vec<(u32, u32)>, specials: &[&str]) -> Result<Self> {
        let mut tokens: Vec<Vec<u8>> = bytes_in_rank_order().into_iter().map(|b| vec![b]).collect();
        let mut ranks: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        for (i, t) in tokens.iter().enumerate() {
            ranks.insert(t.clone(), i as u32);
        }
        for &(a, b) in &merges {
            if a as usize >= tokens.len() || b as usize >= tokens.len() {
                return Err(Error::invalid(
                    "from_merges",
                    format!("merge ({a}, {b}) refers to a later token"),
                ));
            }
            let merged = [tokens[a as usize].as_slice(), tokens[b as usize].as_slice()].concat();
            if ranks.insert(merged.clone(), tokens.len() as u32).is_some() {
                return Err(Error::invalid(
                    "from_merges",
                    format!("merge ({a}, {b}) repeats a token"),
                ));
            }
            tokens.push(merged);
        }
        let mut sp = Vec::new();
        for s in specials {
            sp.push(Special::only_where_allowed((
                s.to_string(),
                tokens.len() as u32,
            )));
            tokens.push(s.as_bytes().to_vec());
        }
        Ok(BpeTokenizer {
            ranks,
            tokens,
            merges,
            specials: sp,
            hf: None,
        })
    }

    /// Number of ids (ordinary and special tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The special (and added) tokens with their ids.
    pub fn special_tokens(&self) -> Vec<(String, u32)> {
        self.specials
            .iter()
            .map(|s| (s.text.clone(), s.id))
            .collect()
    }

    /// `text` as the model reads it — Hugging Face's `tokenizer(text)`: every special token of
    /// the vocabulary matched where it appears, and the sequence start (Llama 3's
    /// `<|begin_of_text|>`) put first when the tokenizer's template has one. For GPT-2's vocabulary
    /// that is `encode_with_special(text, &["<|endoftext|>"])`.
    pub fn encode_for_model(&self, text: &str) -> Result<Vec<u32>> {
        let names: Vec<String> = self.specials.iter().map(|s| s.text.clone()).collect();
        let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
        let ids = self.encode_with_special(text, &allowed)?;
        Ok(match self.bos_id() {
            Some(bos) => std::iter::once(bos).chain(ids).collect(),
            None => ids,
        })
    }

    /// The tokens that end a text or a turn, of those this vocabulary has: GPT-2's and Qwen's
    /// `<|endoftext|>`, Llama 3's `<|end_of_text|>`, `<|eot_id|>` and `<|eom_id|>`, Qwen's
    /// `<|im_end|>`. Generation stops at any of them.
    pub fn end_ids(&self) -> Vec<u32> {
        [
            "<|endoftext|>",
            "<|end_of_text|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|im_end|>",
        ]
        .iter()
        .filter_map(|t| self.special_id(t))
        .collect()
    }

    /// The id of a special token, if this vocabulary has it.
    pub fn special_id(&self, token: &str) -> Option<u32> {
        self.specials.iter().find(|s| s.text == token).map(|s| s.id)
    }

    /// The merges in rank order (pairs of token ids).
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merges
    }

    /// The bytes of token `id`.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.tokens
            .get(id as usize)
            .map(|t| t.as_slice())
            .ok_or(Error::IndexOutOfRange {
                op: "decode",
                index: id as i64,
                size: self.tokens.len(),
            })
    }

    /// Encodes text that must not contain special tokens (tiktoken's default: a special token in
    /// the text is an error, so that user text cannot inject `<|endoftext|>`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with_special(text, &[])
    }

    /// Encodes text, turning the `allowed` special tokens into their ids; any other special
    /// token in the text is an error naming it and its byte offset.
    pub fn encode_with_special(&self, text: &str, allowed: &[&str]) -> Result<Vec<u32>> {
        for a in allowed {
            if self.special_id(a).is_none() {
                return Err(Error::invalid(
                    "encode",
                    format!(
                        "{a:?} is not a special token of this vocabulary (it has {:?})",
                        self.special_names()
                    ),
                ));
            }
        }
        let mut out = Vec::with_capacity(text.len() / 4);
        let mut cache = PieceCaches::default();
        let mut start = 0;
        let mut scan = SpecialScan::new(self, text, true);
        while let Some((pos, special)) = scan.next(start) {
            if !special.always && !allowed.contains(&special.text.as_str()) {
                return Err(Error::invalid(
                    "encode",
                    format!(
                        "the text contains the special token {:?} at byte {pos}; allow it \
                         (--allow-special) to encode it as id {}, or remove it",
                        special.text, special.id
                    ),
                ));
            }
            self.encode_plain_into(&text[start..pos], &mut out, &mut cache)?;
            out.push(special.id);
            start = pos + special.text.len();
        }
        self.encode_plain_into(&text[start..], &mut out, &mut cache)?;
        Ok(out)
    }

    /// Encodes text treating special-token strings as ordinary text (a `tokenizer.json`'s
    /// non-special added tokens are still matched, as the `tokenizers` library does).
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4);
        let mut cache = PieceCaches::default();
        let mut start = 0;
        let mut scan = SpecialScan::new(self, text, false);
        while let Some((pos, added)) = scan.next(start) {
            self.encode_plain_into(&text[start..pos], &mut out, &mut cache)?;
            out.push(added.id);
            start = pos + added.text.len();
        }
        self.encode_plain_into(&text[start..], &mut out, &mut cache)?;
        Ok(out)
    }

    /// The pieces BPE runs on, as text: special tokens cut out as pieces of their own (all of
    /// them matched), the rest normalized (NFC, if the tokenizer says so) and split by the
    /// pre-tokenizer. For studying and testing a tokenizer's regex.
    pub fn pre_tokens(&self, text: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let plain = |segment: &str, out: &mut Vec<String>| -> Result<()> {
            match &self.hf {
                Some(hf) => hf.pieces(segment, |p| out.push(p.to_string())),
                None => {
                    pretokenize::pre_tokenize(segment, |p| out.push(p.to_string()));
                    Ok(())
                }
            }
        };
        let mut start = 0;
        let mut scan = SpecialScan::new(self, text, true);
        while let Some((pos, special)) = scan.next(start) {
            plain(&text[start..pos], &mut out)?;
            out.push(special.text.clone());
            start = pos + special.text.len();
        }
        plain(&text[start..], &mut out)?;
        Ok(out)
    }

    /// Text with no added tokens in it: GPT-2's inner loop, or a `tokenizer.json`'s rules. The
    /// caches live for one encode call: pieces merged once, reused in every segment.
    fn encode_plain_into<'t>(
        &self,
        text: &'t str,
        out: &mut Vec<u32>,
        (cache, merged): &mut PieceCaches<'t>,
    ) -> Result<()> {
        match &self.hf {
            None => {
                self.encode_ordinary_into(text, out, cache);
                Ok(())
            }
            Some(hf) => {
                // Pieces of normalized text are owned strings, hence their own cache.
                hf.pieces(text, |piece| match merged.get(piece) {
                    Some(ids) => out.extend_from_slice(ids),
                    None => {
                        let mut ids = Vec::new();
                        let whole = self.ranks.get(piece.as_bytes()).copied();
                        hf.encode_piece(piece.as_bytes(), whole, &mut ids);
                        out.extend_from_slice(&ids);
                        merged.insert(piece.to_string(), ids);
                    }
                })
            }
        }
    }

    /// The encoder's inner loop. Pieces that are whole tokens (most words) take one hash lookup;
    /// the others are merged once per distinct piece and remembered in `cache` for this call.
    fn encode_ordinary_into<'t>(
        &self,
        text: &'t str,
        out: &mut Vec<u32>,
        cache: &mut FxHashMap<&'t str, Vec<u32>>,
    ) {
        pretokenize::pre_tokenize(text, |piece| {
            if let Some(&id) = self.ranks.get(piece.as_bytes()) {
                out.push(id);
            } else if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
            } else {
                let mut ids = Vec::new();
                byte_pair_encode(piece.as_bytes(), &self.ranks, &mut ids);
                out.extend_from_slice(&ids);
                cache.insert(piece, ids);
            }
        });
    }

    fn special_names(&self) -> Vec<&str> {
        self.specials.iter().map(|s| s.text.as_str()).collect()
    }

    /// The bytes of a sequence of ids.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }

    /// Decodes ids to text. A sequence that ends inside a multi-byte character (possible when
    /// decoding a prefix of generated ids) gets U+FFFD for the incomplete bytes, like tiktoken.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// Writes the tokenizer into `dir` (created if needed), atomically: the `tokenizer.json` it
    /// was read from, unchanged, or `encoder.json` and `vocab.bpe` in OpenAI's format —
    /// [`BpeTokenizer::from_dir`] reads either back.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // A folder holds one format: the other's files (from an earlier save) would shadow or
        // contradict this one, so they go.
        let remove = |name: &str| match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir.join(name), e)),
            _ => Ok(()),
        };
        if let Some(hf) = &self.hf {
            remove("encoder.json")?;
            remove("vocab.bpe")?;
            return write_atomic(dir.join(hf_json::TOKENIZER_JSON), hf.source.as_bytes());
        }
        remove(hf_json::TOKENIZER_JSON)?;
        let table = byte_to_char_table();
        let mut encoder = serde_json::Map::new();
        for (id, t) in self.tokens.iter().enumerate() {
            let name = match self.specials.iter().find(|s| s.id == id as u32) {
                Some(s) => s.text.clone(),
                None => bytes_to_token(t, &table),
            };
            encoder.insert(name, serde_json::Value::from(id as u64));
        }
        let json = serde_json::to_string(&encoder)
            .map_err(|e| Error::parse("encoder.json", e.to_string()))?;
        let mut bpe = String::from("#version: 0.2\n");
        for &(a, b) in &self.merges {
            bpe.push_str(&bytes_to_token(&self.tokens[a as usize], &table));
            bpe.push(' ');
            bpe.push_str(&bytes_to_token(&self.tokens[b as usize], &table));
            bpe.push('\n');
        }
        write_atomic(dir.join("encoder.json"), json.as_bytes())?;
        write_atomic(dir.join("vocab.bpe"), bpe.as_bytes())
    }
}
