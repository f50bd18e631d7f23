//! `scratchgpt study exercises`: the blanks ship blank and fail naming every op; the library's
//! rules pass; rules written out by hand from the hints pass (the exercises are solvable with the
//! arrays they hand out, and the hints are right); one wrong rule is named, measured and hinted;
//! a rule that returns a wrong shape or panics is reported, not a crash.

use std::rc::Rc;

use ndarray::{Array1, Array2, ArrayD, Axis};
use scratchgpt::study::exercises::{
    check_rules, render, Exercise, LibraryRules, Rules, Verdict, YourRules,
};

/// Every rule written out by hand from its hint, as a student would.
#[derive(Clone, Copy)]
struct ByHand {
    /// Break one rule on purpose.
    broken: Option<Exercise>,
}

fn softmax_rows(z: &Array2<f64>) -> Array2<f64> {
    let mut p = z.clone();
    for mut row in p.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row /= s;
    }
    p
}

impl Rules for ByHand {
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        dy * &y.mapv(|v| 1.0 - v * v)
    }

    fn matmul(
        &self,
        a: &Array2<f64>,
        b: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        (dy.dot(&b.t()), a.t().dot(dy))
    }

    fn linear(
        &self,
        x: &Array2<f64>,
        w: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
        (dy.dot(w), dy.t().dot(x), dy.sum_axis(Axis(0)))
    }

    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let d = x.mapv(|x| {
            let th = (c * (x + 0.044715 * x.powi(3))).tanh();
            0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x)
        });
        let dx = dy * &d;
        if self.broken == Some(Exercise::Gelu) {
            dx * 2.0
        } else {
            dx
        }
    }

    fn embedding(&self, ids: &[usize], vocab_size: usize, dy: &Array2<f64>) -> Array2<f64> {
        let mut dw = Array2::zeros((vocab_size, dy.ncols()));
        for (r, &id) in ids.iter().enumerate() {
            let mut row = dw.row_mut(id);
            row += &dy.row(r);
        }
        dw
    }

    fn gather(&self, n: usize, index: &Array2<usize>, dy: &Array2<f64>) -> Array2<f64> {
        let mut dx = Array2::zeros((index.nrows(), n));
        for ((r, j), &i) in index.indexed_iter() {
            dx[[r, i]] += dy[[r, j]];
        }
        dx
    }

    fn softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        let dot = (dy * y).sum_axis(Axis(1)).insert_axis(Axis(1));
        y * &(dy - &dot)
    }

    fn log_softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        let total = dy.sum_axis(Axis(1)).insert_axis(Axis(1));
        dy - &(y.mapv(f64::exp) * &total)
    }

    fn cross_entropy(&self, logits: &Array2<f64>, targets: &[usize], dloss: f64) -> Array2<f64> {
        let mut dz = softmax_rows(logits);
        for (r, &t) in targets.iter().enumerate() {
            dz[[r, t]] -= 1.0;
        }
        dz * (dloss / targets.len() as f64)
    }

    fn layer_norm(
        &self,
        x: &Array2<f64>,
        scale: &Array1<f64>,
        eps: f64,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let n = x.ncols() as f64;
        let mut dx = Array2::zeros(x.dim());
        let mut dgamma = Array1::zeros(scale.len());
        let mut dbeta = Array1::zeros(scale.len());
        for r in 0..x.nrows() {
            let row = x.row(r);
            let mu = row.sum() / n;
            let var = row.mapv(|v| (v - mu).powi(2)).sum() / n;
            let sigma = (var + eps).sqrt();
            let xhat = row.mapv(|v| (v - mu) / sigma);
            let g = &dy.row(r) * scale;
            dgamma += &(&dy.row(r) * &xhat);
            dbeta += &dy.row(r);
            let mean_g = g.sum() / n;
            let mean_gx = (&g * &xhat).sum() / n;
            let d = (&g - mean_g - &(&xhat * mean_gx)) / sigma;
            dx.row_mut(r).assign(&d);
        }
        if self.broken == Some(Exercise::LayerNorm) {
            dbeta *= 0.0; // forgot β
        }
        (dx, dgamma, dbeta)
    }

    fn attention(
        &self,
        q: &Array2<f64>,
        k: &Array2<f64>,
        v: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        let (t, d) = q.dim();
        let scale = 1.0 / (d as f64).sqrt();
        let mut s = q.dot(&k.t()) * scale;
        for i in 0..t {
            for j in i + 1..t {
                s[[i, j]] = f64::NEG_INFINITY;
            }
        }
        let p = softmax_rows(&s);
        let dv = p.t().dot(dy);
        let dp = dy.dot(&v.t());
        let ds = self.softmax(&p, &dp);
        (ds.dot(k) * scale, ds.t().dot(q) * scale, dv)
    }
}

#[test]
fn the_library_rules_pass_everything() {
    let report = check_rules(Rc::new(LibraryRules), None).unwrap();
    assert!(report.passed(), "{}", render(&report, "the library"));
    assert_eq!(report.exercises.len(), Exercise::ALL.len());
    assert_eq!(report.whole_gpt, Some(Verdict::Pass { max_err: 0.0 }));
    let gpt = report
        .exercises
        .iter()
        .filter(|r| r.in_gpt.is_some())
        .count();
    assert_eq!(
        gpt, 6,
        "linear, gelu, embedding, cross-entropy, layer norm, attention"
    );
}

#[test]
fn the_blanks_ship_blank_and_fail_naming_every_op() {
    let report = check_rules(Rc::new(YourRules), None).unwrap();
    assert!(!report.passed());
    for r in &report.exercises {
        assert_eq!(r.gradcheck, Verdict::NotWritten, "{}", r.exercise);
    }
    assert_eq!(
        report.whole_gpt, None,
        "the whole GPT waits for its six rules"
    );
    let text = render(&report, "yours.rs");
    let names: Vec<&str> = Exercise::ALL.iter().map(|e| e.name()).collect();
    assert!(
        text.contains(&format!("not written yet: {} — fill in", names.join(", "))),
        "{text}"
    );
    assert!(text.contains("0 of 11 rules pass."), "{text}");
}

#[test]
fn rules_written_by_hand_from_the_hints_pass() {
    let report = check_rules(Rc::new(ByHand { broken: None }), None).unwrap();
    assert!(report.passed(), "{}", render(&report, "by hand"));
    match report.whole_gpt {
        Some(Verdict::Pass { max_err }) => assert!(max_err < 1e-12, "{max_err}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_rule_is_named_measured_and_hinted() {
    let report = check_rules(
        Rc::new(ByHand {
            broken: Some(Exercise::Gelu),
        }),
        None,
    )
    .unwrap();
    assert!(!report.passed());
    for r in &report.exercises {
        if r.exercise == Exercise::Gelu {
            assert!(
                matches!(r.gradcheck, Verdict::Wrong { .. }),
                "{:?}",
                r.gradcheck
            );
            match &r.in_gpt {
                Some(Verdict::Wrong { detail, .. }) => {
                    assert!(detail.contains("trf_blocks.1.att output"), "{detail}")
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert!(r.passed(), "{} should pass: {:?}", r.exercise, r.gradcheck);
        }
    }
    let text = render(&report, "yours.rs");
    assert!(text.contains("gelu (exercise 4) is wrong:"), "{text}");
    assert!(
        text.contains("yours is 2.0000× the true value there"),
        "{text}"
    );
    assert!(text.contains(Exercise::Gelu.hint()), "{text}");
    assert!(text.contains("src/ops/gelu/mod.rs"), "{text}");
    assert!(text.contains("10 of 11 rules pass."), "{text}");

    // A dropped term in one output (dβ = 0) names that output.
    let report = check_rules(
        Rc::new(ByHand {
            broken: Some(Exercise::LayerNorm),
        }),
        Some(Exercise::LayerNorm),
    )
    .unwrap();
    let text = render(&report, "yours.rs");
    assert!(text.contains("dβ at"), "{text}");
    assert!(
        text.contains("you return 0 where the gradient is not"),
        "{text}"
    );
}

/// Returns a transposed dA and panics in softmax.
struct Careless;

impl Rules for Careless {
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        LibraryRules.tanh(y, dy)
    }
    fn matmul(
        &self,
        a: &Array2<f64>,
        b: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        let (da, db) = LibraryRules.matmul(a, b, dy);
        (da.t().to_owned(), db)
    }
    fn linear(
        &self,
        x: &Array2<f64>,
        w: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
        LibraryRules.linear(x, w, dy)
    }
    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        LibraryRules.gelu(x, dy)
    }
    fn embedding(&self, ids: &[usize], v: usize, dy: &Array2<f64>) -> Array2<f64> {
        LibraryRules.embedding(ids, v, dy)
    }
    fn gather(&self, n: usize, index: &Array2<usize>, dy: &Array2<f64>) -> Array2<f64> {
        LibraryRules.gather(n, index, dy)
    }
    fn softmax(&self, y: &Array2<f64>, _dy: &Array2<f64>) -> Array2<f64> {
        let _ = y[[99, 99]]; // out of bounds
        unreachable!()
    }
    fn log_softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        LibraryRules.log_softmax(y, dy)
    }
    fn cross_entropy(&self, z: &Array2<f64>, t: &[usize], d: f64) -> Array2<f64> {
        LibraryRules.cross_entropy(z, t, d)
    }
    fn layer_norm(
        &self,
        x: &Array2<f64>,
        s: &Array1<f64>,
        eps: f64,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        LibraryRules.layer_norm(x, s, eps, dy)
    }
    fn attention(
        &self,
        q: &Array2<f64>,
        k: &Array2<f64>,
        v: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        LibraryRules.attention(q, k, v, dy)
    }
}

#[test]
fn a_wrong_shape_or_a_panic_is_reported_not_a_crash() {
    let report = check_rules(Rc::new(Careless), None).unwrap();
    let find = |ex: Exercise| report.exercises.iter().find(|r| r.exercise == ex).unwrap();
    match &find(Exercise::Matmul).gradcheck {
        Verdict::Failed(msg) => assert!(msg.contains("matmul: dA has shape [4, 3]"), "{msg}"),
        other => panic!("{other:?}"),
    }
    match &find(Exercise::Softmax).gradcheck {
        Verdict::Failed(msg) => assert!(msg.starts_with("panicked:"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(find(Exercise::Attention).passed());
}

fn exercises(args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["study", "exercises"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cli_checks_yours_by_default_and_the_library_on_request() {
    let (code, out, err) = exercises(&[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("not written yet: tanh, matmul"), "{out}");
    assert!(
        !err.contains("panicked"),
        "blank rules must not print panics: {err}"
    );
    let (code, out, _) = exercises(&["--rules", "library"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("11 of 11 rules pass — all done."), "{out}");
    let (code, out, _) = exercises(&["--rules", "library", "--only", "layer_norm"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 of 1 rules pass"), "{out}");
    let (code, _, err) = exercises(&["--only", "relu"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no exercise called \"relu\""), "{err}");
}
