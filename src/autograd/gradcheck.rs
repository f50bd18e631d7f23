//! Numeric gradient checking: the tool to reach for when you write an op.
//!
//! For `y = f(x₁, …, xₙ)` with any output shape, pick a fixed random "upstream gradient" `R` of
//! `y`'s shape and look at the scalar `L = Σ y ⊙ R`. Its gradient w.r.t. each input is exactly
//! what the op's backward rule returns when fed `R` (a vector–Jacobian product), so:
//!
//! * **analytic**: `y.backward_with(R)`, then read each input's `grad()`;
//! * **numeric**: central differences, one element at a time,
//!   `∂L/∂x[j] ≈ (L(x + ε e_j) − L(x − ε e_j)) / 2ε`, whose error is `O(ε²)` (the `ε` term
//!   cancels between the two sides). In `f64` with `ε = 1e-6` the truncation error is ~1e-12 and
//!   rounding adds ~1e-16·|L|/ε ≈ 1e-10·|L|, so agreement to 1e-6 relative is a sharp test: a
//!   wrong factor, a missing term or a dropped broadcast sum all fail it.
//!
//! Each element passes if `|analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|)`.
//! The report gives, per input, the max absolute error, the max relative error (over elements whose
//! gradient is larger than `atol`), and the index where the check is worst.

use ndarray::{ArrayD, IxDyn};

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Tensor};

/// Settings of a numeric gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance (covers gradients that are zero or tiny).
    pub atol: f64,
    /// Seed of the random upstream gradient `R`.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            rtol: 1e-6,
            atol: 1e-8,
            seed: 0x5eed,
        }
    }
}

/// The check of one input.
#[derive(Clone, Debug)]
pub struct InputCheck {
    /// Position of the input in the argument list.
    pub input: usize,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Largest `|analytic − numeric|`.
    pub max_abs_err: f64,
    /// Largest `|analytic − numeric| / max(|analytic|, |numeric|)` over elements above `atol`.
    pub max_rel_err: f64,
    /// Multi-index of the element with the largest violation of the tolerance.
    pub worst_index: Vec<usize>,
    /// Analytic and numeric gradient at `worst_index`.
    pub analytic_at_worst: f64,
    pub numeric_at_worst: f64,
    /// Whether every element is within tolerance.
    pub ok: bool,
}

/// The result of [`gradcheck`].
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// One entry per input that requires grad.
    pub inputs: Vec<InputCheck>,
}

impl GradcheckReport {
    /// Whether every checked input passed.
    pub fn ok(&self) -> bool {
        self.inputs.iter().all(|c| c.ok)
    }

    /// The largest absolute error over all inputs.
    pub fn max_abs_err(&self) -> f64 {
        self.inputs
            .iter()
            .map(|c| c.max_abs_err)
            .fold(0.0, f64::max)
    }

    /// The largest relative error over all inputs.
    pub fn max_rel_err(&self) -> f64 {
        self.inputs
            .iter()
            .map(|c| c.max_rel_err)
            .fold(0.0, f64::max)
    }
}

impl std::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.inputs {
            writeln!(
                f,
                "input {} {:?}: max abs err {:.2e}, max rel err {:.2e}, worst at {:?} (analytic {:.9e}, numeric {:.9e}) {}",
                c.input,
                c.shape,
                c.max_abs_err,
                c.max_rel_err,
                c.worst_index,
                c.analytic_at_worst,
                c.numeric_at_worst,
                if c.ok { "ok" } else { "FAIL" }
            )?;
        }
        Ok(())
    }
}

/// Checks the backward rules used by `f` against central differences, for every input that
/// requires grad. `f` must be deterministic (seeded dropout is).
///
/// ```
/// use scratchgpt::{Tensor, autograd::gradcheck::{gradcheck, GradcheckOptions}};
/// let x = Tensor::<f64>::randn(&[3, 4], 1).requires_grad_(true);
/// let report = gradcheck(|t| t[0].tanh()?.sum_all(), &[x], &GradcheckOptions::default()).unwrap();
/// assert!(report.ok(), "{report}");
/// ```
pub fn gradcheck<F>(
    f: F,
    inputs: &[Tensor<f64>],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    // Fresh leaves, so the caller's tensors keep no gradient from us.
    let bases: Vec<ArrayD<f64>> = inputs
        .iter()
        .map(|t| {
            t.cpu("gradcheck")
                .map(|a| a.as_standard_layout().to_owned())
        })
        .collect::<Result<_>>()?;
    let wants: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    if !wants.iter().any(|&w| w) {
        return Err(Error::invalid(
            "gradcheck",
            "no input requires grad: nothing to check",
        ));
    }
    let leaves = |bases: &[ArrayD<f64>]| -> Vec<Tensor<f64>> {
        bases
            .iter()
            .zip(&wants)
            .map(|(b, &w)| Tensor::from_array(b.to_shared()).requires_grad_(w))
            .collect()
    };

    // Analytic: backward with a random upstream gradient R.
    let xs = leaves(&bases);
    let y = f(&xs)?;
    let r: CpuArray<f64> = Tensor::<f64>::randn(&y.shape(), opts.seed).cpu("gradcheck")?;
    if !y.requires_grad() {
        return Err(Error::invalid(
            "gradcheck",
            "the output does not depend on any input that requires grad",
        ));
    }
    y.backward_with(&Tensor::from_array(r.clone()))?;
    let analytic: Vec<Option<CpuArray<f64>>> = xs
        .iter()
        .map(|x| x.grad().map(|g| g.cpu("gradcheck")).transpose())
        .collect::<Result<_>>()?;

    let project = |bases: &[ArrayD<f64>]| -> Result<f64> {
        let y = no_grad(|| f(&leaves(bases)))?;
        let ya = y.cpu("gradcheck")?;
        Ok(ya.iter().zip(r.iter()).map(|(a, b)| a * b).sum())
    };

    let mut bases = bases;
    let mut checks = Vec::new();
    for i in 0..bases.len() {
        if !wants[i] {
            continue;
        }
        let shape = bases[i].shape().to_vec();
        let zeros = ArrayD::<f64>::zeros(IxDyn(&shape)).into_shared();
        let an = analytic[i].clone().unwrap_or(zeros);
        let an = an.as_standard_layout().to_owned();
        let mut check = InputCheck {
            input: i,
            shape: shape.clone(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            worst_index: vec![],
            analytic_at_worst: 0.0,
            numeric_at_worst: 0.0,
            ok: true,
        };
        let mut worst_violation = f64::NEG_INFINITY;
        let n = bases[i].len();
        for k in 0..n {
            let orig = bases[i].as_slice().expect("standard layout")[k];
            bases[i].as_slice_mut().expect("standard layout")[k] = orig + opts.eps;
            let lp = project(&bases)?;
            bases[i].as_slice_mut().expect("standard layout")[k] = orig - opts.eps;
            let lm = project(&bases)?;
            bases[i].as_slice_mut().expect("standard layout")[k] = orig;
            let num = (lp - lm) / (2.0 * opts.eps);
            let a = an.as_slice().expect("standard layout")[k];
            let err = (a - num).abs();
            let scale = a.abs().max(num.abs());
            let violation = err - (opts.atol + opts.rtol * scale);
            check.max_abs_err = check.max_abs_err.max(err);
            if scale > opts.atol {
                check.max_rel_err = check.max_rel_err.max(err / scale);
            }
            if violation.is_nan() || violation > 0.0 {
                check.ok = false;
            }
            if violation > worst_violation || violation.is_nan() {
                worst_violation = if violation.is_nan() {
                    f64::INFINITY
                } else {
                    violation
                };
                check.worst_index = unravel(k, &shape);
                check.analytic_at_worst = a;
                check.numeric_at_worst = num;
            }
        }
        checks.push(check);
    }
    Ok(GradcheckReport { inputs: checks })
}

fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, &s) in shape.iter().enumerate().rev() {
        if s > 0 {
            idx[d] = k % s;
            k /= s;
        }
    }
    idx
}
