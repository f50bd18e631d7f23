//! Bad input gets a typed error naming the op and the shapes — never a panic.

use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{Error, Ids, Tensor};

fn r(shape: &[usize]) -> Tensor<f32> {
    Tensor::randn(shape, 0)
}

#[test]
fn elementwise_shape_mismatch_names_op_and_shapes() {
    let e = r(&[2, 3]).add(&r(&[4])).unwrap_err();
    assert!(matches!(e, Error::Broadcast { op: "add", .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("add") && msg.contains("[2, 3]") && msg.contains("[4]"),
        "{msg}"
    );
}

#[test]
fn matmul_inner_dimension_mismatch() {
    let e = r(&[2, 3]).matmul(&r(&[4, 5])).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("matmul") && msg.contains("3 vs 4"), "{msg}");
    assert!(
        r(&[2, 3, 4]).matmul(&r(&[3, 4, 5])).is_err(),
        "batch 2 vs 3 must not broadcast"
    );
    assert!(Tensor::<f32>::scalar(1.0).matmul(&r(&[1])).is_err());
}

#[test]
fn out_of_range_ids_and_targets() {
    let w = r(&[5, 3]);
    let e = w.embedding(&Ids::from_vec(vec![0, 5])).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                op: "embedding",
                index: 5,
                size: 5
            }
        ),
        "{e}"
    );
    assert!(w.embedding(&Ids::from_vec(vec![-1])).is_err());
    let logits = r(&[2, 4]);
    let e = logits
        .cross_entropy(&Ids::from_vec(vec![1, 4]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                op: "cross_entropy",
                index: 4,
                size: 4
            }
        ),
        "{e}"
    );
    let e = logits
        .cross_entropy(&Ids::from_vec(vec![-100, -100]))
        .unwrap_err();
    assert!(e.to_string().contains("ignore_index"), "{e}");
    let e = logits
        .cross_entropy(&Ids::from_vec(vec![1, 2, 3]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "cross_entropy",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn view_errors() {
    assert!(r(&[2, 3]).reshape(&[4, 2]).is_err());
    assert!(r(&[2, 3]).permute(&[0, 0]).is_err());
    assert!(r(&[2, 3]).transpose(0, 2).is_err());
    assert!(r(&[2, 3]).narrow(1, 2, 2).is_err());
    assert!(r(&[2, 3]).select(0, 2).is_err());
    assert!(r(&[2, 3]).squeeze(0).is_err());
    assert!(r(&[2, 3]).split(&[1, 1], 1).is_err());
    assert!(r(&[2, 3]).broadcast_to(&[3, 3]).is_err());
    assert!(Tensor::concat(&[&r(&[2, 3]), &r(&[3, 3])], 1).is_err());
    assert!(Tensor::<f32>::concat(&[], 0).is_err());
    assert!(Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    assert!(Ids::new(vec![1, 2, 3], &[2, 2]).is_err());
    assert!(Ids::from_rows(&[vec![1, 2], vec![3]]).is_err());
}

#[test]
fn fused_op_errors() {
    let x = r(&[2, 4]);
    assert!(x.layer_norm(&r(&[3]), &r(&[4]), 1e-5).is_err());
    assert!(x.layer_norm(&r(&[4]), &r(&[4]), 0.0).is_err());
    assert!(r(&[2, 0]).softmax().is_err());
    assert!(x.dropout(1.5, 0).is_err());
    assert!(x.max(2, false).is_err());
    assert!(x.sum(&[0, 0], false).is_err());
    let q = r(&[1, 2, 5, 4]);
    let k = r(&[1, 2, 3, 4]);
    let e = Tensor::attention(&q, &k, &k, &AttentionOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("Tq"),
        "Tq > Tk must be rejected: {e}"
    );
    assert!(Tensor::attention(&r(&[2, 4]), &k, &k, &AttentionOptions::default()).is_err());
}
