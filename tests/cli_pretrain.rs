//! Pretraining beyond the-verdict, through the binary as a user runs it: every way a run can end
//! (finished epochs, `--max-steps`, a periodic checkpoint, Ctrl-C) resumes exactly; a diverging
//! run stops at once and keeps the last good checkpoint; `prepare-data` turns a messy corpus
//! into shards that train; the-verdict's shards give the text file's batches; a custom
//! tokenizer travels with its checkpoint.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use scratchgpt::train::checkpoint::load_checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_scratchgpt");
const VERDICT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/the-verdict.txt");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg-pretrain-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A tiny model on the-verdict, fast: context 32 (the tiny preset's), short samples.
fn tiny(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--preset",
        "tiny",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "2",
    ];
    let out = s(out);
    args.extend(["--out", &out]);
    args.extend(extra);
    ok(run(&args))
}

/// Every parameter and AdamW moment of a checkpoint, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = load_checkpoint(path).unwrap();
    let mut all: Vec<(String, Vec<f32>)> = ck
        .model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().unwrap()))
        .collect();
    for st in &ck.optimizer.expect("an optimizer").state {
        all.push((format!("m.{}", st.name), st.m.to_vec().unwrap()));
        all.push((format!("v.{}", st.name), st.v.to_vec().unwrap()));
    }
    all
}

fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(
            va == vb,
            "{na} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    let (sa, sb) = (
        load_checkpoint(a).unwrap().state,
        load_checkpoint(b).unwrap().state,
    );
    assert_eq!(sa, sb, "run state");
}

fn eval_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("Ep ")).collect()
}

#[test]
fn a_run_resumed_after_its_epochs_or_a_periodic_checkpoint_continues_exactly() {
    // The preset's context (32) is the default when it is shorter than the book's 256.
    let straight = temp("straight");
    let out = tiny(&straight, &["--epochs", "2"]);
    assert!(out.contains("context 32"), "{out}");
    let straight_ck = straight.join("checkpoint.safetensors");

    // Finished epochs: 1 epoch, then --epochs 2 from its checkpoint.
    let first = temp("first");
    tiny(&first, &["--epochs", "1"]);
    let ck = s(&first.join("checkpoint.safetensors"));
    let resumed = ok(run(&[
        "train",
        "--epochs",
        "2",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "2",
        "--resume",
        &ck,
    ]));
    let tail = |o: &str| eval_lines(o).last().map(|l| l.to_string());
    assert_eq!(tail(&resumed), tail(&out));
    assert_same_checkpoint(&first.join("checkpoint.safetensors"), &straight_ck);
    // Nothing left to do: said plainly, no absurd throughput.
    let again = ok(run(&[
        "train",
        "--epochs",
        "2",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "2",
        "--resume",
        &ck,
    ]));
    assert!(again.contains("nothing to train"), "{again}");
    assert!(!again.contains("tokens/s"), "{again}");

    // Periodic checkpoints every 50 steps of the 144, the newest one kept (100; 50 deleted).
    let periodic = temp("periodic");
    tiny(
        &periodic,
        &["--epochs", "2", "--save-every", "50", "--keep-last", "1"],
    );
    let kept: Vec<String> = std::fs::read_dir(&periodic)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-step"))
        .collect();
    assert_eq!(kept, ["checkpoint-step00000100.safetensors"]);
    // Resume from step 100 (mid-epoch 2) into a new folder: the end is the straight run's.
    let from_periodic = temp("from-periodic");
    let p100 = s(&periodic.join("checkpoint-step00000100.safetensors"));
    let fp = s(&from_periodic);
    let o = ok(run(&[
        "train",
        "--epochs",
        "2",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "2",
        "--resume",
        &p100,
        "--out",
        &fp,
    ]));
    assert!(o.contains("resuming at step 100"), "{o}");
    assert_same_checkpoint(&from_periodic.join("checkpoint.safetensors"), &straight_ck);

    // --max-steps ending exactly at an epoch's end (72 steps per epoch), then the rest.
    let capped = temp("capped");
    tiny(&capped, &["--epochs", "2", "--max-steps", "72"]);
    let cc = s(&capped.join("checkpoint.safetensors"));
    ok(run(&[
        "train",
        "--epochs",
        "2",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "2",
        "--resume",
        &cc,
    ]));
    assert_same_checkpoint(&capped.join("checkpoint.safetensors"), &straight_ck);

    // A resume refuses a different batch size (it would land at another position in the data).
    let e = run(&[
        "train",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--resume",
        &cc,
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--batch-size"));
    for d in [straight, first, periodic, from_periodic, capped] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn ctrl_c_finishes_the_step_saves_and_the_resume_continues_exactly() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = temp(&format!("sig{signal}"));
        let d = s(&dir);
        let mut child = Command::new(BIN)
            .args([
                "train",
                "--preset",
                "tiny",
                "--sample-tokens",
                "3",
                "--eval-iter",
                "2",
                "--max-steps",
                "100000",
                "--epochs",
                "1000",
                "--log-steps",
                "--out",
                &d,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let go = line.starts_with("step 5 ");
            seen.push(line);
            if go {
                break;
            }
        }
        // SAFETY: sends a signal to our own child process, whose id we hold and have not waited on.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        seen.extend(lines.map(|l| l.unwrap()));
        let status = child.wait().unwrap();
        let text = seen.join("\n");
        assert_eq!(status.code(), Some(code), "{text}");
        assert!(text.contains("continue exactly with"), "{text}");
        let ck = dir.join("checkpoint.safetensors");
        let stopped_at = load_checkpoint(&ck).unwrap().state.global_step;
        assert!(
            stopped_at >= 6,
            "stopped after the step in progress: {stopped_at}"
        );

        // Continue to stopped_at + 4 and compare with a straight run to the same step.
        let target = (stopped_at + 4).to_string();
        let c = s(&ck);
        ok(run(&[
            "train",
            "--sample-tokens",
            "3",
            "--eval-iter",
            "2",
            "--max-steps",
            &target,
            "--epochs",
            "1000",
            "--resume",
            &c,
        ]));
        let straight = temp(&format!("sig{signal}-straight"));
        tiny(&straight, &["--max-steps", &target, "--epochs", "1000"]);
        assert_same_checkpoint(&ck, &straight.join("checkpoint.safetensors"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&straight);
    }
}

#[test]
fn a_diverging_run_stops_at_once_and_keeps_the_last_good_checkpoint() {
    let dir = temp("nan");
    tiny(&dir, &["--max-steps", "3"]);
    let ck = dir.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).unwrap();
    let started = std::time::Instant::now();
    let c = s(&ck);
    let o = run(&[
        "train",
        "--max-steps",
        "50",
        "--lr",
        "1e30",
        "--save-every",
        "1",
        "--resume",
        &c,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    // Step 3's update (at lr 1e30) is applied; step 4's loss is the first that is not finite.
    assert!(
        err.contains("not finite") && err.contains("at step 4"),
        "{err}"
    );
    assert!(err.contains("last good checkpoint is kept"), "{err}");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        before,
        "the last good checkpoint is untouched"
    );
    // The first NaN ends the run: no minutes of NaN steps (the step-3 update is the bad one).
    assert!(started.elapsed().as_secs() < 30);
    // The periodic checkpoint after step 3 held the weights that diverged: removed.
    assert!(err.contains("was removed"), "{err}");
    assert!(!dir.join("checkpoint-step00000004.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A corpus the test writes itself: many files of varied text (some non-ASCII, some with
/// Project Gutenberg's header and footer, in nested folders) plus files that cannot be used.
fn write_corpus(dir: &Path, files: usize, words_per_file: usize) {
    let words = [
        "the",
        "picture",
        "gallery",
        "painter",
        "Gisburn",
        "said",
        "quietly",
        "and",
        "never",
        "again",
        "café",
        "naïve",
        "Zürich",
        "über",
        "日本語",
        "ελληνικά",
        "—",
        "moves",
        "you",
        "every",
        "effort",
        "morning",
        "light",
        "it",
        "was",
        "a",
        "of",
        "in",
        "to",
        "that",
    ];
    let mut state = 12345u64;
    for f in 0..files {
        let sub = dir.join(format!("part{}", f % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let mut text = String::new();
        if f % 5 == 0 {
            text.push_str("The Project Gutenberg eBook of Something\nLICENSE TEXT HERE\n*** START OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\n");
        }
        for w in 0..words_per_file {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(words[(state >> 33) as usize % words.len()]);
            text.push(if w % 17 == 16 { '\n' } else { ' ' });
        }
        if f % 5 == 0 {
            text.push_str("\n*** END OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\nMORE LICENSE\n");
        }
        std::fs::write(sub.join(format!("doc{f:03}.txt")), text).unwrap();
    }
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    std::fs::write(
        dir.join("image.bin"),
        [0x89u8, b'P', b'N', b'G', 0, 0, 1, 2],
    )
    .unwrap();
    std::fs::write(dir.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    std::fs::write(dir.join(".hidden.txt"), "never read").unwrap();
}

#[test]
fn prepare_data_turns_a_messy_corpus_into_shards_that_train() {
    let corpus = temp("corpus");
    // 60 files of ~420 KB: about 25 MB of text.
    write_corpus(&corpus, 60, 60_000);
    let out = temp("shards");
    let (c, o) = (s(&corpus), s(&out));
    let report = ok(run(&[
        "prepare-data",
        "--input",
        &c,
        "--out",
        &o,
        "--shard-tokens",
        "2000000",
        "--strip-gutenberg",
    ]));
    assert!(report.contains("60 documents"), "{report}");
    assert!(report.contains("skipped 3 files"), "{report}");
    for (file, reason) in [
        ("empty.txt", "empty"),
        ("image.bin", "binary"),
        ("latin1.txt", "not UTF-8"),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(file) && l.contains(reason)),
            "{file}: {reason}\n{report}"
        );
    }
    assert!(!report.contains(".hidden"), "{report}");
    assert!(report.contains("MB/s"), "{report}");
    assert!(report.contains("cut from 12 documents"), "{report}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let train_tokens = manifest["train_tokens"].as_u64().unwrap();
    assert!(train_tokens > 4_000_000, "{manifest}");
    assert!(
        manifest["train"].as_array().unwrap().len() >= 3,
        "several shards"
    );
    // The license text is gone from the tokens.
    let ids_of = |t: &str| scratchgpt::data::BpeTokenizer::gpt2().encode(t).unwrap();
    let license = ids_of("LICENSE");
    let first_shard = std::fs::read(out.join("train_000000.bin")).unwrap();
    let tokens: Vec<u32> = first_shard[32..]
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
        .collect();
    assert!(!tokens.windows(license.len()).any(|w| w == license));

    // It trains (and validates on the held-out shard).
    let run_dir = temp("shards-run");
    let out_text = tiny(&run_dir, &["--data", &o, "--max-steps", "3"]);
    assert!(out_text.contains("60 documents"), "{out_text}");
    assert!(out_text.contains("final losses"), "{out_text}");

    // Preparing into a finished folder again is refused; --strict refuses the first bad file.
    let again = run(&["prepare-data", "--input", &c, "--out", &o]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds prepared data"));
    let strict = run(&[
        "prepare-data",
        "--input",
        &c,
        "--out",
        &s(&temp("strict")),
        "--strict",
    ]);
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        !strict.status.success() && err.contains("--strict"),
        "{err}"
    );
    // A truncated shard is named, not read as garbage.
    let shard = out.join("val_000000.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 3]).unwrap();
    let bad = run(&[
        "train",
        "--preset",
        "tiny",
        "--data",
        &o,
        "--max-steps",
        "1",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("val_000000.bin") && err.contains("truncated"),
        "{err}"
    );
    for d in [corpus, out, run_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn the_verdicts_shards_give_the_text_files_batches() {
    let out = temp("verdict-shards");
    let o = s(&out);
    // Tiny shards, so windows cross from one shard into the next.
    ok(run(&[
        "prepare-data",
        "--input",
        VERDICT,
        "--out",
        &o,
        "--shard-tokens",
        "777",
    ]));
    let losses = |data: &str, dir: &Path| -> Vec<String> {
        tiny(dir, &["--data", data, "--max-steps", "8", "--log-steps"])
            .lines()
            .filter(|l| l.starts_with("step ") || l.starts_with("Ep "))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (temp("verdict-text"), temp("verdict-prepared"));
    let from_text = losses(VERDICT, &a);
    let from_shards = losses(&o, &b);
    assert_eq!(from_text.len(), 8 + 2);
    assert_eq!(from_text, from_shards);
    for d in [out, a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_custom_tokenizer_trains_and_travels_with_its_checkpoint() {
    let tok = temp("tok");
    let t = s(&tok);
    ok(run(&[
        "train-tokenizer",
        "--file",
        VERDICT,
        "--vocab-size",
        "400",
        "--out",
        &t,
    ]));
    let run_dir = temp("tok-run");
    let out = tiny(&run_dir, &["--tokenizer", &t, "--max-steps", "4"]);
    assert!(out.contains("vocabulary 400"), "{out}");
    assert!(run_dir.join("tokenizer/encoder.json").exists());
    // generate, eval and export find the tokenizer without being told (GPT-2's ids would be
    // out of range for a 400-id model).
    let ck = s(&run_dir.join("checkpoint.safetensors"));
    let g = ok(run(&[
        "generate",
        "--checkpoint",
        &ck,
        "--max-new-tokens",
        "5",
    ]));
    assert!(g.starts_with("Every effort moves you"), "{g}");
    ok(run(&[
        "eval",
        "--checkpoint",
        &ck,
        "--text",
        "Every effort moves you",
    ]));
    let hf = temp("tok-hf");
    ok(run(&["export", "--checkpoint", &ck, "--hf-out", &s(&hf)]));
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("vocab.json")).unwrap()).unwrap();
    assert_eq!(vocab.as_object().unwrap().len(), 400);
    // A copy of the checkpoint without its tokenizer folder is a clear error.
    let lonely = temp("tok-lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(
        run_dir.join("checkpoint.safetensors"),
        lonely.join("c.safetensors"),
    )
    .unwrap();
    let e = run(&[
        "generate",
        "--checkpoint",
        &s(&lonely.join("c.safetensors")),
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("its own tokenizer"));

    // Shards prepared with it train with it (the folder carries the tokenizer), and the
    // resume of that run needs no --data or --tokenizer.
    let shards = temp("tok-shards");
    ok(run(&[
        "prepare-data",
        "--input",
        VERDICT,
        "--tokenizer",
        &t,
        "--out",
        &s(&shards),
    ]));
    let shard_run = temp("tok-shard-run");
    let o = tiny(&shard_run, &["--data", &s(&shards), "--max-steps", "4"]);
    assert!(o.contains("vocabulary 400"), "{o}");
    let sc = s(&shard_run.join("checkpoint.safetensors"));
    let r = ok(run(&[
        "train",
        "--max-steps",
        "6",
        "--sample-tokens",
        "3",
        "--resume",
        &sc,
    ]));
    assert!(
        r.contains("resuming at step 4") && r.contains("vocabulary 400"),
        "{r}"
    );
    // ...and refuses other data.
    let e = run(&[
        "train",
        "--max-steps",
        "8",
        "--data",
        VERDICT,
        "--resume",
        &sc,
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("resume with the same --data"));
    for d in [tok, run_dir, hf, lonely, shards, shard_run] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn bench_corpus_reports_resident_memory_and_throughput() {
    let dir = temp("bench-corpus");
    let out = ok(run(&[
        "bench",
        "corpus",
        "--gigabytes",
        "0.01,0.04",
        "--batches",
        "200",
        "--context",
        "256",
        "--prepare-mb",
        "2",
        "--dir",
        &s(&dir),
    ]));
    // Two sizes measured, each in its own process, then the throughput line.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("0.0"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        out.contains("prepare-data: 2 files") && out.contains("MB/s"),
        "{out}"
    );
    // Reading from shards holds a few pages, not the corpus: the peak stays far below the
    // 80 MB the larger corpus would take as a Vec<u32>.
    let peak_mb: f64 = rows[1].split_whitespace().nth(7).unwrap().parse().unwrap();
    assert!(peak_mb < 60.0, "{out}");
    assert!(!dir.exists(), "the generated corpora are deleted");
}
