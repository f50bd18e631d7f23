//! Checking a set of [`Rules`]: each rule against central differences, then — for the six ops a
//! GPT is made of — inside the whole tiny GPT, its gradients compared with the library's at every
//! boundary. A blank rule (`todo!()`) or one that panics is caught and named, never a crash.

use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use super::{Exercise, ExerciseOps, Rules};
use crate::autograd::gradcheck::{gradcheck, GradcheckOptions, GradcheckReport};
use crate::error::Result;
use crate::ops::embedding::Ids;
use crate::study::compare::{compare, Side};
use crate::study::tiny_gpt::{study_model, TinyBatch};
use crate::study::Fused;
use crate::tensor::Tensor;

/// A difference in the tiny GPT above this fails (a right rule differs from the library's by
/// rounding only, ~1e-15).
pub const GPT_TOLERANCE: f64 = 1e-9;

/// What a check found.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Within tolerance; the largest error.
    Pass { max_err: f64 },
    /// Outside tolerance: the largest error and where it is worst.
    Wrong { max_err: f64, detail: String },
    /// Still `todo!()`.
    NotWritten,
    /// The rule panicked or returned a wrong shape.
    Failed(String),
}

impl Verdict {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }

    fn short(&self) -> String {
        match self {
            Verdict::Pass { max_err } => format!("ok     (max err {max_err:.1e})"),
            Verdict::Wrong { max_err, .. } => format!("WRONG  (max err {max_err:.1e})"),
            Verdict::NotWritten => "not written yet".into(),
            Verdict::Failed(_) => "FAILED".into(),
        }
    }
}

/// One exercise's results.
#[derive(Clone, Debug)]
pub struct ExerciseReport {
    pub exercise: Exercise,
    /// Against central differences.
    pub gradcheck: Verdict,
    /// Inside the whole tiny GPT (`None` for ops the GPT does not use).
    pub in_gpt: Option<Verdict>,
}

impl ExerciseReport {
    /// Whether both checks passed.
    pub fn passed(&self) -> bool {
        self.gradcheck.passed() && self.in_gpt.as_ref().is_none_or(Verdict::passed)
    }
}

/// The whole check: one report per exercise, and the tiny GPT with every rule swapped in at once.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub exercises: Vec<ExerciseReport>,
    /// `None` when only some exercises were checked or a GPT rule is not written yet.
    pub whole_gpt: Option<Verdict>,
}

impl CheckReport {
    /// Whether every exercise (and the whole GPT, when run) passed.
    pub fn passed(&self) -> bool {
        self.exercises.iter().all(ExerciseReport::passed)
            && self.whole_gpt.as_ref().is_none_or(Verdict::passed)
    }
}

/// Runs `f`, turning a panic into a [`Verdict`]: `todo!()` is "not written", anything else a
/// failure with its message. The default panic message is silenced while it runs.
fn guarded(f: impl FnOnce() -> Result<Verdict>) -> Verdict {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    match out {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => Verdict::Failed(e.to_string()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            if msg.contains("not yet implemented") {
                Verdict::NotWritten
            } else {
                Verdict::Failed(format!("panicked: {msg}"))
            }
        }
    }
}

/// The names of an exercise's differentiable inputs, for messages.
fn input_names(ex: Exercise) -> &'static [&'static str] {
    match ex {
        Exercise::Matmul => &["A", "B"],
        Exercise::Linear => &["X", "W", "b"],
        Exercise::Embedding => &["W"],
        Exercise::CrossEntropy => &["logits"],
        Exercise::LayerNorm => &["x", "γ", "β"],
        Exercise::Attention => &["Q", "K", "V"],
        _ => &["x"],
    }
}

/// The exercise's op on fixed random inputs, checked by central differences.
fn gradcheck_exercise(ops: &ExerciseOps, ex: Exercise) -> Result<GradcheckReport> {
    let opts = GradcheckOptions::default();
    let r = |shape: &[usize], seed: u64| Tensor::<f64>::randn(shape, seed).requires_grad_(true);
    match ex {
        Exercise::Tanh => gradcheck(|t| ops.tanh(&t[0]), &[r(&[3, 4], 1)], &opts),
        Exercise::Matmul => gradcheck(
            |t| ops.matmul(&t[0], &t[1]),
            &[r(&[3, 4], 2), r(&[4, 2], 3)],
            &opts,
        ),
        Exercise::Linear => gradcheck(
            |t| ops.linear(&t[0], &t[1], Some(&t[2])),
            &[r(&[2, 3, 4], 4), r(&[5, 4], 5), r(&[5], 6)],
            &opts,
        ),
        Exercise::Gelu => gradcheck(
            |t| ops.gelu(&t[0].mul_scalar(2.0)?),
            &[r(&[3, 5], 7)],
            &opts,
        ),
        Exercise::Embedding => {
            let ids = Ids::new(vec![1, 4, 1, 0, 5, 1], &[2, 3])?; // 1 three times, 2 and 3 never
            gradcheck(|t| ops.embedding(&t[0], &ids), &[r(&[6, 3], 8)], &opts)
        }
        Exercise::Gather => {
            let index = Ids::new(vec![0, 4, 2, 2, 1, 3], &[3, 2])?; // row 1 picks entry 2 twice
            gradcheck(|t| ops.gather(&t[0], &index), &[r(&[3, 5], 9)], &opts)
        }
        Exercise::Softmax => gradcheck(|t| ops.softmax(&t[0]), &[r(&[3, 5], 10)], &opts),
        Exercise::LogSoftmax => gradcheck(|t| ops.log_softmax(&t[0]), &[r(&[3, 5], 11)], &opts),
        Exercise::CrossEntropy => {
            let targets = Ids::new(vec![1, 0, 4, 1], &[4])?;
            gradcheck(
                |t| ops.cross_entropy(&t[0], &targets),
                &[r(&[4, 5], 12)],
                &opts,
            )
        }
        Exercise::LayerNorm => gradcheck(
            |t| ops.layer_norm(&t[0], &t[1], &t[2], 1e-5),
            &[r(&[3, 6], 13), r(&[6], 14), r(&[6], 15)],
            &opts,
        ),
        Exercise::Attention => gradcheck(
            |t| ops.attention(&t[0], &t[1], &t[2]),
            &[
                r(&[2, 2, 4, 3], 16),
                r(&[2, 2, 4, 3], 17),
                r(&[2, 2, 4, 3], 18),
            ],
            &opts,
        ),
    }
}

/// What the analytic value at the worst entry says about the mistake.
fn diagnose(yours: f64, numeric: f64) -> String {
    if yours == 0.0 && numeric != 0.0 {
        "you return 0 where the gradient is not".into()
    } else if numeric == 0.0 {
        "the true gradient is 0 there".into()
    } else if (yours + numeric).abs() <= 1e-6 * numeric.abs() {
        "the sign is flipped".into()
    } else {
        format!("yours is {:.4}× the true value there", yours / numeric)
    }
}

fn gradcheck_verdict(ex: Exercise, report: &GradcheckReport) -> Verdict {
    if report.ok() {
        return Verdict::Pass {
            max_err: report.max_abs_err(),
        };
    }
    let names = input_names(ex);
    let worst = report
        .inputs
        .iter()
        .filter(|c| !c.ok)
        .max_by(|a, b| a.max_abs_err.total_cmp(&b.max_abs_err))
        .expect("a failing input");
    let name = names.get(worst.input).copied().unwrap_or("input");
    Verdict::Wrong {
        max_err: report.max_abs_err(),
        detail: format!(
            "d{name} at {:?}: yours {:.6e}, numeric {:.6e} — {}",
            worst.worst_index,
            worst.analytic_at_worst,
            worst.numeric_at_worst,
            diagnose(worst.analytic_at_worst, worst.numeric_at_worst)
        ),
    }
}

/// The tiny GPT with `ops`, compared with the library's fused ops.
fn gpt_verdict(ops: &ExerciseOps, fused: &Side) -> Result<Verdict> {
    let model = study_model(SEED)?;
    let mine = Side::run(ops, &model, &TinyBatch::example(), false)?;
    let cmp = compare(&mine, fused)?;
    Ok(match cmp.first_disagreement(GPT_TOLERANCE) {
        None => Verdict::Pass {
            max_err: cmp.max_diff(),
        },
        Some(row) => Verdict::Wrong {
            max_err: cmp.max_diff(),
            detail: format!(
                "backward first goes wrong at `{}` (max |Δ| {:.2e}; ‖grad‖ yours {:.4e}, library {:.4e})",
                row.name, row.max_diff, row.norm_a, row.norm_b
            ),
        },
    })
}

/// Seed of the study model's weights.
const SEED: u64 = 7;

/// Checks `rules` on every exercise (or on `only`).
pub fn check_rules(rules: Rc<dyn Rules>, only: Option<Exercise>) -> Result<CheckReport> {
    let model = study_model(SEED)?;
    let fused = Side::run(&Fused, &model, &TinyBatch::example(), false)?;
    let chosen: Vec<Exercise> = match only {
        Some(ex) => vec![ex],
        None => Exercise::ALL.to_vec(),
    };
    let mut exercises = Vec::new();
    for ex in chosen {
        let ops = ExerciseOps::only(rules.clone(), ex);
        let gradcheck = guarded(|| Ok(gradcheck_verdict(ex, &gradcheck_exercise(&ops, ex)?)));
        let in_gpt = ex.in_gpt().then(|| guarded(|| gpt_verdict(&ops, &fused)));
        exercises.push(ExerciseReport {
            exercise: ex,
            gradcheck,
            in_gpt,
        });
    }
    let all_gpt_written = exercises
        .iter()
        .filter(|r| r.exercise.in_gpt())
        .all(|r| r.gradcheck != Verdict::NotWritten);
    let whole_gpt = (only.is_none() && all_gpt_written)
        .then(|| guarded(|| gpt_verdict(&ExerciseOps::all(rules.clone()), &fused)));
    Ok(CheckReport {
        exercises,
        whole_gpt,
    })
}

/// The report as a table, then what each failure means.
pub fn render(report: &CheckReport, rules_file: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<3} {:<14} {:<28} in the tiny GPT",
        "#", "op", "gradient check"
    );
    for r in &report.exercises {
        let gpt = r.in_gpt.as_ref().map_or("—".to_string(), Verdict::short);
        let _ = writeln!(
            out,
            "{:<3} {:<14} {:<28} {}",
            r.exercise.number(),
            r.exercise.name(),
            r.gradcheck.short(),
            gpt
        );
    }
    if let Some(w) = &report.whole_gpt {
        let _ = writeln!(
            out,
            "\nthe tiny GPT with all these rules at once: {}",
            w.short()
        );
    }
    let unwritten: Vec<Exercise> = report
        .exercises
        .iter()
        .filter(|r| r.gradcheck == Verdict::NotWritten)
        .map(|r| r.exercise)
        .collect();
    for r in report
        .exercises
        .iter()
        .filter(|r| !r.passed() && r.gradcheck != Verdict::NotWritten)
    {
        let ex = r.exercise;
        let _ = writeln!(out, "\n{ex} (exercise {}) is wrong:", ex.number());
        for (what, v) in [
            ("gradient check", Some(&r.gradcheck)),
            ("in the tiny GPT", r.in_gpt.as_ref()),
        ] {
            if let Some(Verdict::Wrong { detail, .. } | Verdict::Failed(detail)) = v {
                let _ = writeln!(out, "  {what}: {detail}");
            }
        }
        let _ = writeln!(out, "  hint: {}", ex.hint());
        let _ = writeln!(out, "  the library's rule: {}", ex.solution());
    }
    if let Some(Verdict::Wrong { detail, .. } | Verdict::Failed(detail)) = &report.whole_gpt {
        let _ = writeln!(out, "\nthe tiny GPT with all these rules: {detail}");
    }
    if let Some(first) = unwritten.first() {
        let names: Vec<&str> = unwritten.iter().map(|e| e.name()).collect();
        let _ = writeln!(
            out,
            "\nnot written yet: {} — fill in their `todo!()`s in {rules_file}.\nNext up: exercise {} ({first}); `--only {first}` checks it alone, and a wrong rule gets a hint.",
            names.join(", "),
            first.number(),
        );
    }
    let passed = report.exercises.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        out,
        "\n{passed} of {} rules pass{}.",
        report.exercises.len(),
        if report.passed() { " — all done" } else { "" }
    );
    out
}
