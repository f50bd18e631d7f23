//! Making tensors: constants, ranges, data from a `Vec`, and seeded random initialisation.

use ndarray::{ArrayD, IxDyn};

use super::rng::Rng;
use super::{Element, Tensor};
use crate::error::{Error, Result};

impl<T: Element> Tensor<T> {
    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::from_array(ArrayD::zeros(IxDyn(shape)))
    }

    /// All ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::from_array(ArrayD::ones(IxDyn(shape)))
    }

    /// Every element equal to `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Self::from_array(ArrayD::from_elem(IxDyn(shape), value))
    }

    /// A rank-0 tensor.
    pub fn scalar(value: T) -> Self {
        Self::full(&[], value)
    }

    /// Data in row-major order with the given shape; the lengths must agree.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::ShapeMismatch {
                op: "from_vec",
                lhs: vec![data.len()],
                rhs: shape.to_vec(),
                why: format!("{} values cannot fill a shape of {n} elements", data.len()),
            });
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), data)
            .map_err(|e| Error::invalid("from_vec", e.to_string()))?;
        Ok(Self::from_array(a))
    }

    /// Same as [`Tensor::from_vec`] with values given as `f64` (handy for literals in tests).
    pub fn from_f64s(data: &[f64], shape: &[usize]) -> Result<Self> {
        Self::from_vec(data.iter().map(|&v| T::of(v)).collect(), shape)
    }

    /// `start, start + step, …` up to but excluding `end` (PyTorch's `arange`), 1-D.
    pub fn arange(start: f64, end: f64, step: f64) -> Result<Self> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("needs finite start/end and a non-zero step (got {start}, {end}, {step})"),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let data = (0..n).map(|i| T::of(start + i as f64 * step)).collect();
        Self::from_vec(data, &[n])
    }

    /// Uniform in [0, 1), fixed by `seed`.
    pub fn rand(shape: &[usize], seed: u64) -> Self {
        Self::uniform(shape, 0.0, 1.0, seed)
    }

    /// Uniform in [low, high), fixed by `seed`.
    pub fn uniform(shape: &[usize], low: f64, high: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Self::uniform_from(shape, low, high, &mut rng)
    }

    /// Uniform in [low, high) drawn from an existing stream (model initialisation draws all its
    /// parameters from one stream so a single seed fixes them all).
    pub fn uniform_from(shape: &[usize], low: f64, high: f64, rng: &mut Rng) -> Self {
        if rng.is_placeholder() {
            return Self::zeros(shape);
        }
        if let Some(g) = rng.torch_generator() {
            // PyTorch's f32 `uniform_` (the values are f32 whatever T is).
            let mut v = vec![0f32; shape.iter().product()];
            g.uniform_(&mut v, low, high);
            return Self::from_f32s(v, shape);
        }
        let a = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            T::of(low + (high - low) * rng.uniform())
        });
        Self::from_array(a)
    }

    /// f32 values as a `T` tensor of `shape` (sizes already match).
    fn from_f32s(v: Vec<f32>, shape: &[usize]) -> Self {
        let a = ArrayD::from_shape_vec(
            IxDyn(shape),
            v.into_iter().map(|x| T::of(x as f64)).collect(),
        )
        .expect("sized");
        Self::from_array(a)
    }

    /// Standard normal, fixed by `seed`.
    pub fn randn(shape: &[usize], seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Self::normal_from(shape, 0.0, 1.0, &mut rng)
    }

    /// Normal with the given mean and standard deviation, drawn from an existing stream.
    pub fn normal_from(shape: &[usize], mean: f64, std: f64, rng: &mut Rng) -> Self {
        if rng.is_placeholder() {
            return Self::zeros(shape);
        }
        if let Some(g) = rng.torch_generator() {
            let mut v = vec![0f32; shape.iter().product()];
            g.normal_(&mut v, mean, std);
            return Self::from_f32s(v, shape);
        }
        let a = ArrayD::from_shape_simple_fn(IxDyn(shape), || T::of(mean + std * rng.normal()));
        Self::from_array(a)
    }
}
