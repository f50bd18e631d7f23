//! The book's first tokenizers (§2.2–2.4): split on punctuation and whitespace, then look words up
//! in a vocabulary built from the training text.

use std::collections::BTreeSet;
use std::collections::HashMap;

use crate::error::{Error, Result};

/// The punctuation the book's regex `([,.:;?_!"()']|--|\s)` splits off as its own token.
const SPLIT_PUNCT: &[char] = &[',', '.', ':', ';', '?', '_', '!', '"', '(', ')', '\''];
/// The punctuation `decode` attaches to the preceding word (the book's `\s+([,.?!"()'])`).
const NO_SPACE_BEFORE: &[char] = &[',', '.', '?', '!', '"', '(', ')', '\''];

/// Splits like the book's `re.split(r'([,.:;?_!"()\']|--|\s)', text)` followed by dropping
/// whitespace-only items: words, single punctuation marks, and `--`.
pub fn split_simple(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let delim_len = if SPLIT_PUNCT.contains(&c) || c.is_whitespace() {
            c.len_utf8()
        } else if c == '-' && chars.peek().map(|&(_, n)| n) == Some('-') {
            chars.next();
            2
        } else {
            continue;
        };
        if start < i {
            out.push(&text[start..i]);
        }
        if !c.is_whitespace() {
            out.push(&text[i..i + delim_len]);
        }
        start = i + delim_len;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The sorted unique tokens of a text (the book's `sorted(set(preprocessed))`).
pub fn build_vocab(text: &str) -> Vec<String> {
    split_simple(text)
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn join_tokens<'a>(tokens: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, t) in tokens.enumerate() {
        let attach = t.chars().count() == 1 && t.chars().all(|c| NO_SPACE_BEFORE.contains(&c));
        if i > 0 && !attach {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

/// `SimpleTokenizerV1`: a word not in the vocabulary is an error.
#[derive(Clone, Debug)]
pub struct SimpleTokenizerV1 {
    str_to_int: HashMap<String, u32>,
    int_to_str: Vec<String>,
}

impl SimpleTokenizerV1 {
    /// A tokenizer over the given vocabulary (id = position).
    pub fn new(vocab: Vec<String>) -> Self {
        let str_to_int = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        SimpleTokenizerV1 {
            str_to_int,
            int_to_str: vocab,
        }
    }

    /// The vocabulary of a text (sorted unique tokens).
    pub fn from_text(text: &str) -> Self {
        Self::new(build_vocab(text))
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.int_to_str.len()
    }

    /// Token ids of `text`; an unknown word is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        split_simple(text)
            .into_iter()
            .map(|t| {
                self.str_to_int.get(t).copied().ok_or_else(|| {
                    Error::invalid(
                        "SimpleTokenizerV1::encode",
                        format!("{t:?} is not in the vocabulary (SimpleTokenizerV2 maps unknown words to <|unk|>)"),
                    )
                })
            })
            .collect()
    }

    /// Text of `ids`: tokens joined by spaces, without a space before punctuation.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let toks =
            ids.iter()
                .map(|&id| {
                    self.int_to_str.get(id as usize).map(String::as_str).ok_or(
                        Error::IndexOutOfRange {
                            op: "SimpleTokenizer::decode",
                            index: id as i64,
                            size: self.int_to_str.len(),
                        },
                    )
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(join_tokens(toks.into_iter()))
    }
}

/// `SimpleTokenizerV2`: the vocabulary plus `<|endoftext|>` and `<|unk|>`; unknown words become
/// `<|unk|>`.
#[derive(Clone, Debug)]
pub struct SimpleTokenizerV2 {
    inner: SimpleTokenizerV1,
    unk: u32,
}

impl SimpleTokenizerV2 {
    /// A tokenizer over `vocab` extended with `<|endoftext|>` and `<|unk|>` (unless present).
    pub fn new(mut vocab: Vec<String>) -> Self {
        for special in ["<|endoftext|>", "<|unk|>"] {
            if !vocab.iter().any(|v| v == special) {
                vocab.push(special.to_string());
            }
        }
        let inner = SimpleTokenizerV1::new(vocab);
        let unk = inner.str_to_int["<|unk|>"];
        SimpleTokenizerV2 { inner, unk }
    }

    /// The vocabulary of a text plus the two special tokens.
    pub fn from_text(text: &str) -> Self {
        Self::new(build_vocab(text))
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Token ids of `text`; unknown words map to `<|unk|>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        split_simple(text)
            .into_iter()
            .map(|t| self.inner.str_to_int.get(t).copied().unwrap_or(self.unk))
            .collect()
    }

    /// Text of `ids` (see [`SimpleTokenizerV1::decode`]).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids)
    }
}
