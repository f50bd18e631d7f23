//! Chapter 7 training and evaluation: collated batches as training batches, a short run that
//! learns, response extraction, the offline metrics and the judge's prompt (the judge client
//! itself: tests/model_server.rs).

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::evaluate::{exact_match, judge_prompt, offline_scores, token_f1};
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::{
    extract_response, respond, train_instructions, InstructTrainOptions, InstructionDataset,
};
use scratchgpt::finetune::instruction_data::{format_input, InstructionEntry};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::{Engine, TrainEvent};

fn entries(n: usize) -> Vec<InstructionEntry> {
    (0..n)
        .map(|i| InstructionEntry {
            instruction: format!("Say {}", ["yes", "no", "maybe"][i % 3]),
            input: if i % 2 == 0 {
                String::new()
            } else {
                "now".into()
            },
            output: ["yes", "no", "maybe"][i % 3].to_string(),
        })
        .collect()
}

fn model(context: usize) -> GptModel {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.context_length = context;
    cfg.drop_rate = 0.0;
    GptModel::new(&cfg, 11).unwrap()
}

#[test]
fn collated_batches_shift_pad_mask_and_truncate() {
    let tok = BpeTokenizer::gpt2();
    let data = InstructionDataset::new(&entries(3), tok, &InstructFormat::book()).unwrap();
    let b = data.batch(&[0, 1], 1024, false).unwrap();
    let longest = data.encoded[0].len().max(data.encoded[1].len());
    assert_eq!(b.inputs.shape(), &[2, longest]);
    let (x, y) = (b.inputs.data(), b.targets.data());
    // Targets are the inputs shifted by one; row 0's first target after its text is the
    // end-of-text token, the rest of the padding is ignored.
    let n0 = data.encoded[0].len();
    for p in 0..n0 - 1 {
        assert_eq!(y[p], x[p + 1]);
    }
    assert_eq!(y[n0 - 1], 50256);
    assert!(y[n0..longest].iter().all(|&t| t == -100));
    // Masking the instruction ignores every target inside the prompt.
    let masked = data.batch(&[0], 1024, true).unwrap();
    let p0 = data.prompt_lengths[0];
    assert!(masked.targets.data()[..p0 - 1].iter().all(|&t| t == -100));
    assert!(masked.targets.data()[p0 - 1..].iter().any(|&t| t != -100));
    // allowed_max_length truncates.
    assert_eq!(
        data.batch(&[0, 1], 7, false).unwrap().inputs.shape(),
        &[2, 7]
    );
}

#[test]
fn a_short_run_learns_and_answers() {
    let tok = BpeTokenizer::gpt2();
    let train_entries = entries(24);
    let train = InstructionDataset::new(&train_entries, tok, &InstructFormat::book()).unwrap();
    let val = InstructionDataset::new(&entries(6), tok, &InstructFormat::book()).unwrap();
    let m = model(96);
    let mut opt = AdamW::new(
        m.named_parameters(),
        AdamWConfig {
            lr: 5e-3,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        },
    );
    let mut engine = Engine::new(&m, &mut opt);
    let opts = InstructTrainOptions {
        num_epochs: 10,
        batch_size: 8,
        eval_freq: 6,
        eval_iter: 2,
        lr: 5e-3,
        seed: 1,
        max_steps: None,
        allowed_max_length: 1024,
        mask_instructions: false,
        start_ids: tok.encode(&format_input(&train_entries[0])).unwrap(),
        sample_tokens: 4,
    };
    let mut lines = Vec::new();
    let mut samples = 0;
    let run = train_instructions(
        &mut engine,
        &m,
        &train,
        &val,
        tok,
        &InstructFormat::book(),
        &opts,
        |e| {
            if let TrainEvent::Sample { .. } = e {
                samples += 1;
            }
            if let Some(l) = e.book_line() {
                lines.push(l);
            }
        },
    )
    .unwrap();
    assert_eq!(run.steps, 30);
    assert_eq!(samples, 10);
    assert!(lines[0].starts_with("Ep 1 (Step 000000): Train loss"));
    let (first, last) = (run.train_losses[0], *run.train_losses.last().unwrap());
    assert!(last < 0.2 * first, "train loss {first} → {last}");
    // The template is learned: greedy generation after a prompt continues with the response
    // header (which extraction removes).
    let prompt = format_input(&train_entries[0]);
    let ids = tok.encode(&prompt).unwrap();
    let out = scratchgpt::gpt::generate_text_simple(&m, &ids, 8, 96).unwrap();
    let text = tok.decode(&out).unwrap();
    assert!(
        text[prompt.len()..].starts_with("\n\n### Response:"),
        "{text:?}"
    );
    let answer = respond(&m, tok, &InstructFormat::book(), &train_entries[0], 6).unwrap();
    assert!(!answer.contains("### Response:"), "{answer:?}");
}

#[test]
fn responses_are_extracted_after_the_prompt() {
    let prompt = "### Instruction:\nSay yes";
    assert_eq!(
        extract_response(&format!("{prompt}\n\n### Response:\n yes \n"), prompt),
        "yes"
    );
    assert_eq!(extract_response("short", prompt), "short");
}

#[test]
fn offline_metrics() {
    assert!(exact_match(
        "The capital is Paris.",
        "the capital is  paris"
    ));
    assert!(!exact_match("Paris", "London"));
    assert_eq!(token_f1("a b c", "a b c"), 1.0);
    assert_eq!(token_f1("x y", "a b"), 0.0);
    // P = 2/4, R = 2/2 → F1 = 2/3.
    assert!((token_f1("the cat sat down", "cat sat") - 2.0 / 3.0).abs() < 1e-12);
    // Repeated words count once per occurrence in the reference.
    assert!((token_f1("yes yes", "yes") - 2.0 / 3.0).abs() < 1e-12);
    let (em, f1) = offline_scores(&[("a".into(), "a".into()), ("b".into(), "c".into())]).unwrap();
    assert_eq!((em, f1), (0.5, 0.5));
    assert!(offline_scores(&[]).is_err());
}

#[test]
fn the_judge_prompt_is_the_books() {
    let e = &entries(1)[0];
    let p = judge_prompt(e, "yes");
    assert!(p.contains("score the model response `yes`"), "{p}");
    assert!(p.contains("on a scale from 0 to 100"), "{p}");
}
