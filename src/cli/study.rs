//! `scratchgpt study`: the book's study material, run. `study attention` reproduces chapter 3's
//! walkthrough on its six-token example with the book's printed numbers beside ours, then runs a
//! backward through each version and prints every gradient — so `gpt::study_attention` is
//! something a reader runs, not only reads.

use std::process::ExitCode;

use scratchgpt::gpt::study_attention::{
    simplified_self_attention, CausalAttention, MultiHeadAttentionWrapper, SelfAttentionV1,
    SelfAttentionV2,
};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::tensor::rng::Rng;
use scratchgpt::Tensor;

#[derive(clap::Subcommand)]
pub enum StudyCommand {
    /// Chapter 3 on "Your journey starts with one step": simplified self-attention, the
    /// trainable v1 and v2 (the book's seeds), the causal mask, multi-head attention — the book's
    /// numbers beside ours — and every gradient of a backward through each.
    Attention,
    /// A tiny GPT (2 layers, emb 8, vocabulary 20, two sequences of 5 tokens) built twice in
    /// f64 — from elementary ops and from the fused ones — one backward through each, and their
    /// gradients compared at every boundary (block inputs and outputs, attention and feed-forward
    /// outputs, logits, every parameter) in the order backward reaches them.
    Gpt(super::study_gpt::GptArgs),
    /// Checks your backward rules (src/study/exercises/yours.rs, shipped blank) against central
    /// differences and inside the whole tiny GPT, naming any wrong op, by how much, with a hint.
    Exercises(super::study_gpt::ExercisesArgs),
}

/// The book's 3-d embeddings of "Your journey starts with one step" (§3.3).
pub fn book_inputs() -> Tensor {
    Tensor::from_vec(
        vec![
            0.43, 0.15, 0.89, // Your
            0.55, 0.87, 0.66, // journey
            0.57, 0.85, 0.64, // starts
            0.22, 0.58, 0.33, // with
            0.77, 0.25, 0.10, // one
            0.05, 0.80, 0.55, // step
        ],
        &[6, 3],
    )
    .expect("6×3")
}

/// The book's printed results (PyTorch, the seeds it uses), to 4 decimals.
pub mod book {
    /// §3.3: the context vector of "journey", z(2).
    pub const Z2: [f32; 3] = [0.4419, 0.6515, 0.5683];
    /// §3.4: `SelfAttention_v1(3, 2)` after `torch.manual_seed(123)`.
    pub const V1: [[f32; 2]; 6] = [
        [0.2996, 0.8053],
        [0.3061, 0.8210],
        [0.3058, 0.8203],
        [0.2948, 0.7939],
        [0.2927, 0.7891],
        [0.2990, 0.8040],
    ];
    /// §3.4: `SelfAttention_v2(3, 2)` after `torch.manual_seed(789)`.
    pub const V2: [[f32; 2]; 6] = [
        [-0.0739, 0.0713],
        [-0.0748, 0.0703],
        [-0.0749, 0.0702],
        [-0.0760, 0.0685],
        [-0.0763, 0.0679],
        [-0.0754, 0.0693],
    ];
    /// §3.5: v2's attention weights after the causal mask (−∞ above the diagonal, softmax).
    pub const CAUSAL: [[f32; 6]; 6] = [
        [1.0000, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.5517, 0.4483, 0.0, 0.0, 0.0, 0.0],
        [0.3800, 0.3097, 0.3103, 0.0, 0.0, 0.0],
        [0.2758, 0.2460, 0.2462, 0.2319, 0.0, 0.0],
        [0.2175, 0.1983, 0.1984, 0.1888, 0.1971, 0.0],
        [0.1935, 0.1663, 0.1666, 0.1542, 0.1666, 0.1529],
    ];
    /// §3.6.1: `MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)` after
    /// `torch.manual_seed(123)`, first sequence of the batch.
    pub const MHA: [[f32; 4]; 6] = [
        [-0.4519, 0.2216, 0.4772, 0.1063],
        [-0.5874, 0.0058, 0.5891, 0.3257],
        [-0.6300, -0.0632, 0.6202, 0.3860],
        [-0.5675, -0.0843, 0.5478, 0.3589],
        [-0.5526, -0.0981, 0.5321, 0.3428],
        [-0.5299, -0.1081, 0.5077, 0.3493],
    ];
}

fn rows(t: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    let shape = t.shape();
    let cols = *shape.last().unwrap_or(&1);
    Ok(t.to_vec()?
        .chunks(cols.max(1))
        .map(<[f32]>::to_vec)
        .collect())
}

fn show(name: &str, t: &Tensor) -> anyhow::Result<()> {
    println!("  {name} {:?}:", t.shape());
    for r in rows(t)? {
        let cells: Vec<String> = r.iter().map(|v| format!("{v:8.4}")).collect();
        println!("    [{}]", cells.join(","));
    }
    Ok(())
}

fn show_vs_book<const N: usize>(name: &str, t: &Tensor, book: &[[f32; N]]) -> anyhow::Result<f32> {
    show(name, t)?;
    let worst = rows(t)?
        .iter()
        .zip(book)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    println!(
        "  the book prints the same to {worst:.1e} (max difference over its 4-decimal values)"
    );
    Ok(worst)
}

/// `L = Σ Z` (so `dZ = 1` everywhere), backward, and every gradient printed.
fn gradients(out: &Tensor, params: &[(&str, &Tensor)]) -> anyhow::Result<()> {
    println!("  backward of L = Σ(output) (every dL/dZ = 1):");
    out.sum_all()?.backward()?;
    for (name, p) in params {
        match p.grad() {
            Some(g) => show(&format!("d{name}"), &g)?,
            None => println!("  d{name}: none"),
        }
    }
    Ok(())
}

pub fn run(cmd: &StudyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StudyCommand::Attention => attention(),
        StudyCommand::Gpt(args) => super::study_gpt::gpt(args),
        StudyCommand::Exercises(args) => super::study_gpt::exercises(args),
    }
}

fn attention() -> anyhow::Result<ExitCode> {
    println!("Chapter 3 on \"Your journey starts with one step\": 6 tokens, 3-d embeddings.\n");
    let x = book_inputs().requires_grad_(true);
    show("inputs X", &x)?;

    println!("\n§3.3 Simplified self-attention: ω = X·Xᵀ, α = softmax(ω) row by row, Z = α·X");
    let (scores, weights, context) = simplified_self_attention(&x)?;
    show("scores ω", &scores)?;
    show("weights α (each row sums to 1)", &weights)?;
    show("context Z", &context)?;
    show_vs_book(
        "z(2), the context of \"journey\"",
        &context.select(0, 1)?.unsqueeze(0)?,
        &[book::Z2],
    )?;
    gradients(&context, &[("X", &x)])?;

    println!(
        "\n§3.4 SelfAttention_v1 (torch.manual_seed(123): W_query, W_key, W_value ~ U[0, 1), 3×2)"
    );
    let x = book_inputs().requires_grad_(true);
    let v1 = SelfAttentionV1::new(3, 2, &mut Rng::torch(123));
    let z = v1.forward(&x)?;
    show_vs_book("context", &z, &book::V1)?;
    gradients(
        &z,
        &[
            ("W_query", &v1.w_query),
            ("W_key", &v1.w_key),
            ("W_value", &v1.w_value),
            ("X", &x),
        ],
    )?;

    println!("\n§3.4 SelfAttention_v2 (torch.manual_seed(789): nn.Linear without bias)");
    let x = book_inputs().requires_grad_(true);
    let v2 = SelfAttentionV2::new(3, 2, false, &mut Rng::torch(789));
    let z = v2.forward(&x)?;
    show_vs_book("context", &z, &book::V2)?;
    gradients(
        &z,
        &[
            ("W_query", &v2.w_query.weight),
            ("W_key", &v2.w_key.weight),
            ("W_value", &v2.w_value.weight),
            ("X", &x),
        ],
    )?;

    println!("\n§3.5 Causal attention with v2's weights: scores above the diagonal set to −∞ before softmax");
    let x = book_inputs().requires_grad_(true);
    let q = v2.w_query.forward(&x)?;
    let k = v2.w_key.forward(&x)?;
    let scaled = q.matmul(&k.transpose(0, 1)?)?.div_scalar(2f64.sqrt())?;
    let masked = scaled.masked_fill(
        &scratchgpt::ops::masked_fill::causal_mask(6, 6),
        f64::NEG_INFINITY,
    )?;
    show_vs_book(
        "masked weights softmax(ω/√2 + mask)",
        &masked.softmax()?,
        &book::CAUSAL,
    )?;
    println!(
        "  dropout on these weights: the book's numbers come from PyTorch's dropout generator; ours\n  from (seed, element index) — same rule (keep with probability 1 − p, scale by 1/(1 − p)),\n  other masks, so they are not compared."
    );
    let causal = CausalAttention::new(3, 2, 0.0, false, &mut Rng::torch(789));
    let xb = book_inputs().unsqueeze(0)?.requires_grad_(true);
    let z = causal.forward(&xb, &ForwardCtx::eval())?;
    show("CausalAttention context (batch 1)", &z.select(0, 0)?)?;
    gradients(
        &z,
        &[
            ("W_query", &causal.w_query.weight),
            ("W_value", &causal.w_value.weight),
            ("X", &xb),
        ],
    )?;

    println!("\n§3.6.1 MultiHeadAttentionWrapper (torch.manual_seed(123), 2 heads of d_out 2, dropout 0)");
    let batch = Tensor::concat(
        &[&book_inputs().unsqueeze(0)?, &book_inputs().unsqueeze(0)?],
        0,
    )?
    .requires_grad_(true);
    let mha = MultiHeadAttentionWrapper::new(3, 2, 2, 0.0, false, &mut Rng::torch(123));
    let z = mha.forward(&batch, &ForwardCtx::eval())?;
    println!("  output {:?} (batch 2 × 6 tokens × 2 heads·2)", z.shape());
    show_vs_book("first sequence", &z.select(0, 0)?, &book::MHA)?;
    gradients(
        &z,
        &[
            ("head0.W_query", &mha.heads[0].w_query.weight),
            ("X (batch)", &batch),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}
