//! Autograd semantics: the book's appendix A example, accumulation, retain_grad, detach, freed
//! graphs, clear errors, Graphviz export, and a wrong backward being caught by gradcheck.

use scratchgpt::autograd::gradcheck::{gradcheck, GradcheckOptions};
use scratchgpt::autograd::live_graph_nodes;
use scratchgpt::{no_grad, Error, Tensor};

fn grad(x: &Tensor<f64>) -> Vec<f64> {
    x.grad().expect("has a gradient").to_vec().unwrap()
}

fn t(v: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

#[test]
fn appendix_a_logistic_regression_example() {
    // y = 1, x1 = 1.1, w1 = 2.2, b = 0; z = x1·w1 + b; a = σ(z); loss = BCE(a, y) = −ln a.
    let x1 = Tensor::<f32>::from_vec(vec![1.1], &[1]).unwrap();
    let w1 = Tensor::<f32>::from_vec(vec![2.2], &[1])
        .unwrap()
        .requires_grad_(true);
    let b = Tensor::<f32>::from_vec(vec![0.0], &[1])
        .unwrap()
        .requires_grad_(true);
    let z = x1.mul(&w1).unwrap().add(&b).unwrap();
    let a = z.sigmoid().unwrap();
    let loss = a.log().unwrap().neg().unwrap().mean_all().unwrap();
    assert!(
        (loss.item().unwrap() - 0.0852).abs() < 5e-5,
        "loss {}",
        loss.item().unwrap()
    );
    loss.backward().unwrap();
    let dw1 = w1.grad().unwrap().value().unwrap()[[0]];
    let db = b.grad().unwrap().value().unwrap()[[0]];
    assert!((dw1 - (-0.0898)).abs() < 5e-5, "dL/dw1 {dw1}");
    assert!((db - (-0.0817)).abs() < 5e-5, "dL/db {db}");
}

#[test]
fn gradients_accumulate_across_uses_and_calls_until_zero_grad() {
    let x = t(&[1.0, 2.0, 3.0], &[3]).requires_grad_(true);
    // y = Σ x·x + 3·Σ x → ∂y/∂x = 2x + 3
    let y = || {
        x.mul(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&x.mul_scalar(3.0).unwrap().sum_all().unwrap())
            .unwrap()
    };
    y().backward().unwrap();
    assert_eq!(grad(&x), vec![5.0, 7.0, 9.0]);
    y().backward().unwrap();
    assert_eq!(grad(&x), vec![10.0, 14.0, 18.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    y().backward().unwrap();
    assert_eq!(grad(&x), vec![5.0, 7.0, 9.0]);
}

#[test]
fn retain_grad_keeps_an_intermediate_gradient() {
    let x = t(&[1.0, -2.0], &[2]).requires_grad_(true);
    let h = x.mul_scalar(3.0).unwrap();
    h.retain_grad();
    let other = x.mul_scalar(2.0).unwrap(); // not retained
    let loss = h.mul(&h).unwrap().add(&other).unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    assert_eq!(grad(&h), vec![6.0, -12.0]); // 2h
    assert!(other.grad().is_none());
    assert_eq!(grad(&x), vec![20.0, -34.0]); // 3·2h + 2
}

#[test]
fn detach_stops_the_gradient() {
    let x = t(&[2.0], &[1]).requires_grad_(true);
    let y = x.mul(&x.detach()).unwrap().sum_all().unwrap(); // treats the second x as constant
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![2.0]);
}

#[test]
fn backward_frees_the_graph_and_a_second_backward_is_a_clear_error() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true);
    let y = x.exp().unwrap().sum_all().unwrap();
    assert!(live_graph_nodes() >= 2);
    y.backward().unwrap();
    assert_eq!(
        live_graph_nodes(),
        0,
        "backward must free every recorded op"
    );
    match y.backward() {
        Err(Error::GraphFreed { op }) => assert_eq!(op, "sum_all"),
        other => panic!("expected GraphFreed, got {other:?}"),
    }
}

#[test]
fn backward_errors_name_the_problem() {
    let c = t(&[1.0], &[1]);
    assert!(matches!(
        c.exp().unwrap().backward(),
        Err(Error::NoGradRequired)
    ));
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true);
    let y = x.exp().unwrap();
    let e = y.backward().unwrap_err();
    assert!(matches!(e, Error::NonScalarBackward { .. }));
    assert!(e.to_string().contains("backward_with"), "{e}");
    // backward_with a gradient of the wrong shape
    let e = y.backward_with(&Tensor::zeros(&[3])).unwrap_err();
    assert!(
        e.to_string().contains("[2]") && e.to_string().contains("[3]"),
        "{e}"
    );
    // the right one works
    y.backward_with(&Tensor::ones(&[2])).unwrap();
    assert!(x.grad().is_some());
}

#[test]
fn no_grad_records_nothing() {
    let w = Tensor::<f64>::randn(&[4, 4], 1).requires_grad_(true);
    let y = no_grad(|| w.matmul(&w).unwrap().tanh().unwrap());
    assert!(!y.requires_grad());
    assert!(y.is_leaf());
    assert_eq!(live_graph_nodes(), 0);
    // grad mode is back on after the closure
    let z = w.matmul(&w).unwrap();
    assert!(z.requires_grad());
}

#[test]
fn deep_graphs_backward_and_drop_without_overflowing_the_stack() {
    let x = t(&[0.5], &[1]).requires_grad_(true);
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0]);
    // and dropping an un-backpropagated deep graph
    let mut z = x.clone();
    for _ in 0..20_000 {
        z = z.add_scalar(0.0).unwrap();
    }
    drop(z);
    assert_eq!(live_graph_nodes(), 0);
}

#[test]
fn graph_dot_shows_ops_shapes_and_retained_grads() {
    let x = Tensor::<f32>::randn(&[2, 3], 1).requires_grad_(true);
    x.set_name("x");
    let h = x.tanh().unwrap();
    h.retain_grad();
    let loss = h.sum_all().unwrap();
    let dot = loss.graph_dot();
    assert!(dot.starts_with("digraph"), "{dot}");
    for needle in ["tanh", "sum_all", "x", "[2, 3]"] {
        assert!(dot.contains(needle), "missing {needle} in\n{dot}");
    }
}

#[test]
fn a_wrong_backward_fails_gradcheck() {
    // An op whose backward is off by a factor 2 (a classic bug): y = x², "dy/dx = x".
    fn square_wrong(x: &Tensor<f64>) -> scratchgpt::Result<Tensor<f64>> {
        let xv = x.value()?;
        let y = xv.mapv(|v| v * v);
        Ok(Tensor::from_op("square_wrong", y, &[x], move |g, _| {
            Ok(vec![Some((g * &xv).into_shared())])
        }))
    }
    fn square_right(x: &Tensor<f64>) -> scratchgpt::Result<Tensor<f64>> {
        let xv = x.value()?;
        let y = xv.mapv(|v| v * v);
        Ok(Tensor::from_op("square", y, &[x], move |g, _| {
            Ok(vec![Some((g * &xv * 2.0).into_shared())])
        }))
    }
    let x = Tensor::<f64>::randn(&[3, 2], 5).requires_grad_(true);
    let opts = GradcheckOptions::default();
    let bad = gradcheck(|xs| square_wrong(&xs[0]), std::slice::from_ref(&x), &opts).unwrap();
    assert!(!bad.ok(), "a factor-2 error must fail:\n{bad}");
    let good = gradcheck(|xs| square_right(&xs[0]), &[x], &opts).unwrap();
    assert!(good.ok(), "{good}");
}

#[test]
fn a_tiny_error_in_a_fused_backward_is_caught() {
    // Gradcheck must be sharp: a 1e-4 relative error in the gradient flowing into layer norm
    // (an identity op whose backward scales by 1.0001) fails at rtol 1e-6.
    let x = Tensor::<f64>::randn(&[2, 5], 3).requires_grad_(true);
    let ones = Tensor::<f64>::ones(&[5]);
    let zeros = Tensor::<f64>::zeros(&[5]);
    let report = gradcheck(
        |xs| {
            let y = xs[0].layer_norm(&ones, &zeros, 1e-5)?;
            let yv = y.value()?;
            Ok(Tensor::from_op("scaled_identity", yv, &[&y], |g, _| {
                Ok(vec![Some((g * 1.0001).into_shared())])
            }))
        },
        &[x],
        &GradcheckOptions::default(),
    )
    .unwrap();
    assert!(
        !report.ok(),
        "a 1e-4 relative error must fail at rtol 1e-6:\n{report}"
    );
}

#[test]
fn tie_conventions_at_kinks_are_pytorchs() {
    // max over an axis with a tie: the whole gradient goes to the first maximal element (as
    // PyTorch's `max(dim)`), not split between them.
    let x = t(&[1.0, 3.0, 3.0, 2.0, 5.0, 5.0], &[2, 3]).requires_grad_(true);
    x.max(1, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(grad(&x), [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    // relu at its kink x = 0: derivative 0 (PyTorch's choice), 1 above, 0 below.
    let x = t(&[-1.0, 0.0, 2.0], &[3]).requires_grad_(true);
    x.relu().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&x), [0.0, 0.0, 1.0]);
}

#[test]
fn log_sigmoid_is_exact_on_both_tails() {
    let x = t(&[-100.0, -1.0, 0.0, 1.0, 40.0], &[5]).requires_grad_(true);
    let y = x.log_sigmoid().unwrap();
    let v = y.to_vec().unwrap();
    assert_eq!(v[0], -100.0); // sigmoid(x).log() would be ln(0) = −∞
    assert!((v[2] + std::f64::consts::LN_2).abs() < 1e-15);
    assert!(v[4] < 0.0 && v[4] > -1e-17); // ≈ −e⁻⁴⁰, not rounded to a wrong magnitude
    y.sum_all().unwrap().backward().unwrap();
    let g = grad(&x);
    // d/dx ln σ(x) = σ(−x): 1 far left, ½ at 0, e⁻⁴⁰ far right.
    assert_eq!(g[0], 1.0);
    assert_eq!(g[2], 0.5);
    assert!((g[4] - (-40.0f64).exp()).abs() < 1e-30);
}

#[test]
fn backward_hooked_reports_each_parameter_once_when_its_gradient_is_final() {
    use scratchgpt::gpt::{GptConfig, GptModel};
    use scratchgpt::nn::ForwardCtx;
    use scratchgpt::Ids;
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.tie_weights = true;
    cfg.drop_rate = 0.0;
    let model = GptModel::new(&cfg, 3).unwrap();
    let ids: Vec<i64> = (0..2 * 16).map(|i| (i * 37 % 500) as i64).collect();
    let x = Ids::new(ids[..].to_vec(), &[2, 16]).unwrap();
    let y = Ids::new(ids.iter().map(|v| (v + 1) % 500).collect(), &[2, 16]).unwrap();
    let loss = || {
        model
            .forward(&x, &ForwardCtx::train(1))
            .unwrap()
            .cross_entropy(&y)
            .unwrap()
    };
    let params = model.named_parameters();
    // The plain backward's gradients.
    loss().backward().unwrap();
    let want: Vec<Vec<f32>> = params
        .iter()
        .map(|(_, p)| p.grad().unwrap().to_vec().unwrap())
        .collect();
    for (_, p) in &params {
        p.zero_grad();
    }
    // The hooked one: each parameter reported once, its gradient already complete (the value
    // read inside the hook is the plain backward's, bit for bit).
    let mut seen: Vec<(String, Vec<f32>)> = Vec::new();
    loss()
        .backward_hooked(&mut |leaf| {
            let (name, _) = params
                .iter()
                .find(|(_, p)| p.id() == leaf.id())
                .expect("a parameter");
            seen.push((name.clone(), leaf.grad().unwrap().to_vec().unwrap()));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.len(), params.len(), "every parameter, once");
    for ((name, p), w) in params.iter().zip(&want) {
        let (_, at_hook) = seen.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(at_hook, w, "{name} at its hook");
        assert_eq!(&p.grad().unwrap().to_vec().unwrap(), w, "{name} after");
    }
    // Early reports: the final norm and the last block come before the first block; the tied
    // embedding (used by the head and by the lookup) finishes with the position embedding,
    // after every block.
    let pos = |n: &str| seen.iter().position(|(s, _)| s == n).unwrap();
    assert!(
        pos("tok_emb.weight") >= seen.len() - 2,
        "{:?}",
        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    assert!(pos("pos_emb.weight") >= seen.len() - 2);
    assert!(pos("final_norm.scale") < pos("trf_blocks.0.att.W_query.weight"));
    let last_block = format!("trf_blocks.{}.ff.layers.2.weight", cfg.n_layers - 1);
    assert!(pos(&last_block) < pos("trf_blocks.0.ff.layers.2.weight"));
}

#[test]
fn backward_hooked_on_small_graphs_reports_each_leaf_once_with_its_whole_gradient() {
    // x used twice by one op (x·x) and once more by another: reported once, after all three
    // contributions (d/dx of x² + 3x is 2x + 3).
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true);
    let w = t(&[5.0, 7.0], &[2]).requires_grad_(true);
    let y = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0).unwrap())
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap();
    let mut reports: Vec<(u64, Vec<f64>)> = Vec::new();
    y.backward_hooked(&mut |leaf| {
        reports.push((leaf.id(), leaf.grad().unwrap().to_vec().unwrap()));
        Ok(())
    })
    .unwrap();
    assert_eq!(reports.len(), 2);
    let of = |id: u64| reports.iter().find(|r| r.0 == id).unwrap().1.clone();
    assert_eq!(of(x.id()), vec![5.0 * 5.0, 7.0 * 7.0]); // (2x + 3)·w
    assert_eq!(of(w.id()), vec![4.0, 10.0]); // x² + 3x
                                             // A leaf that is the loss itself.
    let s = t(&[2.0], &[1]).requires_grad_(true);
    let mut n = 0;
    s.backward_hooked(&mut |leaf| {
        assert_eq!(leaf.grad().unwrap().to_vec().unwrap(), vec![1.0]);
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 1);
    // The hook's error stops the backward and is returned.
    let z = x.mul(&w).unwrap().sum_all().unwrap();
    let e = z
        .backward_hooked(&mut |_| Err(Error::invalid("hook", "stop")))
        .unwrap_err();
    assert!(e.to_string().contains("stop"), "{e}");
}
