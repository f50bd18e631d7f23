//! `prepare-data`: files and folders of text → token shards (the book's Project Gutenberg bonus,
//! nanoGPT's and llm.c's shards, done once so that training reads tokens, not text).
//!
//! Each document (file) is split by characters as the book splits the-verdict: its first
//! `1 − val_fraction` goes to the training stream, the rest to the validation stream. So a
//! single file prepared here yields exactly the tokens `train --data FILE` trains and validates
//! on, and a corpus of many files has a validation set drawn from all of them. Documents are
//! separated by `<|endoftext|>` in each stream (GPT-2's convention), not followed by one.
//!
//! Files are read and tokenized in parallel (rayon, in chunks, in order) and written in input
//! order, so the shards do not depend on the thread count. A file that cannot be used —
//! unreadable, binary, not UTF-8, empty — is skipped and reported with its reason, or refused
//! with `strict`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::dataset::split_train_val;
use super::manifest::{Manifest, ShardEntry, SkippedFile, TokenizerRef, MANIFEST, TOKENIZER_DIR};
use super::shards::ShardWriter;
use super::BpeTokenizer;
use crate::error::{Error, Result};

/// Settings of [`prepare`].
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Fraction of each document (by characters, from its end) held out for validation.
    pub val_fraction: f64,
    /// Tokens per shard before starting the next one.
    pub shard_tokens: u64,
    /// Cut Project Gutenberg's license header and footer where their markers are found.
    pub strip_gutenberg: bool,
    /// Refuse (instead of skipping) a file that cannot be used.
    pub strict: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            val_fraction: 0.1,
            shard_tokens: 100_000_000,
            strip_gutenberg: false,
            strict: false,
        }
    }
}

/// What [`prepare`] did.
#[derive(Clone, Debug)]
pub struct PrepareReport {
    pub manifest: Manifest,
    /// Documents whose Gutenberg header or footer was cut.
    pub gutenberg_stripped: usize,
    pub secs: f64,
}

impl PrepareReport {
    /// Source megabytes (10⁶ bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.manifest.source_bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

/// Every file under `inputs` (files as given, folders walked recursively, hidden entries
/// skipped), sorted within each folder so the order — and the shards — are reproducible.
pub fn collect_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_dir() {
            walk(input, &mut files)?;
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Lines that open and close the body of a Project Gutenberg text (the common forms of the
/// markers the book's bonus script strips through the `gutenberg` package).
const GUTENBERG_START: &[&str] = &[
    "*** START OF THE PROJECT GUTENBERG",
    "*** START OF THIS PROJECT GUTENBERG",
    "***START OF THE PROJECT GUTENBERG",
    "*** START OF PROJECT GUTENBERG",
    "*END*THE SMALL PRINT!",
];
const GUTENBERG_END: &[&str] = &[
    "*** END OF THE PROJECT GUTENBERG",
    "*** END OF THIS PROJECT GUTENBERG",
    "***END OF THE PROJECT GUTENBERG",
    "*** END OF PROJECT GUTENBERG",
    "End of the Project Gutenberg EBook",
    "End of Project Gutenberg's",
    "End of The Project Gutenberg",
];

/// The body of a Project Gutenberg text: after the line holding a start marker and before the
/// line holding an end marker (either side kept when its marker is absent). Returns the body
/// and whether anything was cut.
pub fn strip_gutenberg(text: &str) -> (&str, bool) {
    let line_start = |i: usize| text[..i].rfind('\n').map_or(0, |p| p + 1);
    let mut body = text;
    let mut cut = false;
    if let Some(i) = GUTENBERG_START.iter().filter_map(|m| text.find(m)).min() {
        let after = text[i..].find('\n').map_or(text.len(), |p| i + p + 1);
        body = &text[after..];
        cut = true;
    }
    let offset = body.as_ptr() as usize - text.as_ptr() as usize;
    if let Some(i) = GUTENBERG_END.iter().filter_map(|m| body.find(m)).min() {
        let start = line_start(offset + i) - offset;
        body = &body[..start];
        cut = true;
    }
    (body.trim_matches(|c| c == '\n' || c == '\r'), cut)
}

/// Reads one input as text, or says why it cannot be used.
fn read_document(path: &Path) -> std::result::Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    if bytes.is_empty() {
        return Err("empty".into());
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("binary (a NUL byte at offset {at})"));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// One document's tokens, or why it was skipped.
struct Tokenized {
    train: Vec<u32>,
    val: Vec<u32>,
    bytes: u64,
    stripped: bool,
}

fn tokenize_document(
    path: &Path,
    tok: &BpeTokenizer,
    opts: &PrepareOptions,
) -> std::result::Result<Tokenized, String> {
    let text = read_document(path)?;
    let bytes = text.len() as u64;
    let (body, stripped) = if opts.strip_gutenberg {
        strip_gutenberg(&text)
    } else {
        (text.as_str(), false)
    };
    if body.trim().is_empty() {
        return Err(if stripped {
            "empty after cutting the Project Gutenberg header and footer".into()
        } else {
            "only whitespace".into()
        });
    }
    let (train, val) = split_train_val(body, 1.0 - opts.val_fraction).map_err(|e| e.to_string())?;
    let encode = |t: &str| -> std::result::Result<Vec<u32>, String> {
        tok.encode_with_special(t, &["<|endoftext|>"])
            .map_err(|e| format!("cannot be tokenized: {e}"))
    };
    Ok(Tokenized {
        train: encode(train)?,
        val: encode(val)?,
        bytes,
        stripped,
    })
}

/// One stream of shards (`train_000000.bin`, …): documents separated by `<|endoftext|>`.
struct ShardStream {
    dir: PathBuf,
    prefix: &'static str,
    vocab_size: usize,
    shard_tokens: u64,
    eot: u32,
    current: Option<ShardWriter>,
    done: Vec<ShardEntry>,
    any_document: bool,
}

impl ShardStream {
    fn new(
        dir: &Path,
        prefix: &'static str,
        vocab_size: usize,
        shard_tokens: u64,
        eot: u32,
    ) -> Self {
        ShardStream {
            dir: dir.to_path_buf(),
            prefix,
            vocab_size,
            shard_tokens,
            eot,
            current: None,
            done: Vec::new(),
            any_document: false,
        }
    }

    fn push_document(&mut self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.any_document {
            self.push(&[self.eot])?;
        }
        self.any_document = true;
        self.push(ids)
    }

    fn push(&mut self, mut ids: &[u32]) -> Result<()> {
        while !ids.is_empty() {
            if self.current.is_none() {
                let name = format!("{}_{:06}.bin", self.prefix, self.done.len());
                self.current = Some(ShardWriter::create(self.dir.join(name), self.vocab_size)?);
            }
            let w = self.current.as_mut().expect("just opened");
            let room = (self.shard_tokens - w.len()) as usize;
            let (now, rest) = ids.split_at(room.min(ids.len()));
            w.write(now)?;
            ids = rest;
            if w.len() >= self.shard_tokens {
                self.close()?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let tokens = w.len();
            let path = w.finish()?;
            self.done.push(ShardEntry {
                file: path
                    .file_name()
                    .expect("a shard file name")
                    .to_string_lossy()
                    .into_owned(),
                tokens,
            });
        }
        Ok(())
    }
}

/// Tokenizes `files` into shards in `out` (created; refused if it already holds prepared data),
/// writing the manifest last. `tokenizer_dir` is the folder a custom tokenizer came from (copied
/// into `out/tokenizer`), `None` for GPT-2's. `progress(bytes_done, bytes_total)` is called as
/// chunks of files finish.
pub fn prepare(
    files: &[PathBuf],
    out: &Path,
    tok: &BpeTokenizer,
    custom_tokenizer: bool,
    opts: &PrepareOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<PrepareReport> {
    let started = Instant::now();
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::invalid(
            "prepare-data",
            format!(
                "--val-fraction must be in [0, 1), got {}",
                opts.val_fraction
            ),
        ));
    }
    if opts.shard_tokens == 0 {
        return Err(Error::invalid(
            "prepare-data",
            "--shard-tokens must be at least 1",
        ));
    }
    let eot = tok.special_id("<|endoftext|>").ok_or_else(|| {
        Error::invalid(
            "prepare-data",
            "the tokenizer has no <|endoftext|> token to separate documents (train it with --special '<|endoftext|>')",
        )
    })?;
    if files.is_empty() {
        return Err(Error::invalid("prepare-data", "no input files"));
    }
    if out.join(MANIFEST).exists() {
        return Err(Error::invalid(
            "prepare-data",
            format!(
                "{} already holds prepared data; choose another --out or delete it",
                out.display()
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    if custom_tokenizer {
        tok.save(out.join(TOKENIZER_DIR))?;
    }
    let vocab_size = tok.vocab_size();
    let mut train = ShardStream::new(out, "train", vocab_size, opts.shard_tokens, eot);
    let mut val = ShardStream::new(out, "val", vocab_size, opts.shard_tokens, eot);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let total_bytes: u64 = sizes.iter().sum();
    let (mut done_bytes, mut documents, mut source_bytes, mut stripped) = (0u64, 0, 0u64, 0);
    let mut skipped = Vec::new();
    // Chunks of about 64 MB (or 256 files) bound the memory held between tokenizing and writing.
    let mut start = 0;
    while start < files.len() {
        let mut end = start;
        let mut chunk_bytes = 0;
        while end < files.len() && (end == start || (chunk_bytes < 64 << 20 && end - start < 256)) {
            chunk_bytes += sizes[end];
            end += 1;
        }
        let results: Vec<_> = files[start..end]
            .par_iter()
            .map(|f| tokenize_document(f, tok, opts))
            .collect();
        for (path, result) in files[start..end].iter().zip(results) {
            match result {
                Ok(doc) => {
                    documents += 1;
                    source_bytes += doc.bytes;
                    stripped += doc.stripped as usize;
                    train.push_document(&doc.train)?;
                    val.push_document(&doc.val)?;
                }
                Err(reason) if opts.strict => {
                    return Err(Error::invalid(
                        "prepare-data",
                        format!("{}: {reason} (--strict)", path.display()),
                    ))
                }
                Err(reason) => skipped.push(SkippedFile {
                    path: path.display().to_string(),
                    reason,
                }),
            }
        }
        done_bytes += chunk_bytes;
        progress(done_bytes, total_bytes);
        start = end;
    }
    train.close()?;
    val.close()?;
    let manifest = Manifest {
        tokenizer: if custom_tokenizer {
            TokenizerRef::Folder
        } else {
            TokenizerRef::Gpt2
        },
        vocab_size,
        train: train.done,
        val: val.done,
        documents,
        source_bytes,
        val_fraction: opts.val_fraction,
        strip_gutenberg: opts.strip_gutenberg,
        skipped,
    };
    manifest.save(out)?;
    Ok(PrepareReport {
        manifest,
        gutenberg_stripped: stripped,
        secs: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gutenberg_markers_cut_header_and_footer() {
        let t = "The Project Gutenberg eBook of X\nlicense\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\nBody line one.\nBody two.\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nmore license\n";
        assert_eq!(strip_gutenberg(t), ("Body line one.\nBody two.", true));
        assert_eq!(strip_gutenberg("plain text"), ("plain text", false));
    }
}
