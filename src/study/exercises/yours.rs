//! # Your backward rules — fill these in
//!
//! Each method below is one op's backward, left blank (`todo!()`). Replace a `todo!()` with your
//! rule, then run
//!
//! ```text
//! cargo run --release -- study exercises
//! ```
//!
//! which checks every rule twice — against central differences (a numeric gradient check) and
//! inside the whole tiny GPT (against the library's gradient at every boundary) — and says which
//! op is wrong, by how much, with a hint. `--only gelu` checks one. The math for each op is in
//! docs/gradients.md; the library's rules (the solutions) are in `src/ops`, and
//! `study exercises --rules library` runs them through the same check.
//!
//! Arrays are `ndarray` (`use ndarray::{Array1, Array2, ArrayD, Axis}`): `a.dot(&b)` multiplies
//! matrices, `a.t()` transposes, `&a * &b` is elementwise, `a.sum_axis(Axis(0))` sums the rows,
//! `a.mapv(|x| x.tanh())` maps, `Array2::zeros((n, m))` makes zeros. Every rule returns gradients
//! with the shapes of the inputs they belong to.

// The blanks do not read their arguments yet; your rules will.
#![allow(unused_variables)]

use ndarray::{Array1, Array2, ArrayD};

use super::Rules;

/// Your rules: the blanks you fill in.
#[derive(Clone, Copy, Debug, Default)]
pub struct YourRules;

impl Rules for YourRules {
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        todo!("exercise 1: tanh's backward")
    }

    fn matmul(
        &self,
        a: &Array2<f64>,
        b: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        todo!("exercise 2: matmul's backward")
    }

    fn linear(
        &self,
        x: &Array2<f64>,
        w: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
        todo!("exercise 3: linear's backward")
    }

    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
        todo!("exercise 4: GELU's backward")
    }

    fn embedding(&self, ids: &[usize], vocab_size: usize, dy: &Array2<f64>) -> Array2<f64> {
        todo!("exercise 5: embedding's backward")
    }

    fn gather(&self, n: usize, index: &Array2<usize>, dy: &Array2<f64>) -> Array2<f64> {
        todo!("exercise 6: gather's backward")
    }

    fn softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        todo!("exercise 7: softmax's backward")
    }

    fn log_softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        todo!("exercise 8: log-softmax's backward")
    }

    fn cross_entropy(&self, logits: &Array2<f64>, targets: &[usize], dloss: f64) -> Array2<f64> {
        todo!("exercise 9: cross-entropy's backward")
    }

    fn layer_norm(
        &self,
        x: &Array2<f64>,
        scale: &Array1<f64>,
        eps: f64,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        todo!("exercise 10: layer norm's backward")
    }

    fn attention(
        &self,
        q: &Array2<f64>,
        k: &Array2<f64>,
        v: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        todo!("exercise 11: attention's backward")
    }
}
