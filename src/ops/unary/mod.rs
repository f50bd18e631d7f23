//! Elementwise unary ops and ops with a scalar: `neg`, `add_scalar`, `mul_scalar`, `div_scalar`,
//! `powf`, `exp`, `log`, `sqrt`, `tanh`, `relu`, `sigmoid`, `log_sigmoid`, `silu`.
//!
//! For `y = f(x)` applied elementwise the Jacobian is diagonal, so the vector–Jacobian product is
//! just `∂L/∂x = g ⊙ f'(x)`. Each op below states `f'` and which saved value (input `x` or output
//! `y`) the backward uses; using `y` where `f'` is expressible in it (exp, tanh, sqrt, sigmoid)
//! saves recomputing `f`.

mod cuda;

use rayon::prelude::*;

use crate::backend::cpu::{map, should_par, zip_map, PAR_MIN_ELEMS};
use crate::error::Result;
use crate::tensor::{CpuArray, Element, Tensor};

use super::to_contiguous_vec;

/// Applies a slice kernel (e.g. the vectorised f32 `exp`) to a copy of `x`, in parallel chunks
/// for large arrays.
fn map_slices<T: Element>(x: &CpuArray<T>, kernel: fn(&mut [T])) -> CpuArray<T> {
    let mut v = to_contiguous_vec(x);
    if should_par(v.len()) {
        v.par_chunks_mut(PAR_MIN_ELEMS).for_each(kernel);
    } else {
        kernel(&mut v);
    }
    CpuArray::from_shape_vec(x.raw_dim(), v).expect("same number of elements")
}

/// `g ⊙ h(x, y)` at the shape of `g`.
fn times<T: Element>(
    g: &CpuArray<T>,
    s: &CpuArray<T>,
    h: impl Fn(T) -> T + Sync + Send,
) -> CpuArray<T> {
    zip_map(g, s, g.shape(), move |g, s| g * h(s))
}

impl<T: Element> Tensor<T> {
    /// Records a unary op whose backward needs only `g` and one saved array.
    /// `(code, c)` selects the same op in kernels/unary.cu for device tensors.
    fn unary(
        &self,
        op: &'static str,
        (code, c): (i32, f64),
        forward: impl FnOnce(&CpuArray<T>) -> CpuArray<T>,
        save_output: bool,
        local_grad: impl Fn(T) -> T + Sync + Send + 'static,
    ) -> Result<Tensor<T>> {
        if let Some(s) = self.cuda_storage() {
            let k = cuda::Kernel {
                code,
                c: c as f32,
                saves_output: save_output,
            };
            return cuda::unary(self, s, op, k);
        }
        let x = self.cpu(op)?;
        let y = forward(&x);
        let saved = if save_output { y.clone() } else { x };
        Ok(Tensor::from_op(op, y, &[self], move |g, _| {
            Ok(vec![Some(times(g, &saved, local_grad))])
        }))
    }

    /// `−x`. f'(x) = −1.
    pub fn neg(&self) -> Result<Tensor<T>> {
        self.unary("neg", (1, -1.0), |x| map(x, |v| -v), false, |_| -T::one())
    }

    /// `x + c`. f'(x) = 1.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor<T>> {
        let c = T::of(c);
        self.unary(
            "add_scalar",
            (0, c.f64()),
            |x| map(x, move |v| v + c),
            false,
            |_| T::one(),
        )
    }

    /// `c·x`. f'(x) = c.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor<T>> {
        let c = T::of(c);
        self.unary(
            "mul_scalar",
            (1, c.f64()),
            |x| map(x, move |v| v * c),
            false,
            move |_| c,
        )
    }

    /// `x / c`. f'(x) = 1/c.
    pub fn div_scalar(&self, c: f64) -> Result<Tensor<T>> {
        let c = T::of(c);
        self.unary(
            "div_scalar",
            (1, 1.0 / c.f64()),
            |x| map(x, move |v| v / c),
            false,
            move |_| T::one() / c,
        )
    }

    /// `xᵖ` for a constant exponent p. f'(x) = p·xᵖ⁻¹ (power rule).
    pub fn powf(&self, p: f64) -> Result<Tensor<T>> {
        let pt = T::of(p);
        self.unary(
            "powf",
            (2, p),
            |x| map(x, move |v| v.powf(pt)),
            false,
            move |x| pt * x.powf(pt - T::one()),
        )
    }

    /// `eˣ`. f'(x) = eˣ = y, so the backward reuses the output: `∂L/∂x = g ⊙ y`.
    pub fn exp(&self) -> Result<Tensor<T>> {
        self.unary(
            "exp",
            (3, 0.0),
            |x| map_slices(x, T::exp_slice),
            true,
            |y| y,
        )
    }

    /// `ln x`. f'(x) = 1/x.
    pub fn log(&self) -> Result<Tensor<T>> {
        self.unary(
            "log",
            (4, 0.0),
            |x| map(x, |v| v.ln()),
            false,
            |x| T::one() / x,
        )
    }

    /// `√x`. f'(x) = 1/(2√x) = 1/(2y).
    pub fn sqrt(&self) -> Result<Tensor<T>> {
        self.unary(
            "sqrt",
            (5, 0.0),
            |x| map(x, |v| v.sqrt()),
            true,
            |y| T::one() / (y + y),
        )
    }

    /// `tanh x`. f'(x) = 1 − tanh²x = 1 − y².
    pub fn tanh(&self) -> Result<Tensor<T>> {
        self.unary(
            "tanh",
            (6, 0.0),
            |x| map_slices(x, T::tanh_slice),
            true,
            |y| T::one() - y * y,
        )
    }

    /// `max(x, 0)`. f'(x) = 1 for x > 0, else 0 (we take 0 at the kink x = 0, as PyTorch does).
    pub fn relu(&self) -> Result<Tensor<T>> {
        self.unary(
            "relu",
            (7, 0.0),
            |x| map(x, |v| v.max(T::zero())),
            false,
            |x| {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            },
        )
    }

    /// `ln σ(x)` — the log-sigmoid of DPO's loss `−ln σ(β·Δ)`. Computed as
    /// `min(x, 0) − ln(1 + e^{−|x|})`, exact on both tails (ln σ(x) → x for x → −∞, → 0 for
    /// x → +∞) where `sigmoid().log()` would give −∞ or lose every digit.
    ///
    /// f'(x) = σ'(x)/σ(x) = σ(x)(1 − σ(x))/σ(x) = 1 − σ(x) = σ(−x), from the saved input.
    pub fn log_sigmoid(&self) -> Result<Tensor<T>> {
        self.unary(
            "log_sigmoid",
            (9, 0.0),
            |x| map(x, |v| v.min(T::zero()) - (-v.abs()).exp().ln_1p()),
            false,
            |x| {
                if x >= T::zero() {
                    let e = (-x).exp();
                    e / (T::one() + e)
                } else {
                    T::one() / (T::one() + x.exp())
                }
            },
        )
    }

    /// `SiLU(x) = x·σ(x)` (Swish with β = 1), the activation of Llama's and Qwen3's gated
    /// feed-forward `SwiGLU(a, b) = SiLU(a) ⊙ b` (the product is `mul`, whose rule is §2's
    /// "mul swaps"). By the product rule, with σ' = σ(1 − σ):
    /// f'(x) = σ(x) + x·σ(x)(1 − σ(x)) = σ(x)·(1 + x·(1 − σ(x))), from the saved input.
    pub fn silu(&self) -> Result<Tensor<T>> {
        self.unary(
            "silu",
            (10, 0.0),
            |x| map(x, |v| v * stable_sigmoid(v)),
            false,
            |x| {
                let s = stable_sigmoid(x);
                s * (T::one() + x * (T::one() - s))
            },
        )
    }

    /// `σ(x) = 1/(1 + e⁻ˣ)`. f'(x) = σ(x)(1 − σ(x)) = y(1 − y).
    pub fn sigmoid(&self) -> Result<Tensor<T>> {
        self.unary(
            "sigmoid",
            (8, 0.0),
            |x| map(x, stable_sigmoid),
            true,
            |y| y * (T::one() - y),
        )
    }
}

/// σ(v), stable on both tails: never exponentiates a large positive number.
fn stable_sigmoid<T: Element>(v: T) -> T {
    if v >= T::zero() {
        T::one() / (T::one() + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::one() + e)
    }
}
