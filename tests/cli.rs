//! The command line: outputs, and bad input as one clear line with a non-zero exit.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(args)
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn gradcheck_prints_a_table_and_exits_zero() {
    let o = run(&["gradcheck", "--op", "layer_norm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("max rel err") && out.contains("layer_norm [3,6]") && out.contains(" ok"),
        "{out}"
    );
    assert!(out.contains("0 failed"), "{out}");
    let o = run(&["gradcheck", "--op", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown op family"), "{}", stderr(&o));
}

#[test]
fn tokenize_modes() {
    let text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.";
    let o = run(&["tokenize", "--allow-special", "--ids", text]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "[15496,11,466,345,588,8887,30,220,50256,554,262,4252,18250,8812,2114,1659,617,34680,27271,13]"
    );
    let o = run(&["tokenize", "Hello,"]);
    assert_eq!(stdout(&o), " 15496  \"Hello\"\n    11  \",\"\n");
    let verdict = concat!(env!("CARGO_MANIFEST_DIR"), "/data/the-verdict.txt");
    let o = run(&["tokenize", "--count", "--file", verdict]);
    assert_eq!(stdout(&o).trim(), "5145");
    let o = run(&[
        "tokenize",
        "--tokenizer",
        "simple",
        "--ids",
        "Hello, do you like tea?",
    ]);
    assert_eq!(stdout(&o).trim(), "[1131,5,355,1126,628,975,10]");
}

#[test]
fn tokenize_bad_input_is_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"ok\xff\xfe").unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["tokenize".into(), "a <|endoftext|> b".into()],
            "special token",
        ),
        (
            vec!["tokenize".into(), "--file".into(), "/no/such/file".into()],
            "/no/such/file",
        ),
        (
            vec![
                "tokenize".into(),
                "--file".into(),
                bad.display().to_string(),
            ],
            "offset 2",
        ),
        (
            vec![
                "tokenize".into(),
                "--tokenizer".into(),
                dir.display().to_string(),
                "x".into(),
            ],
            "encoder.json",
        ),
        (vec!["tokenize".into()], "--file"),
    ];
    // An empty file is the empty text: no tokens, as tiktoken encodes "" (not an error).
    let e = empty.display().to_string();
    let o = run(&["tokenize", "--file", &e, "--ids"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[]");
    let o = run(&["tokenize", "--file", &e, "--count"]);
    assert_eq!(stdout(&o).trim(), "0");
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_tokenizer_then_tokenize_with_it() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-tok-{}", std::process::id()));
    let verdict = concat!(env!("CARGO_MANIFEST_DIR"), "/data/the-verdict.txt");
    let d = dir.display().to_string();
    let o = run(&[
        "train-tokenizer",
        "--file",
        verdict,
        "--vocab-size",
        "600",
        "--out",
        &d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 600 ids"), "{}", stdout(&o));
    let o = run(&["tokenize", "--tokenizer", &d, "--ids", "the picture"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids: Vec<u32> = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(ids.iter().all(|&i| i < 600) && !ids.is_empty());
    let o = run(&[
        "train-tokenizer",
        "--file",
        verdict,
        "--vocab-size",
        "10",
        "--out",
        &d,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("vocab_size"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_then_generate_eval_resume_and_graph() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-train-{}", std::process::id()));
    let d = dir.display().to_string();
    let base = [
        "train",
        "--preset",
        "tiny",
        "--context-length",
        "32",
        "--batch-size",
        "8",
        "--eval-freq",
        "2",
        "--sample-tokens",
        "3",
    ];
    let o = run(&[
        &base[..],
        &[
            "--epochs",
            "1",
            "--max-steps",
            "4",
            "--log-steps",
            "--no-shuffle",
            "--out",
            &d,
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Ep 1 (Step 000000): Train loss") && out.contains("Ep 1 (Step 000002)"),
        "{out}"
    );
    assert!(
        out.contains("done: 4 steps") && out.contains("step 3 loss "),
        "{out}"
    );
    let ck = dir.join("checkpoint.safetensors");
    assert!(ck.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let ck_s = ck.display().to_string();

    // resume to step 6
    let o = run(&[
        &base[..],
        &["--epochs", "1", "--max-steps", "6", "--resume", &ck_s],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("resuming at step 4") && stdout(&o).contains("done: 6 steps"),
        "{}",
        stdout(&o)
    );

    let o = run(&[
        "generate",
        "--checkpoint",
        &ck_s,
        "--prompt",
        "Every effort",
        "--max-new-tokens",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("Every effort"), "{}", stdout(&o));
    let o = run(&[
        "generate",
        "--checkpoint",
        &ck_s,
        "--temperature",
        "1.0",
        "--top-k",
        "5",
        "--max-new-tokens",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&[
        "eval",
        "--checkpoint",
        &ck_s,
        "--text",
        "I had always thought Jack Gisburn rather a cheap genius",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(j["loss"].as_f64().unwrap() > 0.0 && j["perplexity"].as_f64().unwrap() > 1.0);
    assert_eq!(j["next_top5"].as_array().unwrap().len(), 5);
    assert_eq!(j["tokens"].as_u64().unwrap(), 12);

    let dot = dir.join("g.dot").display().to_string();
    let o = run(&["graph", "--out", &dot]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = std::fs::read_to_string(&dot).unwrap();
    assert!(
        g.starts_with("digraph")
            && g.contains("attention")
            && g.contains("trf_blocks.1.att.W_query.weight")
    );

    // bad input: one line, non-zero, nothing panics
    let short = dir.join("short.txt");
    std::fs::write(&short, "Hello there.").unwrap();
    let bad_ck = dir.join("bad.safetensors");
    std::fs::write(&bad_ck, b"not a checkpoint").unwrap();
    let (s, b) = (short.display().to_string(), bad_ck.display().to_string());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--preset", "tiny", "--context-length", "64"],
            "exceeds",
        ),
        (
            vec![
                "train",
                "--preset",
                "tiny",
                "--context-length",
                "32",
                "--data",
                &s,
            ],
            "too short",
        ),
        (vec!["train", "--data", "/no/such.txt"], "/no/such.txt"),
        (vec!["train", "--preset", "gpt9"], "unknown preset"),
        (vec!["generate", "--checkpoint", &b], "checkpoint"),
        (vec!["eval", "--checkpoint", &ck_s], "--text"),
        (vec!["train", "--no-such-flag"], "unexpected argument"),
        (
            vec![
                "train",
                "--preset",
                "tiny",
                "--context-length",
                "32",
                "--init-weights",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/book-gpt-tiny/weights.safetensors"
                ),
            ],
            "tok_emb.weight has shape [512, 48]",
        ),
    ];
    for (args, needle) in cases {
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_train_step_reports_speed_and_memory() {
    let o = run(&[
        "bench",
        "train-step",
        "--preset",
        "tiny",
        "--context",
        "16",
        "--steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("ms/step")
            && out.contains("tokens/s")
            && out.contains("GFLOP/s")
            && out.contains("peak RSS"),
        "{out}"
    );
    let o = run(&["bench", "train-step", "--preset", "tiny", "--context", "64"]);
    assert!(
        !o.status.success() && stderr(&o).contains("exceeds"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_finetune_reports_examples_per_second_and_state_sizes() {
    for extra in [
        &["--task", "classify"][..],
        &["--task", "instruct", "--lora-rank", "2"],
    ] {
        let o = run(&[
            &["bench", "finetune", "--preset", "tiny", "--steps", "1"],
            extra,
        ]
        .concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("examples/s")
                && out.contains("gradient buffers")
                && out.contains("AdamW moments")
                && out.contains("peak RSS"),
            "{out}"
        );
    }
    for bad in [
        &["--steps", "0"][..],
        &["--batch-size", "0"],
        &["--batch-size", "5000"],
    ] {
        let o = run(&[&["bench", "finetune", "--preset", "tiny"], bad].concat());
        let err = stderr(&o);
        assert!(!o.status.success(), "{bad:?} should fail");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `--device cuda` where no GPU is usable: one line naming what is missing, non-zero exit.
/// (Skipped on a machine that has a GPU, where the command would start training instead.)
#[test]
fn device_cuda_without_a_gpu_is_one_clear_line() {
    if scratchgpt::backend::cuda::probe().is_ok() {
        eprintln!("a GPU is present; the no-GPU error cannot be shown here");
        return;
    }
    for args in [
        &["train", "--device", "cuda", "--max-steps", "1"][..],
        &[
            "bench",
            "train-step",
            "--preset",
            "tiny",
            "--context",
            "8",
            "--device",
            "cuda",
        ][..],
        &["bench", "gpu-kernels"][..],
    ] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("--device cuda: CUDA:") || err.contains("CUDA:"),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // auto falls back to the CPU and says why.
    let o = run(&[
        "bench",
        "train-step",
        "--preset",
        "tiny",
        "--context",
        "8",
        "--steps",
        "1",
        "--device",
        "auto",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("device: cpu ("), "{}", stderr(&o));
}

#[test]
fn kernels_reports_or_explains_missing_nvrtc() {
    let o = run(&["kernels"]);
    if scratchgpt::backend::cuda::nvrtc::nvrtc_status().is_ok() {
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("| `matmul` | matmul.cu |"),
            "{}",
            stdout(&o)
        );
    } else {
        assert!(!o.status.success());
        assert!(stderr(&o).contains("NVRTC"), "{}", stderr(&o));
    }
}

#[test]
fn finetune_classify_then_classify_with_and_without_lora() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-cls-{}", std::process::id()));
    let plain = dir.join("plain");
    let lora = dir.join("lora");
    let base = [
        "finetune",
        "classify",
        "--random-init",
        "--preset",
        "tiny",
        "--max-steps",
        "4",
        "--eval-freq",
        "2",
        "--eval-iter",
        "1",
    ];
    let o = run(&[&base[..], &["--out", plain.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "1045 train / 149 validation / 300 test",
        "Ep 1 (Step 000000): Train loss",
        "Ep 1 (Step 000002)",
        "Training accuracy: ",
        "Test accuracy: ",
        "examples/s",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let ck = plain.join("classifier.safetensors");
    let o = run(&[
        "classify",
        "--checkpoint",
        ck.to_str().unwrap(),
        "You won a prize! Call now",
        "see you at lunch",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("spam\t") || l.starts_with("not spam\t")),
        "{out}"
    );
    // LoRA: adapters saved alone, and a merged classifier that `classify` reads.
    let o = run(&[
        &base[..],
        &["--lora-rank", "2", "--out", lora.to_str().unwrap()],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("LoRA rank 2, alpha 16"),
        "{}",
        stdout(&o)
    );
    assert!(lora.join("adapters.safetensors").exists());
    let o = run(&[
        "classify",
        "--json",
        "--checkpoint",
        lora.join("classifier.safetensors").to_str().unwrap(),
        "hello",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"probability\""), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_bad_input_is_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-ftbad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_tsv = dir.join("bad.tsv");
    std::fs::write(&bad_tsv, "ham\thello\nspam no tab here\n").unwrap();
    let bad_label = dir.join("label.tsv");
    std::fs::write(&bad_label, "ham\thello\nmaybe\tthere\n").unwrap();
    let tiny_tsv = dir.join("tiny.tsv");
    std::fs::write(&tiny_tsv, "ham\thello\nspam\tWIN\n").unwrap();
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, r#"[{"instruction": "x", "input": ""}]"#).unwrap();
    // A language-model checkpoint, which `classify` must refuse.
    let lm = dir.join("lm");
    let o = run(&[
        "train",
        "--preset",
        "tiny",
        "--context-length",
        "32",
        "--max-steps",
        "1",
        "--epochs",
        "1",
        "--sample-tokens",
        "1",
        "--out",
        lm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lm_ck = lm.join("checkpoint.safetensors");
    let s = |p: &std::path::Path| p.display().to_string();
    let ft = |data: &std::path::Path| {
        vec![
            "finetune".to_string(),
            "classify".into(),
            "--random-init".into(),
            "--preset".into(),
            "tiny".into(),
            "--data".into(),
            s(data),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (ft(&bad_tsv), "line 2"),
        (ft(&bad_label), "\"maybe\""),
        (ft(&tiny_tsv), "split is empty"),
        (ft(&dir.join("missing.tsv")), "missing.tsv"),
        (
            vec![
                "classify".into(),
                "--checkpoint".into(),
                s(&lm_ck),
                "hello".into(),
            ],
            "no classifier head",
        ),
        (
            vec![
                "finetune".into(),
                "classify".into(),
                "--random-init".into(),
                "--lora-alpha".into(),
                "8".into(),
            ],
            "--lora-rank",
        ),
        (
            vec![
                "finetune".into(),
                "instruct".into(),
                "--random-init".into(),
                "--preset".into(),
                "tiny".into(),
                "--data".into(),
                s(&bad_json),
            ],
            "output",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_from_gpt2_weights_and_export_merged_lora_adapters() {
    // The tiny Hugging Face GPT-2 fixture stands in for OpenAI's weights (same format).
    let hf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-ft-hf-{}", std::process::id()));
    let (cls, ins, exp) = (dir.join("cls"), dir.join("ins"), dir.join("exported"));
    let o = run(&[
        "finetune",
        "classify",
        "--gpt2",
        hf,
        "--max-steps",
        "2",
        "--eval-iter",
        "1",
        "--out",
        cls.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("from GPT-2 weights"), "{}", stdout(&o));
    let o = run(&[
        "finetune",
        "instruct",
        "--gpt2",
        hf,
        "--max-steps",
        "2",
        "--eval-iter",
        "1",
        "--test-limit",
        "2",
        "--max-new-tokens",
        "3",
        "--lora-rank",
        "2",
        "--lora-alpha",
        "4",
        "--out",
        ins.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Ep 1 (Step 000000): Train loss") && out.contains("token F1"),
        "{out}"
    );
    let responses =
        std::fs::read_to_string(ins.join("instruction-data-with-response.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&responses).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["model_response"].is_string() && v[0]["output"].is_string());
    // `chat` wraps prompts in the Alpaca template for the instruction-tuned checkpoint only: a
    // 40-token prompt fits the fixture's 64-token context alone, not inside the template.
    let long_prompt = "one two three four five six seven eight nine ten ".repeat(4);
    let chat = |source: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
            .args(["chat", "--max-new-tokens", "2"])
            .args(source)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{long_prompt}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let plain = chat(&["--gpt2", hf]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(
        !stderr(&plain).contains("the prompt is"),
        "{}",
        stderr(&plain)
    );
    let tuned = chat(&[
        "--checkpoint",
        ins.join("instruct.safetensors").to_str().unwrap(),
    ]);
    assert!(
        stderr(&tuned).contains("the prompt is") && stderr(&tuned).contains("context is 64"),
        "the Alpaca template was not applied: {}",
        stderr(&tuned)
    );
    // The saved adapters merged into the base give a folder transformers loads.
    let o = run(&[
        "export",
        "--gpt2",
        hf,
        "--lora-adapters",
        ins.join("adapters.safetensors").to_str().unwrap(),
        "--hf-out",
        exp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(exp.join("model.safetensors").exists());
    // A classifier cannot be exported as a language model, nor chatted with.
    let o = run(&[
        "export",
        "--checkpoint",
        cls.join("classifier.safetensors").to_str().unwrap(),
        "--hf-out",
        exp.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("classifier"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
