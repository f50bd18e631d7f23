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
                "--file".into(),
                empty.display().to_string(),
            ],
            "empty",
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
