//! The backward rules a student writes: one method per op, on plain `ndarray` arrays in f64,
//! rows first (an op over "the last axis" gets its input as a 2-D array of rows).
//!
//! Every method receives what the forward saved and `dy = ∂L/∂y`, and returns `∂L/∂input` for
//! each input, each with its input's shape.

use ndarray::{Array1, Array2, ArrayD};

/// The backward rules of the exercises (docs/backprop.md, "Exercises"). [`super::YourRules`]
/// ships blank for you to fill in; [`super::LibraryRules`] are the library's own rules (the
/// solutions).
pub trait Rules {
    /// Exercise 1: `y = tanh(x)`, elementwise. Given the output `y`, return `dx`.
    fn tanh(&self, y: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64>;

    /// Exercise 2: `Y = A·B` with `A (n, k)`, `B (k, m)`. Return `(dA, dB)`.
    fn matmul(
        &self,
        a: &Array2<f64>,
        b: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>);

    /// Exercise 3: `Y = X·Wᵀ + b` with `X (n, in)`, `W (out, in)`, `b (out)`. Return `(dX, dW, db)`.
    fn linear(
        &self,
        x: &Array2<f64>,
        w: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>);

    /// Exercise 4: `y = GELU(x) = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, elementwise. Return `dx`.
    fn gelu(&self, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64>;

    /// Exercise 5: `Y[r] = W[ids[r]]` for a table `W (vocab_size, dim)`; `dy (rows, dim)`. Return `dW`.
    fn embedding(&self, ids: &[usize], vocab_size: usize, dy: &Array2<f64>) -> Array2<f64>;

    /// Exercise 6: `Y[r, j] = X[r, index[r, j]]` for `X (rows, n)`; `dy` has `index`'s shape. Return `dX`.
    fn gather(&self, n: usize, index: &Array2<usize>, dy: &Array2<f64>) -> Array2<f64>;

    /// Exercise 7: `y = softmax(x)` of each row. Given the output `y`, return `dx`.
    fn softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64>;

    /// Exercise 8: `y = log softmax(x)` of each row. Given the output `y`, return `dx`.
    fn log_softmax(&self, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64>;

    /// Exercise 9: `L = −(1/N)·Σ_r log softmax(z_r)[t_r]` over `N` rows of logits `z (N, V)` with targets
    /// `t`; `dloss = ∂(final loss)/∂L` is a number. Return `dz`.
    fn cross_entropy(&self, logits: &Array2<f64>, targets: &[usize], dloss: f64) -> Array2<f64>;

    /// Exercise 10: Per row: `y = (x − μ)/√(σ² + ε) ⊙ γ + β` (μ, σ² the row's mean and biased
    /// variance), `x (rows, n)`, `γ (n)`. Return `(dx, dγ, dβ)`.
    fn layer_norm(
        &self,
        x: &Array2<f64>,
        scale: &Array1<f64>,
        eps: f64,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>);

    /// Exercise 11: One causal head: `S = Q·Kᵀ/√d`, `S[i, j] = −∞` for `j > i`, `P = softmax(S)` by rows,
    /// `O = P·V`, all of `q, k, v (T, d)`; `dy = dO`. Return `(dQ, dK, dV)`.
    fn attention(
        &self,
        q: &Array2<f64>,
        k: &Array2<f64>,
        v: &Array2<f64>,
        dy: &Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>);
}

/// The exercises, easiest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exercise {
    Tanh,
    Matmul,
    Linear,
    Gelu,
    Embedding,
    Gather,
    Softmax,
    LogSoftmax,
    CrossEntropy,
    LayerNorm,
    Attention,
}

impl Exercise {
    /// All of them, in order.
    pub const ALL: [Exercise; 11] = [
        Exercise::Tanh,
        Exercise::Matmul,
        Exercise::Linear,
        Exercise::Gelu,
        Exercise::Embedding,
        Exercise::Gather,
        Exercise::Softmax,
        Exercise::LogSoftmax,
        Exercise::CrossEntropy,
        Exercise::LayerNorm,
        Exercise::Attention,
    ];

    /// The op's name, as the `Rules` method is called.
    pub fn name(self) -> &'static str {
        match self {
            Exercise::Tanh => "tanh",
            Exercise::Matmul => "matmul",
            Exercise::Linear => "linear",
            Exercise::Gelu => "gelu",
            Exercise::Embedding => "embedding",
            Exercise::Gather => "gather",
            Exercise::Softmax => "softmax",
            Exercise::LogSoftmax => "log_softmax",
            Exercise::CrossEntropy => "cross_entropy",
            Exercise::LayerNorm => "layer_norm",
            Exercise::Attention => "attention",
        }
    }

    /// Its number in the list (1-based).
    pub fn number(self) -> usize {
        Exercise::ALL.iter().position(|&e| e == self).unwrap_or(0) + 1
    }

    /// The exercise called `name`.
    pub fn parse(name: &str) -> Option<Exercise> {
        Exercise::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether the study GPT uses this op (so the check also runs it inside the whole model).
    pub fn in_gpt(self) -> bool {
        matches!(
            self,
            Exercise::Linear
                | Exercise::Gelu
                | Exercise::Embedding
                | Exercise::CrossEntropy
                | Exercise::LayerNorm
                | Exercise::Attention
        )
    }

    /// A nudge toward the rule (shown when a check fails).
    pub fn hint(self) -> &'static str {
        match self {
            Exercise::Tanh => "d tanh(x)/dx = 1 − tanh²(x) = 1 − y², so dx = dy ⊙ (1 − y²).",
            Exercise::Matmul => {
                "dA = dY·Bᵀ and dB = Aᵀ·dY: each gradient has its operand's shape, and the \
                 shapes leave only one way to multiply."
            }
            Exercise::Linear => {
                "Y = X·Wᵀ + b: dX = dY·W, dW = dYᵀ·X (shape (out, in), like W), db = dY summed \
                 over the rows (the bias was broadcast to every row)."
            }
            Exercise::Gelu => {
                "With u = √(2/π)(x + 0.044715x³): GELU'(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·\
                 √(2/π)(1 + 3·0.044715x²); dx = dy ⊙ GELU'(x)."
            }
            Exercise::Embedding => {
                "Row r of Y is a copy of W[ids[r]], so dW[ids[r]] += dY[r]: add (not assign) — \
                 an id used twice receives both rows; rows never looked up get 0."
            }
            Exercise::Gather => {
                "Y[r, j] copies X[r, index[r, j]], so dX[r, index[r, j]] += dY[r, j]; a repeated \
                 index adds, every other entry of dX is 0."
            }
            Exercise::Softmax => {
                "∂y_j/∂x_i = y_j(δ_ij − y_i), so per row dx = y ⊙ (dy − Σ_j dy_j·y_j)."
            }
            Exercise::LogSoftmax => {
                "y = x − logsumexp(x), ∂y_j/∂x_i = δ_ij − softmax(x)_i with softmax = exp(y): \
                 per row dx = dy − exp(y)·Σ_j dy_j."
            }
            Exercise::CrossEntropy => {
                "Per row, d(−log softmax(z)[t])/dz = softmax(z) − onehot(t); the mean divides by \
                 N and the chain rule multiplies by dloss: dz = (softmax(z) − onehot(t))·dloss/N."
            }
            Exercise::LayerNorm => {
                "x̂ = (x − μ)/σ, σ = √(σ² + ε): dβ = Σ_rows dy, dγ = Σ_rows dy ⊙ x̂; with \
                 g = dy ⊙ γ, dx = (g − mean(g) − x̂·mean(g ⊙ x̂))/σ, means over the row."
            }
            Exercise::Attention => {
                "Backward in reverse: dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)) \
                 (softmax's rule; masked entries have P = 0); dQ = dS·K/√d; dK = dSᵀ·Q/√d."
            }
        }
    }

    /// Where the library's rule (the solution) lives.
    pub fn solution(self) -> &'static str {
        match self {
            Exercise::Tanh => "src/ops/unary/mod.rs (tanh)",
            Exercise::Matmul => "src/ops/matmul/mod.rs (grad_a, grad_b)",
            Exercise::Linear => "src/ops/linear/mod.rs",
            Exercise::Gelu => "src/ops/gelu/mod.rs (gelu_backward_into)",
            Exercise::Embedding => "src/ops/embedding/mod.rs",
            Exercise::Gather => "src/ops/gather/mod.rs",
            Exercise::Softmax => "src/ops/softmax/mod.rs (softmax_backward_row)",
            Exercise::LogSoftmax => "src/ops/softmax/mod.rs (log_softmax_backward_row)",
            Exercise::CrossEntropy => "src/ops/cross_entropy/mod.rs (p_minus_y_row)",
            Exercise::LayerNorm => "src/ops/layer_norm/mod.rs",
            Exercise::Attention => "src/ops/attention/mod.rs (module docs)",
        }
    }
}

impl std::fmt::Display for Exercise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
