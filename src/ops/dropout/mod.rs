//! Inverted dropout with a seeded, counter-based mask.
//!
//! **Forward.** Each element is kept with probability `1 − p` and scaled by `1/(1 − p)`, so the
//! expected value is unchanged and evaluation needs no rescaling (the module skips the op in
//! eval mode): `y_i = m_i·x_i/(1 − p)` with `m_i ∈ {0, 1}`.
//!
//! **Backward.** y is linear in x with a fixed mask: `∂L/∂x_i = g_i·m_i/(1 − p)`.
//!
//! **The mask** is `m_i = [u(seed, i) ≥ p]` with [`hash_uniform`] a pure function of
//! `(seed, i)`: it is not stored — the backward regenerates it — it does not depend on how work
//! is split across threads, and the same seed gives the same mask (and so the same losses).

mod cuda;

use crate::backend::cpu::zip_map;
use crate::error::{Error, Result};
use crate::tensor::rng::hash_uniform;
use crate::tensor::{CpuArray, Element, Tensor};

use super::contiguous;

/// The dropout multiplier `m_i/(1 − p)` for every element of `shape` (row-major index i).
fn mask<T: Element>(shape: &[usize], p: f64, seed: u64) -> CpuArray<T> {
    let keep = T::of(if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 });
    let pf = p as f32;
    let n: usize = shape.iter().product();
    let v: Vec<T> = (0..n as u64)
        .map(|i| {
            if hash_uniform(seed, i) >= pf {
                keep
            } else {
                T::zero()
            }
        })
        .collect();
    CpuArray::from_shape_vec(ndarray::IxDyn(shape), v).expect("size")
}

impl<T: Element> Tensor<T> {
    /// Training-mode dropout with drop probability `p ∈ [0, 1]` and mask seed `seed`.
    /// `p = 0` returns the input unchanged.
    pub fn dropout(&self, p: f64, seed: u64) -> Result<Tensor<T>> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("p must be in [0, 1], got {p}"),
            ));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        if let Some(c) = self.cuda_storage() {
            if p >= 1.0 {
                return Err(Error::invalid(
                    "dropout",
                    "p = 1 drops everything; the device kernels take p in [0, 1)",
                ));
            }
            return cuda::dropout(self, c, p, seed);
        }
        let x = contiguous(&self.cpu("dropout")?);
        let shape = x.shape().to_vec();
        let m = mask::<T>(&shape, p, seed);
        let y = zip_map(&x, &m, &shape, |x, m| x * m);
        Ok(Tensor::from_op("dropout", y, &[self], move |g, _| {
            let m = mask::<T>(&shape, p, seed);
            Ok(vec![Some(zip_map(g, &m, &shape, |g, m| g * m))])
        }))
    }
}
