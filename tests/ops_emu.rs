//! Every op with a device path against the CPU op (whose backward is gradchecked in f64): the
//! same inputs on emulated `cuda:0` and on the CPU, the same upstream gradient; the outputs and
//! every input gradient must agree to f32 rounding (relative to the largest reference value).
//! Odd sizes, strided views as inputs, broadcasting both ways; every case under each of the
//! emulator's four thread schedules.

use scratchgpt::backend::cuda;
use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{Device, Ids, Result, Tensor};

const DEV: Device = Device::Cuda(0);

fn close(what: &str, want: &[f32], got: &[f32], tol: f64) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f64, |m, &v| m.max((v as f64).abs()));
    let worst = want
        .iter()
        .zip(got)
        .map(|(&a, &b)| ((a as f64) - (b as f64)).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst / scale <= tol,
        "{what}: worst difference {worst:e} against a scale of {scale:e}"
    );
}

/// Runs `f` on fresh leaves (requiring grad) on both devices, backpropagates the same random
/// upstream gradient, and compares the output and each input's gradient.
fn check(name: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    check_tol(name, inputs, 2e-5, f)
}

/// Under each of the emulator's thread schedules (a kernel missing a barrier fails under one).
fn check_tol(name: &str, inputs: Vec<Tensor>, tol: f64, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    for s in cuda::emu::Schedule::ALL {
        cuda::install_emulator_with(0, s);
        check_on_device(&format!("{name} ({s:?} schedule)"), &inputs, tol, &f);
    }
}

fn check_on_device(
    name: &str,
    inputs: &[Tensor],
    tol: f64,
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let cpu: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.detach().requires_grad_(true))
        .collect();
    let dev: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_device(DEV).unwrap().requires_grad_(true))
        .collect();
    let yc = f(&cpu).unwrap();
    let yd = f(&dev).unwrap_or_else(|e| panic!("{name} on the device: {e}"));
    assert_eq!(yd.device(), DEV, "{name}: output device");
    assert_eq!(yc.shape(), yd.shape(), "{name}: output shape");
    close(
        &format!("{name} output"),
        &yc.to_vec().unwrap(),
        &yd.to_vec().unwrap(),
        tol,
    );
    let r = Tensor::<f32>::randn(&yc.shape(), 99);
    yc.backward_with(&r).unwrap();
    yd.backward_with(&r.to_device(DEV).unwrap()).unwrap();
    for (i, (c, d)) in cpu.iter().zip(&dev).enumerate() {
        let (gc, gd) = (c.grad().unwrap(), d.grad().unwrap());
        assert_eq!(gd.device(), DEV);
        close(
            &format!("{name} ∂/∂input{i}"),
            &gc.to_vec().unwrap(),
            &gd.to_vec().unwrap(),
            tol,
        );
    }
}

fn rnd(shape: &[usize], seed: u64) -> Tensor {
    Tensor::<f32>::randn(shape, seed)
}

#[test]
fn views() {
    check(
        "reshape of a transposed view",
        vec![rnd(&[3, 5, 7], 1)],
        |x| x[0].transpose(0, 2)?.reshape(&[7, 15])?.mul_scalar(2.0),
    );
    check("permute", vec![rnd(&[2, 3, 4, 5], 2)], |x| {
        x[0].permute(&[3, 1, 0, 2])?.contiguous()
    });
    check("narrow", vec![rnd(&[4, 9], 3)], |x| {
        x[0].narrow(1, 2, 5)?.mul_scalar(1.0)
    });
    check("select", vec![rnd(&[4, 9, 3], 4)], |x| {
        x[0].select(1, 7)?.mul_scalar(1.0)
    });
    check("squeeze/unsqueeze", vec![rnd(&[4, 1, 3], 5)], |x| {
        x[0].squeeze(1)?.unsqueeze(0)?.mul_scalar(1.0)
    });
    check(
        "concat",
        vec![rnd(&[2, 3, 4], 6), rnd(&[2, 5, 4], 7)],
        |x| Tensor::concat(&[&x[0], &x[1]], 1)?.mul_scalar(1.0),
    );
    check("broadcast_to", vec![rnd(&[3, 1], 8)], |x| {
        x[0].broadcast_to(&[2, 3, 5])?.mul_scalar(1.0)
    });
}

#[test]
fn binary_ops_with_broadcasting() {
    let (a, b) = (rnd(&[2, 3, 5], 10), rnd(&[3, 1], 11));
    check("add", vec![a.clone(), b.clone()], |x| x[0].add(&x[1]));
    check("sub", vec![b.clone(), a.clone()], |x| x[0].sub(&x[1]));
    check("mul", vec![a.clone(), b.clone()], |x| x[0].mul(&x[1]));
    let pos = rnd(&[3, 1], 12).mul_scalar(0.1).unwrap().exp().unwrap();
    check("div", vec![a.clone(), pos], |x| x[0].div(&x[1]));
    check(
        "add of a strided view",
        vec![a.clone(), rnd(&[5, 3], 13)],
        |x| x[0].add(&x[1].transpose(0, 1)?),
    );
}

#[test]
fn unary_ops() {
    let x = rnd(&[7, 13], 20);
    let pos = x.mul_scalar(0.5).unwrap().exp().unwrap();
    check("neg", vec![x.clone()], |x| x[0].neg());
    check("add_scalar", vec![x.clone()], |x| x[0].add_scalar(1.5));
    check("mul_scalar", vec![x.clone()], |x| x[0].mul_scalar(-3.0));
    check("div_scalar", vec![x.clone()], |x| x[0].div_scalar(4.0));
    check("exp", vec![x.clone()], |x| x[0].exp());
    check("tanh", vec![x.clone()], |x| x[0].tanh());
    check("relu", vec![x.clone()], |x| x[0].relu());
    check("sigmoid", vec![x.clone()], |x| x[0].sigmoid());
    check("log_sigmoid (tails too)", vec![x.clone()], |x| {
        x[0].mul_scalar(20.0)?.log_sigmoid()
    });
    check("silu (tails too)", vec![x.clone()], |x| {
        x[0].mul_scalar(20.0)?.silu()
    });
    check(
        "SwiGLU silu(a) ⊙ b",
        vec![x.clone(), rnd(&[7, 13], 21)],
        |x| x[0].silu()?.mul(&x[1]),
    );
    check("log", vec![pos.clone()], |x| x[0].log());
    check("sqrt", vec![pos.clone()], |x| x[0].sqrt());
    check_tol("powf", vec![pos], 1e-4, |x| x[0].powf(1.7));
    check("gelu", vec![x], |x| x[0].gelu());
}

#[test]
fn reductions() {
    let x = rnd(&[3, 4, 5], 30);
    check("sum_all", vec![x.clone()], |x| x[0].sum_all());
    check("mean_all", vec![x.clone()], |x| x[0].mean_all());
    check("sum over 0 and 2", vec![x.clone()], |x| {
        x[0].sum(&[0, 2], false)
    });
    check("mean over 1, keepdim", vec![x.clone()], |x| {
        x[0].mean(&[1], true)
    });
    check("sum of a transposed view", vec![x], |x| {
        x[0].transpose(0, 2)?.sum(&[-1], false)
    });
}

#[test]
fn matmul_batched_broadcast_and_transposed() {
    check("2-D", vec![rnd(&[5, 7], 40), rnd(&[7, 3], 41)], |x| {
        x[0].matmul(&x[1])
    });
    check(
        "batched",
        vec![rnd(&[2, 3, 5, 7], 42), rnd(&[2, 3, 7, 4], 43)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "batch × matrix",
        vec![rnd(&[2, 3, 5, 7], 44), rnd(&[7, 4], 45)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matrix × batch",
        vec![rnd(&[5, 7], 46), rnd(&[3, 7, 4], 47)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "broadcast batch",
        vec![rnd(&[2, 1, 5, 7], 48), rnd(&[3, 7, 4], 49)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "transposed operand",
        vec![rnd(&[2, 7, 5], 50), rnd(&[2, 7, 4], 51)],
        |x| x[0].transpose(-1, -2)?.matmul(&x[1]),
    );
    check("vectors", vec![rnd(&[7], 52), rnd(&[7, 4], 53)], |x| {
        x[0].matmul(&x[1])
    });
}

#[test]
fn row_ops() {
    let x = rnd(&[6, 37], 60);
    check("softmax", vec![x.clone()], |x| x[0].softmax());
    check("log_softmax", vec![x.clone()], |x| x[0].log_softmax());
    check(
        "layer_norm",
        vec![x.clone(), rnd(&[37], 61), rnd(&[37], 62)],
        |x| x[0].layer_norm(&x[1], &x[2], 1e-5),
    );
    check("rms_norm", vec![x.clone(), rnd(&[37], 63)], |x| {
        x[0].rms_norm(&x[1], 1e-6)
    });
    // Many rows (several chunks of the weight gradient's partial sums), a strided input.
    check(
        "rms_norm of a transposed [37, 300]ᵀ",
        vec![rnd(&[37, 300], 64), rnd(&[37], 65)],
        |x| x[0].transpose(0, 1)?.rms_norm(&x[1], 1e-5),
    );
    let targets = Ids::new(
        (0..6).map(|i| if i == 2 { -100 } else { i * 5 }).collect(),
        &[6],
    )
    .unwrap();
    check("cross_entropy with ignore_index", vec![x.clone()], |x| {
        x[0].cross_entropy(&targets)
    });
    let t7 = Ids::new(vec![1, 7, 7, 0, 3, 36], &[6]).unwrap();
    check("cross_entropy with ignore_index 7", vec![x], |x| {
        x[0].cross_entropy_with(&t7, 7)
    });
}

#[test]
fn embedding_dropout_linear() {
    let ids = Ids::new(vec![3, 0, 3, 9, 1, 3], &[2, 3]).unwrap();
    check("embedding (repeated ids)", vec![rnd(&[10, 6], 70)], |x| {
        x[0].embedding(&ids)
    });
    // The differentiable gather: repeated indices within a row, a transposed input, and the
    // DPO pattern (log-softmax, then each position's target).
    let idx = Ids::new(vec![4, 0, 4, 4, 2, 1, 0, 0, 3], &[3, 3]).unwrap();
    check("gather (repeats in a row)", vec![rnd(&[3, 5], 77)], |x| {
        x[0].gather(&idx)
    });
    check(
        "gather of a transposed input",
        vec![rnd(&[5, 3], 78)],
        |x| x[0].transpose(0, 1)?.gather(&idx),
    );
    let targets = Ids::new(vec![1, 40, 2, 7, 0, 39], &[2, 3, 1]).unwrap();
    check("log_softmax → gather", vec![rnd(&[2, 3, 41], 79)], |x| {
        x[0].log_softmax()?.gather(&targets)
    });
    check("dropout 0.3", vec![rnd(&[5, 41], 71)], |x| {
        x[0].dropout(0.3, 1234)
    });
    let (x, w, b) = (rnd(&[2, 3, 8], 72), rnd(&[5, 8], 73), rnd(&[5], 74));
    check("linear", vec![x.clone(), w.clone(), b.clone()], |x| {
        x[0].linear(&x[1], Some(&x[2]), None)
    });
    check("linear without bias", vec![x.clone(), w.clone()], |x| {
        x[0].linear(&x[1], None, None)
    });
    check(
        "linear with LoRA",
        vec![x, w, b, rnd(&[8, 2], 75), rnd(&[2, 5], 76)],
        |x| {
            x[0].linear(
                &x[1],
                Some(&x[2]),
                Some(scratchgpt::ops::linear::LoraOperands {
                    a: &x[3],
                    b: &x[4],
                    scale: 1.5,
                }),
            )
        },
    );
}

#[test]
fn attention_causal_with_dropout() {
    let (b, h, t, d) = (2, 3, 13, 8);
    let qkv = [
        rnd(&[b, t, h, d], 80),
        rnd(&[b, t, h, d], 81),
        rnd(&[b, t, h, d], 82),
    ];
    for p in [0.0, 0.2] {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: p,
            seed: 5,
        };
        check(&format!("attention p={p}"), qkv.to_vec(), |x| {
            // The model's head split: (B, T, H, d) → (B, H, T, d), a strided view.
            let v: Vec<Tensor> = x.iter().map(|t| t.transpose(1, 2).unwrap()).collect();
            Tensor::attention(&v[0], &v[1], &v[2], &opts)
        });
    }
}

#[test]
fn attention_with_a_kv_cache_non_causal_and_wide_heads() {
    // Fewer queries than keys (the KV cache), causal: composed from device ops.
    for (tq, p) in [(1, 0.0), (4, 0.0), (4, 0.25)] {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: p,
            seed: 9,
        };
        check(
            &format!("attention Tq={tq} Tk=9 p={p}"),
            vec![
                rnd(&[2, 3, tq, 8], 90),
                rnd(&[2, 3, 9, 8], 91),
                rnd(&[2, 3, 9, 8], 92),
            ],
            |x| Tensor::attention(&x[0], &x[1], &x[2], &opts),
        );
    }
    let opts = AttentionOptions {
        causal: false,
        dropout_p: 0.0,
        seed: 0,
    };
    check(
        "attention non-causal",
        vec![
            rnd(&[1, 2, 5, 8], 93),
            rnd(&[1, 2, 7, 8], 94),
            rnd(&[1, 2, 7, 8], 95),
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &opts),
    );
    let causal = AttentionOptions {
        causal: true,
        dropout_p: 0.1,
        seed: 3,
    };
    check(
        "attention head dim 80",
        vec![
            rnd(&[1, 2, 6, 80], 96),
            rnd(&[1, 2, 6, 80], 97),
            rnd(&[1, 2, 6, 80], 98),
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &causal),
    );
}

/// Grouped-query attention on the device: the fused kernels (K/V heads shared by 2 and by all
/// 4 query heads, dropout on) and the composed path (a KV cache's Tq < Tk; a head dim over 64),
/// each against the CPU's op, forward and every gradient.
#[test]
fn grouped_query_attention_fused_and_composed() {
    for (kv, p) in [(2, 0.0), (2, 0.2), (1, 0.0)] {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: p,
            seed: 11,
        };
        check(
            &format!("GQA H=4 KV={kv} p={p}"),
            vec![
                rnd(&[2, 9, 4, 8], 100),
                rnd(&[2, 9, kv, 8], 101),
                rnd(&[2, 9, kv, 8], 102),
            ],
            |x| {
                let v: Vec<Tensor> = x.iter().map(|t| t.transpose(1, 2).unwrap()).collect();
                Tensor::attention(&v[0], &v[1], &v[2], &opts)
            },
        );
    }
    for (tq, d, p) in [(1, 8, 0.0), (3, 8, 0.25), (5, 72, 0.1)] {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: p,
            seed: 12,
        };
        check(
            &format!("GQA composed Tq={tq} Tk=5 d={d} p={p}"),
            vec![
                rnd(&[2, 4, tq, d], 103),
                rnd(&[2, 2, 5, d], 104),
                rnd(&[2, 2, 5, d], 105),
            ],
            |x| Tensor::attention(&x[0], &x[1], &x[2], &opts),
        );
    }
}

#[test]
fn max_argmax_and_masked_fill() {
    use scratchgpt::ops::masked_fill::causal_mask;
    let x = rnd(&[3, 4, 5], 101);
    check("max over the middle axis", vec![x.clone()], |x| {
        x[0].max(1, false)
    });
    check("max over the last axis, keepdim", vec![x.clone()], |x| {
        x[0].max(-1, true)
    });
    // Ties: the device routes the gradient to the first maximal element, as the CPU does.
    let tied =
        Tensor::from_vec(vec![1.0, 3.0, 3.0, 2.0, 5.0, 5.0, 0.0, 0.0, 0.0], &[3, 3]).unwrap();
    check("max with ties", vec![tied], |x| x[0].max(1, false));
    cuda::install_emulator(0);
    for ax in [0, 1, 2] {
        assert_eq!(
            x.to_device(DEV).unwrap().argmax(ax).unwrap(),
            x.argmax(ax).unwrap(),
            "argmax over axis {ax}"
        );
    }
    check(
        "masked_fill (causal, broadcast)",
        vec![rnd(&[2, 5, 5], 100)],
        |x| x[0].masked_fill(&causal_mask(5, 5), -1e9),
    );
}

#[test]
fn matmul_with_a_batch_beyond_the_grid_limit_folds_into_one_product() {
    // 70 000 products of (1 × 3)·(3 × 2): the CPU folds a shared B into the rows; so does the
    // device (a batched launch would exceed the grid's 65 535 limit).
    check(
        "batch 70000 × matrix",
        vec![rnd(&[70_000, 1, 3], 110), rnd(&[3, 2], 111)],
        |x| x[0].matmul(&x[1]),
    );
}

#[test]
fn dpo_sequence_logprobs_and_loss_on_the_device() {
    // Compositions of device ops; the mask and counts become device constants.
    let mask = [
        vec![false, false, true, true, false],
        vec![false, true, true, true, true],
    ];
    let chosen = Ids::new(vec![1, 4, 4, 0, 5, 2, 3, 3, 1, 0], &[2, 5]).unwrap();
    let rejected = Ids::new(vec![1, 4, 2, 2, 5, 2, 3, 0, 0, 6], &[2, 5]).unwrap();
    check(
        "sequence_logprobs masked",
        vec![rnd(&[2, 5, 7], 110)],
        |x| x[0].sequence_logprobs(&chosen, Some(&mask)),
    );
    check(
        "logits → sequence_logprobs → dpo_loss",
        vec![rnd(&[2, 5, 7], 111), rnd(&[2, 5, 7], 112)],
        |x| {
            let device = x[0].device();
            let pc = x[0].sequence_logprobs(&chosen, Some(&mask))?;
            let pr = x[1].sequence_logprobs(&rejected, Some(&mask))?;
            let rc = Tensor::from_vec(vec![-1.5, -2.0], &[2])?.to_device(device)?;
            let rr = Tensor::from_vec(vec![-1.0, -2.5], &[2])?.to_device(device)?;
            Ok(scratchgpt::ops::dpo::dpo_loss(&pc, &pr, &rc, &rr, 0.1)?.loss)
        },
    );
}

#[test]
fn rope_on_the_device() {
    use scratchgpt::ops::gradcheck_suite::llama3_test_scaling;
    use scratchgpt::ops::rope::Rope;
    let rope = Rope::new(8, 10_000.0, Some(llama3_test_scaling())).unwrap();
    let table = rope.table(9, 5);
    check(
        "rope (2,3,5,8) at positions 9..14",
        vec![rnd(&[2, 3, 5, 8], 120)],
        |x| x[0].rope(&table),
    );
    // A strided input: the head split of a (B, T, H·d) projection, as a model makes it.
    check(
        "rope of a transposed head split",
        vec![rnd(&[2, 5, 3, 8], 121)],
        |x| x[0].transpose(1, 2)?.rope(&table),
    );
}
