//! RoPE: the fused op equals Hugging Face's formula `x·cos + rotate_half(x)·sin` built from
//! elementary ops; it preserves each pair's length and is the identity at position 0; Llama 3's
//! frequency scaling keeps, blends and slows the three bands; bad settings are clear errors.

use scratchgpt::ops::gradcheck_suite::llama3_test_scaling;
use scratchgpt::ops::rope::Rope;
use scratchgpt::Tensor;

/// HF's `apply_rotary_pos_emb` for one tensor, from views and elementwise ops.
fn hf_formula(x: &Tensor<f64>, rope: &Rope, start: usize) -> Tensor<f64> {
    let s = x.shape();
    let (t, d) = (s[2], s[3]);
    let half = d / 2;
    let table = rope.table(start, t);
    // cos/sin (T, d) = cat(θ, θ) along the head axis.
    let full = |v: &[f64]| {
        let rows: Vec<f64> = (0..t)
            .flat_map(|p| {
                let r = &v[p * half..][..half];
                r.iter().chain(r.iter()).copied().collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_vec(rows, &[t, d]).unwrap()
    };
    let (cos, sin) = (full(&table.cos), full(&table.sin));
    let x1 = x.narrow(-1, 0, half).unwrap();
    let x2 = x.narrow(-1, half, half).unwrap();
    let rotated = Tensor::concat(&[&x2.neg().unwrap(), &x1], -1).unwrap();
    x.mul(&cos)
        .unwrap()
        .add(&rotated.mul(&sin).unwrap())
        .unwrap()
}

#[test]
fn the_fused_op_is_hugging_faces_rotate_half_formula() {
    let x = Tensor::<f64>::randn(&[2, 3, 5, 8], 1);
    for (rope, start) in [
        (Rope::new(8, 10_000.0, None).unwrap(), 0),
        (Rope::new(8, 500_000.0, None).unwrap(), 7),
        (
            Rope::new(8, 10_000.0, Some(llama3_test_scaling())).unwrap(),
            100,
        ),
    ] {
        let fused = x.rope(&rope.table(start, 5)).unwrap().to_vec().unwrap();
        let hf = hf_formula(&x, &rope, start).to_vec().unwrap();
        let err = fused
            .iter()
            .zip(&hf)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-14, "start {start}: {err}");
    }
}

#[test]
fn a_rotation_keeps_lengths_and_position_zero_is_the_identity() {
    let rope = Rope::new(6, 10_000.0, None).unwrap();
    let x = Tensor::<f64>::randn(&[1, 1, 4, 6], 2);
    let y = x.rope(&rope.table(3, 4)).unwrap();
    let (xv, yv) = (x.to_vec().unwrap(), y.to_vec().unwrap());
    for t in 0..4 {
        for k in 0..3 {
            let at = |v: &[f64], j: usize| v[t * 6 + j];
            let n0 = at(&xv, k).hypot(at(&xv, k + 3));
            let n1 = at(&yv, k).hypot(at(&yv, k + 3));
            assert!((n0 - n1).abs() < 1e-14);
        }
    }
    let x0 = Tensor::<f64>::randn(&[2, 1, 1, 6], 3);
    assert_eq!(
        x0.rope(&rope.table(0, 1)).unwrap().to_vec().unwrap(),
        x0.to_vec().unwrap()
    );
}

#[test]
fn llama3_scaling_keeps_blends_and_slows_the_three_bands() {
    let plain = Rope::new(8, 10_000.0, None).unwrap().inv_freq();
    let want = [1.0, 0.1, 0.01, 0.001];
    for (a, b) in plain.iter().zip(want) {
        assert!((a - b).abs() < 1e-15 * b.max(1.0), "{plain:?}");
    }
    let scaled = Rope::new(8, 10_000.0, Some(llama3_test_scaling()))
        .unwrap()
        .inv_freq();
    // Wavelength 2π ≈ 6.3 < 64/4: kept.
    assert_eq!(scaled[0], 1.0);
    // 62.8 lies between 16 and 64: s = (64/62.83 − 1)/3, ω = (1 − s)·0.1/8 + s·0.1.
    let s = (64.0 / (2.0 * std::f64::consts::PI / 0.1) - 1.0) / 3.0;
    assert!((scaled[1] - ((1.0 - s) * 0.1 / 8.0 + s * 0.1)).abs() < 1e-15);
    assert!(scaled[1] > 0.1 / 8.0 && scaled[1] < 0.1);
    // 628 and 6283 > 64: slowed by the factor.
    assert!((scaled[2] - 0.01 / 8.0).abs() < 1e-17);
    assert!((scaled[3] - 0.001 / 8.0).abs() < 1e-18);
}

#[test]
fn bad_rope_settings_and_shapes_are_clear_errors() {
    assert!(Rope::new(7, 10_000.0, None)
        .unwrap_err()
        .to_string()
        .contains("must be even"));
    assert!(Rope::new(8, 1.0, None)
        .unwrap_err()
        .to_string()
        .contains("rope_theta"));
    let mut bad = llama3_test_scaling();
    bad.high_freq_factor = 0.5;
    assert!(Rope::new(8, 1e4, Some(bad))
        .unwrap_err()
        .to_string()
        .contains("llama3"));
    let rope = Rope::new(8, 1e4, None).unwrap();
    let x = Tensor::<f32>::randn(&[1, 2, 5, 8], 4);
    let e = x.rope(&rope.table(0, 4)).unwrap_err().to_string();
    assert!(e.contains("rope") && e.contains("angle table"), "{e}");
}
