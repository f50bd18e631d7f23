//! [`GpuGpt`]: the book's GPT trained entirely on a GPU backend, llm.c-style.
//!
//! The CPU engine builds an autograd graph; on the GPU we write the forward and the backward of
//! the whole model out by hand, as llm.c does, calling the kernels of [`super::ops`] on
//! preallocated buffers. The backward is the chain rule applied to the forward below, layer by
//! layer in reverse, with the same per-op gradients the CPU ops derive (and gradcheck). A test
//! compares the loss and every parameter gradient with the CPU autograd on the same weights.
//!
//! Forward of one batch (B sequences of T tokens, C = emb_dim, book names):
//! ```text
//! x₀ = drop(tok_emb[ids] + pos_emb[0..T])
//! per block:  h₁ = norm1(x);  q,k,v = h₁·W_queryᵀ, h₁·W_keyᵀ, h₁·W_valueᵀ (+ biases)
//!             a = causal_attention(q, k, v)           (fused kernel, dropout on the weights)
//!             m = x + drop(a·out_projᵀ + b)           (shortcut)
//!             h₂ = norm2(m);  f = GELU(h₂·W₁ᵀ + b₁)
//!             x' = m + drop(f·W₂ᵀ + b₂)               (shortcut)
//! logits = final_norm(x_L)·out_headᵀ;   loss = mean cross-entropy (fused with its gradient)
//! ```
//! The only device→host copy of a training step is the loss (one float); parameters, gradients,
//! activations and optimizer moments stay on the device.

use crate::backend::cuda::launch::{self as ops, AttentionShape, Gemm, LayerNormStats};
use crate::backend::cuda::{DeviceBuffer, Gpu};
use crate::error::{Error, Result};
use crate::gpt::{GptConfig, GptModel};
use crate::optim::AdamWConfig;
use crate::tensor::rng::mix64;

/// LayerNorm epsilon of the book's model.
const LN_EPS: f32 = 1e-5;

/// One parameter on the device, with its gradient and (once the optimizer runs) AdamW moments.
/// A frozen parameter (`requires_grad = false` on the CPU model, e.g. the blocks a chapter-6
/// classifier does not train) has neither: no gradient buffer, no moments, no update.
pub struct GpuParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: DeviceBuffer<f32>,
    grad: Option<DeviceBuffer<f32>>,
    moments: Option<(DeviceBuffer<f32>, DeviceBuffer<f32>)>,
}

impl GpuParam {
    /// The gradient buffer, or an error naming a frozen parameter.
    pub fn grad(&self) -> Result<&DeviceBuffer<f32>> {
        self.grad.as_ref().ok_or_else(|| {
            Error::invalid(
                "GpuGpt",
                format!("{} is frozen: it has no gradient", self.name),
            )
        })
    }

    /// Whether the optimizer updates this parameter.
    pub fn trainable(&self) -> bool {
        self.grad.is_some()
    }
}

/// Indices into `params` for one transformer block.
struct BlockParams {
    norm1: (usize, usize),
    query: (usize, Option<usize>),
    key: (usize, Option<usize>),
    value: (usize, Option<usize>),
    out_proj: (usize, usize),
    norm2: (usize, usize),
    fc1: (usize, usize),
    fc2: (usize, usize),
}

/// Saved activations of one block.
struct BlockActs {
    h1: DeviceBuffer<f32>,
    stats1: LayerNormStats,
    q: DeviceBuffer<f32>,
    k: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
    att: DeviceBuffer<f32>,
    lse: DeviceBuffer<f32>,
    mid: DeviceBuffer<f32>,
    h2: DeviceBuffer<f32>,
    stats2: LayerNormStats,
    f1: DeviceBuffer<f32>,
    gelu: DeviceBuffer<f32>,
}

/// Every buffer a step needs for a (batch, seq) shape; allocated once and reused.
struct Acts {
    batch: usize,
    seq: usize,
    ids_host: Vec<i32>,
    ids: DeviceBuffer<i32>,
    targets: DeviceBuffer<i32>,
    /// Residual stream: `res[l]` is block l's input, `res[L]` the last block's output.
    res: Vec<DeviceBuffer<f32>>,
    blocks: Vec<BlockActs>,
    final_h: DeviceBuffer<f32>,
    final_stats: LayerNormStats,
    logits: DeviceBuffer<f32>,
    losses: DeviceBuffer<f32>,
    loss_sum: DeviceBuffer<f32>,
    tmp: DeviceBuffer<f32>,
    dres: DeviceBuffer<f32>,
    dtmp: DeviceBuffer<f32>,
    dh: DeviceBuffer<f32>,
    dq: DeviceBuffer<f32>,
    dk: DeviceBuffer<f32>,
    dv: DeviceBuffer<f32>,
    dbig: DeviceBuffer<f32>,
}

/// The GPT on a GPU backend: parameters, gradients, activations and AdamW state in device memory.
pub struct GpuGpt {
    gpu: Gpu,
    pub cfg: GptConfig,
    pub params: Vec<GpuParam>,
    tok: usize,
    pos: usize,
    final_norm: (usize, usize),
    head: usize,
    /// `out_head.bias`: a classification head (chapter 6) has one, the vocabulary head not.
    head_bias: Option<usize>,
    blocks: Vec<BlockParams>,
    /// The backward runs through blocks `lowest_trained..n_layers` only: below the lowest block
    /// with a trainable parameter (and with frozen embeddings) no gradient is needed.
    lowest_trained: usize,
    /// Whether the embedding tables train (then the backward reaches them).
    emb_trained: bool,
    /// Where the kernels write the gradient of a frozen LayerNorm inside the trained range
    /// (`emb_dim` floats, never read).
    scratch_grad: DeviceBuffer<f32>,
    acts: Option<Acts>,
    /// AdamW steps taken.
    pub step: u64,
}

/// Dropout seeds of one forward pass: site `i` gets `mix64(base ^ mix64(i))`, the same in the
/// backward, so masks never need storing.
#[derive(Clone, Copy)]
struct Seeds {
    base: u64,
    p: f32,
}

impl Seeds {
    fn site(&self, i: u64) -> u64 {
        mix64(self.base ^ mix64(i.wrapping_add(0xD50F)))
    }
}

impl GpuGpt {
    /// Upload `model`'s parameters (by their book names) to `gpu`.
    pub fn from_model(gpu: &Gpu, model: &GptModel) -> Result<Self> {
        let cfg = model.cfg.clone();
        if model.has_lora() {
            return Err(Error::invalid(
                "GpuGpt",
                "LoRA adapters run on the CPU engine only (merge them first to use the GPU)",
            ));
        }
        let mut params = Vec::new();
        for (name, t) in model.named_parameters() {
            let data = t.to_vec()?;
            params.push(GpuParam {
                name,
                shape: t.shape(),
                value: DeviceBuffer::from_slice(gpu, &data)?,
                grad: if t.requires_grad() {
                    Some(DeviceBuffer::zeros(gpu, data.len())?)
                } else {
                    None
                },
                moments: None,
            });
        }
        let find = |name: &str| -> Result<usize> {
            params
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| Error::invalid("GpuGpt", format!("model has no parameter {name}")))
        };
        let opt = |name: &str| params.iter().position(|p| p.name == name);
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layers {
            let p = |s: &str| format!("trf_blocks.{l}.{s}");
            blocks.push(BlockParams {
                norm1: (find(&p("norm1.scale"))?, find(&p("norm1.shift"))?),
                query: (find(&p("att.W_query.weight"))?, opt(&p("att.W_query.bias"))),
                key: (find(&p("att.W_key.weight"))?, opt(&p("att.W_key.bias"))),
                value: (find(&p("att.W_value.weight"))?, opt(&p("att.W_value.bias"))),
                out_proj: (
                    find(&p("att.out_proj.weight"))?,
                    find(&p("att.out_proj.bias"))?,
                ),
                norm2: (find(&p("norm2.scale"))?, find(&p("norm2.shift"))?),
                fc1: (
                    find(&p("ff.layers.0.weight"))?,
                    find(&p("ff.layers.0.bias"))?,
                ),
                fc2: (
                    find(&p("ff.layers.2.weight"))?,
                    find(&p("ff.layers.2.bias"))?,
                ),
            });
        }
        let tok = find("tok_emb.weight")?;
        let trains = |name: &str| {
            params
                .iter()
                .any(|p| p.name.starts_with(name) && p.grad.is_some())
        };
        if trains("tok_emb.") != trains("pos_emb.") {
            return Err(Error::invalid(
                "GpuGpt",
                "freeze both embedding tables or neither (the GPU scatter-add writes both)",
            ));
        }
        let emb_trained = trains("tok_emb.");
        let lowest_trained = if emb_trained {
            0
        } else {
            (0..cfg.n_layers)
                .find(|l| trains(&format!("trf_blocks.{l}.")))
                .unwrap_or(cfg.n_layers)
        };
        Ok(GpuGpt {
            lowest_trained,
            emb_trained,
            scratch_grad: DeviceBuffer::zeros(gpu, cfg.emb_dim)?,
            gpu: gpu.clone(),
            pos: find("pos_emb.weight")?,
            final_norm: (find("final_norm.scale")?, find("final_norm.shift")?),
            head: if cfg.tie_weights && cfg.num_classes.is_none() {
                tok
            } else {
                find("out_head.weight")?
            },
            head_bias: opt("out_head.bias"),
            tok,
            blocks,
            cfg,
            params,
            acts: None,
            step: 0,
        })
    }

    /// The backend.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Copy the parameters back into `model` (same configuration), e.g. to save a checkpoint.
    pub fn write_to_model(&self, model: &GptModel) -> Result<()> {
        for (name, t) in model.named_parameters() {
            let p = self.param(&name)?;
            let data = p.value.to_vec()?;
            t.set_value(
                ndarray::ArrayD::from_shape_vec(p.shape.clone(), data)
                    .expect("same size")
                    .into_shared(),
            )?;
        }
        Ok(())
    }

    /// A parameter by its book name.
    pub fn param(&self, name: &str) -> Result<&GpuParam> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::invalid("GpuGpt", format!("no parameter named {name}")))
    }

    /// Zero every gradient.
    pub fn zero_grad(&self) -> Result<()> {
        self.params
            .iter()
            .filter_map(|p| p.grad.as_ref())
            .try_for_each(|g| g.zero())
    }

    fn ensure_acts(&mut self, batch: usize, seq: usize) -> Result<()> {
        if self
            .acts
            .as_ref()
            .is_some_and(|a| a.batch == batch && a.seq == seq)
        {
            return Ok(());
        }
        self.acts = None; // free the old set first
        let g = &self.gpu;
        let c = self.cfg.emb_dim;
        let rows = batch * seq;
        let buf = |n: usize| DeviceBuffer::<f32>::uninit(g, n);
        let stats = || -> Result<LayerNormStats> {
            Ok(LayerNormStats {
                mean: buf(rows)?,
                rstd: buf(rows)?,
            })
        };
        let mut blocks = Vec::new();
        for _ in 0..self.cfg.n_layers {
            blocks.push(BlockActs {
                h1: buf(rows * c)?,
                stats1: stats()?,
                q: buf(rows * c)?,
                k: buf(rows * c)?,
                v: buf(rows * c)?,
                att: buf(rows * c)?,
                lse: buf(batch * self.cfg.n_heads * seq)?,
                mid: buf(rows * c)?,
                h2: buf(rows * c)?,
                stats2: stats()?,
                f1: buf(rows * 4 * c)?,
                gelu: buf(rows * 4 * c)?,
            });
        }
        self.acts = Some(Acts {
            batch,
            seq,
            ids_host: Vec::new(),
            ids: DeviceBuffer::uninit(g, rows)?,
            targets: DeviceBuffer::uninit(g, rows)?,
            res: (0..=self.cfg.n_layers)
                .map(|_| buf(rows * c))
                .collect::<Result<_>>()?,
            blocks,
            final_h: buf(rows * c)?,
            final_stats: stats()?,
            logits: buf(rows * self.cfg.out_dim())?,
            losses: buf(rows)?,
            loss_sum: buf(1)?,
            tmp: buf(rows * c)?,
            dres: buf(rows * c)?,
            dtmp: buf(rows * c)?,
            dh: buf(rows * c)?,
            dq: buf(rows * c)?,
            dk: buf(rows * c)?,
            dv: buf(rows * c)?,
            dbig: buf(rows * 4 * c)?,
        });
        Ok(())
    }

    fn check_batch(
        &self,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        seq: usize,
    ) -> Result<usize> {
        if batch == 0 || seq == 0 || seq > self.cfg.context_length {
            return Err(Error::invalid(
                "GpuGpt",
                format!("batch {batch} × sequence {seq}: need batch ≥ 1 and 1 ≤ sequence ≤ context length {}", self.cfg.context_length),
            ));
        }
        if inputs.len() != batch * seq || targets.len() != batch * seq {
            return Err(Error::invalid(
                "GpuGpt",
                format!(
                    "{} inputs and {} targets for batch {batch} × sequence {seq}",
                    inputs.len(),
                    targets.len()
                ),
            ));
        }
        ops::check_token_ids(inputs, self.cfg.vocab_size)?;
        let counted = ops::cross_entropy_targets(targets, self.cfg.out_dim())?;
        if counted == 0 {
            return Err(Error::invalid(
                "GpuGpt",
                "every target is ignored (-100): the mean loss is undefined",
            ));
        }
        Ok(counted)
    }

    /// Linear layer forward: out[rows, n_out] = x[rows, n_in] · Wᵀ (+ b).
    fn linear(
        &self,
        x: &DeviceBuffer<f32>,
        w: usize,
        b: Option<usize>,
        out: &DeviceBuffer<f32>,
        rows: usize,
    ) -> Result<()> {
        let p = &self.params[w];
        let (n_out, n_in) = (p.shape[0], p.shape[1]);
        ops::matmul(
            x,
            &p.value,
            out,
            b.map(|b| &self.params[b].value),
            Gemm::new(rows, n_out, n_in).trans_b(),
            1.0,
            0.0,
        )
    }

    /// Linear layer backward: dW += dyᵀ·x, db += Σ_rows dy, and dx (+)= dy·W.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        x: &DeviceBuffer<f32>,
        dy: &DeviceBuffer<f32>,
        w: usize,
        b: Option<usize>,
        dx: Option<&DeviceBuffer<f32>>,
        accumulate_dx: bool,
        rows: usize,
    ) -> Result<()> {
        let p = &self.params[w];
        let (n_out, n_in) = (p.shape[0], p.shape[1]);
        if let Some(dw) = &p.grad {
            // dW[n_out, n_in] += dy[rows, n_out]ᵀ · x[rows, n_in]
            ops::matmul(
                dy,
                x,
                dw,
                None,
                Gemm::new(n_out, n_in, rows).trans_a(),
                1.0,
                1.0,
            )?;
        }
        if let Some(db) = b.and_then(|b| self.params[b].grad.as_ref()) {
            ops::column_sum(dy, db, rows, n_out, true)?;
        }
        if let Some(dx) = dx {
            // dx[rows, n_in] = dy[rows, n_out] · W[n_out, n_in]
            ops::matmul(
                dy,
                &p.value,
                dx,
                None,
                Gemm::new(rows, n_in, n_out),
                1.0,
                if accumulate_dx { 1.0 } else { 0.0 },
            )?;
        }
        Ok(())
    }

    fn forward(
        &mut self,
        inputs: &[i32],
        targets: Option<&[i32]>,
        batch: usize,
        seq: usize,
        seeds: Option<Seeds>,
    ) -> Result<()> {
        self.ensure_acts(batch, seq)?;
        let a = self.acts.as_mut().expect("allocated");
        a.ids_host = inputs.to_vec();
        a.ids.write(inputs)?;
        if let Some(targets) = targets {
            a.targets.write(targets)?;
        }
        let a = self.acts.as_ref().expect("allocated");
        let (c, rows, v) = (self.cfg.emb_dim, batch * seq, self.cfg.vocab_size);
        let drop = seeds.filter(|s| s.p > 0.0);
        let p = |i: usize| &self.params[i].value;
        ops::embedding_forward(
            &a.ids,
            p(self.tok),
            p(self.pos),
            &a.res[0],
            batch,
            seq,
            v,
            c,
        )?;
        if let Some(s) = drop {
            ops::dropout_forward(&a.res[0], &a.res[0], s.p, s.site(0))?;
        }
        let shape = AttentionShape {
            batch,
            seq,
            heads: self.cfg.n_heads,
            head_dim: c / self.cfg.n_heads,
        };
        for (l, (bp, ba)) in self.blocks.iter().zip(&a.blocks).enumerate() {
            let site = 1 + 3 * l as u64;
            let x = &a.res[l];
            ops::layer_norm_forward(
                x,
                p(bp.norm1.0),
                p(bp.norm1.1),
                &ba.h1,
                &ba.stats1,
                rows,
                c,
                LN_EPS,
            )?;
            self.linear(&ba.h1, bp.query.0, bp.query.1, &ba.q, rows)?;
            self.linear(&ba.h1, bp.key.0, bp.key.1, &ba.k, rows)?;
            self.linear(&ba.h1, bp.value.0, bp.value.1, &ba.v, rows)?;
            let (att_p, att_seed) = drop.map_or((0.0, 0), |s| (s.p, s.site(site)));
            ops::attention_forward(
                &ba.q, &ba.k, &ba.v, &ba.att, &ba.lse, shape, att_p, att_seed,
            )?;
            self.linear(&ba.att, bp.out_proj.0, Some(bp.out_proj.1), &a.tmp, rows)?;
            if let Some(s) = drop {
                ops::dropout_forward(&a.tmp, &a.tmp, s.p, s.site(site + 1))?;
            }
            ops::add(x, &a.tmp, &ba.mid)?;
            ops::layer_norm_forward(
                &ba.mid,
                p(bp.norm2.0),
                p(bp.norm2.1),
                &ba.h2,
                &ba.stats2,
                rows,
                c,
                LN_EPS,
            )?;
            self.linear(&ba.h2, bp.fc1.0, Some(bp.fc1.1), &ba.f1, rows)?;
            ops::gelu_forward(&ba.f1, &ba.gelu)?;
            self.linear(&ba.gelu, bp.fc2.0, Some(bp.fc2.1), &a.tmp, rows)?;
            if let Some(s) = drop {
                ops::dropout_forward(&a.tmp, &a.tmp, s.p, s.site(site + 2))?;
            }
            ops::add(&ba.mid, &a.tmp, &a.res[l + 1])?;
        }
        let (fs, fb) = self.final_norm;
        ops::layer_norm_forward(
            &a.res[self.cfg.n_layers],
            p(fs),
            p(fb),
            &a.final_h,
            &a.final_stats,
            rows,
            c,
            LN_EPS,
        )?;
        self.linear(&a.final_h, self.head, self.head_bias, &a.logits, rows)
    }

    /// Queue the sum of the per-row losses (on the device; nothing waits).
    fn sum_losses(&self) -> Result<()> {
        let a = self.acts.as_ref().expect("allocated");
        ops::sum(&a.losses, &a.loss_sum)
    }

    /// Copy the summed loss to the host — the step's one device→host transfer, and the point
    /// where the host waits for the GPU.
    fn read_loss(&self, counted: usize) -> Result<f32> {
        let a = self.acts.as_ref().expect("allocated");
        let loss = a.loss_sum.to_vec()?[0] / counted as f32;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                what: "GPU training loss".into(),
                value: loss as f64,
            });
        }
        Ok(loss)
    }

    /// Mean cross-entropy of a batch in eval mode (no dropout, no gradients).
    pub fn eval_loss(
        &mut self,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        seq: usize,
    ) -> Result<f32> {
        let counted = self.check_batch(inputs, targets, batch, seq)?;
        self.forward(inputs, Some(targets), batch, seq, None)?;
        let a = self.acts.as_ref().expect("allocated");
        ops::cross_entropy_forward(
            &a.logits,
            &a.targets,
            &a.losses,
            batch * seq,
            self.cfg.out_dim(),
        )?;
        self.sum_losses()?;
        self.read_loss(counted)
    }

    /// Forward and backward of one batch: accumulates every parameter's gradient and returns the
    /// mean loss. `dropout_seed` = Some(s) is train mode (dropout at `cfg.drop_rate` with masks
    /// from s); None turns dropout off.
    pub fn forward_backward(
        &mut self,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        seq: usize,
        dropout_seed: Option<u64>,
    ) -> Result<f32> {
        let counted = self.check_batch(inputs, targets, batch, seq)?;
        let seeds = dropout_seed.map(|base| Seeds {
            base,
            p: self.cfg.drop_rate as f32,
        });
        self.forward(inputs, Some(targets), batch, seq, seeds)?;
        let drop = seeds.filter(|s| s.p > 0.0);
        let a = self.acts.as_ref().expect("allocated");
        let (c, rows, v) = (self.cfg.emb_dim, batch * seq, self.cfg.vocab_size);
        // Loss and dL/dlogits in one kernel; the logits buffer becomes the gradient.
        ops::cross_entropy_forward_backward_in_place(
            &a.logits,
            &a.targets,
            &a.losses,
            rows,
            self.cfg.out_dim(),
            1.0 / counted as f32,
        )?;
        self.sum_losses()?;
        let p = |i: usize| &self.params[i];
        // A frozen LayerNorm's kernels still need somewhere to write dscale/dshift.
        let g = |i: usize| self.params[i].grad.as_ref().unwrap_or(&self.scratch_grad);
        // Head and final norm.
        self.linear_backward(
            &a.final_h,
            &a.logits,
            self.head,
            self.head_bias,
            Some(&a.dh),
            false,
            rows,
        )?;
        let (fs, fb) = self.final_norm;
        let l_last = self.cfg.n_layers;
        ops::layer_norm_backward(
            &a.res[l_last],
            &p(fs).value,
            &a.final_stats,
            &a.dh,
            &a.dres,
            g(fs),
            g(fb),
            rows,
            c,
            false,
        )?;
        let shape = AttentionShape {
            batch,
            seq,
            heads: self.cfg.n_heads,
            head_dim: c / self.cfg.n_heads,
        };
        for l in (self.lowest_trained..self.cfg.n_layers).rev() {
            let (bp, ba) = (&self.blocks[l], &a.blocks[l]);
            let site = 1 + 3 * l as u64;
            // x' = m + drop(f·W₂ᵀ + b₂): the shortcut passes dres to m unchanged.
            let df2 = match drop {
                Some(s) => {
                    ops::dropout_backward(&a.dres, &a.dtmp, s.p, s.site(site + 2))?;
                    &a.dtmp
                }
                None => &a.dres,
            };
            self.linear_backward(
                &ba.gelu,
                df2,
                bp.fc2.0,
                Some(bp.fc2.1),
                Some(&a.dbig),
                false,
                rows,
            )?;
            ops::gelu_backward(&ba.f1, &a.dbig, &a.dbig, false)?;
            self.linear_backward(
                &ba.h2,
                &a.dbig,
                bp.fc1.0,
                Some(bp.fc1.1),
                Some(&a.dh),
                false,
                rows,
            )?;
            ops::layer_norm_backward(
                &ba.mid,
                &p(bp.norm2.0).value,
                &ba.stats2,
                &a.dh,
                &a.dres,
                g(bp.norm2.0),
                g(bp.norm2.1),
                rows,
                c,
                true,
            )?;
            // m = x + drop(a·out_projᵀ + b)
            let dproj = match drop {
                Some(s) => {
                    ops::dropout_backward(&a.dres, &a.dtmp, s.p, s.site(site + 1))?;
                    &a.dtmp
                }
                None => &a.dres,
            };
            self.linear_backward(
                &ba.att,
                dproj,
                bp.out_proj.0,
                Some(bp.out_proj.1),
                Some(&a.dh),
                false,
                rows,
            )?;
            let (att_p, att_seed) = drop.map_or((0.0, 0), |s| (s.p, s.site(site)));
            ops::attention_backward(
                &ba.q, &ba.k, &ba.v, &ba.att, &ba.lse, &a.dh, &a.dq, &a.dk, &a.dv, shape, att_p,
                att_seed,
            )?;
            self.linear_backward(
                &ba.h1,
                &a.dq,
                bp.query.0,
                bp.query.1,
                Some(&a.dh),
                false,
                rows,
            )?;
            self.linear_backward(&ba.h1, &a.dk, bp.key.0, bp.key.1, Some(&a.dh), true, rows)?;
            self.linear_backward(
                &ba.h1,
                &a.dv,
                bp.value.0,
                bp.value.1,
                Some(&a.dh),
                true,
                rows,
            )?;
            ops::layer_norm_backward(
                &a.res[l],
                &p(bp.norm1.0).value,
                &ba.stats1,
                &a.dh,
                &a.dres,
                g(bp.norm1.0),
                g(bp.norm1.1),
                rows,
                c,
                true,
            )?;
        }
        if self.emb_trained {
            let demb = match drop {
                Some(s) => {
                    ops::dropout_backward(&a.dres, &a.dtmp, s.p, s.site(0))?;
                    &a.dtmp
                }
                None => &a.dres,
            };
            // `from_model` made sure both tables train when either does.
            ops::embedding_backward(
                &a.ids_host,
                demb,
                p(self.tok).grad()?,
                p(self.pos).grad()?,
                batch,
                seq,
                v,
                c,
            )?;
        }
        // Only now wait for the GPU: the whole backward was queued without a host round-trip.
        self.read_loss(counted)
    }

    /// The logits of the token after `ids` (one sequence, eval mode): what generation needs.
    pub fn next_token_logits(&mut self, ids: &[i32]) -> Result<Vec<f32>> {
        let n = ids.len();
        if n == 0 || n > self.cfg.context_length {
            return Err(Error::invalid(
                "GpuGpt::next_token_logits",
                format!(
                    "{n} tokens: need 1 ..= context length {}",
                    self.cfg.context_length
                ),
            ));
        }
        ops::check_token_ids(ids, self.cfg.vocab_size)?;
        self.forward(ids, None, 1, n, None)?;
        let v = self.cfg.out_dim();
        self.acts
            .as_ref()
            .expect("allocated")
            .logits
            .read_range((n - 1) * v, v)
    }

    /// Eval-mode output rows at one position per sequence (`positions[b]` of row b) of a
    /// `(batch, seq)` input: a classifier's logits at each text's last real token.
    pub fn logits_at(
        &mut self,
        inputs: &[i32],
        batch: usize,
        seq: usize,
        positions: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        if batch == 0 || seq == 0 || seq > self.cfg.context_length || inputs.len() != batch * seq {
            return Err(Error::invalid(
                "GpuGpt::logits_at",
                format!(
                    "{} ids for batch {batch} × sequence {seq} (context length {})",
                    inputs.len(),
                    self.cfg.context_length
                ),
            ));
        }
        if positions.len() != batch || positions.iter().any(|&p| p >= seq) {
            return Err(Error::invalid(
                "GpuGpt::logits_at",
                format!("positions {positions:?} for batch {batch} × sequence {seq}"),
            ));
        }
        ops::check_token_ids(inputs, self.cfg.vocab_size)?;
        self.forward(inputs, None, batch, seq, None)?;
        let k = self.cfg.out_dim();
        let logits = &self.acts.as_ref().expect("allocated").logits;
        positions
            .iter()
            .enumerate()
            .map(|(row, &p)| logits.read_range((row * seq + p) * k, k))
            .collect()
    }

    /// The global L2 norm of all gradients (one device→host copy).
    pub fn grad_norm(&self) -> Result<f64> {
        let out = DeviceBuffer::<f32>::uninit(&self.gpu, 1)?;
        let mut total = 0.0f64;
        for grad in self.params.iter().filter_map(|p| p.grad.as_ref()) {
            ops::sum_squares(grad, &out)?;
            total += out.to_vec()?[0] as f64;
        }
        Ok(total.sqrt())
    }

    /// Scale all gradients so their global norm is at most `max_norm` (torch's
    /// clip_grad_norm_, factor max_norm / (norm + 1e-6)); returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> Result<f64> {
        let norm = self.grad_norm()?;
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            for grad in self.params.iter().filter_map(|p| p.grad.as_ref()) {
                ops::scale(grad, grad, factor as f32)?;
            }
        }
        Ok(norm)
    }

    /// One AdamW update of every parameter at learning rate `lr` (torch.optim.AdamW semantics,
    /// identical to [`crate::optim::AdamW`]).
    pub fn adamw_step(&mut self, cfg: &AdamWConfig, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = cfg.betas;
        let step_size = (lr / (1.0 - b1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
        for p in self.params.iter_mut().filter(|p| p.grad.is_some()) {
            if p.moments.is_none() {
                p.moments = Some((
                    DeviceBuffer::zeros(&self.gpu, p.value.len())?,
                    DeviceBuffer::zeros(&self.gpu, p.value.len())?,
                ));
            }
            let is_norm = p.name.contains("norm")
                && (p.name.ends_with(".scale") || p.name.ends_with(".shift"));
            let exempt = cfg.exempt_biases_and_norms && (p.name.ends_with(".bias") || is_norm);
            let decay = if exempt {
                1.0
            } else {
                (1.0 - lr * cfg.weight_decay) as f32
            };
            let (m, v) = p.moments.as_ref().expect("just made");
            ops::adamw_update(
                &p.value,
                p.grad.as_ref().expect("filtered to trainable"),
                m,
                v,
                step_size,
                decay,
                (b1 as f32, b2 as f32),
                cfg.eps as f32,
                bc2_sqrt,
            )?;
        }
        Ok(())
    }

    /// Copy the AdamW state (step count and both moments of every parameter, by name) from a CPU
    /// optimizer, e.g. one restored from a checkpoint.
    pub fn load_adam_state(&mut self, opt: &crate::optim::AdamW) -> Result<()> {
        for p in self.params.iter_mut().filter(|p| p.grad.is_some()) {
            let s = opt.state.iter().find(|s| s.name == p.name).ok_or_else(|| {
                Error::invalid(
                    "GpuGpt",
                    format!("optimizer state has no entry for {}", p.name),
                )
            })?;
            let (m, v) = (s.m.to_vec()?, s.v.to_vec()?);
            p.moments = Some((
                DeviceBuffer::from_slice(&self.gpu, &m)?,
                DeviceBuffer::from_slice(&self.gpu, &v)?,
            ));
        }
        self.step = opt.t;
        Ok(())
    }

    /// Copy the AdamW state back into a CPU optimizer (for a checkpoint).
    pub fn store_adam_state(&self, opt: &mut crate::optim::AdamW) -> Result<()> {
        for s in &mut opt.state {
            let p = self.param(&s.name)?;
            if let Some((m, v)) = &p.moments {
                let shape = s.m.shape();
                s.m = crate::tensor::Tensor::from_vec(m.to_vec()?, &shape)?;
                s.v = crate::tensor::Tensor::from_vec(v.to_vec()?, &shape)?;
            }
        }
        opt.t = self.step;
        Ok(())
    }

    /// Wait for all queued GPU work.
    pub fn synchronize(&self) -> Result<()> {
        self.gpu.synchronize()
    }

    /// Bytes of device memory held by parameters, gradients, moments and activations.
    pub fn device_bytes(&self) -> usize {
        let params: usize = self
            .params
            .iter()
            .map(|p| {
                p.value.len()
                    * (1 + usize::from(p.grad.is_some()) + if p.moments.is_some() { 2 } else { 0 })
            })
            .sum();
        let acts = self.acts.as_ref().map_or(0, |a| {
            let per_block: usize = a.blocks.first().map_or(0, |b| {
                [
                    &b.h1,
                    &b.q,
                    &b.k,
                    &b.v,
                    &b.att,
                    &b.lse,
                    &b.mid,
                    &b.h2,
                    &b.f1,
                    &b.gelu,
                    &b.stats1.mean,
                    &b.stats1.rstd,
                    &b.stats2.mean,
                    &b.stats2.rstd,
                ]
                .iter()
                .map(|x| x.len())
                .sum()
            });
            per_block * a.blocks.len()
                + a.res.iter().map(|r| r.len()).sum::<usize>()
                + [
                    &a.final_h, &a.logits, &a.losses, &a.tmp, &a.dres, &a.dtmp, &a.dh, &a.dq,
                    &a.dk, &a.dv, &a.dbig,
                ]
                .iter()
                .map(|x| x.len())
                .sum::<usize>()
        });
        (params + acts) * 4
    }
}
