//! docs/backprop.md's worked examples, recomputed: every number printed there (to its 4
//! decimals), the intermediates from primitive ops and the results from the fused ops the model
//! uses — so the page cannot drift from the engine.

use scratchgpt::{Ids, Tensor};

fn t(v: &[f64]) -> Tensor<f64> {
    Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap()
}

/// Asserts `got` rounds to `printed` at 4 decimals.
fn printed(what: &str, got: &[f64], printed: &[f64]) {
    assert_eq!(got.len(), printed.len(), "{what}");
    for (g, p) in got.iter().zip(printed) {
        assert!(
            ((g * 1e4).round() / 1e4 - p).abs() < 1e-9,
            "{what}: computed {got:?}, the page prints {printed:?}"
        );
    }
}

fn v(x: &Tensor<f64>) -> Vec<f64> {
    x.to_vec().unwrap()
}

#[test]
fn layer_norm_on_three_numbers() {
    let x = t(&[1.0, 2.0, 4.0]).requires_grad_(true);
    let gamma = t(&[0.5, -1.0, 2.0]).requires_grad_(true);
    let beta = t(&[0.1, 0.2, 0.3]).requires_grad_(true);
    let dy = t(&[0.3, -0.2, 0.5]);
    // The intermediates, from primitive ops.
    let mu = x.mean_all().unwrap();
    printed("μ", &v(&mu), &[2.3333]);
    let dev = x.sub(&mu).unwrap();
    printed("x−μ", &v(&dev), &[-1.3333, -0.3333, 1.6667]);
    let var = dev.mul(&dev).unwrap().mean_all().unwrap();
    printed("σ²", &v(&var), &[1.5556]);
    let r = var
        .add_scalar(1e-5)
        .unwrap()
        .sqrt()
        .unwrap()
        .powf(-1.0)
        .unwrap();
    printed("r", &v(&r), &[0.8018]);
    let xhat = dev.mul(&r).unwrap();
    printed("x̂", &v(&xhat), &[-1.0690, -0.2673, 1.3363]);
    let dxhat = dy.mul(&gamma).unwrap();
    printed("dx̂", &v(&dxhat), &[0.15, 0.2, 1.0]);
    let m1 = dxhat.mean_all().unwrap();
    printed("mean(dx̂)", &v(&m1), &[0.45]);
    let m2 = dxhat.mul(&xhat).unwrap().mean_all().unwrap();
    printed("mean(dx̂ ⊙ x̂)", &v(&m2), &[0.3742]);
    // The results, from the fused op and its backward.
    let y = x.layer_norm(&gamma, &beta, 1e-5).unwrap();
    printed("y", &v(&y), &[-0.4345, 0.4673, 2.9726]);
    y.backward_with(&dy).unwrap();
    let grad = |p: &Tensor<f64>| v(&p.grad().unwrap());
    printed("dβ", &grad(&beta), &[0.3, -0.2, 0.5]);
    printed("dγ", &grad(&gamma), &[-0.3207, 0.0535, 0.6682]);
    let dx = grad(&x);
    printed("dx", &dx, &[0.0802, -0.1203, 0.0401]);
    // The two checks the page suggests.
    assert!(dx.iter().sum::<f64>().abs() < 1e-12);
    let xh = v(&xhat);
    // Zero up to ε: r = 1/√(σ² + ε) undoes a scaling of the deviations only when ε = 0.
    assert!(dx.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>().abs() < 1e-5);
}

#[test]
fn softmax_and_cross_entropy_on_three_logits() {
    let logits = Tensor::from_vec(vec![2.0, 1.0, 0.1], &[1, 3])
        .unwrap()
        .requires_grad_(true);
    let e = logits.add_scalar(-2.0).unwrap().exp().unwrap();
    printed("e^(λ−m)", &v(&e), &[1.0, 0.3679, 0.1496]);
    let sum = e.sum_all().unwrap();
    printed("Σ", &v(&sum), &[1.5174]);
    let p = logits.softmax().unwrap();
    printed("p", &v(&p), &[0.6590, 0.2424, 0.0986]);
    let lse = sum.log().unwrap().add_scalar(2.0).unwrap();
    printed("lse", &v(&lse), &[2.4170]);
    let loss = logits
        .cross_entropy(&Ids::new(vec![0], &[1]).unwrap())
        .unwrap();
    printed("L", &v(&loss), &[0.4170]);
    loss.backward().unwrap();
    let d = v(&logits.grad().unwrap());
    printed("dλ", &d, &[-0.3410, 0.2424, 0.0986]);
    assert!(d.iter().sum::<f64>().abs() < 1e-12);
}
