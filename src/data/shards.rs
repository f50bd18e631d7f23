//! Token shards: a corpus tokenized once (`scratchgpt prepare-data`) and read back by training
//! through memory maps, so a corpus of many gigabytes costs a few pages of memory.
//!
//! A shard is a 32-byte little-endian header followed by the tokens:
//!
//! | bytes  | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0..8   | magic `b"SGPTTOKS"`                                 |
//! | 8..12  | format version (1)                                  |
//! | 12..16 | bytes per token: 2 (u16) or 4 (u32)                 |
//! | 16..20 | vocabulary size (every token is below it)           |
//! | 20..24 | reserved (0)                                        |
//! | 24..32 | token count                                         |
//!
//! u16 holds any vocabulary up to 65,536 ids (GPT-2's 50,257 included); larger vocabularies use
//! u32. The header makes a shard self-describing: a truncated file, a file of another kind or a
//! token beyond the vocabulary is refused by name instead of being read as garbage.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::error::{Error, Result};

/// The first eight bytes of every shard.
pub const MAGIC: &[u8; 8] = b"SGPTTOKS";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 32;

/// Bytes per token for a vocabulary: u16 while every id fits.
pub fn token_bytes_for(vocab_size: usize) -> u32 {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// What a shard's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub token_bytes: u32,
    pub vocab_size: u32,
    pub tokens: u64,
}

impl ShardHeader {
    fn to_bytes(self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.token_bytes.to_le_bytes());
        h[16..20].copy_from_slice(&self.vocab_size.to_le_bytes());
        h[24..32].copy_from_slice(&self.tokens.to_le_bytes());
        h
    }

    /// Parses and checks a header against the file's length.
    fn parse(bytes: &[u8], file_len: u64, what: &str) -> Result<Self> {
        let bad = |msg: String| Error::parse(what.to_string(), msg);
        if bytes.len() < HEADER_BYTES || &bytes[0..8] != MAGIC {
            return Err(bad(
                "not a scratchgpt token shard (no SGPTTOKS header); make shards with `scratchgpt prepare-data`".into(),
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "shard format version {version}; this build reads version {VERSION}"
            )));
        }
        let token_bytes = u32_at(12);
        if token_bytes != 2 && token_bytes != 4 {
            return Err(bad(format!(
                "{token_bytes} bytes per token (expected 2 or 4)"
            )));
        }
        let tokens = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
        let expected = HEADER_BYTES as u64 + tokens * token_bytes as u64;
        if file_len != expected {
            return Err(bad(format!(
                "the header promises {tokens} tokens ({expected} bytes) but the file has {file_len} bytes (truncated or corrupt)"
            )));
        }
        Ok(ShardHeader {
            token_bytes,
            vocab_size: u32_at(16),
            tokens,
        })
    }
}

/// Writes one shard: tokens stream into a temporary file through a buffer; `finish` writes the
/// final count into the header, syncs and renames — an interrupted write leaves no shard.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    header: ShardHeader,
}

impl ShardWriter {
    pub fn create(path: impl AsRef<Path>, vocab_size: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = path.with_extension("bin.partial");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let header = ShardHeader {
            token_bytes: token_bytes_for(vocab_size),
            vocab_size: vocab_size as u32,
            tokens: 0,
        };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header.to_bytes())
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(ShardWriter {
            path,
            tmp,
            out,
            header,
        })
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.header.tokens
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.header.tokens == 0
    }

    /// Appends tokens; an id at or beyond the vocabulary is an error (it would be unreadable).
    pub fn write(&mut self, ids: &[u32]) -> Result<()> {
        let vocab = self.header.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&t| t >= vocab) {
            return Err(Error::invalid(
                "ShardWriter",
                format!("token {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        let io = |e| Error::io(&self.tmp, e);
        if self.header.token_bytes == 2 {
            let bytes: Vec<u8> = ids.iter().flat_map(|&t| (t as u16).to_le_bytes()).collect();
            self.out.write_all(&bytes).map_err(io)?;
        } else {
            let bytes: Vec<u8> = ids.iter().flat_map(|&t| t.to_le_bytes()).collect();
            self.out.write_all(&bytes).map_err(io)?;
        }
        self.header.tokens += ids.len() as u64;
        Ok(())
    }

    /// Completes the shard: header with the final count, fsync, rename into place.
    pub fn finish(self) -> Result<PathBuf> {
        let ShardWriter {
            path,
            tmp,
            out,
            header,
        } = self;
        let io = |e| Error::io(&tmp, e);
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header.to_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

/// One shard, memory-mapped.
struct MappedShard {
    map: Mmap,
    header: ShardHeader,
}

/// Several shards read as one token sequence (a window may cross from one shard into the next).
/// Reads copy the tokens out and then tell the kernel the pages are no longer needed, so the
/// resident memory stays at a batch's pages however large the corpus is.
pub struct ShardSet {
    shards: Vec<MappedShard>,
    /// `starts[i]`: index of shard i's first token in the sequence; the last entry is the total.
    starts: Vec<u64>,
    vocab_size: u32,
}

impl std::fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSet")
            .field("shards", &self.shards.len())
            .field("tokens", &self.len())
            .finish()
    }
}

impl ShardSet {
    /// Maps `paths` in order; every shard must share one vocabulary.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::invalid("ShardSet", "no shards given"));
        }
        let mut shards = Vec::with_capacity(paths.len());
        let mut starts = vec![0u64];
        let mut vocab_size = None;
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
            // SAFETY: the map is read-only and private to this process. Shards are written once
            // (to a temporary name, then renamed into place) and never modified in place, so no
            // other writer changes the bytes under the map while we hold it; a user truncating a
            // shard mid-run would be the one way to fault, which no safe API can rule out for
            // memory maps (it is why memmap2 marks `map` unsafe).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let what = path.display().to_string();
            let header = ShardHeader::parse(&map, len, &what)?;
            // Windows are read in shuffled order: read-ahead would only pull in pages nobody
            // asked for.
            let _ = map.advise(Advice::Random);
            match vocab_size {
                None => vocab_size = Some(header.vocab_size),
                Some(v) if v != header.vocab_size => {
                    return Err(Error::parse(
                        what,
                        format!(
                            "vocabulary of {} ids, but the other shards have {v}",
                            header.vocab_size
                        ),
                    ))
                }
                Some(_) => {}
            }
            starts.push(starts.last().expect("non-empty") + header.tokens);
            shards.push(MappedShard { map, header });
        }
        Ok(ShardSet {
            shards,
            starts,
            vocab_size: vocab_size.expect("at least one shard"),
        })
    }

    /// Total tokens over all shards.
    pub fn len(&self) -> u64 {
        *self.starts.last().expect("non-empty")
    }

    /// Whether the shards hold no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vocabulary size the shards were written for.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size as usize
    }

    /// Copies tokens `start .. start + out.len()` of the sequence into `out`, crossing shard
    /// boundaries as needed, then releases the pages it touched.
    pub fn read(&self, start: u64, out: &mut [i64]) -> Result<()> {
        let end = start + out.len() as u64;
        if end > self.len() {
            return Err(Error::IndexOutOfRange {
                op: "ShardSet::read",
                index: end as i64,
                size: self.len() as usize,
            });
        }
        let mut pos = start;
        let mut written = 0;
        while pos < end {
            // The shard holding `pos`: the last whose start is ≤ pos.
            let i = self.starts.partition_point(|&s| s <= pos) - 1;
            let shard = &self.shards[i];
            let local = (pos - self.starts[i]) as usize;
            let take = ((self.starts[i + 1] - pos) as usize).min((end - pos) as usize);
            let tb = shard.header.token_bytes as usize;
            let from = HEADER_BYTES + local * tb;
            let bytes = &shard.map[from..from + take * tb];
            let dst = &mut out[written..written + take];
            if tb == 2 {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = u16::from_le_bytes([b[0], b[1]]) as i64;
                }
            } else {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = u32::from_le_bytes(b.try_into().expect("4 bytes")) as i64;
                }
            }
            release_pages(&shard.map, from, take * tb);
            pos += take as u64;
            written += take;
        }
        Ok(())
    }
}

/// Drops the pages around `map[from..from + len]` from this process's resident set. A page
/// fault maps more than the page it hits: the cached pages of an aligned block around it
/// ("fault-around", 64 KB by default) and, on kernels with large page-cache folios, the whole
/// folio — up to 2 MB. So the 2 MB-aligned range around the read is released, not only the bytes
/// read; otherwise random windows leave most of a corpus mapped (measured: 0.6 MB per 2 KB
/// window on Linux 6.x). The next read of those pages maps them again from the page cache (or
/// the disk): nothing is lost.
fn release_pages(map: &Mmap, from: usize, len: usize) {
    const BLOCK: usize = 2 << 20;
    let start = from / BLOCK * BLOCK;
    let end = (from + len).div_ceil(BLOCK) * BLOCK;
    let end = end.min(map.len());
    if end > start {
        // SAFETY: `MADV_DONTNEED` on a read-only, file-backed private mapping that was never
        // written discards only clean copies of file pages: later accesses read the same bytes
        // from the file again. No reference into these pages outlives this call (the tokens were
        // copied out above), so no Rust reference observes the pages being dropped.
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_shards_and_widths() {
        let dir = std::env::temp_dir().join(format!("sg-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for vocab in [50_257usize, 100_000] {
            let ids: Vec<u32> = (0..10_000u32).map(|i| (i * 7919) % vocab as u32).collect();
            let mut paths = Vec::new();
            for (k, chunk) in ids.chunks(3_333).enumerate() {
                let mut w =
                    ShardWriter::create(dir.join(format!("s{vocab}-{k}.bin")), vocab).unwrap();
                w.write(chunk).unwrap();
                paths.push(w.finish().unwrap());
            }
            let set = ShardSet::open(&paths).unwrap();
            assert_eq!(set.len(), 10_000);
            let mut out = vec![0i64; 5000];
            set.read(1000, &mut out).unwrap();
            let expect: Vec<i64> = ids[1000..6000].iter().map(|&t| t as i64).collect();
            assert_eq!(out, expect);
            assert!(set.read(9_000, &mut out).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
