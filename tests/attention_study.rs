//! Book chapter 3: the study attention modules reproduce the book's numbers and equal the fused
//! causal attention used by the GPT, on the same weights (dropout included).

use scratchgpt::gpt::study_attention::{
    simplified_self_attention, CausalAttention, MultiHeadAttentionWrapper, SelfAttentionV1,
    SelfAttentionV2,
};
use scratchgpt::gpt::MultiHeadAttention;
use scratchgpt::nn::{ForwardCtx, Linear};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::Tensor;

fn inputs() -> Tensor {
    // "Your journey starts with one step", 3-d embeddings (book §3.3)
    Tensor::from_vec(
        vec![
            0.43, 0.15, 0.89, 0.55, 0.87, 0.66, 0.57, 0.85, 0.64, 0.22, 0.58, 0.33, 0.77, 0.25,
            0.10, 0.05, 0.80, 0.55,
        ],
        &[6, 3],
    )
    .unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn simplified_attention_gives_the_books_numbers() {
    let (scores, weights, context) = simplified_self_attention(&inputs()).unwrap();
    let row = |t: &Tensor| t.select(0, 1).unwrap().to_vec().unwrap();
    assert!(
        close(
            &row(&scores),
            &[0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865],
            1e-4
        ),
        "{:?}",
        row(&scores)
    );
    assert!(
        close(
            &row(&weights),
            &[0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581],
            1e-4
        ),
        "{:?}",
        row(&weights)
    );
    assert!(
        close(&row(&context), &[0.4419, 0.6515, 0.5683], 1e-4),
        "{:?}",
        row(&context)
    );
    let sums = weights.sum(&[-1], false).unwrap().to_vec().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
}

/// `Linear` layers whose weights are `Wᵀ` of the given `(d_in, d_out)` matrices.
fn linear_from(w: &Tensor) -> Linear {
    Linear {
        weight: w.transpose(0, 1).unwrap().contiguous().unwrap().detach(),
        bias: None,
        lora: None,
    }
}

#[test]
fn v1_v2_causal_and_fused_agree_on_the_same_weights() {
    let mut rng = Rng::new(123);
    let v1 = SelfAttentionV1::new(3, 2, &mut rng);
    let v2 = SelfAttentionV2 {
        w_query: linear_from(&v1.w_query),
        w_key: linear_from(&v1.w_key),
        w_value: linear_from(&v1.w_value),
    };
    let x = inputs();
    let a = v1.forward(&x).unwrap();
    assert_eq!(a.shape(), vec![6, 2]);
    assert!(max_diff(&a, &v2.forward(&x).unwrap()) < 1e-6);
    let _ = SelfAttentionV2::new(3, 2, false, &mut rng);

    // causal attention on a batch of two copies == fused attention with one head, dropout included
    let batch = Tensor::concat(&[&x.unsqueeze(0).unwrap(), &x.unsqueeze(0).unwrap()], 0).unwrap(); // (2, 6, 3)
    let ca = CausalAttention::new(3, 2, 0.5, false, &mut rng);
    for ctx_seed in [None, Some(99u64)] {
        let ctx = || ctx_seed.map_or_else(ForwardCtx::eval, ForwardCtx::train);
        let unfused = ca.forward(&batch, &ctx()).unwrap();
        let mha = MultiHeadAttention {
            w_query: ca.w_query.clone(),
            w_key: ca.w_key.clone(),
            w_value: ca.w_value.clone(),
            out_proj: Linear {
                weight: Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]).unwrap(),
                bias: None,
                lora: None,
            },
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 2,
            dropout: 0.5,
            q_norm: None,
            k_norm: None,
            rope: None,
        };
        let fused = mha.forward(&batch, &ctx()).unwrap();
        assert!(
            max_diff(&unfused, &fused) < 1e-6,
            "dropout {ctx_seed:?}: {}",
            max_diff(&unfused, &fused)
        );
        // the first row attends only to itself: its context is its value vector (no dropout case)
        if ctx_seed.is_none() {
            let v0 = ca.w_value.forward(&x).unwrap().select(0, 0).unwrap();
            assert!(max_diff(&unfused.select(0, 0).unwrap().select(0, 0).unwrap(), &v0) < 1e-6);
        }
    }
}

#[test]
fn the_wrapper_equals_fused_multi_head_attention() {
    let mut rng = Rng::new(7);
    let (d_in, d_head, heads) = (4, 3, 2);
    let wrapper = MultiHeadAttentionWrapper::new(d_in, d_head, heads, 0.0, true, &mut rng);
    let x = Tensor::<f32>::randn(&[2, 5, d_in], 1);
    let want = wrapper.forward(&x, &ForwardCtx::eval()).unwrap();
    assert_eq!(want.shape(), vec![2, 5, heads * d_head]);
    // stack the heads' projections: head h owns output rows h·d_head..(h+1)·d_head
    let stack = |f: &dyn Fn(&CausalAttention) -> &Linear| Linear {
        weight: Tensor::concat(
            &wrapper
                .heads
                .iter()
                .map(|h| &f(h).weight)
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap(),
        bias: Some(
            Tensor::concat(
                &wrapper
                    .heads
                    .iter()
                    .map(|h| f(h).bias.as_ref().unwrap())
                    .collect::<Vec<_>>(),
                0,
            )
            .unwrap(),
        ),
        lora: None,
    };
    let d = heads * d_head;
    let identity: Vec<f32> = (0..d * d)
        .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let mha = MultiHeadAttention {
        w_query: stack(&|h| &h.w_query),
        w_key: stack(&|h| &h.w_key),
        w_value: stack(&|h| &h.w_value),
        out_proj: Linear {
            weight: Tensor::from_vec(identity, &[d, d]).unwrap(),
            bias: None,
            lora: None,
        },
        num_heads: heads,
        num_kv_heads: heads,
        head_dim: d_head,
        dropout: 0.0,
        q_norm: None,
        k_norm: None,
        rope: None,
    };
    let got = mha.forward(&x, &ForwardCtx::eval()).unwrap();
    assert!(max_diff(&got, &want) < 1e-6, "{}", max_diff(&got, &want));
}
