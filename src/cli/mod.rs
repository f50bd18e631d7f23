//! Command-line parsing (clap) and dispatch to one file per command.

mod bench;
mod bench_corpus;
mod bench_ddp;
mod bench_finetune;
mod bench_gemm;
mod chat;
mod check_reference;
mod classify;
mod ddp;
mod device;
mod download;
mod export;
mod finetune;
mod finetune_classify;
mod finetune_dpo;
mod finetune_instruct;
mod generate;
mod gradcheck;
mod graph;
mod interrupt;
mod kernels;
mod make_preference_data;
mod metrics_log;
mod model_server;
mod precision;
mod prepare_data;
mod study;
mod study_gpt;
mod tokenize;
mod train;
mod train_tokenizer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A GPT-2 built from scratch on a hand-written, numerically checked autograd engine.
#[derive(Parser)]
#[command(name = "scratchgpt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: pretrain a GPT on the-verdict (the book's chapter 5 run by default), with
    /// a progress bar, evaluation lines and a sample after each epoch.
    Train(train::Args),
    /// Checks every op's hand-written backward against f64 central differences and prints a
    /// table; exits non-zero if any check fails.
    Gradcheck(gradcheck::Args),
    /// Benchmarks (train-step: ms/step, tokens/s, GFLOP/s, peak memory, on CPU or GPU;
    /// gpu-kernels: matmul TFLOP/s and fused vs naive attention on the GPU).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Recomputes a PyTorch golden fixture (logits, loss, every gradient, AdamW steps,
    /// generation) and prints each quantity's error; exits non-zero on any failure.
    CheckReference(check_reference::Args),
    /// Generates text from a trained checkpoint (greedy, or temperature / top-k sampling).
    Generate(generate::GenerateArgs),
    /// Loss, perplexity and the top-5 next tokens of a text under a checkpoint.
    Eval(generate::EvalArgs),
    /// Writes a checkpoint (or a Hugging Face folder) as a Hugging Face folder for transformers:
    /// GPT-2's layout, or Llama's / Qwen3's (f32 or bf16, optionally sharded).
    Export(export::Args),
    /// Downloads a model from the Hugging Face hub into the local hub cache — the only command
    /// that touches the network; `--model NAME` then uses it offline.
    Download(download::Args),
    /// Reads prompts from standard input and streams each reply as it is generated.
    Chat(chat::Args),
    /// Fine-tunes a GPT: `classify` (chapter 6, spam) or `instruct` (chapter 7, Alpaca-style
    /// instructions), optionally with LoRA adapters (appendix E).
    #[command(subcommand)]
    Finetune(finetune::FinetuneCommand),
    /// Classifies texts with a checkpoint written by `finetune classify` (label and probability).
    Classify(classify::Args),
    /// Writes the autograd graph of one GPT training loss as Graphviz DOT.
    Graph(graph::Args),
    /// Compiles every CUDA kernel with NVRTC (no GPU needed) and reports registers and shared
    /// memory per kernel; exits non-zero on register spills or shared-memory overuse.
    Kernels(kernels::Args),
    /// Shows how a tokenizer splits a text into token ids.
    Tokenize(tokenize::Args),
    /// The book's study material, run: `study attention` walks chapter 3 with the book's numbers
    /// beside ours and prints every gradient.
    #[command(subcommand)]
    Study(study::StudyCommand),
    /// Tokenizes files and folders of text into token shards for `train --data DIR` (a corpus
    /// of any size, memory-mapped during training).
    PrepareData(prepare_data::Args),
    /// Writes the book's DPO preference data with a model server (Ollama or OpenAI-compatible):
    /// each instruction's output rewritten more politely or more impolitely.
    MakePreferenceData(make_preference_data::Args),
    /// Trains a byte-level BPE vocabulary on a text and saves it in GPT-2's format.
    TrainTokenizer(train_tokenizer::Args),
}

/// Parses the arguments and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One clear line (clap's first), not a usage screen.
            let text = e.render().to_string();
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names them on the next line.
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first = format!("{first} {}", next.trim());
                }
            }
            eprintln!("error: {first} (see --help)");
            return Ok(ExitCode::from(2));
        }
    };
    scratchgpt::backend::gemm::check_env()?;
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Gradcheck(args) => gradcheck::run(&args),
        Command::Bench(cmd) => bench::run(&cmd),
        Command::CheckReference(args) => check_reference::run(&args),
        Command::Generate(args) => generate::run_generate(&args),
        Command::Eval(args) => generate::run_eval(&args),
        Command::Export(args) => export::run(&args),
        Command::Download(args) => download::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Finetune(cmd) => finetune::run(&cmd),
        Command::Classify(args) => classify::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Kernels(args) => kernels::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::TrainTokenizer(args) => train_tokenizer::run(&args),
        Command::PrepareData(args) => prepare_data::run(&args),
        Command::MakePreferenceData(args) => make_preference_data::run(&args),
        Command::Study(cmd) => study::run(&cmd),
    }
}
