//! `Embedding` (PyTorch's `nn.Embedding`): a `(num_embeddings, dim)` weight initialised N(0, 1),
//! looked up by id. Its gradient is the scatter-add of `ops::embedding`.

use crate::error::Result;
use crate::ops::embedding::Ids;
use crate::tensor::rng::Rng;
use crate::tensor::{Element, Tensor};

/// A lookup table of learnable vectors.
#[derive(Clone, Debug)]
pub struct Embedding<T: Element = f32> {
    /// `(num_embeddings, dim)`, requires grad.
    pub weight: Tensor<T>,
}

impl<T: Element> Embedding<T> {
    /// Weights drawn N(0, 1) from `rng` (PyTorch's default init).
    pub fn new(num_embeddings: usize, dim: usize, rng: &mut Rng) -> Self {
        Embedding {
            weight: Tensor::normal_from(&[num_embeddings, dim], 0.0, 1.0, rng).requires_grad_(true),
        }
    }

    /// The vectors of `ids`: shape `ids.shape() + [dim]`.
    pub fn forward(&self, ids: &Ids) -> Result<Tensor<T>> {
        self.weight.embedding(ids)
    }
}
