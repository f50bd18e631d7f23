//! Numeric gradient checks (f64 central differences, rtol 1e-6) of every op family, plus the
//! f32-vs-f64 comparisons of the forward and of the backward. The cases live in `scratchgpt::ops::gradcheck_suite`, one test
//! per family so a failure names the op.

use scratchgpt::autograd::gradcheck::GradcheckOptions;
use scratchgpt::ops::gradcheck_suite::{cases, families};

fn check_family(family: &str) {
    let opts = GradcheckOptions::default();
    assert!(opts.rtol <= 1e-6, "the suite's tolerance must stay tight");
    let mut n = 0;
    for case in cases().into_iter().filter(|c| c.op == family) {
        let report = case
            .check(&opts)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(report.ok(), "{}:\n{report}", case.name);
        let f32_err = case.f32_forward_error().unwrap();
        assert!(
            f32_err < 1e-5,
            "{}: f32 forward differs from f64 by {f32_err:e}",
            case.name
        );
        // The training precision's backward rule against the f64 one, for the same upstream
        // gradient (measured worst case 6.7e-7: GELU's tails).
        let f32_grad_err = case.f32_backward_error(opts.seed).unwrap();
        assert!(
            f32_grad_err < 1e-5,
            "{}: f32 gradients differ from f64 by {f32_grad_err:e}",
            case.name
        );
        n += 1;
    }
    assert!(n > 0, "no gradcheck cases for op family {family}");
}

#[test]
fn every_family_has_a_test_here() {
    let here = include_str!("gradcheck_ops.rs");
    for f in families() {
        assert!(
            here.contains(&format!("fn gradcheck_{f}()")),
            "add a test for {f}"
        );
    }
}

#[test]
fn gradcheck_binary() {
    check_family("binary");
}
#[test]
fn gradcheck_unary() {
    check_family("unary");
}
#[test]
fn gradcheck_gelu() {
    check_family("gelu");
}
#[test]
fn gradcheck_reduce() {
    check_family("reduce");
}
#[test]
fn gradcheck_matmul() {
    check_family("matmul");
}
#[test]
fn gradcheck_softmax() {
    check_family("softmax");
}
#[test]
fn gradcheck_layer_norm() {
    check_family("layer_norm");
}
#[test]
fn gradcheck_embedding() {
    check_family("embedding");
}
#[test]
fn gradcheck_gather() {
    check_family("gather");
}

#[test]
fn gradcheck_rms_norm() {
    check_family("rms_norm");
}

#[test]
fn gradcheck_rope() {
    check_family("rope");
}

#[test]
fn gradcheck_dpo() {
    check_family("dpo");
}

#[test]
fn gradcheck_dropout() {
    check_family("dropout");
}
#[test]
fn gradcheck_masked_fill() {
    check_family("masked_fill");
}
#[test]
fn gradcheck_cross_entropy() {
    check_family("cross_entropy");
}
#[test]
fn gradcheck_attention() {
    check_family("attention");
}
#[test]
fn gradcheck_view() {
    check_family("view");
}
#[test]
fn gradcheck_linear() {
    check_family("linear");
}
