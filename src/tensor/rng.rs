//! Seeded random numbers, written here so that they are reproducible everywhere.
//!
//! Two generators share one mixing function (SplitMix64's finaliser, a bijection on u64 with
//! good avalanche):
//! * [`Rng`], a sequential stream for initialisation and shuffling;
//! * [`hash_uniform`], a *counter-based* draw `u(seed, i)` in [0, 1). Dropout uses it: the mask
//!   bit of element `i` is a pure function of `(seed, i)`, so it does not depend on how rayon
//!   splits the work, the backward pass can regenerate it instead of storing it, and a CUDA kernel
//!   computing the same formula draws the same mask.
//!
//! [`Rng::torch`] makes tensor initialisation follow PyTorch's generator instead (see
//! [`super::torch_rng`]), so `--init torch` reproduces the book's initial weights.

use super::torch_rng::TorchGenerator;

/// SplitMix64's output function: a fast bijective mixer of 64 bits.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) that depends only on `(seed, index)`: 24 random bits, so it is exact
/// in f32 and comparisons against a probability give the same answer in f32 and f64.
#[inline(always)]
pub fn hash_uniform(seed: u64, index: u64) -> f32 {
    let z = mix64(
        mix64(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    );
    (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A sequential, seeded random stream (SplitMix64) — or, built with [`Rng::torch`], PyTorch's
/// generator for tensor initialisation ([`super::torch_rng`]).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    torch: Option<TorchGenerator>,
    placeholder: bool,
}

impl Rng {
    /// A stream fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng {
            state: mix64(seed ^ 0x5851_f42d_4c95_7f2d),
            torch: None,
            placeholder: false,
        }
    }

    /// A stream whose tensor initialisations (`uniform_from`, `normal_from`) are zeros, drawn
    /// from nothing: for a model built only to receive loaded weights (drawing Llama-3.2-1B's
    /// 1.2 billion random numbers first would take longer than reading the file).
    pub fn placeholder() -> Self {
        Rng {
            placeholder: true,
            ..Rng::new(0)
        }
    }

    /// Whether tensor initialisations are zeros ([`Rng::placeholder`]).
    pub fn is_placeholder(&self) -> bool {
        self.placeholder
    }

    /// A stream whose tensor initialisations (`uniform_from`, `normal_from`) draw exactly what
    /// PyTorch draws after `torch.manual_seed(seed)`; its scalar methods (`uniform`, `shuffle`,
    /// ...) stay SplitMix64 from the same seed.
    pub fn torch(seed: u64) -> Self {
        Rng {
            torch: Some(TorchGenerator::new(seed)),
            ..Rng::new(seed)
        }
    }

    /// PyTorch's generator, if this stream follows it.
    pub fn torch_generator(&mut self) -> Option<&mut TorchGenerator> {
        self.torch.as_mut()
    }

    /// The whole state (a checkpoint saves it to resume the same stream).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// A stream continuing from a saved [`Rng::state`].
    pub fn from_state(state: u64) -> Self {
        Rng {
            state,
            torch: None,
            placeholder: false,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by the Box–Muller transform (one of the pair is used; simplicity over
    /// speed — initialisation is not hot).
    pub fn normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in `0..n`, by rejection so every value is equally likely (0 when n = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Shuffles a slice in place (Fisher–Yates).
    pub fn shuffle<X>(&mut self, items: &mut [X]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A fresh seed for a sub-stream (a dropout layer's next mask, say).
    pub fn fork(&mut self) -> u64 {
        self.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_moments_are_right() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..20_000).map(|_| a.normal()).collect();
        let ys: Vec<f64> = (0..20_000).map(|_| b.normal()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn hash_uniform_is_uniform_and_seed_dependent() {
        let n = 100_000u64;
        let below_half = (0..n).filter(|&i| hash_uniform(3, i) < 0.5).count() as f64 / n as f64;
        assert!((below_half - 0.5).abs() < 0.01);
        let same = (0..1000)
            .filter(|&i| (hash_uniform(3, i) < 0.5) == (hash_uniform(4, i) < 0.5))
            .count();
        assert!((400..600).contains(&same), "{same}");
    }

    #[test]
    fn below_covers_the_range() {
        let mut r = Rng::new(1);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800));
    }
}
