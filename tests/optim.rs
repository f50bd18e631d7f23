//! Optimizers against hand-computed updates, clipping and the warmup/cosine schedule.

use scratchgpt::optim::{clip_grad_norm, AdamW, AdamWConfig, LrSchedule, Sgd};
use scratchgpt::Tensor;

fn param(v: &[f32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()])
        .unwrap()
        .requires_grad_(true)
}

fn set_grad(p: &Tensor, g: &[f32]) {
    p.zero_grad();
    p.accumulate_grad(&Tensor::from_vec(g.to_vec(), &[g.len()]).unwrap().storage())
        .unwrap();
}

#[test]
fn sgd_with_momentum_and_weight_decay_matches_torch_formula() {
    let p = param(&[1.0, -2.0]);
    let mut opt = Sgd::new(vec![p.clone()], 0.1, 0.9, 0.01);
    set_grad(&p, &[0.5, 0.25]);
    opt.step().unwrap();
    // d = g + 0.01p = [0.51, 0.23]; b = d; p -= 0.1 b
    let v = p.to_vec().unwrap();
    assert!(
        (v[0] - (1.0 - 0.051)).abs() < 1e-6 && (v[1] - (-2.0 - 0.023)).abs() < 1e-6,
        "{v:?}"
    );
    set_grad(&p, &[0.5, 0.25]);
    opt.step().unwrap();
    // d = g + 0.01p; b = 0.9 b_prev + d
    let d0 = 0.5 + 0.01 * (1.0 - 0.051);
    let b0 = 0.9 * 0.51 + d0;
    assert!((p.to_vec().unwrap()[0] - (1.0 - 0.051 - 0.1 * b0)).abs() < 1e-6);
    // no gradient: untouched
    let q = param(&[3.0]);
    let mut opt = Sgd::new(vec![q.clone()], 0.1, 0.0, 0.0);
    opt.step().unwrap();
    assert_eq!(q.to_vec().unwrap(), vec![3.0]);
}

#[test]
fn adamw_first_step_moves_each_weight_by_about_lr() {
    // After one step m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps) ≈ lr·sign(g), after the
    // decoupled decay p·(1 − lr·λ).
    let p = param(&[1.0, -1.0, 0.5]);
    let mut opt = AdamW::new(
        vec![("w".into(), p.clone())],
        AdamWConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        },
    );
    set_grad(&p, &[2.0, -3.0, 0.0]);
    opt.step().unwrap();
    let v = p.to_vec().unwrap();
    let decay = 1.0 - 0.01 * 0.1;
    assert!((v[0] - (1.0 * decay - 0.01)).abs() < 1e-6, "{v:?}");
    assert!((v[1] - (-decay + 0.01)).abs() < 1e-6, "{v:?}");
    assert!((v[2] - 0.5 * decay).abs() < 1e-6, "{v:?}");
    // exempting biases and norms
    let b = param(&[1.0]);
    let opt = AdamW::new(
        vec![
            ("x.bias".into(), b),
            ("final_norm.scale".into(), param(&[1.0])),
            ("w.weight".into(), param(&[1.0])),
        ],
        AdamWConfig {
            exempt_biases_and_norms: true,
            ..AdamWConfig::default()
        },
    );
    let decays: Vec<bool> = opt.state.iter().map(|s| s.decay).collect();
    assert_eq!(decays, vec![false, false, true]);
}

#[test]
fn clipping_and_schedule() {
    let a = param(&[3.0, 0.0]);
    let b = param(&[4.0]);
    set_grad(&a, &[3.0, 0.0]);
    set_grad(&b, &[4.0]);
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-9);
    let ga = a.grad().unwrap().to_vec().unwrap();
    assert!((ga[0] - 0.6).abs() < 1e-5, "{ga:?}");
    let s = LrSchedule {
        peak_lr: 1e-3,
        initial_lr: 1e-5,
        min_lr: 1e-4,
        warmup_steps: 10,
        total_steps: 110,
        cosine: true,
    };
    assert!((s.lr_at(0) - 1e-5).abs() < 1e-12);
    assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);
    assert!((s.lr_at(60) - (1e-4 + 0.9e-3 * 0.5)).abs() < 1e-9);
    assert!((s.lr_at(110) - 1e-4).abs() < 1e-12);
    assert_eq!(LrSchedule::constant(3e-4).lr_at(1000), 3e-4);
}
