//! The element types a tensor can hold: `f32` for training, `f64` for numeric gradient checks.
//!
//! Everything an op needs from its numbers is in [`Element`]: arithmetic (`num_traits::Float`),
//! ndarray's scalar traits, conversion to and from `f64`, and the one BLAS-like routine the engine
//! calls, a strided GEMM: `backend::gemm::sgemm` for `f32` (matrixmultiply's kernel by default,
//! ours with `SCRATCHGPT_GEMM`), `matrixmultiply` for `f64` (gradient checks).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};

/// The runtime name of an element type, for error messages and `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DType::F32 => write!(f, "f32"),
            DType::F64 => write!(f, "f64"),
        }
    }
}

/// A floating-point element type of a tensor (implemented for `f32` and `f64`).
pub trait Element:
    Float
    + FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// This type's runtime name.
    const DTYPE: DType;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(v: f64) -> Self;

    /// Converts to `f64` (exact for both types).
    fn f64(self) -> f64;

    /// `C = alpha * A @ B + beta * C` for an `m×k` A, a `k×n` B and an `m×n` C given by
    /// pointers and element strides (row stride, column stride), as `matrixmultiply` takes them.
    ///
    /// # Safety
    /// For every `i < m, l < k, j < n` the addresses `a + i*rsa + l*csa`, `b + l*rsb + j*csb`
    /// must be valid for reads and `c + i*rsc + j*csc` valid for reads and writes, the C
    /// addresses distinct for distinct `(i, j)` and not overlapping A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// `out[i] = exp(x[i])` over a slice. The f32 version is a vectorisable polynomial (see
    /// [`crate::backend::fast_math`]); the f64 version is the exact libm call, so numeric gradient
    /// checks see exact values.
    fn exp_slice(x: &mut [Self]);

    /// `tanh` over a slice (same split as [`Element::exp_slice`]).
    fn tanh_slice(x: &mut [Self]);

    /// `exp` of one element, for kernels that fuse it with other arithmetic in one loop (GELU,
    /// softmax's exp-and-sum): the f32 version inlines the polynomial so the loop still
    /// vectorises; the f64 version is libm's.
    fn exp_inline(self) -> Self;

    /// [`Element::exp_inline`] for arguments known to be ≤ 0 (`x − max`, `x − lse`), which lets
    /// the f32 version skip its overflow and NaN handling
    /// ([`crate::backend::fast_math::exp_f32_nonpositive`]).
    fn exp_nonpositive_inline(self) -> Self;

    /// Writes the 8 × 8 square of `src` (row stride `lds`) at `(row, col)` transposed into `dst`
    /// (row stride `ldd`) at `(col, row)`: the step of [`crate::backend::transpose::transposed`].
    /// f32 uses AVX shuffles where the CPU has them; the default is the portable array form.
    fn transpose_square8(
        src: &[Self],
        lds: usize,
        at: (usize, usize),
        dst: &mut [Self],
        ldd: usize,
    ) {
        crate::backend::transpose::transpose_square8_portable(src, lds, at, dst, ldd)
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded verbatim; the caller upholds the contract above, which is
        // `backend::gemm::sgemm`'s (the same as matrixmultiply's).
        unsafe {
            crate::backend::gemm::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
    fn transpose_square8(src: &[f32], lds: usize, at: (usize, usize), dst: &mut [f32], ldd: usize) {
        crate::backend::transpose::transpose_square8_f32(src, lds, at, dst, ldd)
    }
    fn exp_slice(x: &mut [f32]) {
        crate::backend::fast_math::exp_f32_slice(x)
    }
    fn tanh_slice(x: &mut [f32]) {
        crate::backend::fast_math::tanh_f32_slice(x)
    }
    #[inline(always)]
    fn exp_inline(self) -> f32 {
        crate::backend::fast_math::exp_f32(self)
    }
    #[inline(always)]
    fn exp_nonpositive_inline(self) -> f32 {
        crate::backend::fast_math::exp_f32_nonpositive(self)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn of(v: f64) -> Self {
        v
    }
    fn f64(self) -> f64 {
        self
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded verbatim; the caller upholds matrixmultiply's contract (see above).
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
    fn exp_slice(x: &mut [f64]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }
    fn tanh_slice(x: &mut [f64]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }
    #[inline(always)]
    fn exp_inline(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn exp_nonpositive_inline(self) -> f64 {
        self.exp()
    }
}
