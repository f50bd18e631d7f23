//! The solutions: each exercise answered by the library's own backward rule. Rather than a second
//! copy of the formulas, every method builds the op on leaves, runs `backward_with(dy)` and reads
//! the leaves' gradients — so the rule that runs is exactly the one in `src/ops` (named by
//! [`super::Exercise::solution`]).
//!
//! Where a rule is given the forward's *output* (tanh, softmax, log-softmax), the input is
//! recovered from it exactly enough for f64: `x = atanh(y)`; `x = ln y` (softmax is
//! shift-invariant and `Σ y = 1`); `x = y` (log-softmax of log-probabilities is itself).

use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2, IxDyn};

use super::Rules;
use crate::error::Result;
use crate::ops::attention::AttentionOptions;
use crate::ops::embedding::Ids;
use crate::tensor::Tensor;

/// The library's rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct LibraryRules;

/// `∂L/∂inputs` of `f` at `inputs` for `∂L/∂f = dy`, through the library's backward.
///
/// Panics if the op fails: the checker calls these with shapes it made consistent, and catches a
/// panic as it would a student's.
fn vjp(
    inputs: &[ArrayD<f64>],
    f: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
    dy: &ArrayD<f64>,
) -> Vec<ArrayD<f64>> {
    let leaves: Vec<Tensor<f64>> = inputs
        .iter()
        .map(|a| Tensor::from_array(a.clone()).requires_grad_(true))
        .collect();
    let run = || -> Result<Vec<ArrayD<f64>>> {
        let y = f(&leaves)?;
        y.backward_with(&Tensor::from_array(dy.clone()))?;
        leaves
            .iter()
            .map(|l| match l.grad() {
                Some(g) => Ok(g.value()?.to_owned()),
                None => Ok(ArrayD::zeros(l.shape())),
            })
            .collect()
    };
    run().unwrap_or_else(|e| panic!("the library's rule failed: {e}"))
}

fn d2(a: ArrayD<f64>) -> Array2<f64> {
    a.into_dimensionality::<Ix2>().expect("a 2-D gradient")
}

fn d1(a: ArrayD<f64>) -> Array1<f64> {
    a.into_dimensionality::<Ix1>().expect("a 1-D gradient")
}

fn ids(values: impl IntoIterator<Item = usize>, shape: &[usize]) -> Ids {
    Ids::new(values.into_iter().map(|i| i as i64).collect(), shape).expect("ids of that shape")
}

impl Rules for LibraryRules {
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        let x = y.mapv(f64::atanh);
        vjp(&[x], |t| t[0].tanh(), dy).remove(0)
    }

    fn matmul(
        &self,
        a: &Array2<f64>,
        b: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        let mut g = vjp(
            &[a.clone().into_dyn(), b.clone().into_dyn()],
            |t| t[0].matmul(&t[1]),
            &dy.clone().into_dyn(),
        );
        let db = d2(g.pop().expect("two"));
        (d2(g.pop().expect("two")), db)
    }

    fn linear(
        &self,
        x: &Array2<f64>,
        w: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
        let b = ArrayD::zeros(IxDyn(&[w.nrows()]));
        let mut g = vjp(
            &[x.clone().into_dyn(), w.clone().into_dyn(), b],
            |t| t[0].linear(&t[1], Some(&t[2]), None),
            &dy.clone().into_dyn(),
        );
        let db = d1(g.pop().expect("three"));
        let dw = d2(g.pop().expect("three"));
        (d2(g.pop().expect("three")), dw, db)
    }

    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        vjp(std::slice::from_ref(x), |t| t[0].gelu(), dy).remove(0)
    }

    fn embedding(&self, ids_: &[usize], vocab_size: usize, dy: &Array2<f64>) -> Array2<f64> {
        let table = ArrayD::zeros(IxDyn(&[vocab_size, dy.ncols()]));
        let index = ids(ids_.iter().copied(), &[ids_.len()]);
        d2(vjp(&[table], |t| t[0].embedding(&index), &dy.clone().into_dyn()).remove(0))
    }

    fn gather(&self, n: usize, index: &Array2<usize>, dy: &Array2<f64>) -> Array2<f64> {
        let x = ArrayD::zeros(IxDyn(&[index.nrows(), n]));
        let index = ids(index.iter().copied(), &[index.nrows(), index.ncols()]);
        d2(vjp(&[x], |t| t[0].gather(&index), &dy.clone().into_dyn()).remove(0))
    }

    fn softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        let x = y.mapv(f64::ln).into_dyn();
        d2(vjp(&[x], |t| t[0].softmax(), &dy.clone().into_dyn()).remove(0))
    }

    fn log_softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        let x = y.clone().into_dyn();
        d2(vjp(&[x], |t| t[0].log_softmax(), &dy.clone().into_dyn()).remove(0))
    }

    fn cross_entropy(&self, logits: &Array2<f64>, targets: &[usize], dloss: f64) -> Array2<f64> {
        let t = ids(targets.iter().copied(), &[targets.len()]);
        let dy = ArrayD::from_elem(IxDyn(&[]), dloss);
        d2(vjp(
            &[logits.clone().into_dyn()],
            |x| x[0].cross_entropy(&t),
            &dy,
        )
        .remove(0))
    }

    fn layer_norm(
        &self,
        x: &Array2<f64>,
        scale: &Array1<f64>,
        eps: f64,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let shift = ArrayD::zeros(IxDyn(&[scale.len()]));
        let mut g = vjp(
            &[x.clone().into_dyn(), scale.clone().into_dyn(), shift],
            |t| t[0].layer_norm(&t[1], &t[2], eps),
            &dy.clone().into_dyn(),
        );
        let dshift = d1(g.pop().expect("three"));
        let dscale = d1(g.pop().expect("three"));
        (d2(g.pop().expect("three")), dscale, dshift)
    }

    fn attention(
        &self,
        q: &Array2<f64>,
        k: &Array2<f64>,
        v: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        let (t, d) = q.dim();
        let head = |a: &Array2<f64>| {
            a.clone()
                .into_shape_with_order(IxDyn(&[1, 1, t, d]))
                .expect("one head")
        };
        let opts = AttentionOptions {
            causal: true,
            dropout_p: 0.0,
            seed: 0,
        };
        let mut g = vjp(
            &[head(q), head(k), head(v)],
            |x| Tensor::attention(&x[0], &x[1], &x[2], &opts),
            &head(dy),
        );
        let back = |a: ArrayD<f64>| {
            a.into_shape_with_order((t, d))
                .expect("one head back to (T, d)")
        };
        let dv = back(g.pop().expect("three"));
        let dk = back(g.pop().expect("three"));
        (back(g.pop().expect("three")), dk, dv)
    }
}
