//! Every command that takes `--device`, on `--device emu` (the CUDA kernels emulated on the CPU,
//! the same code path as a GPU) against `--device cpu`: the same printed losses, tokens and
//! files.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(args)
        .output()
        .expect("runs")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The numbers in the `Ep … Train loss …, Val loss …` lines.
fn epoch_losses(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("Ep "))
        .flat_map(|l| {
            l.split([' ', ','])
                .filter_map(|w| w.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn same_losses(cpu: &str, emu: &str) {
    let (c, e) = (epoch_losses(cpu), epoch_losses(emu));
    assert!(!c.is_empty() && c.len() == e.len(), "{cpu}\n---\n{emu}");
    for (a, b) in c.iter().zip(&e) {
        assert!((a - b).abs() <= 2e-3, "cpu {c:?} vs emu {e:?}");
    }
}

#[test]
fn train_generate_eval_chat_and_graph_on_the_emulated_device_match_the_cpu() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-emu-{}", std::process::id()));
    let train = |run_name: &str, device: &str, extra: &[&str]| {
        let out = dir.join(run_name);
        let o = run(&[
            &[
                "train",
                "--device",
                device,
                "--preset",
                "tiny",
                "--context-length",
                "32",
                "--eval-freq",
                "1",
                "--eval-iter",
                "1",
                "--sample-tokens",
                "2",
                "--out",
                out.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat());
        (ok(o), out.join("checkpoint.safetensors"))
    };
    let (cpu, ck) = train("cpu", "cpu", &["--max-steps", "3"]);
    let (emu, ck_emu) = train("emu", "emu", &["--max-steps", "3"]);
    same_losses(&cpu, &emu);
    assert!(ck_emu.exists());
    // Resumed on the device from its own checkpoint (weights and AdamW moments back to the
    // device), it continues as the CPU run resumed from the CPU's.
    fn resume(ck: &std::path::Path) -> [&str; 4] {
        ["--max-steps", "5", "--resume", ck.to_str().unwrap()]
    }
    let (cpu_r, _) = train("cpu-resumed", "cpu", &resume(&ck));
    let (emu_r, _) = train("emu-resumed", "emu", &resume(&ck_emu));
    assert!(emu_r.contains("resuming at step 3"), "{emu_r}");
    same_losses(&cpu_r, &emu_r);
    // Prepared shards, gradient accumulation and a periodic checkpoint work on the device as
    // on the CPU.
    let shards = dir.join("shards");
    ok(run(&[
        "prepare-data",
        "--input",
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/the-verdict.txt"),
        "--out",
        shards.to_str().unwrap(),
    ]));
    let extra = [
        "--data",
        shards.to_str().unwrap(),
        "--grad-accum",
        "2",
        "--max-steps",
        "2",
        "--save-every",
        "1",
    ];
    let (cpu_a, _) = train("cpu-accum", "cpu", &extra);
    let (emu_a, _) = train("emu-accum", "emu", &extra);
    assert!(emu_a.contains("2 per step"), "{emu_a}");
    same_losses(&cpu_a, &emu_a);
    assert!(dir
        .join("emu-accum/checkpoint-step00000002.safetensors")
        .exists());
    let ck = ck.to_str().unwrap();

    let gen = |device: &str, extra: &[&str]| {
        ok(run(&[
            &["generate", "--checkpoint", ck, "--prompt", "Every effort"][..],
            &["--max-new-tokens", "6", "--device", device][..],
            extra,
        ]
        .concat()))
    };
    assert_eq!(gen("cpu", &[]), gen("emu", &[]));
    assert_eq!(
        gen("cpu", &["--no-kv-cache"]),
        gen("emu", &["--no-kv-cache"])
    );

    let eval = |device: &str| {
        let out = ok(run(&[
            "eval",
            "--checkpoint",
            ck,
            "--text",
            "I had always thought Jack Gisburn",
            "--json",
            "--device",
            device,
        ]));
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let (c, e) = (eval("cpu"), eval("emu"));
    assert!((c["loss"].as_f64().unwrap() - e["loss"].as_f64().unwrap()).abs() < 1e-4);
    assert_eq!(c["next_top5"][0]["id"], e["next_top5"][0]["id"]);

    let chat = |device: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
            .args(["chat", "--checkpoint", ck, "--temperature", "0"])
            .args(["--max-new-tokens", "4", "--device", device])
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
            .write_all(b"Every effort\n")
            .unwrap();
        ok(child.wait_with_output().unwrap())
    };
    assert_eq!(chat("cpu"), chat("emu"));

    let dot = dir.join("g.dot");
    ok(run(&[
        "graph",
        "--device",
        "emu",
        "--out",
        dot.to_str().unwrap(),
    ]));
    let g = std::fs::read_to_string(&dot).unwrap();
    assert!(
        g.contains("attention") && g.contains("cuda:0") && g.contains("grad"),
        "{g}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_classify_and_lora_instruct_on_the_emulated_device() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-cli-emu-ft-{}", std::process::id()));
    let classify = |device: &str| {
        ok(run(&[
            "finetune",
            "classify",
            "--random-init",
            "--preset",
            "tiny",
            "--max-steps",
            "2",
            "--eval-freq",
            "1",
            "--eval-iter",
            "1",
            "--device",
            device,
            "--out",
            dir.join(format!("cls-{device}")).to_str().unwrap(),
        ]))
    };
    let (c, e) = (classify("cpu"), classify("emu"));
    same_losses(&c, &e);
    assert!(e.contains("Test accuracy: "), "{e}");
    // On the device too a run continues exactly: 1 step, then a resume to 2, equals the 2
    // straight (the moments go back to the device, the position is the CPU's).
    let part = dir.join("cls-part");
    let part_args = |steps: &str, resume: Option<&std::path::Path>| {
        let mut v = vec![
            "finetune".to_string(),
            "classify".into(),
            "--random-init".into(),
            "--preset".into(),
            "tiny".into(),
            "--max-steps".into(),
            steps.into(),
            "--eval-freq".into(),
            "1".into(),
            "--eval-iter".into(),
            "1".into(),
            "--device".into(),
            "emu".into(),
            "--out".into(),
            part.to_str().unwrap().into(),
        ];
        if let Some(r) = resume {
            v.extend(["--resume".into(), r.to_str().unwrap().into()]);
        }
        v
    };
    let go = |v: Vec<String>| ok(run(&v.iter().map(String::as_str).collect::<Vec<_>>()));
    go(part_args("1", None));
    let resumed = go(part_args("2", Some(&part.join("checkpoint.safetensors"))));
    assert!(resumed.contains("resuming at step 1"), "{resumed}");
    let weights = |path: std::path::PathBuf| {
        let ck = scratchgpt::train::checkpoint::load_checkpoint(path).unwrap();
        ck.model
            .named_parameters()
            .into_iter()
            .map(|(_, p)| p.to_vec().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        weights(dir.join("cls-emu/classifier.safetensors")),
        weights(part.join("classifier.safetensors"))
    );
    let hf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");
    let instruct = |device: &str| {
        ok(run(&[
            "finetune",
            "instruct",
            "--gpt2",
            hf,
            "--max-steps",
            "1",
            "--batch-size",
            "1",
            "--eval-freq",
            "1",
            "--eval-iter",
            "1",
            "--test-limit",
            "1",
            "--max-new-tokens",
            "2",
            "--lora-rank",
            "4",
            "--device",
            device,
            "--out",
            dir.join(format!("ins-{device}")).to_str().unwrap(),
        ]))
    };
    let (c, e) = (instruct("cpu"), instruct("emu"));
    same_losses(&c, &e);
    let responses = |device: &str| {
        std::fs::read_to_string(
            dir.join(format!("ins-{device}"))
                .join("instruction-data-with-response.json"),
        )
        .unwrap()
    };
    assert_eq!(responses("cpu"), responses("emu"));
    assert!(dir.join("ins-emu").join("adapters.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_train_step_on_the_emulated_device_reports_launches_copies_and_memory() {
    let out = ok(run(&[
        "bench",
        "train-step",
        "--device",
        "emu",
        "--preset",
        "tiny",
        "--context",
        "8",
        "--batch-size",
        "1",
        "--steps",
        "1",
    ]));
    for needle in [
        "kernel launches",
        "copies to the device, 1 to the host (4 B)",
        "peak in use",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
