//! `scratchgpt bench corpus`: what a large corpus costs. (1) Resident memory while training
//! reads batches from memory-mapped shards, for corpora of several sizes — each measured in a
//! fresh process, since a process's peak (`VmHWM`) only grows — against what holding the tokens
//! in memory would take. (2) `prepare-data`'s throughput on a generated text corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context};
use scratchgpt::data::manifest::{Manifest, PreparedData, ShardEntry, TokenizerRef};
use scratchgpt::data::prepare::{collect_files, prepare, PrepareOptions};
use scratchgpt::data::shards::ShardWriter;
use scratchgpt::data::{BpeTokenizer, DataLoader, GptDataset, TokenSource};

#[derive(clap::Args)]
pub struct CorpusBenchArgs {
    /// Corpus sizes in GB of u16 tokens (2 bytes each), comma-separated.
    #[arg(long, default_value = "0.25,1,4", value_delimiter = ',')]
    gigabytes: Vec<f64>,
    /// Where to write the generated corpora (deleted afterwards; needs the largest size free).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Batches to read from each corpus, in shuffled order (as training reads them).
    #[arg(long, default_value_t = 20_000)]
    batches: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 1024)]
    context: usize,
    /// Megabytes of generated text for the prepare-data throughput (0 skips it).
    #[arg(long, default_value_t = 200)]
    prepare_mb: usize,
    /// Internal: measure one prepared folder in this process and print one result line.
    #[arg(long, hide = true)]
    measure: Option<PathBuf>,
}

/// Resident memory now and at its peak (Linux `VmRSS`, `VmHWM`), in bytes.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MB: f64 = 1e6;

/// Writes `tokens` pseudo-random GPT-2 ids as shards of 100M tokens, and a manifest.
fn write_corpus(dir: &Path, tokens: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let per_shard = 100_000_000u64;
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut entries = Vec::new();
    let mut chunk = vec![0u32; 1 << 20];
    let mut left = tokens;
    let mut k = 0;
    while left > 0 {
        let n = left.min(per_shard);
        let file = format!("train_{k:06}.bin");
        let mut w = ShardWriter::create(dir.join(&file), 50_257)?;
        let mut written = 0;
        while written < n {
            let m = ((n - written) as usize).min(chunk.len());
            for t in &mut chunk[..m] {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *t = ((state >> 33) % 50_257) as u32;
            }
            w.write(&chunk[..m])?;
            written += m as u64;
        }
        w.finish()?;
        entries.push(ShardEntry { file, tokens: n });
        left -= n;
        k += 1;
    }
    let mut val = ShardWriter::create(dir.join("val_000000.bin"), 50_257)?;
    val.write(&chunk[..100_000])?;
    val.finish()?;
    Manifest {
        tokenizer: TokenizerRef::Gpt2,
        vocab_size: 50_257,
        train: entries,
        val: vec![ShardEntry {
            file: "val_000000.bin".into(),
            tokens: 100_000,
        }],
        documents: 1,
        source_bytes: 0,
        val_fraction: 0.0,
        strip_gutenberg: false,
        skipped: Vec::new(),
    }
    .save(dir)?;
    Ok(())
}

/// Opens `dir` as training does and reads `a.batches` shuffled batches; prints
/// `rss_before rss_after hwm tokens secs`.
fn measure(dir: &Path, a: &CorpusBenchArgs) -> anyhow::Result<ExitCode> {
    let (before, _) = rss();
    let data = PreparedData::open(dir)?;
    let tokens = data.train.len();
    let ds = GptDataset::from_source(
        TokenSource::Shards(std::sync::Arc::new(data.train)),
        a.context,
        a.context,
    )?;
    let mut loader = DataLoader::new(ds, a.batch_size, true, true, 1)?;
    let order = loader.epoch_order();
    let t0 = Instant::now();
    let mut checksum = 0i64;
    for i in 0..a.batches.min(order.len()) {
        let b = loader.batch(order.batch(i))?;
        checksum = checksum.wrapping_add(b.inputs.data()[0]);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (after, hwm) = rss();
    println!("{before} {after} {hwm} {tokens} {secs} {checksum}");
    Ok(ExitCode::SUCCESS)
}

/// Text for the throughput measurement: words drawn (seeded, Zipf-like) from the-verdict's
/// vocabulary, in lines and paragraphs, so the tokenizer sees varied natural-looking text.
fn write_text_corpus(dir: &Path, megabytes: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let verdict = include_str!("../../data/the-verdict.txt");
    let mut words: Vec<&str> = verdict.split_whitespace().collect();
    words.sort_unstable();
    words.dedup();
    let mut state = 7u64;
    let files = megabytes.max(1);
    for f in 0..files {
        let mut text = String::with_capacity(1 << 20);
        let mut w = 0;
        while text.len() < 1_000_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Squaring a uniform draw favours the first words: a rough Zipf-like skew.
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            text.push_str(words[((u * u) * words.len() as f64) as usize % words.len()]);
            w += 1;
            text.push_str(if w % 150 == 0 {
                "\n\n"
            } else if w % 13 == 0 {
                "\n"
            } else {
                " "
            });
        }
        std::fs::write(dir.join(format!("doc{f:05}.txt")), text)?;
    }
    Ok(())
}

pub fn run(a: &CorpusBenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &a.measure {
        return measure(dir, a);
    }
    let root = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("scratchgpt-bench-corpus-{}", std::process::id()))
    });
    println!(
        "resident memory while reading {} shuffled batches of {}×{} tokens from memory-mapped shards:",
        a.batches, a.batch_size, a.context
    );
    println!(
        "{:>10} {:>12} {:>14} {:>14} {:>14} {:>16} {:>12}",
        "corpus", "tokens", "RSS before", "RSS after", "peak RSS", "tokens in RAM", "batches/s"
    );
    for &gb in &a.gigabytes {
        if gb.is_nan() || gb <= 0.0 {
            bail!("--gigabytes must be positive, got {gb}");
        }
        let dir = root.join(format!("corpus-{gb}"));
        let tokens = (gb * 1e9 / 2.0) as u64;
        write_corpus(&dir, tokens).with_context(|| format!("writing {}", dir.display()))?;
        let out = Command::new(std::env::current_exe()?)
            .args(["bench", "corpus", "--batches", &a.batches.to_string()])
            .args(["--batch-size", &a.batch_size.to_string()])
            .args(["--context", &a.context.to_string()])
            .arg("--measure")
            .arg(&dir)
            .output()?;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            bail!(
                "measuring {gb} GB: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [before, after, hwm, n, secs, ..] = f[..] else {
            bail!("unexpected measurement output: {text}");
        };
        println!(
            "{:>8} GB {:>12} {:>11.0} MB {:>11.0} MB {:>11.0} MB {:>13.0} MB {:>12.0}",
            gb,
            n as u64,
            before / MB,
            after / MB,
            hwm / MB,
            n * 4.0 / MB,
            a.batches as f64 / secs.max(1e-9)
        );
    }
    println!("(\"tokens in RAM\": the same tokens as a Vec<u32>, what reading a text file costs)");
    if a.prepare_mb > 0 {
        let text_dir = root.join("text");
        write_text_corpus(&text_dir, a.prepare_mb)?;
        let files = collect_files(std::slice::from_ref(&text_dir))?;
        let out = root.join("prepared");
        let report = prepare(
            &files,
            &out,
            BpeTokenizer::gpt2(),
            false,
            &PrepareOptions::default(),
            |_, _| {},
        )?;
        let m = &report.manifest;
        println!(
            "prepare-data: {} files, {:.0} MB of text → {} tokens in {:.1} s: {:.1} MB/s on {} threads",
            m.documents,
            m.source_bytes as f64 / MB,
            m.train_tokens() + m.val_tokens(),
            report.secs,
            report.mb_per_sec(),
            rayon::current_num_threads()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(ExitCode::SUCCESS)
}
