//! The whole-model gradient check: every entry of every parameter of a tiny GPT (dropout with
//! fixed masks, tied head, qkv bias, ignored targets) — one backward through the whole model
//! against f64 central differences. The op checks verify each rule; this verifies the wiring.

use scratchgpt::autograd::gradcheck::GradcheckOptions;
use scratchgpt::gpt::whole_model_check::{
    check_whole_model, check_whole_model_of, tiny_config, tiny_decoder_config,
};
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

/// The same for the tiny Llama and Qwen3: RMSNorm, RoPE (Llama's with its frequency scaling),
/// SwiGLU, two query heads reading one key/value head, Qwen3's 6-wide heads and q/k norms.
#[test]
fn every_entry_of_every_parameter_of_a_tiny_llama_and_qwen3() {
    for qwen3 in [false, true] {
        let cfg = tiny_decoder_config(qwen3);
        let report = check_whole_model_of(&cfg, usize::MAX, &GradcheckOptions::default()).unwrap();
        let model = GptModel::new(&cfg, 7).unwrap();
        assert_eq!(report.len(), model.named_parameters().len());
        let entries: usize = report.iter().map(|p| p.checked).sum();
        assert_eq!(entries, model.num_parameters());
        assert_eq!(model.num_parameters(), cfg.num_parameters());
        assert_eq!(
            report.iter().any(|p| p.name.ends_with("q_norm.scale")),
            qwen3
        );
        for p in &report {
            assert!(p.ok, "{}: {p:?}", cfg.arch.name());
        }
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
    assert!(out.contains("96 passed, 0 failed"), "{out}");
    assert!(
        out.contains("whole qwen3    trf_blocks.1.att.k_norm.scale [6]"),
        "{out}"
    );
    assert!(!out.contains("layer_norm ["), "only the whole model: {out}");
}
