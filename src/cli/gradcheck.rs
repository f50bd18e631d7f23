//! `scratchgpt gradcheck`: the numeric gradient check of every op, as a table.

use std::io::Write;
use std::process::ExitCode;

use scratchgpt::autograd::gradcheck::GradcheckOptions;
use scratchgpt::ops::gradcheck_suite::{cases, families};

#[derive(clap::Args)]
pub struct Args {
    /// Only this op family (e.g. `attention`, `layer_norm`); see the table for the names.
    #[arg(long)]
    op: Option<String>,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-6)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-8)]
    atol: f64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(op) = &args.op {
        let known = families();
        if !known.contains(&op.as_str()) {
            anyhow::bail!("unknown op family '{op}'; known: {}", known.join(", "));
        }
    }
    let opts = GradcheckOptions {
        rtol: args.rtol,
        atol: args.atol,
        ..GradcheckOptions::default()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<14} {:<46} {:>12} {:>12} {:>12}  result",
        "op", "case", "max abs err", "max rel err", "f32 fwd err"
    )?;
    writeln!(out, "{}", "-".repeat(108))?;
    let (mut passed, mut failed) = (0, 0);
    for case in cases() {
        if args.op.as_deref().is_some_and(|op| op != case.op) {
            continue;
        }
        let report = case.check(&opts);
        let f32_err = case.f32_forward_error();
        match (report, f32_err) {
            (Ok(r), Ok(f)) => {
                let ok = r.ok() && f < 1e-5;
                writeln!(
                    out,
                    "{:<14} {:<46} {:>12.2e} {:>12.2e} {:>12.2e}  {}",
                    case.op,
                    case.name,
                    r.max_abs_err(),
                    r.max_rel_err(),
                    f,
                    if ok { "ok" } else { "FAIL" }
                )?;
                if ok {
                    passed += 1;
                } else {
                    failed += 1;
                    write!(out, "{r}")?;
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                writeln!(out, "{:<14} {:<46} error: {e}", case.op, case.name)?;
                failed += 1;
            }
        }
    }
    writeln!(out, "\n{passed} passed, {failed} failed (f64 central differences, eps {:e}, rtol {:e}, atol {:e})", opts.eps, opts.rtol, opts.atol)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
