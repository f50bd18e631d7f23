//! `scratchgpt study gpt` and `scratchgpt study exercises`: a whole GPT's backward, studied
//! (docs/backprop.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;
use scratchgpt::data::text_file::write_atomic;
use scratchgpt::study::compare::RowKind;
use scratchgpt::study::exercises::{
    check_rules, render, Exercise, LibraryRules, Rules, YourRules, YOUR_RULES_FILE,
};
use scratchgpt::study::{compare, study_model, Fused, Primitive, Side, TinyBatch};

/// The acceptance bound of the study: primitive and fused gradients agree to this everywhere.
const AGREEMENT: f64 = 1e-10;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GraphChoice {
    Primitive,
    Fused,
}

#[derive(clap::Args)]
pub struct GptArgs {
    /// Print one boundary's or parameter's full gradient through both graphs, e.g.
    /// `--show "trf_blocks.1.att output"` or `--show trf_blocks.0.norm1.scale`.
    #[arg(long, value_name = "NAME")]
    show: Option<String>,
    /// Write the graph as Graphviz DOT: every node's op, shape and gradient norm, one cluster per
    /// module (render with `dot -Tsvg FILE -o graph.svg`).
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
    /// Which graph `--dot` draws.
    #[arg(long, value_enum, default_value = "fused")]
    graph: GraphChoice,
    /// Seed of the tiny GPT's weights.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RulesChoice {
    /// Your rules, in src/study/exercises/yours.rs.
    Yours,
    /// The library's own rules (the solutions).
    Library,
}

#[derive(clap::Args)]
pub struct ExercisesArgs {
    /// Whose rules to check.
    #[arg(long, value_enum, default_value = "yours")]
    rules: RulesChoice,
    /// Check one exercise only (tanh, matmul, linear, gelu, embedding, gather, softmax,
    /// log_softmax, cross_entropy, layer_norm, attention).
    #[arg(long, value_name = "OP")]
    only: Option<String>,
}

pub fn gpt(args: &GptArgs) -> anyhow::Result<ExitCode> {
    let model = study_model(args.seed)?;
    let batch = TinyBatch::example();
    let cfg = &model.cfg;
    println!(
        "A tiny GPT (vocab {}, {} layers, {} heads, emb {}, qkv bias, tied head) in f64 on {} sequences of {} tokens,\nbuilt twice: from elementary ops (primitive) and from the library's fused ops. One backward each.\n",
        cfg.vocab_size, cfg.n_layers, cfg.n_heads, cfg.emb_dim,
        batch.ids.shape()[0], batch.ids.shape()[1]
    );
    // The primitive graph is always recorded: its op names are printed.
    let fused_dot = args.dot.is_some() && matches!(args.graph, GraphChoice::Fused);
    let primitive = Side::run(&Primitive, &model, &batch, true)?;
    let fused = Side::run(&Fused, &model, &batch, fused_dot)?;
    let cmp = compare(&primitive, &fused)?;
    let graph_of = |s: &Side| s.graph.as_ref().map_or(0, |g| g.nodes.len());
    println!(
        "loss: primitive {:.15}, fused {:.15}   (primitive graph: {} tensors, ops {})",
        cmp.loss_a,
        cmp.loss_b,
        graph_of(&primitive),
        primitive
            .graph
            .as_ref()
            .map(|g| g.op_names().into_iter().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    println!(
        "\n{:<34} {:<12} {:>13} {:>13} {:>11}",
        "gradient of (in backward order)", "shape", "‖·‖ primitive", "‖·‖ fused", "max |Δ|"
    );
    let mut kind = None;
    for row in &cmp.rows {
        if kind != Some(row.kind) {
            if row.kind == RowKind::Parameter {
                println!("  parameters:");
            }
            kind = Some(row.kind);
        }
        println!(
            "{:<34} {:<12} {:>13.6e} {:>13.6e} {:>11.2e}{}",
            row.name,
            format!("{:?}", row.shape),
            row.norm_a,
            row.norm_b,
            row.max_diff,
            if row.max_diff <= AGREEMENT {
                ""
            } else {
                "  ✗"
            }
        );
    }
    let worst = cmp.worst().map(|r| r.name.clone()).unwrap_or_default();
    let agrees = cmp.agrees(AGREEMENT);
    println!(
        "\n{} boundaries and parameters: primitive and fused {} (worst {:.2e} at {worst}; bound {AGREEMENT:.0e}).",
        cmp.rows.len(),
        if agrees { "agree" } else { "DISAGREE" },
        cmp.max_diff()
    );
    if let Some(name) = &args.show {
        show(name, &primitive, &fused)?;
    }
    if let Some(path) = &args.dot {
        let (side, which) = match args.graph {
            GraphChoice::Primitive => (&primitive, "primitive"),
            GraphChoice::Fused => (&fused, "fused"),
        };
        let graph = side.graph.as_ref().context("the graph was recorded")?;
        let title =
            format!("the tiny GPT's {which} graph: op, shape, |gradient| (one cluster per module)");
        write_atomic(path, graph.to_dot(&title).as_bytes())?;
        println!(
            "wrote the {which} graph ({} tensors) to {} (render: dot -Tsvg {} -o graph.svg)",
            graph.nodes.len(),
            path.display(),
            path.display()
        );
    }
    Ok(if agrees {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--show NAME`: the full gradient through both graphs, by rows of the last axis.
fn show(name: &str, primitive: &Side, fused: &Side) -> anyhow::Result<()> {
    let names = primitive.names();
    if !names.iter().any(|n| n == name) {
        anyhow::bail!(
            "--show: no boundary or parameter called {name:?}; the names are:\n  {}",
            names.join("\n  ")
        );
    }
    for side in [primitive, fused] {
        let g = side.grad_of(name).with_context(|| {
            format!(
                "{name} received no gradient through the {} graph",
                side.name
            )
        })?;
        let shape = g.shape();
        let cols = *shape.last().unwrap_or(&1);
        println!(
            "\n∂L/∂({name}) through the {} graph, shape {shape:?}:",
            side.name
        );
        for row in g.to_vec()?.chunks(cols.max(1)) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>12.4e}")).collect();
            println!("  [{}]", cells.join(" "));
        }
    }
    Ok(())
}

pub fn exercises(args: &ExercisesArgs) -> anyhow::Result<ExitCode> {
    let only = match &args.only {
        None => None,
        Some(name) => Some(Exercise::parse(name).with_context(|| {
            format!(
                "--only: no exercise called {name:?}; the exercises are {}",
                Exercise::ALL.map(Exercise::name).join(", ")
            )
        })?),
    };
    let (rules, file): (Rc<dyn Rules>, &str) = match args.rules {
        RulesChoice::Yours => (Rc::new(YourRules), YOUR_RULES_FILE),
        RulesChoice::Library => (Rc::new(LibraryRules), "the library"),
    };
    let ops_name = match args.rules {
        RulesChoice::Yours => "your rules",
        RulesChoice::Library => "the library's rules",
    };
    println!(
        "Checking {ops_name}: each against central differences (f64), and the six a GPT uses inside the\nwhole tiny GPT against the library's fused ops' gradients at every boundary.\n"
    );
    let report = check_rules(rules, only)?;
    print!("{}", render(&report, file));
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
