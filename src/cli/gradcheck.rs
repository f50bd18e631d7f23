//! `scratchgpt gradcheck`: the numeric gradient check of every op, as a table.

use std::io::Write;
use std::process::ExitCode;

use scratchgpt::autograd::gradcheck::GradcheckOptions;
use scratchgpt::gpt::whole_model_check::{check_whole_model_of, tiny_config, tiny_decoder_config};
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
    /// Only the whole-model check: every parameter tensor of a tiny GPT (dropout, tied head,
    /// qkv bias, ignored targets), and of a tiny Llama and Qwen3, through one backward, against
    /// central differences.
    #[arg(long, conflicts_with = "op")]
    whole_model: bool,
    /// Entries compared per parameter tensor in the whole-model check.
    #[arg(long, default_value_t = 6)]
    samples: usize,
}

/// How far the f32 forward may be from the f64 one, relative to `1 + |f64|`, elementwise.
const F32_FORWARD_TOL: f64 = 1e-5;
/// How far the f32 gradients may be from the f64 ones, relative to `1 + |f64|`, elementwise.
const F32_BACKWARD_TOL: f64 = 1e-5;

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
        "{:<14} {:<46} {:>12} {:>12} {:>12} {:>12}  result",
        "op", "case", "max abs err", "max rel err", "f32 fwd err", "f32 bwd err"
    )?;
    writeln!(out, "{}", "-".repeat(121))?;
    let (mut passed, mut failed) = (0, 0);
    for case in cases() {
        if args.whole_model || args.op.as_deref().is_some_and(|op| op != case.op) {
            continue;
        }
        let report = case.check(&opts);
        let f32_err = case
            .f32_forward_error()
            .and_then(|f| Ok((f, case.f32_backward_error(opts.seed)?)));
        match (report, f32_err) {
            (Ok(r), Ok((f, b))) => {
                let ok = r.ok() && f < F32_FORWARD_TOL && b < F32_BACKWARD_TOL;
                writeln!(
                    out,
                    "{:<14} {:<46} {:>12.2e} {:>12.2e} {:>12.2e} {:>12.2e}  {}",
                    case.op,
                    case.name,
                    r.max_abs_err(),
                    r.max_rel_err(),
                    f,
                    b,
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
    if args.op.is_none() {
        // The wiring of all the rules: a tiny GPT's, Llama's and Qwen3's every parameter
        // through one backward.
        let families = [
            ("whole model", tiny_config()),
            ("whole llama", tiny_decoder_config(false)),
            ("whole qwen3", tiny_decoder_config(true)),
        ];
        let checks = families
            .iter()
            .map(|(label, cfg)| Ok((*label, check_whole_model_of(cfg, args.samples, &opts)?)))
            .collect::<scratchgpt::error::Result<Vec<_>>>()?;
        for (label, p) in checks
            .iter()
            .flat_map(|(label, ps)| ps.iter().map(move |p| (*label, p)))
        {
            writeln!(
                out,
                "{:<14} {:<46} {:>12.2e} {:>12.2e} {:>12} {:>12}  {}",
                label,
                format!("{} {:?}", p.name, p.shape),
                p.max_abs_err,
                p.max_rel_err,
                "",
                "",
                if p.ok { "ok" } else { "FAIL" }
            )?;
            if p.ok {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    if args.op.is_none() {
        writeln!(
            out,
            "(whole model: a tiny GPT — 2 layers, emb 8, dropout 0.1 with fixed masks, tied head, qkv bias, 2 ignored targets — {} entries of each parameter, one backward; whole llama / qwen3: the same with RMSNorm, RoPE, SwiGLU and 2 query heads sharing 1 key/value head, Qwen3 with heads of 6 and q/k norms)",
            args.samples
        )?;
    }
    writeln!(out, "\n{passed} passed, {failed} failed (f64 central differences, eps {:e}, rtol {:e}, atol {:e})", opts.eps, opts.rtol, opts.atol)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
