//! What a pretraining run reads: the bundled the-verdict, a text file, or a prepared folder of
//! token shards — opened into the same two datasets (training and validation windows), with the
//! tokenizer their ids belong to and an identity a checkpoint records, so a resume on other data
//! is refused instead of silently continuing at a meaningless position.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::data::manifest::{PreparedData, TokenizerRef, MANIFEST, TOKENIZER_DIR};
use crate::data::text_file::read_text;
use crate::data::{split_train_val, BpeTokenizer, GptDataset, TokenSource};
use crate::error::{Error, Result};

/// Where the tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSpec {
    /// `data/the-verdict.txt`, built into the binary.
    Bundled,
    /// A UTF-8 text file, tokenized at start-up and split by characters (`train_ratio`).
    TextFile(PathBuf),
    /// A folder written by `prepare-data` (its manifest decides the split and the tokenizer).
    Prepared(PathBuf),
}

impl DataSpec {
    /// `--data PATH`: a folder holding a manifest is prepared data, anything else a text file.
    pub fn from_path(path: Option<&Path>) -> Self {
        match path {
            None => DataSpec::Bundled,
            Some(p) if p.is_dir() || p.join(MANIFEST).exists() => {
                DataSpec::Prepared(p.to_path_buf())
            }
            Some(p) => DataSpec::TextFile(p.to_path_buf()),
        }
    }
}

/// The tokenizer a run uses: GPT-2's (built in) or one from a folder.
#[derive(Clone, Debug)]
pub struct RunTokenizer {
    pub tokenizer: Cow<'static, BpeTokenizer>,
    /// The folder it came from (`None` for GPT-2's).
    pub dir: Option<PathBuf>,
}

impl RunTokenizer {
    pub fn gpt2() -> Self {
        RunTokenizer {
            tokenizer: Cow::Borrowed(BpeTokenizer::gpt2()),
            dir: None,
        }
    }

    /// `gpt2` or a folder in the project's tokenizer format (`encoder.json` + `vocab.bpe`).
    pub fn from_arg(arg: &str) -> Result<Self> {
        if arg == "gpt2" {
            return Ok(Self::gpt2());
        }
        Ok(RunTokenizer {
            tokenizer: Cow::Owned(BpeTokenizer::from_dir(arg)?),
            dir: Some(PathBuf::from(arg)),
        })
    }

    /// How a checkpoint refers to it.
    pub fn reference(&self) -> TokenizerRef {
        match self.dir {
            None => TokenizerRef::Gpt2,
            Some(_) => TokenizerRef::Folder,
        }
    }
}

/// A run's data, opened.
pub struct TrainingData {
    pub train: GptDataset,
    pub val: GptDataset,
    pub tokenizer: RunTokenizer,
    /// Characters (text) or bytes (prepared) of source text, for the log.
    pub describe: String,
    /// What a checkpoint records: the kind of source, its path, the token counts.
    pub identity: Value,
}

impl TrainingData {
    /// Opens `spec` with windows of `context` tokens (stride = context, as the book's training).
    /// `tokenizer` is the one asked for (`None`: GPT-2's, or a prepared folder's own); a
    /// prepared folder made with another tokenizer is refused.
    pub fn open(
        spec: &DataSpec,
        context: usize,
        train_ratio: f64,
        tokenizer: Option<RunTokenizer>,
    ) -> Result<Self> {
        match spec {
            DataSpec::Bundled | DataSpec::TextFile(_) => {
                let (text, source) = match spec {
                    DataSpec::TextFile(p) => (Cow::Owned(read_text(p)?), p.display().to_string()),
                    _ => (
                        Cow::Borrowed(include_str!("../../data/the-verdict.txt")),
                        "the-verdict (bundled)".to_string(),
                    ),
                };
                let tokenizer = tokenizer.unwrap_or_else(RunTokenizer::gpt2);
                let (train_text, val_text) = split_train_val(&text, train_ratio)?;
                let windows = |t: &str, which: &str| -> Result<(GptDataset, usize)> {
                    let ids = tokenizer
                        .tokenizer
                        .encode_with_special(t, &["<|endoftext|>"])?;
                    let n = ids.len();
                    let ds = GptDataset::new(&ids, context, context).map_err(|e| {
                        Error::invalid(
                            "train",
                            format!(
                                "the {which} split ({} characters, {n} tokens) is too short for context {context}: {e}",
                                t.chars().count()
                            ),
                        )
                    })?;
                    Ok((ds, n))
                };
                let (train, train_tokens) = windows(train_text, "training")?;
                let (val, val_tokens) = windows(val_text, "validation")?;
                Ok(TrainingData {
                    train,
                    val,
                    describe: format!("{} characters", text.chars().count()),
                    identity: json!({"kind": "text", "path": source, "train_ratio": train_ratio,
                                     "train_tokens": train_tokens, "val_tokens": val_tokens}),
                    tokenizer,
                })
            }
            DataSpec::Prepared(dir) => {
                let data = PreparedData::open(dir)?;
                let m = &data.manifest;
                let own = match m.tokenizer {
                    TokenizerRef::Gpt2 => RunTokenizer::gpt2(),
                    TokenizerRef::Folder => {
                        RunTokenizer::from_arg(&dir.join(TOKENIZER_DIR).display().to_string())?
                    }
                };
                if let Some(asked) = &tokenizer {
                    if asked.tokenizer.merges() != own.tokenizer.merges()
                        || asked.tokenizer.vocab_size() != own.tokenizer.vocab_size()
                    {
                        return Err(Error::invalid(
                            "train",
                            format!(
                                "{} was prepared with another tokenizer than --tokenizer gives; leave --tokenizer out to use the folder's own",
                                dir.display()
                            ),
                        ));
                    }
                }
                if own.tokenizer.vocab_size() != m.vocab_size {
                    return Err(Error::parse(
                        dir.join(MANIFEST).display().to_string(),
                        format!(
                            "the manifest says {} ids, its tokenizer has {}",
                            m.vocab_size,
                            own.tokenizer.vocab_size()
                        ),
                    ));
                }
                let val = data.val.ok_or_else(|| {
                    Error::invalid(
                        "train",
                        format!(
                            "{} has no validation shards (prepared with --val-fraction 0)",
                            dir.display()
                        ),
                    )
                })?;
                let windows = |set, which: &str| {
                    GptDataset::from_source(TokenSource::Shards(Arc::new(set)), context, context)
                        .map_err(|e| {
                            Error::invalid(
                                "train",
                                format!(
                                    "the {which} shards are too short for context {context}: {e}"
                                ),
                            )
                        })
                };
                let (train_tokens, val_tokens) = (data.train.len(), val.len());
                Ok(TrainingData {
                    train: windows(data.train, "training")?,
                    val: windows(val, "validation")?,
                    describe: format!(
                        "{} documents, {:.1} MB of text prepared into {} + {} tokens",
                        m.documents,
                        m.source_bytes as f64 / 1e6,
                        train_tokens,
                        val_tokens
                    ),
                    identity: json!({"kind": "prepared", "path": dir.display().to_string(),
                                     "train_tokens": train_tokens, "val_tokens": val_tokens}),
                    tokenizer: own,
                })
            }
        }
    }
}

/// Refuses to resume a run on other data than it trained on: the kind of source and the token
/// counts must match (the path may differ — a folder can move).
pub fn check_same_data(recorded: &Value, now: &Value) -> Result<()> {
    for key in ["kind", "train_tokens", "val_tokens"] {
        if recorded.get(key).is_some() && recorded[key] != now[key] {
            return Err(Error::invalid(
                "train --resume",
                format!(
                    "the checkpoint trained on {} ({} {}), but this run's data is {} ({} {}); resume with the same --data",
                    recorded["path"], key, recorded[key], now["path"], key, now[key]
                ),
            ));
        }
    }
    Ok(())
}
