//! The whole-model gradient check: every entry of every parameter of a tiny GPT (dropout with
//! fixed masks, tied head, qkv bias, ignored targets) — one backward through the whole model
//! against f64 central differences. The op checks verify each rule; this verifies the wiring.

use scratchgpt::autograd::gradcheck::GradcheckOptions;
use scratchgpt::gpt::whole_model_check::{check_whole_model, tiny_config};
use scratchgpt::gpt::GptModel;

#[test]
fn every_entry_of_every_parameter_of_a_tiny_gpt() {
    let report = check_whole_model(usize::MAX, &GradcheckOptions::default()).unwrap();
    let model = GptModel::new(&tiny_config(), 7).unwrap();
    // A tied head is one parameter (checked once: its gradient is both uses' sum).
    assert_eq!(report.len(), model.named_parameters().len());
    let entries: usize = report.iter().map(|p| p.checked).sum();
    assert_eq!(entries, model.num_parameters());
    for p in &report {
        assert!(p.ok, "{p:?}");
    }
}

#[test]
fn gradcheck_prints_the_whole_model_rows() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["gradcheck", "--whole-model", "--samples", "2"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("whole model    tok_emb.weight [20, 8]"),
        "{out}"
    );
    assert!(out.contains("36 passed, 0 failed"), "{out}");
    assert!(!out.contains("layer_norm ["), "only the whole model: {out}");
}
