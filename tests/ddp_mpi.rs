//! `mpirun -np 2 scratchgpt train --ddp`, as a user runs it (needs `--features mpi` and OpenMPI's
//! `mpirun` on the path; `.ci/run` installs it). Two ranks of batch 1 train as one process of
//! batch 2; a data-parallel run resumes exactly from its checkpoints and after a stop signal to
//! any rank; a rank that stops answering ends the run with a clear error within the timeout; a
//! diverging run stops on every rank.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scratchgpt::train::checkpoint::load_checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_scratchgpt");

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg-ddp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The tiny model's run on the-verdict, at dropout 0, with every step's loss printed.
fn tiny_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--preset",
        "tiny",
        "--drop-rate",
        "0",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "3",
        "--eval-freq",
        "4",
        "--log-steps",
        "--out",
        out,
    ];
    a.extend(extra);
    a
}

/// `mpirun -np 2` of the binary, one rayon thread per rank (OpenMPI refuses root unless told).
fn mpirun(args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "2", BIN])
        .args(args)
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn single(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("RAYON_NUM_THREADS", "1");
    c
}

fn output(mut c: Command) -> Output {
    c.output()
        .expect("mpirun runs (OpenMPI installed: openmpi-bin)")
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

/// The numbers after `prefix` on lines that start with it.
fn numbers(out: &str, prefix: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split_whitespace().last()?.parse().ok())
        .collect()
}

/// The train and validation losses of the `Ep …` lines.
fn evals(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("Ep "))
        .flat_map(|l| {
            l.split("loss ")
                .skip(1)
                .map(|v| v.trim_end_matches(',').split(',').next().unwrap())
                .map(|v| v.trim().parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
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

fn step_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("step ") || l.starts_with("Ep "))
        .map(str::to_string)
        .collect()
}

#[test]
fn two_ranks_of_batch_one_train_as_one_process_of_batch_two() {
    let (one, two) = (temp("one"), temp("two"));
    let (o1, o2) = (s(&one), s(&two));
    let a = ok(output(single(&tiny_args(
        &o1,
        &["--batch-size", "2", "--max-steps", "10"],
    ))));
    let b = ok(output(mpirun(&tiny_args(
        &o2,
        &["--ddp", "--batch-size", "1", "--max-steps", "10"],
    ))));
    assert!(b.contains("data-parallel: MPI, 2 ranks"), "{b}");
    assert!(b.contains("rank 0 of 2"), "{b}");
    // Rank 0 alone prints: one line per step, not two.
    let (la, lb) = (numbers(&a, "step "), numbers(&b, "step "));
    assert_eq!(la.len(), 10, "{a}");
    assert_eq!(lb.len(), 10, "{b}");
    for (x, y) in la.iter().zip(&lb) {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "step losses {la:?} vs {lb:?}"
        );
    }
    let (ea, eb) = (evals(&a), evals(&b));
    assert_eq!(ea.len(), 6, "{a}");
    for (x, y) in ea.iter().zip(&eb) {
        assert!((x - y).abs() <= 1.5e-3, "evaluations {ea:?} vs {eb:?}");
    }
    // The same weights and AdamW moments, to f32 rounding of the summation order.
    let (wa, wb) = (
        weights(&one.join("checkpoint.safetensors")),
        weights(&two.join("checkpoint.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-3 * scale,
            "{n}: differs by {diff} (scale {scale})"
        );
    }
    // A second rank writes nothing: one metrics file, one checkpoint.
    let files: Vec<_> = std::fs::read_dir(&two).unwrap().collect();
    assert_eq!(files.len(), 3, "checkpoint, metrics, loss plot: {files:?}");
    for d in [one, two] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_data_parallel_run_resumes_exactly_from_a_periodic_checkpoint() {
    let (straight, resumed) = (temp("straight"), temp("resumed"));
    let (st, re) = (s(&straight), s(&resumed));
    let steps = ["--ddp", "--batch-size", "1", "--max-steps", "10"];
    let a = ok(output(mpirun(&tiny_args(
        &st,
        &[&steps[..], &["--save-every", "4"]].concat(),
    ))));
    let from = s(&straight.join("checkpoint-step00000004.safetensors"));
    let b = ok(output(mpirun(&[
        "train",
        "--ddp",
        "--max-steps",
        "10",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "3",
        "--log-steps",
        "--resume",
        &from,
        "--out",
        &re,
    ])));
    assert!(b.contains("resuming at step 4"), "{b}");
    let tail = |o: &str| {
        step_lines(o)
            .into_iter()
            .skip_while(|l| !l.starts_with("step 4 "))
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(&a), tail(&b));
    assert_eq!(
        weights(&straight.join("checkpoint.safetensors")),
        weights(&resumed.join("checkpoint.safetensors"))
    );
    // Another number of ranks would read other stripes: refused, with what to do.
    let e = output(single(&["train", "--resume", &from, "--out", &re]));
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains("trained by 2 data-parallel rank(s), this run has 1"),
        "{msg}"
    );
    for d in [straight, resumed] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The process id of rank `rank` of the mpirun whose ranks write to `out`.
fn rank_pid(rank: usize, out: &str) -> Option<i32> {
    let want_env = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.starts_with(BIN) || !cmdline.contains(out) {
            return None;
        }
        let env = std::fs::read(e.path().join("environ")).ok()?;
        String::from_utf8_lossy(&env)
            .split('\0')
            .any(|v| v == want_env)
            .then_some(pid)
    })
}

/// A long data-parallel run whose stdout is read line by line.
fn long_run(
    out: &str,
    extra: &[&str],
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut args = tiny_args(
        out,
        &[
            "--ddp",
            "--batch-size",
            "1",
            "--max-steps",
            "100000",
            "--epochs",
            "1000",
        ],
    );
    args.extend(extra);
    let mut child = mpirun(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mpirun still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut e = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    e
}

#[test]
fn a_rank_that_stops_answering_ends_the_run_with_a_clear_error() {
    let dir = temp("stopped");
    let d = s(&dir);
    let (mut child, mut lines) = long_run(&d, &["--ddp-timeout", "5", "--save-every", "5"]);
    for line in lines.by_ref() {
        if line.unwrap().starts_with("step 12 ") {
            break;
        }
    }
    let pid = rank_pid(1, &d).expect("rank 1 is running");
    // SAFETY: stops a process this test started (through mpirun); mpirun kills it at the end.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    std::thread::spawn(move || lines.for_each(drop));
    let status = wait_with_limit(&mut child, Duration::from_secs(60));
    let waited = stopped.elapsed();
    let err = stderr_of(&mut child);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("has waited") && err.contains("--ddp-timeout"),
        "{err}"
    );
    // The wait began at most a step before the stop (rank 0 may already have been waiting).
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    // The periodic checkpoints written before the stop are whole.
    let ck = dir.join("checkpoint-step00000010.safetensors");
    assert_eq!(load_checkpoint(&ck).unwrap().state.global_step, 10);
    // SAFETY: the stopped rank, should mpirun have left it behind.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stop_signal_to_any_rank_stops_all_after_the_same_step_and_the_resume_is_exact() {
    stop_and_resume("rank1", false);
}

#[test]
fn ctrl_c_on_mpirun_stops_every_rank_and_the_resume_is_exact() {
    stop_and_resume("mpirun", true);
}

/// SIGTERM to rank 1, or SIGINT to mpirun itself (Ctrl-C): every rank stops after the same
/// step, rank 0 saves, and the resume ends where a straight run does.
fn stop_and_resume(name: &str, to_mpirun: bool) {
    let dir = temp(name);
    let d = s(&dir);
    let (mut child, mut lines) = long_run(&d, &[]);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let go = line.starts_with("step 5 ");
        seen.push(line);
        if go {
            break;
        }
    }
    // To rank 1, not rank 0 (the ranks agree to stop after the same step), or to mpirun.
    let (pid, sig) = if to_mpirun {
        (child.id() as i32, libc::SIGINT)
    } else {
        (rank_pid(1, &d).expect("rank 1 is running"), libc::SIGTERM)
    };
    // SAFETY: signals a process this test started (mpirun, or a rank it started).
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    seen.extend(lines.map(|l| l.unwrap()));
    let status = wait_with_limit(&mut child, Duration::from_secs(60));
    let err = stderr_of(&mut child);
    let text = seen.join("\n");
    assert!(text.contains("continue exactly with"), "{text}\n{err}");
    assert!(!status.success(), "a stopped run says so in its status");
    let ck = dir.join("checkpoint.safetensors");
    let stopped_at = load_checkpoint(&ck).unwrap().state.global_step;
    assert!(stopped_at >= 6, "{stopped_at}");

    // Continue to stopped_at + 3, and compare with a straight run to the same step.
    let target = (stopped_at + 3).to_string();
    ok(output(mpirun(&[
        "train",
        "--ddp",
        "--max-steps",
        &target,
        "--epochs",
        "1000",
        "--sample-tokens",
        "3",
        "--eval-iter",
        "3",
        "--resume",
        &s(&ck),
    ])));
    let straight = temp(&format!("{name}-straight"));
    let st = s(&straight);
    ok(output(mpirun(&tiny_args(
        &st,
        &[
            "--ddp",
            "--batch-size",
            "1",
            "--max-steps",
            &target,
            "--epochs",
            "1000",
        ],
    ))));
    assert_eq!(
        weights(&ck),
        weights(&straight.join("checkpoint.safetensors"))
    );
    for d in [dir, straight] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_diverging_data_parallel_run_stops_on_every_rank() {
    let dir = temp("diverge");
    let d = s(&dir);
    let o = output(mpirun(&tiny_args(
        &d,
        &[
            "--ddp",
            "--batch-size",
            "1",
            "--max-steps",
            "20",
            "--lr",
            "1e30",
            "--ddp-timeout",
            "20",
        ],
    )));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("not finite") || err.contains("non-finite"),
        "{err}"
    );
    assert!(
        !err.contains("has waited"),
        "no rank was left waiting: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn with_dropout_a_data_parallel_run_repeats_exactly() {
    // Each rank draws its own masks from (seed, rank, step); the same command gives the same
    // losses and weights, and differs from the run without dropout.
    let runs: Vec<(String, PathBuf)> = ["a", "b", "off"]
        .iter()
        .map(|name| {
            let dir = temp(&format!("dropout-{name}"));
            let d = s(&dir);
            let rate = if *name == "off" { "0" } else { "0.1" };
            let mut args = tiny_args(&d, &["--ddp", "--batch-size", "1", "--max-steps", "6"]);
            // In place of tiny_args's --drop-rate 0.
            let at = args.iter().position(|a| *a == "--drop-rate").unwrap();
            args[at + 1] = rate;
            (ok(output(mpirun(&args))), dir)
        })
        .collect();
    let steps = |o: &str| numbers(o, "step ");
    assert_eq!(steps(&runs[0].0), steps(&runs[1].0));
    assert_eq!(
        weights(&runs[0].1.join("checkpoint.safetensors")),
        weights(&runs[1].1.join("checkpoint.safetensors"))
    );
    assert_ne!(steps(&runs[0].0)[1..], steps(&runs[2].0)[1..]);
    for (_, d) in runs {
        let _ = std::fs::remove_dir_all(d);
    }
}
