//! `scratchgpt graph`: the autograd graph of one training loss as Graphviz DOT — micrograd's
//! `draw_dot` for a whole GPT. Render with `dot -Tsvg graph.dot -o graph.svg`.

use std::path::PathBuf;
use std::process::ExitCode;

use scratchgpt::data::text_file::write_atomic;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::Ids;

#[derive(clap::Args)]
pub struct Args {
    /// Model preset (tiny keeps the drawing readable: 2 layers).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Tokens in the example sequence.
    #[arg(long, default_value_t = 4)]
    tokens: usize,
    /// Output file.
    #[arg(long, default_value = "graph.dot")]
    out: PathBuf,
    /// Where the loss is computed: cpu, cuda, auto or emu — the graph is the same on every device
    /// (the boxes say where each tensor lives).
    #[arg(long, value_enum, default_value = "cpu")]
    device: super::device::DeviceChoice,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut cfg = GptConfig::preset(&args.preset)?;
    cfg.drop_rate = 0.0;
    let model = GptModel::new(&cfg, 123)?;
    model.to_device(super::device::resolve(args.device)?)?;
    for (name, p) in model.named_parameters() {
        p.set_name(name);
    }
    let ids = BpeTokenizer::gpt2().encode("Every effort moves you forward, step by step")?;
    if args.tokens < 1 || args.tokens + 1 > ids.len() || args.tokens > cfg.context_length {
        anyhow::bail!(
            "--tokens must be between 1 and {}",
            (ids.len() - 1).min(cfg.context_length)
        );
    }
    let to_ids = |s: &[u32]| Ids::new(s.iter().map(|&t| t as i64).collect(), &[1, s.len()]);
    let inputs = to_ids(&ids[..args.tokens])?;
    let targets = to_ids(&ids[1..=args.tokens])?;
    let loss = model
        .forward(&inputs, &ForwardCtx::train(0))?
        .cross_entropy(&targets)?;
    loss.set_name("loss");
    let dot = loss.graph_dot();
    write_atomic(&args.out, dot.as_bytes())?;
    println!(
        "wrote the graph of one {}-token loss ({} nodes) to {}; render it with: dot -Tsvg {} -o graph.svg",
        args.tokens,
        dot.matches("label=").count(),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
