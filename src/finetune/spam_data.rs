//! The SMS Spam Collection for classification fine-tuning (book §6.2–6.3).
//!
//! The file is `label<TAB>text` per line, no header. We read it as plain lines: 5,574 messages
//! (4,827 ham, 747 spam). The book reads it with pandas, whose CSV parser treats a line starting
//! with a quote as the start of a quoted field and merges it with following lines — it sees
//! 5,572 rows. Both have 747 spam messages, so the balanced set (1,494) and its split
//! (1,045 / 149 / 300) have the book's sizes.
//!
//! The book's steps, each seeded: undersample ham to the number of spam messages, concatenate
//! (ham subset, then spam), shuffle, split 70 % / 10 % / 20 % (train size `⌊0.7·n⌋`, validation
//! `⌊0.1·n⌋`, test the rest); labels ham → 0, spam → 1. Then tokenize, pad every text with
//! `<|endoftext|>` (50256) to the longest *training* text, truncating validation and test texts
//! to that length (the book's `SpamDataset(max_length=train_dataset.max_length)`).

use std::path::Path;

use crate::data::text_file::read_text;
use crate::data::BpeTokenizer;
use crate::error::{Error, Result};
use crate::tensor::rng::Rng;

/// The padding id (`<|endoftext|>`).
pub const PAD_ID: u32 = 50256;

/// One labelled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// 0 = ham, 1 = spam.
    pub label: u8,
    pub text: String,
}

/// Parse the TSV: every non-empty line must be `ham<TAB>text` or `spam<TAB>text`.
pub fn parse_spam_tsv(text: &str, what: &str) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let Some((label, body)) = line.split_once('\t') else {
            return Err(Error::parse(
                what,
                format!("line {}: expected `label<TAB>text`, found no tab", i + 1),
            ));
        };
        let label = match label {
            "ham" => 0,
            "spam" => 1,
            other => {
                return Err(Error::parse(
                    what,
                    format!(
                        "line {}: label {other:?} is neither \"ham\" nor \"spam\"",
                        i + 1
                    ),
                ))
            }
        };
        out.push(Message {
            label,
            text: body.to_string(),
        });
    }
    if out.is_empty() {
        return Err(Error::parse(what, "no messages"));
    }
    Ok(out)
}

/// Read and parse the TSV file.
pub fn read_spam_tsv(path: impl AsRef<Path>) -> Result<Vec<Message>> {
    let path = path.as_ref();
    parse_spam_tsv(&read_text(path)?, &path.display().to_string())
}

/// The three splits, before tokenization.
#[derive(Clone, Debug)]
pub struct SpamSplits {
    pub train: Vec<Message>,
    pub validation: Vec<Message>,
    pub test: Vec<Message>,
}

/// Balance (undersample ham, seeded), shuffle (seeded) and split 70 / 10 / 20.
pub fn balance_and_split(messages: &[Message], seed: u64) -> Result<SpamSplits> {
    let spam: Vec<&Message> = messages.iter().filter(|m| m.label == 1).collect();
    let mut ham: Vec<&Message> = messages.iter().filter(|m| m.label == 0).collect();
    if spam.is_empty() || ham.len() < spam.len() {
        return Err(Error::invalid(
            "balance_and_split",
            format!(
                "{} ham and {} spam messages: need at least one spam and as many ham",
                ham.len(),
                spam.len()
            ),
        ));
    }
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut ham);
    ham.truncate(spam.len());
    let mut all: Vec<Message> = ham.into_iter().chain(spam).cloned().collect();
    rng.shuffle(&mut all);
    let n = all.len();
    let train_end = n * 7 / 10;
    let val_end = train_end + n / 10;
    let splits = SpamSplits {
        test: all.split_off(val_end),
        validation: all.split_off(train_end),
        train: all,
    };
    for (name, part) in [
        ("train", &splits.train),
        ("validation", &splits.validation),
        ("test", &splits.test),
    ] {
        if part.is_empty() {
            return Err(Error::invalid(
                "balance_and_split",
                format!("the {name} split is empty ({n} balanced messages)"),
            ));
        }
    }
    Ok(splits)
}

/// Tokenized, padded messages of one split.
#[derive(Clone, Debug)]
pub struct SpamDataset {
    /// Every row has `max_length` ids (padded with [`PAD_ID`]).
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<u8>,
    /// Number of real (non-padding) tokens of each row — where the last real token is, which is
    /// what the classifier should read (see the fine-tuning issue: the book's last-token choice
    /// reads padding for short texts).
    pub lengths: Vec<usize>,
    pub max_length: usize,
}

impl SpamDataset {
    /// Tokenize `messages`, truncating to `max_length` if given, else to the longest message;
    /// pad with [`PAD_ID`].
    pub fn new(
        messages: &[Message],
        tok: &BpeTokenizer,
        max_length: Option<usize>,
    ) -> Result<Self> {
        let encoded: Vec<Vec<u32>> = messages
            .iter()
            .map(|m| tok.encode(&m.text))
            .collect::<Result<_>>()?;
        let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
        let max_length = max_length.unwrap_or(longest);
        if max_length == 0 {
            return Err(Error::invalid("SpamDataset", "every message is empty"));
        }
        if let Some(i) = encoded.iter().position(Vec::is_empty) {
            return Err(Error::invalid(
                "SpamDataset",
                format!("message {i} is empty: there is no token to classify"),
            ));
        }
        let mut ids = Vec::with_capacity(encoded.len());
        let mut lengths = Vec::with_capacity(encoded.len());
        for mut e in encoded {
            e.truncate(max_length);
            lengths.push(e.len());
            e.resize(max_length, PAD_ID);
            ids.push(e);
        }
        Ok(SpamDataset {
            ids,
            labels: messages.iter().map(|m| m.label).collect(),
            lengths,
            max_length,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
