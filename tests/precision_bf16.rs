//! `--precision bf16` from the command line: a tiny model trains with bf16 products to nearly the
//! f32 run's losses (not the same bits), reproducibly; the checkpoint records the precision and a
//! resume in another is refused; a fine-tuning run the same. On a CPU without AVX-512 BF16 every
//! bf16 run is one clear error instead (`SCRATCHGPT_REQUIRE_BF16=1` makes that a failure, for
//! machines known to have the instructions).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scratchgpt::backend::gemm::{Kernel, Precision};
use scratchgpt::train::checkpoint::load_checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_scratchgpt");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg-bf16-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn has_bf16() -> bool {
    let has = Kernel::Avx512Bf16.supported();
    if !has {
        assert!(
            std::env::var("SCRATCHGPT_REQUIRE_BF16").is_err(),
            "SCRATCHGPT_REQUIRE_BF16 is set but this CPU lacks AVX-512 BF16"
        );
    }
    has
}

/// The tiny preset on the-verdict for two epochs, into `out`.
fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--preset",
        "tiny",
        "--epochs",
        "2",
        "--sample-tokens",
        "0",
        "--eval-iter",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

/// The last "Train loss X, Val loss Y" line's two numbers.
fn last_losses(log: &str) -> (f64, f64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Train loss"))
        .unwrap_or_else(|| panic!("no loss line in {log}"));
    let num = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.trim_start()
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num("Train loss"), num("Val loss"))
}

fn weights(path: &Path) -> Vec<Vec<f32>> {
    load_checkpoint(path)
        .unwrap()
        .model
        .named_parameters()
        .iter()
        .map(|(_, p)| p.to_vec().unwrap())
        .collect()
}

#[test]
fn bf16_training_lands_near_f32_is_reproducible_and_resumes_only_in_bf16() {
    let (f32_dir, a, b) = (temp("f32"), temp("a"), temp("b"));
    if !has_bf16() {
        let o = train(&a, &["--precision", "bf16"]);
        assert!(!o.status.success());
        assert!(text(&o).contains("AVX-512 BF16"), "{}", text(&o));
        assert!(!a.exists(), "refused before the run folder is made");
        return;
    }
    let f32_run = train(&f32_dir, &[]);
    assert!(f32_run.status.success(), "{}", text(&f32_run));
    let bf16_run = train(&a, &["--precision", "bf16"]);
    assert!(bf16_run.status.success(), "{}", text(&bf16_run));
    assert!(text(&bf16_run).contains("precision: bf16"));
    // Close to f32 — rounding the products' operands to 8 significant bits moves a tiny model's
    // losses by well under 2 % here — but not the same numbers.
    let (tf, vf) = last_losses(&text(&f32_run));
    let (tb, vb) = last_losses(&text(&bf16_run));
    assert!(
        (tb - tf).abs() < 0.02 * tf && (vb - vf).abs() < 0.02 * vf,
        "f32 {tf}/{vf}, bf16 {tb}/{vb}"
    );
    let ck = a.join("checkpoint.safetensors");
    assert_ne!(
        weights(&ck),
        weights(&f32_dir.join("checkpoint.safetensors"))
    );
    assert_eq!(
        load_checkpoint(&ck).unwrap().info.precision,
        Precision::Bf16
    );
    assert_eq!(
        load_checkpoint(f32_dir.join("checkpoint.safetensors"))
            .unwrap()
            .info
            .precision,
        Precision::F32
    );
    // Seeded: a second bf16 run gives the same weights, bit for bit.
    let again = train(&b, &["--precision", "bf16"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(weights(&ck), weights(&b.join("checkpoint.safetensors")));
    // A run stopped partway resumes in its precision, and only in it, to the straight run's
    // weights.
    let c = temp("c");
    let part = train(&c, &["--precision", "bf16", "--max-steps", "5"]);
    assert!(part.status.success(), "{}", text(&part));
    let ck_c = c.join("checkpoint.safetensors");
    let ck_s = ck_c.to_str().unwrap();
    let o = train(&c, &["--resume", ck_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--precision bf16"), "{}", text(&o));
    let o = train(&c, &["--resume", ck_s, "--precision", "bf16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming at step 5"), "{}", text(&o));
    assert_eq!(weights(&ck), weights(&ck_c));
    for d in [f32_dir, a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_bf16_fine_tuning_run_records_its_precision_and_resumes_in_it() {
    let out = temp("instruct");
    let o_s = out.to_str().unwrap().to_string();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "finetune",
            "instruct",
            "--random-init",
            "--preset",
            "tiny",
            "--batch-size",
            "2",
            "--eval-iter",
            "1",
            "--test-limit",
            "1",
            "--max-new-tokens",
            "2",
            "--out",
            &o_s,
        ];
        v.extend_from_slice(extra);
        run(&v)
    };
    if !has_bf16() {
        let o = args(&["--max-steps", "1", "--precision", "bf16"]);
        assert!(!o.status.success() && text(&o).contains("AVX-512 BF16"));
        return;
    }
    let o = args(&["--max-steps", "1", "--precision", "bf16"]);
    assert!(o.status.success(), "{}", text(&o));
    let ck = out.join("checkpoint.safetensors");
    assert_eq!(
        load_checkpoint(&ck).unwrap().info.precision,
        Precision::Bf16
    );
    let ck_s = ck.to_str().unwrap();
    let o = args(&["--max-steps", "2", "--resume", ck_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--precision bf16"), "{}", text(&o));
    let o = args(&["--max-steps", "2", "--resume", ck_s, "--precision", "bf16"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(out).unwrap();
}

/// The GPU has no bf16 kernels: asking for both is refused before anything runs.
#[cfg(feature = "cuda-emu")]
#[test]
fn bf16_on_a_gpu_is_refused() {
    let o = run(&[
        "bench",
        "train-step",
        "--preset",
        "tiny",
        "--context",
        "8",
        "--device",
        "emu",
        "--precision",
        "bf16",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("GPU has no bf16"), "{}", text(&o));
}
