//! PyTorch's CPU generator, so that `torch.manual_seed(s)` followed by building the book's
//! `GPTModel` and `scratchgpt`'s `--init torch --seed s` give the same initial weights.
//!
//! Why: a reader running the book's notebook beside our CLI starts from identical weights (the
//! same initial loss to the last digits), so any difference that follows is the training's,
//! not the dice's. Only initialisation follows PyTorch; shuffling and dropout keep our own
//! streams (they depend on PyTorch's data-loader and kernel internals, not just the generator).
//!
//! What PyTorch does (ATen's `CPUGeneratorImpl` and `DistributionsHelper.h`, checked bit for bit
//! against torch 2.15 in `tests/torch_rng.rs`):
//! - the engine is a 32-bit Mersenne Twister (mt19937) seeded with the low 32 bits of the seed;
//! - `uniform_(a, b)` on a float tensor takes one 32-bit draw per element, keeps 24 bits:
//!   `u = (r & (2²⁴−1))·2⁻²⁴`, then `u·(b − a) + a` in f32 (a fused multiply-add, as the
//!   compiled kernel does: `nn.Linear`'s ±1/√fan_in bounds expose the difference);
//! - `normal_(mean, std)` on a float tensor of at least 16 elements first fills it with such
//!   uniforms in [0, 1), then transforms each block of 16 by Box–Muller — element `j < 8` pairs
//!   with `j + 8`: `r = √(−2·ln(1 − u_j))`, `θ = 2π·u_{j+8}`, `x_j = r·cos θ·std + mean`,
//!   `x_{j+8} = r·sin θ·std + mean`. If the size is not a multiple of 16, the last 16 elements
//!   are redrawn and transformed again (so they overlap the previous block).
//!
//! - below 16 elements, each value is ATen's scalar `normal_distribution<double>`: two 53-bit
//!   uniforms from `random64()` (first draw = high half), `r = √(−2·ln(1 − u₂))`,
//!   `θ = 2π·u₁`, value `r·cos θ`; `r·sin θ` is cached in the generator for the next one.
//!
//! PyTorch's AVX2 build computes the vectorised path's ln and sin/cos with `avx_mathfun`'s
//! polynomials, which differ from the C library's in the last bit: those normals match to
//! ≈ 1.2e-7 relative (one ulp), everything else bit for bit (`tests/torch_rng.rs`).

const N: usize = 624;
const M: usize = 397;

/// PyTorch's default CPU generator (mt19937).
#[derive(Clone)]
pub struct TorchGenerator {
    state: Box<[u32; N]>,
    next: usize,
    /// The second sample of the scalar Box–Muller, kept for the next call (as ATen does).
    cached_normal: Option<f64>,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TorchGenerator {{ next: {} }}", self.next)
    }
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed as u32;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        TorchGenerator {
            state,
            next: N,
            cached_normal: None,
        }
    }

    /// Regenerates the 624 words (the standard mt19937 twist).
    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..N {
            let y = (s[i] & 0x8000_0000) | (s[(i + 1) % N] & 0x7fff_ffff);
            let mut v = s[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            s[i] = v;
        }
        self.next = 0;
    }

    /// The next 32 random bits (`generator->random()`).
    pub fn random(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// One f32 uniform in [from, to), as `uniform_real_distribution<float>`.
    fn uniform_f32(&mut self, from: f32, to: f32) -> f32 {
        let u = (self.random() & ((1 << 24) - 1)) as f32 * (1.0 / (1u32 << 24) as f32);
        u.mul_add(to - from, from)
    }

    /// `tensor.uniform_(from, to)` on a contiguous f32 tensor.
    pub fn uniform_(&mut self, data: &mut [f32], from: f64, to: f64) {
        let (from, to) = (from as f32, to as f32);
        for x in data {
            *x = self.uniform_f32(from, to);
        }
    }

    /// 64 random bits from two draws, the first as the high half (`random64()`).
    pub fn random64(&mut self) -> u64 {
        let hi = self.random() as u64;
        let lo = self.random() as u64;
        (hi << 32) | lo
    }

    /// One standard-or-scaled normal in f64, ATen's `normal_distribution<double>`: Box–Muller on
    /// two 53-bit uniforms, the sine half cached for the next call.
    fn normal_f64(&mut self, mean: f64, std: f64) -> f64 {
        if let Some(z) = self.cached_normal.take() {
            return z * std + mean;
        }
        let mut uniform = || (self.random64() & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64;
        let u1 = uniform();
        let u2 = uniform();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(r * theta.sin());
        r * theta.cos() * std + mean
    }

    /// `tensor.normal_(mean, std)` on a contiguous f32 tensor: the vectorised path from 16
    /// elements, ATen's scalar path below.
    pub fn normal_(&mut self, data: &mut [f32], mean: f64, std: f64) {
        let n = data.len();
        if n < 16 {
            for x in data.iter_mut() {
                *x = self.normal_f64(mean, std) as f32;
            }
            return;
        }
        let (mean, std) = (mean as f32, std as f32);
        for x in data.iter_mut() {
            *x = self.uniform_f32(0.0, 1.0);
        }
        for start in (0..n - 15).step_by(16) {
            normal_fill_16(&mut data[start..start + 16], mean, std);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for x in tail.iter_mut() {
                *x = self.uniform_f32(0.0, 1.0);
            }
            normal_fill_16(tail, mean, std);
        }
    }
}

/// Box–Muller on 16 uniforms: element j pairs with j + 8. Written as PyTorch's AVX2 kernel
/// (`normal_fill_16_AVX2`): θ = (2π as f32)·u₂ in f32, and `n·std + mean` as one fused
/// multiply-add.
fn normal_fill_16(d: &mut [f32], mean: f32, std: f32) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - d[j];
        let u2 = d[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = two_pi * u2;
        let (sin, cos) = theta.sin_cos();
        d[j] = (radius * cos).mul_add(std, mean);
        d[j + 8] = (radius * sin).mul_add(std, mean);
    }
}
