//! The numeric gradient check of every op: a list of cases (op family, description, inputs, the
//! function to differentiate), each checked with [`gradcheck`] in f64. The tests run it family by
//! family (`tests/gradcheck_*.rs`) and `scratchgpt gradcheck` prints it as a table.
//!
//! The cases cover, per op: size-1 axes, broadcasting on either side, non-contiguous (transposed)
//! operands, repeated ids and `ignore_index` targets, causal mask edge rows (Tq < Tk, blocks
//! crossing the 64-row tile boundary), and seeded dropout.
//!
//! Each case's function is written once in the `case!` macro and compiled for both f64 (the
//! gradient check) and f32 (compared against f64 to check the training precision's forward).

use crate::autograd::gradcheck::{gradcheck, GradcheckOptions, GradcheckReport};
use crate::error::Result;
use crate::nn::{Linear, LoRA};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::ops::masked_fill::causal_mask;
use crate::ops::rope::{Llama3Scaling, Rope};
use crate::tensor::Tensor;

type CaseFn<T> = Box<dyn Fn(&[Tensor<T>]) -> Result<Tensor<T>>>;

/// One gradient-check case.
pub struct Case {
    /// The op family (the folder under `src/ops/`).
    pub op: &'static str,
    /// What is checked, e.g. `mul [2,3,4]·[3,1] (broadcast)`.
    pub name: String,
    /// The f64 inputs (all require grad).
    pub inputs: Vec<Tensor<f64>>,
    /// The function, in f64.
    pub f64: CaseFn<f64>,
    /// The same function, in f32.
    pub f32: CaseFn<f32>,
}

impl Case {
    /// Runs the numeric gradient check.
    pub fn check(&self, opts: &GradcheckOptions) -> Result<GradcheckReport> {
        gradcheck(&self.f64, &self.inputs, opts)
    }

    /// Max |f32 forward − f64 forward| relative to `1 + |f64 forward|`, elementwise.
    pub fn f32_forward_error(&self) -> Result<f64> {
        let x32 = self
            .inputs
            .iter()
            .map(|t| t.detach().cast::<f32>())
            .collect::<Result<Vec<_>>>()?;
        let x64: Vec<Tensor<f64>> = self.inputs.iter().map(|t| t.detach()).collect();
        let (y32, y64) = ((self.f32)(&x32)?, (self.f64)(&x64)?);
        let (a, b) = (y32.to_vec()?, y64.to_vec()?);
        Ok(a.iter()
            .zip(&b)
            .map(|(&a, &b)| (a as f64 - b).abs() / (1.0 + b.abs()))
            .fold(0.0, f64::max))
    }
}

impl Case {
    /// Max |f32 gradient − f64 gradient| relative to `1 + |f64 gradient|`, over every input's
    /// gradient, for the same seeded upstream gradient: the training precision's backward rule
    /// against the checked f64 one (the gradient check itself runs in f64 only).
    pub fn f32_backward_error(&self, seed: u64) -> Result<f64> {
        let x64: Vec<Tensor<f64>> = self
            .inputs
            .iter()
            .map(|t| t.detach().requires_grad_(true))
            .collect();
        let x32 = x64
            .iter()
            .map(|t| Ok(t.detach().cast::<f32>()?.requires_grad_(true)))
            .collect::<Result<Vec<_>>>()?;
        let y64 = (self.f64)(&x64)?;
        let y32 = (self.f32)(&x32)?;
        let r64 = Tensor::<f64>::randn(&y64.shape(), seed);
        y64.backward_with(&r64)?;
        y32.backward_with(&r64.cast::<f32>()?)?;
        let mut worst = 0.0f64;
        for (a, b) in x32.iter().zip(&x64) {
            let (Some(ga), Some(gb)) = (a.grad(), b.grad()) else {
                continue;
            };
            for (&p, &q) in ga.to_vec()?.iter().zip(&gb.to_vec()?) {
                worst = worst.max((p as f64 - q).abs() / (1.0 + q.abs()));
            }
        }
        Ok(worst)
    }
}

macro_rules! case {
    ($op:expr, $name:expr, [$($inp:expr),* $(,)?], |$x:ident| $body:expr) => {
        Case {
            op: $op,
            name: $name.to_string(),
            inputs: vec![$($inp),*],
            f64: Box::new(|$x: &[Tensor<f64>]| -> Result<Tensor<f64>> { $body }),
            f32: Box::new(|$x: &[Tensor<f32>]| -> Result<Tensor<f32>> { $body }),
        }
    };
}

/// Standard-normal input that requires grad.
fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, seed).requires_grad_(true)
}

/// Input in [0.5, 2] (for log, sqrt, pow, divisors).
fn pos(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::uniform(shape, 0.5, 2.0, seed).requires_grad_(true)
}

fn attn(causal: bool, dropout_p: f64) -> AttentionOptions {
    AttentionOptions {
        causal,
        dropout_p,
        seed: 42,
    }
}

/// A `LinearWithLoRA` from inputs `[_, W, b, A, B]` (every tensor a gradcheck input).
fn lora_linear<T: crate::tensor::Element>(x: &[Tensor<T>], alpha: f64) -> Result<Linear<T>> {
    Ok(Linear {
        weight: x[1].clone(),
        bias: Some(x[2].clone()),
        lora: Some(LoRA {
            a: x[3].clone(),
            b: x[4].clone(),
            alpha,
        }),
    })
}

/// Llama 3 scaling whose regimes a head of 8 (frequencies 1, 0.1, 0.01, 0.001 at θ = 10⁴)
/// covers: wavelength 6.3 kept (< 64/4), 62.8 blended, 628 and 6283 slowed (> 64/1).
pub fn llama3_test_scaling() -> Llama3Scaling {
    Llama3Scaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    }
}

/// Every case, in op-family order.
pub fn cases() -> Vec<Case> {
    let mut c = Vec::new();
    // --- binary (broadcasting) ---
    c.push(case!(
        "binary",
        "add [2,3]+[2,3]",
        [randn(&[2, 3], 1), randn(&[2, 3], 2)],
        |x| x[0].add(&x[1])
    ));
    c.push(case!(
        "binary",
        "add [3,1,4]+[2,4] (both broadcast)",
        [randn(&[3, 1, 4], 3), randn(&[2, 4], 4)],
        |x| x[0].add(&x[1])
    ));
    c.push(case!(
        "binary",
        "sub [1]-[2,3] (lhs broadcast)",
        [randn(&[1], 5), randn(&[2, 3], 6)],
        |x| x[0].sub(&x[1])
    ));
    c.push(case!(
        "binary",
        "mul [2,3,4]*[3,1] (rhs broadcast)",
        [randn(&[2, 3, 4], 7), randn(&[3, 1], 8)],
        |x| x[0].mul(&x[1])
    ));
    c.push(case!(
        "binary",
        "mul x*x (one input used twice)",
        [randn(&[3, 2], 9)],
        |x| x[0].mul(&x[0])
    ));
    c.push(case!(
        "binary",
        "div [4,1]/[1,5]",
        [randn(&[4, 1], 10), pos(&[1, 5], 11)],
        |x| x[0].div(&x[1])
    ));
    c.push(case!(
        "binary",
        "add transposed [3,2]ᵀ+[2,3]",
        [randn(&[3, 2], 12), randn(&[2, 3], 13)],
        |x| x[0].transpose(0, 1)?.add(&x[1])
    ));
    // --- unary ---
    c.push(case!("unary", "neg [2,3]", [randn(&[2, 3], 20)], |x| x[0].neg()));
    c.push(case!(
        "unary",
        "add_scalar [2,3]",
        [randn(&[2, 3], 21)],
        |x| x[0].add_scalar(0.7)
    ));
    c.push(case!(
        "unary",
        "mul_scalar [2,3]",
        [randn(&[2, 3], 22)],
        |x| x[0].mul_scalar(-1.3)
    ));
    c.push(case!(
        "unary",
        "div_scalar [2,3]",
        [randn(&[2, 3], 23)],
        |x| x[0].div_scalar(2.5)
    ));
    c.push(case!("unary", "powf 3 [2,3]", [randn(&[2, 3], 24)], |x| x
        [0]
    .powf(3.0)));
    c.push(case!("unary", "powf -0.5 [2,3]", [pos(&[2, 3], 25)], |x| x
        [0]
    .powf(-0.5)));
    c.push(case!("unary", "exp [2,3]", [randn(&[2, 3], 26)], |x| x[0].exp()));
    c.push(case!("unary", "log [2,3]", [pos(&[2, 3], 27)], |x| x[0].log()));
    c.push(case!("unary", "sqrt [2,3]", [pos(&[2, 3], 28)], |x| x[0].sqrt()));
    c.push(case!("unary", "tanh [2,3]", [randn(&[2, 3], 29)], |x| x[0].tanh()));
    c.push(case!("unary", "relu [3,4]", [randn(&[3, 4], 30)], |x| x[0].relu()));
    c.push(case!("unary", "sigmoid [3,4]", [randn(&[3, 4], 31)], |x| x
        [0]
    .sigmoid()));
    c.push(case!(
        "unary",
        "log_sigmoid [3,4]",
        [randn(&[3, 4], 32)],
        |x| x[0].log_sigmoid()
    ));
    c.push(case!(
        "unary",
        "log_sigmoid 8x[2,3] (tails)",
        [randn(&[2, 3], 33)],
        |x| x[0].mul_scalar(8.0)?.log_sigmoid()
    ));
    c.push(case!("unary", "silu [3,4]", [randn(&[3, 4], 34)], |x| x[0].silu()));
    c.push(case!(
        "unary",
        "silu 8x[2,3] (tails)",
        [randn(&[2, 3], 35)],
        |x| x[0].mul_scalar(8.0)?.silu()
    ));
    c.push(case!(
        "unary",
        "SwiGLU silu(a) ⊙ b [2,5]",
        [randn(&[2, 5], 36), randn(&[2, 5], 37)],
        |x| x[0].silu()?.mul(&x[1])
    ));
    // --- gelu ---
    c.push(case!("gelu", "gelu [3,5]", [randn(&[3, 5], 40)], |x| x[0].gelu()));
    c.push(case!(
        "gelu",
        "gelu 3x[1,8] (tails)",
        [randn(&[1, 8], 41)],
        |x| x[0].mul_scalar(3.0)?.gelu()
    ));
    // --- reduce ---
    c.push(case!(
        "reduce",
        "sum_all [2,3,4]",
        [randn(&[2, 3, 4], 50)],
        |x| x[0].sum_all()
    ));
    c.push(case!(
        "reduce",
        "sum axes [0,2] [2,3,4]",
        [randn(&[2, 3, 4], 51)],
        |x| x[0].sum(&[0, 2], false)
    ));
    c.push(case!(
        "reduce",
        "sum axis -1 keepdim [2,1,4]",
        [randn(&[2, 1, 4], 52)],
        |x| x[0].sum(&[-1], true)
    ));
    c.push(case!(
        "reduce",
        "mean_all [3,4]",
        [randn(&[3, 4], 53)],
        |x| x[0].mean_all()
    ));
    c.push(case!(
        "reduce",
        "mean axis 1 [2,3,4]",
        [randn(&[2, 3, 4], 54)],
        |x| x[0].mean(&[1], false)
    ));
    c.push(case!(
        "reduce",
        "max axis 1 [3,5]",
        [randn(&[3, 5], 55)],
        |x| x[0].max(1, false)
    ));
    c.push(case!(
        "reduce",
        "max axis -1 keepdim [2,3,4]",
        [randn(&[2, 3, 4], 56)],
        |x| x[0].max(-1, true)
    ));
    c.push(case!(
        "reduce",
        "sum transposed [3,2]ᵀ axis 1",
        [randn(&[3, 2], 57)],
        |x| x[0].transpose(0, 1)?.sum(&[1], false)
    ));
    // --- matmul ---
    c.push(case!(
        "matmul",
        "[3,4]@[4,5]",
        [randn(&[3, 4], 60), randn(&[4, 5], 61)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[4,3]ᵀ@[5,4]ᵀ (strided)",
        [randn(&[4, 3], 62), randn(&[5, 4], 63)],
        |x| x[0].transpose(0, 1)?.matmul(&x[1].transpose(0, 1)?)
    ));
    c.push(case!(
        "matmul",
        "[2,3,4]@[4,5] (batch folded)",
        [randn(&[2, 3, 4], 64), randn(&[4, 5], 65)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[2,4,3]ᵀ@[4,5] (batch not foldable)",
        [randn(&[2, 4, 3], 66), randn(&[4, 5], 67)],
        |x| x[0].transpose(-1, -2)?.matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[2,1,3,4]@[3,4,2] (broadcast batch)",
        [randn(&[2, 1, 3, 4], 68), randn(&[3, 4, 2], 69)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[3,4]@[2,4,5] (lhs broadcast)",
        [randn(&[3, 4], 70), randn(&[2, 4, 5], 71)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[2,3,4]@[2,5,4]ᵀ (batched strided)",
        [randn(&[2, 3, 4], 72), randn(&[2, 5, 4], 73)],
        |x| x[0].matmul(&x[1].transpose(-1, -2)?)
    ));
    c.push(case!(
        "matmul",
        "[4]@[4,3] (1-D lhs)",
        [randn(&[4], 74), randn(&[4, 3], 75)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[2,3,4]@[4] (1-D rhs)",
        [randn(&[2, 3, 4], 76), randn(&[4], 77)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[4]@[4] (dot)",
        [randn(&[4], 78), randn(&[4], 79)],
        |x| x[0].matmul(&x[1])
    ));
    c.push(case!(
        "matmul",
        "[1,4]@[5,4]ᵀ (one row: the GEMV path)",
        [randn(&[1, 4], 82), randn(&[5, 4], 83)],
        |x| x[0].matmul(&x[1].transpose(0, 1)?)
    ));
    c.push(case!(
        "matmul",
        "[1,4]@[4,1] (size-1)",
        [randn(&[1, 4], 80), randn(&[4, 1], 81)],
        |x| x[0].matmul(&x[1])
    ));
    // --- softmax ---
    c.push(case!(
        "softmax",
        "softmax [3,5]",
        [randn(&[3, 5], 90)],
        |x| x[0].softmax()
    ));
    c.push(case!(
        "softmax",
        "softmax [2,1,4]",
        [randn(&[2, 1, 4], 91)],
        |x| x[0].softmax()
    ));
    c.push(case!(
        "softmax",
        "softmax [5,3]ᵀ (strided)",
        [randn(&[5, 3], 92)],
        |x| x[0].transpose(0, 1)?.softmax()
    ));
    c.push(case!(
        "softmax",
        "softmax [2,1] (one class)",
        [randn(&[2, 1], 93)],
        |x| x[0].softmax()
    ));
    c.push(case!(
        "softmax",
        "log_softmax [3,5]",
        [randn(&[3, 5], 94)],
        |x| x[0].log_softmax()
    ));
    c.push(case!(
        "softmax",
        "softmax [2,70] (32-lane reductions + rest)",
        [randn(&[2, 70], 96)],
        |x| x[0].softmax()
    ));
    c.push(case!(
        "softmax",
        "log_softmax [2,70] (32-lane reductions + rest)",
        [randn(&[2, 70], 97)],
        |x| x[0].log_softmax()
    ));
    c.push(case!(
        "softmax",
        "log_softmax 10x[2,4] (peaked)",
        [randn(&[2, 4], 95)],
        |x| x[0].mul_scalar(10.0)?.log_softmax()
    ));
    // --- rms_norm ---
    c.push(case!(
        "rms_norm",
        "rms_norm [3,6]",
        [randn(&[3, 6], 115), randn(&[6], 116)],
        |x| x[0].rms_norm(&x[1], 1e-6)
    ));
    c.push(case!(
        "rms_norm",
        "rms_norm [2,3,4]",
        [randn(&[2, 3, 4], 117), randn(&[4], 118)],
        |x| x[0].rms_norm(&x[1], 1e-5)
    ));
    c.push(case!(
        "rms_norm",
        "Qwen3 q/k norm: per head of (B,H,T,hd) = (1,2,3,4)",
        [randn(&[1, 2, 3, 4], 124), randn(&[4], 125)],
        |x| x[0].rms_norm(&x[1], 1e-6)
    ));
    c.push(case!(
        "rms_norm",
        "rms_norm [4,3]ᵀ (strided)",
        [randn(&[4, 3], 119), randn(&[4], 120)],
        |x| x[0].transpose(0, 1)?.rms_norm(&x[1], 1e-6)
    ));
    // --- rope ---
    c.push(case!(
        "rope",
        "rope [2,2,3,4] θ=10⁴, positions 0..3",
        [randn(&[2, 2, 3, 4], 121)],
        |x| x[0].rope(&Rope::new(4, 10_000.0, None)?.table(0, 3))
    ));
    c.push(case!(
        "rope",
        "rope [1,2,4,8] pos 5..9, llama3 scaling",
        [randn(&[1, 2, 4, 8], 122)],
        |x| x[0].rope(&Rope::new(8, 10_000.0, Some(llama3_test_scaling()))?.table(5, 4))
    ));
    c.push(case!(
        "rope",
        "rope of a transposed (1,3,2,6)ᵀ¹² (strided)",
        [randn(&[1, 3, 2, 6], 123)],
        |x| x[0]
            .transpose(1, 2)?
            .rope(&Rope::new(6, 500_000.0, None)?.table(2, 3))
    ));
    // --- layer_norm ---
    c.push(case!(
        "layer_norm",
        "layer_norm [3,6]",
        [randn(&[3, 6], 100), randn(&[6], 101), randn(&[6], 102)],
        |x| x[0].layer_norm(&x[1], &x[2], 1e-5)
    ));
    c.push(case!(
        "layer_norm",
        "layer_norm [2,37] (16-lane chunks + rest)",
        [randn(&[2, 37], 112), randn(&[37], 113), randn(&[37], 114)],
        |x| x[0].layer_norm(&x[1], &x[2], 1e-5)
    ));
    c.push(case!(
        "layer_norm",
        "layer_norm [2,3,4]",
        [randn(&[2, 3, 4], 103), randn(&[4], 104), randn(&[4], 105)],
        |x| x[0].layer_norm(&x[1], &x[2], 1e-5)
    ));
    c.push(case!(
        "layer_norm",
        "layer_norm [4,3]ᵀ (strided)",
        [randn(&[4, 3], 106), randn(&[4], 107), randn(&[4], 108)],
        |x| x[0].transpose(0, 1)?.layer_norm(&x[1], &x[2], 1e-5)
    ));
    c.push(case!(
        "layer_norm",
        "layer_norm [3,1] (size-1 row)",
        [randn(&[3, 1], 109), randn(&[1], 110), randn(&[1], 111)],
        |x| x[0].layer_norm(&x[1], &x[2], 1e-5)
    ));
    // --- embedding ---
    c.push(case!(
        "embedding",
        "embedding [6,3] ids [2,3] (repeats)",
        [randn(&[6, 3], 120)],
        |x| x[0].embedding(&Ids::new(vec![0, 5, 2, 2, 0, 2], &[2, 3])?)
    ));
    c.push(case!(
        "embedding",
        "embedding [4,2] ids [1]",
        [randn(&[4, 2], 121)],
        |x| x[0].embedding(&Ids::from_vec(vec![3]))
    ));
    c.push(case!(
        "embedding",
        "token + positional embedding ids (2,3) → (2,3,4)",
        [randn(&[7, 4], 122), randn(&[3, 4], 123)],
        |x| x[0]
            .embedding(&Ids::new(vec![1, 6, 6, 0, 2, 1], &[2, 3])?)?
            .add(&x[1].embedding(&Ids::from_vec(vec![0, 1, 2]))?)
    ));
    // --- gather ---
    c.push(case!(
        "gather",
        "gather [2,3,5] idx [2,3,2] (repeats in a row)",
        [randn(&[2, 3, 5], 124)],
        |x| x[0].gather(&Ids::new(
            vec![0, 4, 2, 2, 1, 1, 3, 0, 4, 4, 0, 1],
            &[2, 3, 2]
        )?)
    ));
    c.push(case!(
        "gather",
        "log-probabilities of targets: log_softmax [2,4,6] → gather [2,4,1]",
        [randn(&[2, 4, 6], 125)],
        |x| x[0]
            .log_softmax()?
            .gather(&Ids::new(vec![5, 0, 3, 3, 1, 2, 0, 4], &[2, 4, 1])?)
    ));
    c.push(case!(
        "gather",
        "gather of a transposed [4,3]ᵀ idx [3,3]",
        [randn(&[4, 3], 126)],
        |x| x[0]
            .transpose(0, 1)?
            .gather(&Ids::new(vec![3, 0, 1, 2, 2, 2, 0, 1, 3], &[3, 3])?)
    ));
    // --- dpo ---
    c.push(case!(
        "dpo",
        "sequence_logprobs [2,5,6] masked",
        [randn(&[2, 5, 6], 127)],
        |x| x[0].sequence_logprobs(
            &Ids::new(vec![1, 4, 4, 0, 5, 2, 3, 3, 1, 0], &[2, 5])?,
            Some(&[
                vec![false, false, true, true, false],
                vec![false, true, true, true, true],
            ]),
        )
    ));
    c.push(case!(
        "dpo",
        "sequence_logprobs [2,4,5] unmasked (mean)",
        [randn(&[2, 4, 5], 128)],
        |x| x[0].sequence_logprobs(&Ids::new(vec![0, 4, 1, 1, 2, 2, 3, 0], &[2, 4])?, None)
    ));
    c.push(case!(
        "dpo",
        "dpo_loss β=0.5, 3 pairs",
        [randn(&[3], 129), randn(&[3], 132)],
        |x| {
            let reference_chosen = Tensor::from_f64s(&[-1.0, 0.5, -2.0], &[3])?;
            let reference_rejected = Tensor::from_f64s(&[-1.5, 0.25, 1.0], &[3])?;
            Ok(crate::ops::dpo::dpo_loss(
                &x[0],
                &x[1],
                &reference_chosen,
                &reference_rejected,
                0.5,
            )?
            .loss)
        }
    ));
    c.push(case!(
        "dpo",
        "logits→sequence_logprobs→dpo_loss β=2",
        [randn(&[2, 4, 6], 133), randn(&[2, 4, 6], 134)],
        |x| {
            let mask = [
                vec![false, true, true, false],
                vec![false, false, true, true],
            ];
            let chosen = Ids::new(vec![1, 2, 3, 4, 5, 0, 1, 2], &[2, 4])?;
            let rejected = Ids::new(vec![1, 5, 5, 4, 5, 0, 3, 3], &[2, 4])?;
            let pc = x[0].sequence_logprobs(&chosen, Some(&mask))?;
            let pr = x[1].sequence_logprobs(&rejected, Some(&mask))?;
            let rc = Tensor::from_f64s(&[-1.7, -2.2], &[2])?;
            let rr = Tensor::from_f64s(&[-1.9, -1.6], &[2])?;
            Ok(crate::ops::dpo::dpo_loss(&pc, &pr, &rc, &rr, 2.0)?.loss)
        }
    ));
    // --- dropout ---
    c.push(case!(
        "dropout",
        "dropout p=0.3 [4,5]",
        [randn(&[4, 5], 130)],
        |x| x[0].dropout(0.3, 7)
    ));
    c.push(case!(
        "dropout",
        "dropout p=0.5 [2,3]ᵀ (strided)",
        [randn(&[2, 3], 131)],
        |x| x[0].transpose(0, 1)?.dropout(0.5, 9)
    ));
    // --- masked_fill ---
    c.push(case!(
        "masked_fill",
        "masked_fill causal [4,4]",
        [randn(&[4, 4], 140)],
        |x| x[0].masked_fill(&causal_mask(4, 4), -3.0)
    ));
    c.push(case!(
        "masked_fill",
        "masked_fill [3,4] mask broadcast to [2,3,4]",
        [randn(&[2, 3, 4], 141)],
        |x| x[0].masked_fill(&causal_mask(3, 4), 0.5)
    ));
    c.push(case!(
        "masked_fill",
        "masked_fill -inf then softmax (book §3.5)",
        [randn(&[5, 5], 142)],
        |x| x[0]
            .masked_fill(&causal_mask(5, 5), f64::NEG_INFINITY)?
            .softmax()
    ));
    // --- cross_entropy ---
    c.push(case!(
        "cross_entropy",
        "cross_entropy [4,5]",
        [randn(&[4, 5], 150)],
        |x| x[0].cross_entropy(&Ids::from_vec(vec![1, 0, 4, 2]))
    ));
    c.push(case!(
        "cross_entropy",
        "cross_entropy [2,3,5] with ignore_index",
        [randn(&[2, 3, 5], 151)],
        |x| x[0].cross_entropy(&Ids::new(vec![1, -100, 4, 0, -100, 3], &[2, 3])?)
    ));
    c.push(case!(
        "cross_entropy",
        "cross_entropy [5,3]ᵀ (strided)",
        [randn(&[5, 3], 152)],
        |x| x[0]
            .transpose(0, 1)?
            .cross_entropy(&Ids::from_vec(vec![4, 0, 2]))
    ));
    c.push(case!(
        "cross_entropy",
        "cross_entropy [3,1] (one class)",
        [randn(&[3, 1], 153)],
        |x| x[0].cross_entropy(&Ids::from_vec(vec![0, 0, 0]))
    ));
    // --- attention ---
    c.push(case!(
        "attention",
        "attention causal (2,2,5,3)",
        [
            randn(&[2, 2, 5, 3], 160),
            randn(&[2, 2, 5, 3], 161),
            randn(&[2, 2, 5, 3], 162)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention causal Tq<Tk (1,2,3,6,4)",
        [
            randn(&[1, 2, 3, 4], 163),
            randn(&[1, 2, 6, 4], 164),
            randn(&[1, 2, 6, 4], 165)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention non-causal (1,1,4,2)",
        [
            randn(&[1, 1, 4, 2], 166),
            randn(&[1, 1, 4, 2], 167),
            randn(&[1, 1, 4, 2], 168)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(false, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention causal dropout 0.3 (1,2,6,3)",
        [
            randn(&[1, 2, 6, 3], 169),
            randn(&[1, 2, 6, 3], 170),
            randn(&[1, 2, 6, 3], 171)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.3))
    ));
    c.push(case!(
        "attention",
        "attention causal T=70 > block (1,1,70,2)",
        [
            randn(&[1, 1, 70, 2], 172),
            randn(&[1, 1, 70, 2], 173),
            randn(&[1, 1, 70, 2], 174)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention causal d=64 Tq<Tk (1,1,5,69,64): full tiles",
        [
            randn(&[1, 1, 5, 64], 178),
            randn(&[1, 1, 69, 64], 179),
            randn(&[1, 1, 69, 64], 180)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention transposed (1,4,2,3)→(1,2,4,3)",
        [
            randn(&[1, 4, 2, 3], 175),
            randn(&[1, 4, 2, 3], 176),
            randn(&[1, 4, 2, 3], 177)
        ],
        |x| Tensor::attention(
            &x[0].transpose(1, 2)?,
            &x[1].transpose(1, 2)?,
            &x[2].transpose(1, 2)?,
            &attn(true, 0.0)
        )
    ));
    // Grouped-query attention: K/V with fewer heads than Q; a KV head's gradient is the sum
    // over the query heads that share it.
    c.push(case!(
        "attention",
        "attention GQA causal H=4, KV=2 (2,4|2,5,3)",
        [
            randn(&[2, 4, 5, 3], 181),
            randn(&[2, 2, 5, 3], 182),
            randn(&[2, 2, 5, 3], 183)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.0))
    ));
    c.push(case!(
        "attention",
        "attention MQA H=3, KV=1, Tq<Tk, dropout 0.2 (1,3|1,4,7,2)",
        [
            randn(&[1, 3, 4, 2], 184),
            randn(&[1, 1, 7, 2], 185),
            randn(&[1, 1, 7, 2], 186)
        ],
        |x| Tensor::attention(&x[0], &x[1], &x[2], &attn(true, 0.2))
    ));
    // --- linear (fused x·Wᵀ + b, and appendix E's LinearWithLoRA: + (alpha/rank)·(x·A)·B) ---
    c.push(case!(
        "linear",
        "linear [2,3,4]→5 with bias",
        [
            randn(&[2, 3, 4], 195),
            randn(&[5, 4], 196),
            randn(&[5], 197)
        ],
        |x| x[0].linear(&x[1], Some(&x[2]), None)
    ));
    c.push(case!(
        "linear",
        "linear of a transposed input [4,3]ᵀ→2, no bias",
        [randn(&[4, 3], 198), randn(&[2, 4], 199)],
        |x| x[0].transpose(0, 1)?.linear(&x[1], None, None)
    ));
    c.push(case!(
        "linear",
        "linear 1 row [1,1,6]→1 (size-1 axes)",
        [
            randn(&[1, 1, 6], 210),
            randn(&[1, 6], 211),
            randn(&[1], 212)
        ],
        |x| x[0].linear(&x[1], Some(&x[2]), None)
    ));
    c.push(case!(
        "linear",
        "LinearWithLoRA [2,3,4]→5, rank 2, alpha 3",
        [
            randn(&[2, 3, 4], 200),
            randn(&[5, 4], 201),
            randn(&[5], 202),
            randn(&[4, 2], 203),
            randn(&[2, 5], 204)
        ],
        |x| lora_linear(x, 3.0)?.forward(&x[0])
    ));
    c.push(case!(
        "linear",
        "LinearWithLoRA of a transposed input [4,3]ᵀ→2, rank 1",
        [
            randn(&[4, 3], 205),
            randn(&[2, 4], 206),
            randn(&[2], 207),
            randn(&[4, 1], 208),
            randn(&[1, 2], 209)
        ],
        |x| lora_linear(x, 1.5)?.forward(&x[0].transpose(0, 1)?)
    ));
    c.push(case!(
        "linear",
        "LinearWithLoRA without bias [3,4]→2, rank 2 (A, B at input slots 2, 3)",
        [
            randn(&[3, 4], 213),
            randn(&[2, 4], 214),
            randn(&[4, 2], 215),
            randn(&[2, 2], 216)
        ],
        |x| x[0].linear(
            &x[1],
            None,
            Some(crate::ops::linear::LoraOperands {
                a: &x[2],
                b: &x[3],
                scale: 0.5
            })
        )
    ));
    // --- view ---
    c.push(case!(
        "view",
        "reshape [2,3,4]→[6,4]",
        [randn(&[2, 3, 4], 180)],
        |x| x[0].reshape(&[6, 4])
    ));
    c.push(case!(
        "view",
        "reshape of transposed [3,4]ᵀ→[12]",
        [randn(&[3, 4], 181)],
        |x| x[0].transpose(0, 1)?.reshape(&[12])
    ));
    c.push(case!(
        "view",
        "permute [2,3,4]→(2,0,1)",
        [randn(&[2, 3, 4], 182)],
        |x| x[0].permute(&[2, 0, 1])
    ));
    c.push(case!(
        "view",
        "narrow axis 1 [3,5] 1..4",
        [randn(&[3, 5], 183)],
        |x| x[0].narrow(1, 1, 3)
    ));
    c.push(case!(
        "view",
        "concat axis 1 [2,1]+[2,3]+[2,2]",
        [
            randn(&[2, 1], 184),
            randn(&[2, 3], 185),
            randn(&[2, 2], 186)
        ],
        |x| Tensor::concat(&[&x[0], &x[1], &x[2]], 1)
    ));
    c.push(case!(
        "view",
        "split [5,2] into 2+3 along 0, recombined",
        [randn(&[5, 2], 187)],
        |x| {
            let parts = x[0].split(&[2, 3], 0)?;
            parts[0].sum_all()?.mul(&parts[1].powf(2.0)?.sum_all()?)
        }
    ));
    c.push(case!(
        "view",
        "squeeze/unsqueeze [3,1,2]",
        [randn(&[3, 1, 2], 188)],
        |x| x[0].squeeze(1)?.unsqueeze(0)?.mul(&x[0].squeeze(-2)?)
    ));
    c.push(case!(
        "view",
        "select axis 0 index 2 [3,4]",
        [randn(&[3, 4], 189)],
        |x| x[0].select(0, 2)
    ));
    c.push(case!(
        "view",
        "broadcast_to [3,1]→[2,3,4]",
        [randn(&[3, 1], 190)],
        |x| x[0].broadcast_to(&[2, 3, 4])
    ));
    c.push(case!(
        "view",
        "contiguous of [3,4]ᵀ",
        [randn(&[3, 4], 191)],
        |x| x[0].transpose(0, 1)?.contiguous()
    ));
    c
}

/// The op families, in order (the folders of `src/ops/`).
pub fn families() -> Vec<&'static str> {
    let mut f: Vec<&'static str> = Vec::new();
    for case in cases() {
        if !f.contains(&case.op) {
            f.push(case.op);
        }
    }
    f
}
