//! Tokenizer speed, side by side with tiktoken (tiktoken-rs) in the same run:
//! encode throughput on the-verdict (20 KB) and on a 10 MB corpus, and BPE training of a
//! 5,000-id vocabulary on that corpus.
//!
//! The 10 MB corpus is every text shipped in `data/` (the-verdict, the SMS spam collection, the
//! instruction data) concatenated and repeated to 10 MB: varied enough to exercise the merge path
//! and the cache, but repetitive — a real 10 MB corpus has more distinct words, which makes the
//! trainer's first pass slower (see docs/performance.md).
//!
//! Run: `cargo bench --bench tokenizer`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scratchgpt::data::bpe::train::train_bpe;
use scratchgpt::data::BpeTokenizer;

fn corpus_10mb() -> String {
    let parts = [
        include_str!("../data/the-verdict.txt"),
        include_str!("../data/SMSSpamCollection.tsv"),
        include_str!("../data/instruction-data.json"),
    ];
    let mut s = String::new();
    while s.len() < 10_000_000 {
        for p in parts {
            s.push_str(p);
            s.push('\n');
        }
    }
    s
}

fn encode(c: &mut Criterion) {
    let ours = BpeTokenizer::gpt2();
    let tiktoken = tiktoken_rs::r50k_base().unwrap();
    let big = corpus_10mb();
    assert_eq!(
        ours.encode_ordinary(&big).unwrap(),
        tiktoken.encode_ordinary(&big),
        "same ids"
    );
    let mut g = c.benchmark_group("encode");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for (name, text) in [
        ("the-verdict 20KB", include_str!("../data/the-verdict.txt")),
        ("corpus 10MB", big.as_str()),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("scratchgpt", name), |b| {
            b.iter(|| black_box(ours.encode_ordinary(text).unwrap()))
        });
        g.bench_function(BenchmarkId::new("tiktoken-rs", name), |b| {
            b.iter(|| black_box(tiktoken.encode_ordinary(text)))
        });
    }
    g.finish();
}

fn train(c: &mut Criterion) {
    let big = corpus_10mb();
    let mut g = c.benchmark_group("train_bpe");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("vocab 5000 on 10MB", |b| {
        b.iter(|| black_box(train_bpe(&big, 5000, &["<|endoftext|>"]).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, encode, train);
criterion_main!(benches);
