//! Ops whose forward is the library's and whose backward is a [`Rules`] method: how a student's
//! rule is swapped into a gradient check and into the whole tiny GPT at run time, with no second
//! build. Each op records itself with [`Tensor::from_op`] (named `your <op>` in graphs), hands the
//! rule the forward's saved values as 2-D rows, and checks the shapes the rule returns.

use std::rc::Rc;

use ndarray::{Array1, Array2, ArrayD, Axis, Ix2, IxDyn};

use super::{Exercise, Rules};
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::study::OpSet;
use crate::tensor::{CpuArray, Tensor};

/// Ops that use `rules` for their backward — for one exercise only (`only`), the library's rules
/// for the rest, or for all of them.
#[derive(Clone)]
pub struct ExerciseOps {
    rules: Rc<dyn Rules>,
    only: Option<Exercise>,
}

/// An input's values as `(rows, last axis)`.
fn rows_of(a: &CpuArray<f64>) -> Array2<f64> {
    let n = a.shape().last().copied().unwrap_or(1).max(1);
    let rows = a.len() / n;
    a.as_standard_layout()
        .to_owned()
        .into_shape_with_order((rows, n))
        .expect("rows × last axis")
}

/// The error for a rule that returned the wrong shape.
fn bad_shape(ex: Exercise, what: &str, got: &[usize], want: &[usize]) -> Error {
    Error::invalid(
        "your rules",
        format!("{ex}: {what} has shape {got:?}, but its input has shape {want:?}"),
    )
}

/// `g` reshaped to `want` (same element count), or the shape error naming the exercise.
fn shaped(ex: Exercise, what: &str, g: ArrayD<f64>, want: &[usize]) -> Result<CpuArray<f64>> {
    if g.len() != want.iter().product::<usize>() {
        return Err(bad_shape(ex, what, g.shape(), want));
    }
    Ok(g.as_standard_layout()
        .to_owned()
        .into_shape_with_order(IxDyn(want))
        .expect("same size")
        .into_shared())
}

fn exact(ex: Exercise, what: &str, g: ArrayD<f64>, want: &[usize]) -> Result<CpuArray<f64>> {
    if g.shape() != want {
        return Err(bad_shape(ex, what, g.shape(), want));
    }
    Ok(g.into_shared())
}

fn usizes(ids: &Ids) -> Vec<usize> {
    ids.data().iter().map(|&i| i as usize).collect()
}

impl ExerciseOps {
    /// Every op with `rules`.
    pub fn all(rules: Rc<dyn Rules>) -> Self {
        ExerciseOps { rules, only: None }
    }

    /// `rules` for `exercise` only; the library's own rules everywhere else.
    pub fn only(rules: Rc<dyn Rules>, exercise: Exercise) -> Self {
        ExerciseOps {
            rules,
            only: Some(exercise),
        }
    }

    fn uses(&self, ex: Exercise) -> bool {
        self.only.is_none_or(|o| o == ex)
    }

    /// The library's forward value of `f` (no graph).
    fn value(f: impl FnOnce() -> Result<Tensor<f64>>) -> Result<CpuArray<f64>> {
        no_grad(f)?.value()
    }

    /// tanh with your rule.
    pub fn tanh(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Tanh) {
            return x.tanh();
        }
        let y = Self::value(|| x.detach().tanh())?;
        let (rules, saved) = (self.rules.clone(), y.clone());
        Ok(Tensor::from_op("your tanh", y, &[x], move |g, _| {
            let dx = rules.tanh(&saved.to_owned(), &g.to_owned());
            Ok(vec![Some(exact(Exercise::Tanh, "dx", dx, saved.shape())?)])
        }))
    }

    /// 2-D matmul with your rule.
    pub fn matmul(&self, a: &Tensor<f64>, b: &Tensor<f64>) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Matmul) {
            return a.matmul(b);
        }
        if a.ndim() != 2 || b.ndim() != 2 {
            return Err(Error::invalid(
                "your matmul",
                "the exercise's matmul is 2-D",
            ));
        }
        let y = Self::value(|| a.detach().matmul(&b.detach()))?;
        let (rules, av, bv) = (self.rules.clone(), a.value()?, b.value()?);
        Ok(Tensor::from_op("your matmul", y, &[a, b], move |g, _| {
            let (da, db) = rules.matmul(&rows_of(&av), &rows_of(&bv), &rows_of(g));
            Ok(vec![
                Some(exact(Exercise::Matmul, "dA", da.into_dyn(), av.shape())?),
                Some(exact(Exercise::Matmul, "dB", db.into_dyn(), bv.shape())?),
            ])
        }))
    }

    /// `x·Wᵀ + b` over the rows of `x (…, in)` with your rule.
    pub fn linear(
        &self,
        x: &Tensor<f64>,
        w: &Tensor<f64>,
        b: Option<&Tensor<f64>>,
    ) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Linear) {
            return x.linear(w, b, None);
        }
        let y = Self::value(|| {
            x.detach()
                .linear(&w.detach(), b.map(|b| b.detach()).as_ref(), None)
        })?;
        let (rules, xv, wv) = (self.rules.clone(), x.value()?, w.value()?);
        let bias_shape = b.map(|b| b.shape());
        let mut inputs = vec![x, w];
        inputs.extend(b);
        Ok(Tensor::from_op("your linear", y, &inputs, move |g, _| {
            let (dx, dw, db) = rules.linear(&rows_of(&xv), &rows_of(&wv), &rows_of(g));
            let mut out = vec![
                Some(shaped(Exercise::Linear, "dX", dx.into_dyn(), xv.shape())?),
                Some(exact(Exercise::Linear, "dW", dw.into_dyn(), wv.shape())?),
            ];
            if let Some(bs) = &bias_shape {
                out.push(Some(exact(Exercise::Linear, "db", db.into_dyn(), bs)?));
            }
            Ok(out)
        }))
    }

    /// GELU with your rule.
    pub fn gelu(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Gelu) {
            return x.gelu();
        }
        let y = Self::value(|| x.detach().gelu())?;
        let (rules, xv) = (self.rules.clone(), x.value()?);
        Ok(Tensor::from_op("your gelu", y, &[x], move |g, _| {
            let dx = rules.gelu(&xv.to_owned(), &g.to_owned());
            Ok(vec![Some(exact(Exercise::Gelu, "dx", dx, xv.shape())?)])
        }))
    }

    /// Embedding lookup with your rule.
    pub fn embedding(&self, weight: &Tensor<f64>, ids: &Ids) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Embedding) {
            return weight.embedding(ids);
        }
        let y = Self::value(|| weight.detach().embedding(ids))?;
        let (rules, ws, flat) = (self.rules.clone(), weight.shape(), usizes(ids));
        Ok(Tensor::from_op(
            "your embedding",
            y,
            &[weight],
            move |g, _| {
                let dw = rules.embedding(&flat, ws[0], &rows_of(g));
                Ok(vec![Some(exact(
                    Exercise::Embedding,
                    "dW",
                    dw.into_dyn(),
                    &ws,
                )?)])
            },
        ))
    }

    /// Gather along the last axis with your rule.
    pub fn gather(&self, x: &Tensor<f64>, index: &Ids) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::Gather) {
            return x.gather(index);
        }
        let y = Self::value(|| x.detach().gather(index))?;
        let xs = x.shape();
        let n = *xs.last().unwrap_or(&1);
        let k = *index.shape().last().unwrap_or(&1);
        let idx = Array2::from_shape_vec((index.len() / k.max(1), k), usizes(index))
            .map_err(|e| Error::invalid("your gather", e.to_string()))?;
        let rules = self.rules.clone();
        Ok(Tensor::from_op("your gather", y, &[x], move |g, _| {
            let dx = rules.gather(n, &idx, &rows_of(g));
            Ok(vec![Some(shaped(
                Exercise::Gather,
                "dX",
                dx.into_dyn(),
                &xs,
            )?)])
        }))
    }

    /// Softmax of the last axis with your rule.
    pub fn softmax(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        self.row_map(
            x,
            Exercise::Softmax,
            |x| x.softmax(),
            |r, y, g| r.softmax(y, g),
        )
    }

    /// Log-softmax of the last axis with your rule.
    pub fn log_softmax(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        self.row_map(
            x,
            Exercise::LogSoftmax,
            |x| x.log_softmax(),
            |r, y, g| r.log_softmax(y, g),
        )
    }

    /// A row-wise op whose rule reads the saved output.
    fn row_map(
        &self,
        x: &Tensor<f64>,
        ex: Exercise,
        forward: fn(&Tensor<f64>) -> Result<Tensor<f64>>,
        rule: fn(&dyn Rules, &Array2<f64>, &Array2<f64>) -> Array2<f64>,
    ) -> Result<Tensor<f64>> {
        if !self.uses(ex) {
            return forward(x);
        }
        let y = Self::value(|| forward(&x.detach()))?;
        let (rules, saved) = (self.rules.clone(), y.clone());
        let name = match ex {
            Exercise::Softmax => "your softmax",
            _ => "your log_softmax",
        };
        Ok(Tensor::from_op(name, y, &[x], move |g, _| {
            let dx = rule(rules.as_ref(), &rows_of(&saved), &rows_of(g));
            Ok(vec![Some(shaped(ex, "dx", dx.into_dyn(), saved.shape())?)])
        }))
    }

    /// Mean cross-entropy of `logits (…, V)` against `targets (…)` with your rule.
    pub fn cross_entropy(&self, logits: &Tensor<f64>, targets: &Ids) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::CrossEntropy) {
            return logits.cross_entropy(targets);
        }
        let y = Self::value(|| logits.detach().cross_entropy(targets))?;
        let (rules, lv, t) = (self.rules.clone(), logits.value()?, usizes(targets));
        Ok(Tensor::from_op(
            "your cross_entropy",
            y,
            &[logits],
            move |g, _| {
                let dloss = g.iter().next().copied().unwrap_or(0.0);
                let dz = rules.cross_entropy(&rows_of(&lv), &t, dloss);
                Ok(vec![Some(shaped(
                    Exercise::CrossEntropy,
                    "dz",
                    dz.into_dyn(),
                    lv.shape(),
                )?)])
            },
        ))
    }

    /// Layer norm over the last axis with your rule.
    pub fn layer_norm(
        &self,
        x: &Tensor<f64>,
        scale: &Tensor<f64>,
        shift: &Tensor<f64>,
        eps: f64,
    ) -> Result<Tensor<f64>> {
        if !self.uses(Exercise::LayerNorm) {
            return x.layer_norm(scale, shift, eps);
        }
        let y = Self::value(|| x.detach().layer_norm(&scale.detach(), &shift.detach(), eps))?;
        let (rules, xv) = (self.rules.clone(), x.value()?);
        let gamma: Array1<f64> = scale.value()?.iter().copied().collect();
        let n = gamma.len();
        Ok(Tensor::from_op(
            "your layer_norm",
            y,
            &[x, scale, shift],
            move |g, _| {
                let (dx, dg, db) = rules.layer_norm(&rows_of(&xv), &gamma, eps, &rows_of(g));
                Ok(vec![
                    Some(shaped(
                        Exercise::LayerNorm,
                        "dx",
                        dx.into_dyn(),
                        xv.shape(),
                    )?),
                    Some(exact(Exercise::LayerNorm, "dγ", dg.into_dyn(), &[n])?),
                    Some(exact(Exercise::LayerNorm, "dβ", db.into_dyn(), &[n])?),
                ])
            },
        ))
    }

    /// Causal attention of `q, k, v (B, H, T, d)`, your rule run on each (batch, head).
    pub fn attention(
        &self,
        q: &Tensor<f64>,
        k: &Tensor<f64>,
        v: &Tensor<f64>,
    ) -> Result<Tensor<f64>> {
        let opts = AttentionOptions {
            causal: true,
            dropout_p: 0.0,
            seed: 0,
        };
        if !self.uses(Exercise::Attention) {
            return Tensor::attention(q, k, v, &opts);
        }
        let y = Self::value(|| Tensor::attention(&q.detach(), &k.detach(), &v.detach(), &opts))?;
        let s = q.shape();
        if k.shape() != s || v.shape() != s {
            return Err(Error::invalid(
                "your attention",
                "the exercise's attention takes q, k, v of one shape (B, H, T, d)",
            ));
        }
        let (rules, qv, kv, vv) = (self.rules.clone(), q.value()?, k.value()?, v.value()?);
        Ok(Tensor::from_op(
            "your attention",
            y,
            &[q, k, v],
            move |g, _| {
                let (b, h, t, d) = (s[0], s[1], s[2], s[3]);
                let head = |a: &CpuArray<f64>, i: usize, j: usize| -> Array2<f64> {
                    a.index_axis(Axis(0), i)
                        .index_axis_move(Axis(0), j)
                        .into_dimensionality::<Ix2>()
                        .expect("(T, d)")
                        .to_owned()
                };
                let mut grads = [
                    ArrayD::<f64>::zeros(IxDyn(&s)),
                    ArrayD::<f64>::zeros(IxDyn(&s)),
                    ArrayD::<f64>::zeros(IxDyn(&s)),
                ];
                for i in 0..b {
                    for j in 0..h {
                        let (dq, dk, dv) = rules.attention(
                            &head(&qv, i, j),
                            &head(&kv, i, j),
                            &head(&vv, i, j),
                            &head(g, i, j),
                        );
                        for (out, (what, part)) in
                            grads.iter_mut().zip([("dQ", dq), ("dK", dk), ("dV", dv)])
                        {
                            if part.dim() != (t, d) {
                                return Err(bad_shape(
                                    Exercise::Attention,
                                    what,
                                    part.shape(),
                                    &[t, d],
                                ));
                            }
                            out.index_axis_mut(Axis(0), i)
                                .index_axis_mut(Axis(0), j)
                                .assign(&part);
                        }
                    }
                }
                Ok(grads.into_iter().map(|a| Some(a.into_shared())).collect())
            },
        ))
    }
}

impl OpSet for ExerciseOps {
    fn name(&self) -> String {
        match self.only {
            Some(ex) => format!("your {ex}"),
            None => "your rules".into(),
        }
    }
    fn embedding(&self, weight: &Tensor<f64>, ids: &Ids) -> Result<Tensor<f64>> {
        ExerciseOps::embedding(self, weight, ids)
    }
    fn linear(
        &self,
        x: &Tensor<f64>,
        w: &Tensor<f64>,
        b: Option<&Tensor<f64>>,
    ) -> Result<Tensor<f64>> {
        ExerciseOps::linear(self, x, w, b)
    }
    fn layer_norm(
        &self,
        x: &Tensor<f64>,
        scale: &Tensor<f64>,
        shift: &Tensor<f64>,
        eps: f64,
    ) -> Result<Tensor<f64>> {
        ExerciseOps::layer_norm(self, x, scale, shift, eps)
    }
    fn gelu(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        ExerciseOps::gelu(self, x)
    }
    fn causal_attention(
        &self,
        q: &Tensor<f64>,
        k: &Tensor<f64>,
        v: &Tensor<f64>,
    ) -> Result<Tensor<f64>> {
        self.attention(q, k, v)
    }
    fn cross_entropy(&self, logits: &Tensor<f64>, targets: &Ids) -> Result<Tensor<f64>> {
        ExerciseOps::cross_entropy(self, logits, targets)
    }
}
