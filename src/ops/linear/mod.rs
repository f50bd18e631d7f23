//! The fused linear layer: `Y = X·Wᵀ + b + s·(X·A)·B` in one op (bias and LoRA adapter
//! optional) — PyTorch's `F.linear`, plus appendix E's `LinearWithLoRA`.
//!
//! **Why fused.** Written as `matmul → add bias → + s·matmul(matmul)`, every intermediate
//! `(rows, out)` product stays alive in the graph until backward (the graph holds each op's
//! inputs), although no backward rule reads them: one extra activation per biased layer, three
//! more per adapter. The fused op keeps only what its backward needs — `X`, and the small
//! `H = X·A` (rows × rank) — and its output.
//!
//! **Gradient.** With `G = ∂L/∂Y` (rows × out, the leading axes of `X` folded into rows) and
//! `Y_ro = Σ_i X_ri W_oi + b_o + s Σ_j H_rj B_jo`, `H_rj = Σ_i X_ri A_ij`:
//!
//! ```text
//! ∂L/∂W = Gᵀ·X                       (∂Y_ro/∂W_oi = X_ri; summed over rows)
//! ∂L/∂b = Σ_rows G                    (∂Y_ro/∂b_o = 1)
//! ∂L/∂B = s·Hᵀ·G                      (∂Y_ro/∂B_jo = s·H_rj)
//! ∂L/∂H = s·G·Bᵀ  =: T                (rows × rank)
//! ∂L/∂A = Xᵀ·T                        (H = X·A: the matmul rule)
//! ∂L/∂X = G·W + T·Aᵀ                  (both paths from X to Y)
//! ```
//!
//! The products are the matmul rules of `ops::matmul` (docs/gradients.md); each is one GEMM on
//! transposed strides, never a copy. The gradcheck suite checks this op in f64 (family `linear`).

mod cuda;

use ndarray::{ArrayView2, Axis, Ix2, IxDyn, Zip};

use crate::backend::cpu::{gemm, gemm_uninit, should_par};
use crate::error::{Error, Result};
use crate::tensor::{CpuArray, Element, Tensor};

/// A LoRA adapter's operands for [`Tensor::linear`]: `A` (in × rank), `B` (rank × out), and the
/// scale `alpha / rank`.
pub struct LoraOperands<'a, T: Element> {
    pub a: &'a Tensor<T>,
    pub b: &'a Tensor<T>,
    pub scale: f64,
}

fn view2<T: Element>(x: &CpuArray<T>) -> ArrayView2<'_, T> {
    x.view().into_dimensionality::<Ix2>().expect("2-D")
}

/// A fresh `rows × cols` array filled by a beta = 0 GEMM.
fn product<T: Element>(
    rows: usize,
    cols: usize,
    fill: impl FnOnce(ndarray::ArrayViewMut2<'_, std::mem::MaybeUninit<T>>),
) -> ndarray::Array2<T> {
    let mut out = ndarray::Array2::<T>::uninit((rows, cols));
    fill(out.view_mut());
    // SAFETY: `gemm_uninit` writes every element of the view it is given, which is the whole
    // fresh array.
    unsafe { out.assume_init() }
}

impl<T: Element> Tensor<T> {
    /// `self·Wᵀ + b + s·(self·A)·B` for `self` of shape `(…, in)`, `W` `(out, in)`, `b` `(out,)`,
    /// `A` `(in, rank)`, `B` `(rank, out)`; returns `(…, out)`.
    pub fn linear(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        lora: Option<LoraOperands<'_, T>>,
    ) -> Result<Tensor<T>> {
        let xs = self.shape();
        let ws = weight.shape();
        let mismatch = |rhs: Vec<usize>, why: String| Error::ShapeMismatch {
            op: "linear",
            lhs: xs.clone(),
            rhs,
            why,
        };
        if ws.len() != 2 || xs.last() != Some(&ws[1]) {
            return Err(mismatch(
                ws.clone(),
                "the input's last axis must equal the weight's in_features (weight is (out, in))"
                    .into(),
            ));
        }
        let (n_out, n_in) = (ws[0], ws[1]);
        if let Some(b) = bias {
            if b.shape() != [n_out] {
                return Err(mismatch(b.shape(), format!("the bias must be ({n_out},)")));
            }
        }
        if let Some(l) = &lora {
            let (sa, sb) = (l.a.shape(), l.b.shape());
            if sa.len() != 2 || sb.len() != 2 || sa[0] != n_in || sb[1] != n_out || sa[1] != sb[0] {
                return Err(mismatch(
                    [sa, sb].concat(),
                    format!("LoRA A must be ({n_in}, r) and B (r, {n_out})"),
                ));
            }
        }
        let mut inputs: Vec<&Tensor<T>> = vec![self, weight];
        inputs.extend(bias);
        if let Some(l) = &lora {
            inputs.push(l.a);
            inputs.push(l.b);
        }
        if let Some(ops) = super::cuda_operands("linear", &inputs)? {
            return cuda::linear(inputs, ops, bias.is_some(), lora.as_ref().map(|l| l.scale));
        }
        let rows = xs[..xs.len() - 1].iter().product::<usize>();
        let xv = super::contiguous(&self.cpu("linear")?);
        let x2 = xv
            .view()
            .into_shape_with_order((rows, n_in))
            .expect("contiguous");
        let wv = weight.cpu("linear")?;
        let mut y = product::<T>(rows, n_out, |c| {
            gemm_uninit(T::one(), x2, view2(&wv).reversed_axes(), c, true)
        });
        let bv = bias.map(|b| b.cpu("linear")).transpose()?;
        if let Some(b) = &bv {
            let z = Zip::from(y.rows_mut());
            let add = |mut r: ndarray::ArrayViewMut1<'_, T>| r += &b.view();
            if should_par(rows * n_out) {
                z.par_for_each(add);
            } else {
                z.for_each(add);
            }
        }
        let lora_vals = match &lora {
            Some(l) => {
                let (av, bv) = (l.a.cpu("linear")?, l.b.cpu("linear")?);
                let s = T::of(l.scale);
                let h = product::<T>(rows, av.shape()[1], |c| {
                    gemm_uninit(T::one(), x2, view2(&av), c, true)
                });
                gemm(s, h.view(), view2(&bv), T::one(), y.view_mut(), true);
                Some((av, bv, h.into_dyn().into_shared(), s))
            }
            None => None,
        };
        let out_shape = [&xs[..xs.len() - 1], &[n_out]].concat();
        let y = y
            .into_shape_with_order(IxDyn(&out_shape))
            .expect("same size");
        let has_bias = bias.is_some();
        Ok(Tensor::from_op("linear", y, &inputs, move |g, needs| {
            let g = super::contiguous(g);
            let g2 = g
                .view()
                .into_shape_with_order((rows, n_out))
                .expect("contiguous");
            let x2 = xv
                .view()
                .into_shape_with_order((rows, n_in))
                .expect("contiguous");
            let w2 = view2(&wv);
            let mut grads: Vec<Option<CpuArray<T>>> = Vec::with_capacity(needs.len());
            // T = s·G·Bᵀ (rows × rank), shared by ∂L/∂X and ∂L/∂A.
            let t = match (
                &lora_vals,
                needs[0] || needs.get(2 + has_bias as usize) == Some(&true),
            ) {
                (Some((_, bv, _, s)), true) => Some(product::<T>(rows, bv.shape()[0], |c| {
                    gemm_uninit(*s, g2, view2(bv).reversed_axes(), c, true)
                })),
                _ => None,
            };
            // ∂L/∂X = G·W (+ T·Aᵀ)
            grads.push(needs[0].then(|| {
                let mut dx = product::<T>(rows, n_in, |c| gemm_uninit(T::one(), g2, w2, c, true));
                if let (Some((av, ..)), Some(t)) = (&lora_vals, &t) {
                    gemm(
                        T::one(),
                        t.view(),
                        view2(av).reversed_axes(),
                        T::one(),
                        dx.view_mut(),
                        true,
                    );
                }
                dx.into_shape_with_order(IxDyn(&xs))
                    .expect("same size")
                    .into_shared()
            }));
            // ∂L/∂W = Gᵀ·X
            grads.push(needs[1].then(|| {
                product::<T>(n_out, n_in, |c| {
                    gemm_uninit(T::one(), g2.reversed_axes(), x2, c, true)
                })
                .into_dyn()
                .into_shared()
            }));
            if has_bias {
                grads.push(needs[2].then(|| g2.sum_axis(Axis(0)).into_dyn().into_shared()));
            }
            if let Some((av, bv, h, s)) = &lora_vals {
                let k = 2 + has_bias as usize;
                // ∂L/∂A = Xᵀ·T
                grads.push(needs[k].then(|| {
                    let t = t.as_ref().expect("computed when A needs a gradient");
                    product::<T>(n_in, av.shape()[1], |c| {
                        gemm_uninit(T::one(), x2.reversed_axes(), t.view(), c, true)
                    })
                    .into_dyn()
                    .into_shared()
                }));
                // ∂L/∂B = s·Hᵀ·G
                grads.push(needs[k + 1].then(|| {
                    product::<T>(bv.shape()[0], n_out, |c| {
                        gemm_uninit(*s, view2(h).reversed_axes(), g2, c, true)
                    })
                    .into_dyn()
                    .into_shared()
                }));
            }
            Ok(grads)
        }))
    }
}
