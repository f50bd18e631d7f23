//! A prepared corpus on disk: `manifest.json` beside its token shards (`shards.rs`), and the
//! tokenizer it was made with. The manifest is written last, so its presence means the
//! preparation finished; training opens the shards it lists and checks them against it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::shards::ShardSet;
use super::text_file::write_atomic;
use crate::error::{Error, Result};

/// The manifest's file name inside a prepared folder.
pub const MANIFEST: &str = "manifest.json";
/// Where a prepared folder (or a run folder) keeps a tokenizer that is not GPT-2's, in the one
/// tokenizer format of the project (GPT-2's `encoder.json` + `vocab.bpe`).
pub const TOKENIZER_DIR: &str = "tokenizer";

/// Which tokenizer made a corpus or a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerRef {
    /// GPT-2's BPE, built into the binary.
    Gpt2,
    /// A folder beside the manifest or checkpoint ([`TOKENIZER_DIR`]).
    Folder,
}

impl TokenizerRef {
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenizerRef::Gpt2 => "gpt2",
            TokenizerRef::Folder => TOKENIZER_DIR,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gpt2" => Some(TokenizerRef::Gpt2),
            TOKENIZER_DIR => Some(TokenizerRef::Folder),
            _ => None,
        }
    }
}

/// One shard as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardEntry {
    pub file: String,
    pub tokens: u64,
}

/// A file that `prepare-data` left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What `manifest.json` records.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub tokenizer: TokenizerRef,
    pub vocab_size: usize,
    pub train: Vec<ShardEntry>,
    pub val: Vec<ShardEntry>,
    pub documents: usize,
    pub source_bytes: u64,
    pub val_fraction: f64,
    pub strip_gutenberg: bool,
    pub skipped: Vec<SkippedFile>,
}

impl Manifest {
    pub fn train_tokens(&self) -> u64 {
        self.train.iter().map(|s| s.tokens).sum()
    }

    pub fn val_tokens(&self) -> u64 {
        self.val.iter().map(|s| s.tokens).sum()
    }

    pub fn to_json(&self) -> Value {
        let shards = |v: &[ShardEntry]| -> Value {
            v.iter()
                .map(|s| json!({"file": s.file, "tokens": s.tokens}))
                .collect()
        };
        json!({
            "format": "scratchgpt-token-shards",
            "version": super::shards::VERSION,
            "tokenizer": self.tokenizer.as_str(),
            "vocab_size": self.vocab_size,
            "train": shards(&self.train),
            "val": shards(&self.val),
            "train_tokens": self.train_tokens(),
            "val_tokens": self.val_tokens(),
            "documents": self.documents,
            "source_bytes": self.source_bytes,
            "val_fraction": self.val_fraction,
            "strip_gutenberg": self.strip_gutenberg,
            "skipped": self.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Value>(),
        })
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())
            .map_err(|e| Error::invalid("Manifest::save", e.to_string()))?;
        write_atomic(dir.join(MANIFEST), text.as_bytes())
    }

    /// Reads `dir/manifest.json`, naming what is missing or malformed.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let what = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::parse(
                    what.clone(),
                    "no manifest.json: not a prepared folder (make one with `scratchgpt prepare-data`), or its preparation did not finish",
                )
            } else {
                Error::io(&path, e)
            }
        })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::parse(what.clone(), format!("not valid JSON: {e}")))?;
        let bad = |msg: &str| Error::parse(what.clone(), msg.to_string());
        if v["format"] != "scratchgpt-token-shards" {
            return Err(bad("not a scratchgpt token-shard manifest"));
        }
        let shards = |key: &str| -> Result<Vec<ShardEntry>> {
            v[key]
                .as_array()
                .ok_or_else(|| bad(&format!("missing the {key} shard list")))?
                .iter()
                .map(|s| {
                    Ok(ShardEntry {
                        file: s["file"]
                            .as_str()
                            .filter(|f| !f.contains('/') && !f.contains('\\'))
                            .ok_or_else(|| bad(&format!("a {key} shard has no plain file name")))?
                            .to_string(),
                        tokens: s["tokens"]
                            .as_u64()
                            .ok_or_else(|| bad(&format!("a {key} shard has no token count")))?,
                    })
                })
                .collect()
        };
        Ok(Manifest {
            tokenizer: v["tokenizer"]
                .as_str()
                .and_then(TokenizerRef::parse)
                .ok_or_else(|| bad("tokenizer must be \"gpt2\" or \"tokenizer\""))?,
            vocab_size: v["vocab_size"]
                .as_u64()
                .ok_or_else(|| bad("missing vocab_size"))? as usize,
            train: shards("train")?,
            val: shards("val")?,
            documents: v["documents"].as_u64().unwrap_or(0) as usize,
            source_bytes: v["source_bytes"].as_u64().unwrap_or(0),
            val_fraction: v["val_fraction"].as_f64().unwrap_or(0.0),
            strip_gutenberg: v["strip_gutenberg"].as_bool().unwrap_or(false),
            skipped: v["skipped"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| SkippedFile {
                            path: s["path"].as_str().unwrap_or("?").to_string(),
                            reason: s["reason"].as_str().unwrap_or("?").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A prepared folder, opened: its manifest and its shards, memory-mapped.
#[derive(Debug)]
pub struct PreparedData {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub train: ShardSet,
    /// `None` when prepared with `--val-fraction 0`.
    pub val: Option<ShardSet>,
}

impl PreparedData {
    /// Opens `dir`: the manifest, then every shard it lists, checking each shard's token count
    /// and vocabulary against the manifest.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::load(&dir)?;
        let open = |entries: &[ShardEntry], which: &str| -> Result<Option<ShardSet>> {
            if entries.is_empty() {
                return Ok(None);
            }
            let paths: Vec<PathBuf> = entries.iter().map(|e| dir.join(&e.file)).collect();
            let set = ShardSet::open(&paths)?;
            let expected: u64 = entries.iter().map(|e| e.tokens).sum();
            if set.len() != expected || set.vocab_size() != manifest.vocab_size {
                return Err(Error::parse(
                    dir.join(MANIFEST).display().to_string(),
                    format!(
                        "the {which} shards hold {} tokens of a {}-id vocabulary; the manifest says {expected} tokens of {}",
                        set.len(),
                        set.vocab_size(),
                        manifest.vocab_size
                    ),
                ));
            }
            Ok(Some(set))
        };
        let train = open(&manifest.train, "training")?.ok_or_else(|| {
            Error::parse(
                dir.join(MANIFEST).display().to_string(),
                "no training shards (every input was skipped or empty)",
            )
        })?;
        let val = open(&manifest.val, "validation")?;
        Ok(PreparedData {
            dir,
            manifest,
            train,
            val,
        })
    }
}
