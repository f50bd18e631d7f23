//! One backward through the study GPT with each of two op sets, and the gradients lined up at
//! every boundary the two graphs share — in reverse order, the order backward reaches them.

use crate::error::Result;
use crate::gpt::GptModel;
use crate::tensor::Tensor;

use super::graph::RecordedGraph;
use super::tiny_gpt::{forward, Taps, TinyBatch};
use super::OpSet;

/// One op set's forward and backward through its own copy of the model.
pub struct Side {
    /// The op set's name.
    pub name: String,
    pub loss: f64,
    /// The tapped boundaries, forward order; their gradients are retained.
    pub boundaries: Vec<(String, Tensor<f64>)>,
    /// The model's parameters, `named_parameters` order; their gradients are set.
    pub params: Vec<(String, Tensor<f64>)>,
    /// The graph, if asked for (recorded before backward).
    pub graph: Option<RecordedGraph>,
}

impl Side {
    /// Runs `ops` forward and backward on a copy of `model` (so two sides never share a
    /// gradient); `record_graph` keeps the graph's structure for drawing.
    pub fn run(
        ops: &dyn OpSet,
        model: &GptModel<f64>,
        batch: &TinyBatch,
        record_graph: bool,
    ) -> Result<Side> {
        let model = model.cast::<f64>()?; // a deep copy: fresh parameter tensors
        let params = model.named_parameters();
        let mut taps = Taps::default();
        let loss = forward(ops, &model, batch, &mut taps)?;
        let graph = record_graph.then(|| RecordedGraph::record(&loss, &taps, &params));
        loss.backward()?;
        Ok(Side {
            name: ops.name(),
            loss: loss.item()?,
            boundaries: taps.boundaries,
            params,
            graph,
        })
    }

    /// The gradient of the boundary or parameter called `name`.
    pub fn grad_of(&self, name: &str) -> Option<Tensor<f64>> {
        self.boundaries
            .iter()
            .chain(&self.params)
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.grad())
    }

    /// Every boundary and parameter name, in the order a comparison lists them.
    pub fn names(&self) -> Vec<String> {
        let b = self.boundaries.iter().rev().map(|(n, _)| n.clone());
        b.chain(self.params.iter().rev().map(|(n, _)| n.clone()))
            .collect()
    }
}

/// Whether a row is an intermediate or a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    Boundary,
    Parameter,
}

/// One boundary's gradients through two graphs.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub kind: RowKind,
    pub shape: Vec<usize>,
    /// ‖∂L/∂X‖ through the first and the second graph (Frobenius norm).
    pub norm_a: f64,
    pub norm_b: f64,
    /// `max |∂L/∂X_a − ∂L/∂X_b|` over the entries.
    pub max_diff: f64,
}

/// Two sides' gradients, row by row (boundaries from the loss back to the embeddings, then the
/// parameters from the head back to `tok_emb`).
#[derive(Clone, Debug)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub loss_a: f64,
    pub loss_b: f64,
    pub rows: Vec<Row>,
}

impl Comparison {
    /// The row with the largest difference.
    pub fn worst(&self) -> Option<&Row> {
        self.rows
            .iter()
            .max_by(|x, y| x.max_diff.total_cmp(&y.max_diff))
    }

    /// The largest difference anywhere, NaN if any row has one (a NaN never "agrees").
    pub fn max_diff(&self) -> f64 {
        if self.rows.iter().any(|r| r.max_diff.is_nan()) {
            return f64::NAN;
        }
        self.rows.iter().map(|r| r.max_diff).fold(0.0, f64::max)
    }

    /// Whether every row differs by at most `tol`.
    pub fn agrees(&self, tol: f64) -> bool {
        self.max_diff() <= tol
    }

    /// The first row backward reaches whose difference exceeds `tol`: where a wrong rule first
    /// shows (every row after it inherits the error).
    pub fn first_disagreement(&self, tol: f64) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.max_diff.is_nan() || r.max_diff > tol)
    }
}

/// Lines up two sides' gradients.
pub fn compare(a: &Side, b: &Side) -> Result<Comparison> {
    let mut rows = Vec::new();
    let pairs = |kind, xs: &[(String, Tensor<f64>)], ys: &[(String, Tensor<f64>)]| {
        xs.iter()
            .rev()
            .zip(ys.iter().rev())
            .map(move |((name, x), (_, y))| (kind, name.clone(), x.clone(), y.clone()))
            .collect::<Vec<_>>()
    };
    let all = pairs(RowKind::Boundary, &a.boundaries, &b.boundaries)
        .into_iter()
        .chain(pairs(RowKind::Parameter, &a.params, &b.params));
    for (kind, name, x, y) in all {
        let gx = grad_values(&x)?;
        let gy = grad_values(&y)?;
        let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let max_diff = gx
            .iter()
            .zip(&gy)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, |m: f64, d| {
                if m.is_nan() || d.is_nan() {
                    f64::NAN
                } else {
                    m.max(d)
                }
            });
        rows.push(Row {
            name,
            kind,
            shape: x.shape(),
            norm_a: norm(&gx),
            norm_b: norm(&gy),
            max_diff,
        });
    }
    Ok(Comparison {
        a: a.name.clone(),
        b: b.name.clone(),
        loss_a: a.loss,
        loss_b: b.loss,
        rows,
    })
}

/// A tensor's gradient as a flat vector (zeros if none reached it).
fn grad_values(t: &Tensor<f64>) -> Result<Vec<f64>> {
    Ok(match t.grad() {
        Some(g) => g.to_vec()?,
        None => vec![0.0; t.numel()],
    })
}
