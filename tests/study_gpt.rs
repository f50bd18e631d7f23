//! `scratchgpt study gpt`: a tiny GPT built from elementary ops and from the fused ones, one
//! backward through each, gradients compared at every boundary — and the guarantees that make the
//! comparison mean something: the fused side *is* the real model, the primitive side contains no
//! fused op, and a wrong rule is caught at the boundary where backward first meets it.

use std::rc::Rc;

use ndarray::ArrayD;
use scratchgpt::gpt::GptModel;
use scratchgpt::nn::ForwardCtx;
use scratchgpt::study::exercises::{Exercise, ExerciseOps, LibraryRules, Rules};
use scratchgpt::study::{
    compare, study_model, Fused, Primitive, RowKind, Side, TinyBatch, FUSED_OPS,
};

#[test]
fn the_fused_study_gpt_is_the_real_model_bit_for_bit() {
    let model = study_model(7).unwrap();
    let batch = TinyBatch::example();
    let real: GptModel<f64> = model.cast().unwrap();
    let loss = real
        .forward(&batch.ids, &ForwardCtx::eval())
        .unwrap()
        .cross_entropy(&batch.targets)
        .unwrap();
    loss.backward().unwrap();
    let study = Side::run(&Fused, &model, &batch, false).unwrap();
    assert_eq!(study.loss.to_bits(), loss.item().unwrap().to_bits());
    let reals = real.named_parameters();
    assert_eq!(reals.len(), study.params.len());
    for ((name, p), (sname, s)) in reals.iter().zip(&study.params) {
        assert_eq!(name, sname);
        let (a, b) = (
            p.grad().unwrap().to_vec().unwrap(),
            s.grad().unwrap().to_vec().unwrap(),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: the study GPT's gradient differs from GptModel's"
        );
    }
}

#[test]
fn primitive_and_fused_agree_on_every_boundary_and_parameter() {
    let model = study_model(7).unwrap();
    let batch = TinyBatch::example();
    let p = Side::run(&Primitive, &model, &batch, false).unwrap();
    let f = Side::run(&Fused, &model, &batch, false).unwrap();
    let cmp = compare(&p, &f).unwrap();
    assert!((cmp.loss_a - cmp.loss_b).abs() < 1e-12);
    // 2 blocks × (att output, ff output, block output) + embeddings + logits = 8 boundaries;
    // 36 parameter tensors (the tied head listed once).
    let boundaries = cmp
        .rows
        .iter()
        .filter(|r| r.kind == RowKind::Boundary)
        .count();
    assert_eq!(boundaries, 8);
    assert_eq!(cmp.rows.len(), 8 + model.named_parameters().len());
    assert_eq!(
        cmp.rows[0].name, "logits",
        "reverse order: backward reaches the logits first"
    );
    assert_eq!(cmp.rows.last().unwrap().name, "tok_emb.weight");
    for r in &cmp.rows {
        assert!(
            r.max_diff <= 1e-10,
            "{} differs by {:.2e}",
            r.name,
            r.max_diff
        );
        assert!(r.norm_a.is_finite());
    }
    assert!(cmp.agrees(1e-10));
    // Not vacuous: real gradients flow everywhere but the key bias (softmax is shift-invariant:
    // q·b_k adds one constant to a whole row of scores, so its gradient is 0 up to rounding).
    for r in &cmp.rows {
        if r.name.ends_with("W_key.bias") {
            assert!(r.norm_b < 1e-12, "{}: {}", r.name, r.norm_b);
        } else {
            assert!(r.norm_b > 1e-3, "{}: {}", r.name, r.norm_b);
        }
    }
}

#[test]
fn the_primitive_graph_contains_no_fused_op_and_the_fused_graph_uses_them() {
    let model = study_model(7).unwrap();
    let batch = TinyBatch::example();
    let p = Side::run(&Primitive, &model, &batch, true).unwrap();
    let ops = p.graph.as_ref().unwrap().op_names();
    for fused in FUSED_OPS {
        assert!(
            !ops.contains(fused),
            "the primitive graph records {fused}: {ops:?}"
        );
    }
    for elementary in [
        "matmul",
        "exp",
        "log",
        "sqrt",
        "tanh",
        "max",
        "gather",
        "masked_fill",
    ] {
        assert!(ops.contains(elementary), "{elementary} missing: {ops:?}");
    }
    let f = Side::run(&Fused, &model, &batch, true).unwrap();
    let fops = f.graph.as_ref().unwrap().op_names();
    for op in [
        "embedding",
        "linear",
        "layer_norm",
        "gelu",
        "attention",
        "cross_entropy",
    ] {
        assert!(
            fops.contains(op),
            "{op} missing from the fused graph: {fops:?}"
        );
    }
}

/// The library's rules, except GELU's derivative, which is off by a factor of 2.
struct HalfGelu;

impl Rules for HalfGelu {
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        LibraryRules.tanh(y, dy)
    }
    fn matmul(
        &self,
        a: &ndarray::Array2<f64>,
        b: &ndarray::Array2<f64>,
        dy: &ndarray::Array2<f64>,
    ) -> (ndarray::Array2<f64>, ndarray::Array2<f64>) {
        LibraryRules.matmul(a, b, dy)
    }
    fn linear(
        &self,
        x: &ndarray::Array2<f64>,
        w: &ndarray::Array2<f64>,
        dy: &ndarray::Array2<f64>,
    ) -> (
        ndarray::Array2<f64>,
        ndarray::Array2<f64>,
        ndarray::Array1<f64>,
    ) {
        LibraryRules.linear(x, w, dy)
    }
    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        LibraryRules.gelu(x, dy) * 0.5
    }
    fn embedding(
        &self,
        ids: &[usize],
        v: usize,
        dy: &ndarray::Array2<f64>,
    ) -> ndarray::Array2<f64> {
        LibraryRules.embedding(ids, v, dy)
    }
    fn gather(
        &self,
        n: usize,
        index: &ndarray::Array2<usize>,
        dy: &ndarray::Array2<f64>,
    ) -> ndarray::Array2<f64> {
        LibraryRules.gather(n, index, dy)
    }
    fn softmax(&self, y: &ndarray::Array2<f64>, dy: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
        LibraryRules.softmax(y, dy)
    }
    fn log_softmax(
        &self,
        y: &ndarray::Array2<f64>,
        dy: &ndarray::Array2<f64>,
    ) -> ndarray::Array2<f64> {
        LibraryRules.log_softmax(y, dy)
    }
    fn cross_entropy(&self, z: &ndarray::Array2<f64>, t: &[usize], d: f64) -> ndarray::Array2<f64> {
        LibraryRules.cross_entropy(z, t, d)
    }
    fn layer_norm(
        &self,
        x: &ndarray::Array2<f64>,
        scale: &ndarray::Array1<f64>,
        eps: f64,
        dy: &ndarray::Array2<f64>,
    ) -> (
        ndarray::Array2<f64>,
        ndarray::Array1<f64>,
        ndarray::Array1<f64>,
    ) {
        LibraryRules.layer_norm(x, scale, eps, dy)
    }
    fn attention(
        &self,
        q: &ndarray::Array2<f64>,
        k: &ndarray::Array2<f64>,
        v: &ndarray::Array2<f64>,
        dy: &ndarray::Array2<f64>,
    ) -> (
        ndarray::Array2<f64>,
        ndarray::Array2<f64>,
        ndarray::Array2<f64>,
    ) {
        LibraryRules.attention(q, k, v, dy)
    }
}

#[test]
fn one_wrong_rule_is_flagged_where_backward_first_meets_it() {
    let model = study_model(7).unwrap();
    let batch = TinyBatch::example();
    let wrong = ExerciseOps::only(Rc::new(HalfGelu), Exercise::Gelu);
    let w = Side::run(&wrong, &model, &batch, false).unwrap();
    let f = Side::run(&Fused, &model, &batch, false).unwrap();
    let cmp = compare(&w, &f).unwrap();
    assert_eq!(
        cmp.loss_a.to_bits(),
        cmp.loss_b.to_bits(),
        "the forward is the library's"
    );
    assert!(!cmp.agrees(1e-6));
    // Backward meets block 1's GELU after the logits, the block output and the feed-forward
    // output (all still right); the first wrong boundary is the one before it.
    let first = cmp.first_disagreement(1e-10).unwrap();
    assert_eq!(first.name, "trf_blocks.1.att output");
    for r in &cmp.rows[..3] {
        assert!(
            r.max_diff <= 1e-12,
            "{} should be untouched: {}",
            r.name,
            r.max_diff
        );
    }
    // The same rule through the library's own rules agrees exactly.
    let right = ExerciseOps::only(Rc::new(LibraryRules), Exercise::Gelu);
    let r = Side::run(&right, &model, &batch, false).unwrap();
    assert_eq!(compare(&r, &f).unwrap().max_diff(), 0.0);
}

#[test]
fn the_drawing_has_one_cluster_per_module_and_every_gradient_norm() {
    let model = study_model(7).unwrap();
    let f = Side::run(&Fused, &model, &TinyBatch::example(), true).unwrap();
    let dot = f.graph.as_ref().unwrap().to_dot("test");
    for module in [
        "embedding",
        "trf_blocks.0.att",
        "trf_blocks.0.ff",
        "trf_blocks.1.att",
        "trf_blocks.1.ff",
        "head",
        "loss",
    ] {
        assert!(
            dot.contains(&format!("label=\"{module}\"")),
            "{module} cluster missing"
        );
    }
    assert_eq!(dot.matches("subgraph cluster_").count(), 7);
    let nodes = f.graph.as_ref().unwrap().nodes.len();
    assert_eq!(
        dot.matches("|g| ").count(),
        nodes,
        "every node annotated after backward"
    );
    assert!(!dot.contains("no grad"));
    // Parameters sit in their module's cluster: the tied embedding in "embedding".
    let emb = dot.split("label=\"embedding\"").nth(1).unwrap();
    let emb = &emb[..emb.find("  }").unwrap()];
    assert!(emb.contains("tok_emb.weight") && emb.contains("pos_emb.weight"));
}

fn study(args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .arg("study")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cli_study_gpt_prints_every_boundary_shows_one_and_draws_the_graph() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-study-gpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dot = dir.join("gpt.dot");
    let (ok, out, err) = study(&[
        "gpt",
        "--show",
        "trf_blocks.0.norm1.scale",
        "--dot",
        dot.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("primitive and fused agree"), "{out}");
    for name in [
        "logits",
        "trf_blocks.1.att output",
        "embeddings (block 0 input)",
        "tok_emb.weight",
    ] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    assert!(out.contains("∂L/∂(trf_blocks.0.norm1.scale) through the primitive graph, shape [8]"));
    assert!(out.contains("∂L/∂(trf_blocks.0.norm1.scale) through the fused graph, shape [8]"));
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph study") && text.contains("attention"));

    let (ok, _, _) = study(&[
        "gpt",
        "--dot",
        dot.to_str().unwrap(),
        "--graph",
        "primitive",
    ]);
    assert!(ok);
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.contains("masked_fill") && !text.contains("\"attention"));

    let (ok, _, err) = study(&["gpt", "--show", "nonsense"]);
    assert!(!ok);
    assert!(
        err.contains("no boundary or parameter called \"nonsense\""),
        "{err}"
    );
    assert!(err.contains("trf_blocks.1.ff.layers.0.weight"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
