//! Instruction tuning on a model's own tokenizer and chat template (Llama 3, Qwen): the format's
//! ids (prompt, response, turn end), the collated batches, and `finetune instruct` on a Llama
//! and a Qwen3 folder from the command line — with and without LoRA, resumed exactly, its
//! tokenizer saved with the run and its template used by `chat`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use scratchgpt::data::chat_template::ChatTemplate;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::instruct_format::InstructFormat;
use scratchgpt::finetune::instruct_train::InstructionDataset;
use scratchgpt::finetune::instruction_data::{format_example, format_input, InstructionEntry};
use scratchgpt::gpt::hf_llama::{export_hf, ExportOptions};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::train::checkpoint::{load_checkpoint, load_resumable, Task};

const BIN: &str = env!("CARGO_BIN_EXE_scratchgpt");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tokenizer(fixture_name: &str) -> BpeTokenizer {
    BpeTokenizer::from_dir(fixture(fixture_name)).unwrap()
}

/// A fixture's tokenizer.json with more added tokens: `<|eom_id|>` makes a Llama 3.1+
/// vocabulary, `<think>` and `</think>` a Qwen3 one. Written into `dir`.
fn extended_tokenizer_json(fixture_name: &str, added: &[&str], dir: &Path) -> PathBuf {
    let mut t: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(fixture_name).join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let list = t["added_tokens"].as_array_mut().unwrap();
    let next = list
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .max()
        .unwrap()
        + 1;
    let like = list[0].clone();
    for (k, content) in added.iter().enumerate() {
        let mut e = like.clone();
        e["id"] = (next + k as u64).into();
        e["content"] = (*content).into();
        list.push(e);
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, t.to_string()).unwrap();
    path
}

fn entry(instruction: &str, input: &str, output: &str) -> InstructionEntry {
    InstructionEntry {
        instruction: instruction.into(),
        input: input.into(),
        output: output.into(),
    }
}

#[test]
fn chat_formats_are_prompt_then_response_then_turn_end() {
    let e = entry("Name a colour.", "a warm one", "Red.");
    for (name, template, end) in [
        ("hf-llama-tiny", ChatTemplate::Llama3, "<|eot_id|>"),
        ("hf-qwen3-tiny", ChatTemplate::Qwen, "<|im_end|>"),
    ] {
        let tok = tokenizer(name);
        let f = InstructFormat::for_tokenizer(&tok).unwrap();
        assert_eq!(f.template(), template, "{name}");
        assert_eq!(Some(f.end_id()), tok.special_id(end), "{name}");
        assert!(f.stop_ids().contains(&f.end_id()));
        // The prompt is the template's, with the input after a blank line in the user's turn.
        let prompt = f.prompt(&tok, &e).unwrap();
        assert_eq!(
            prompt,
            template
                .encode(&tok, "Name a colour.\n\na warm one", None)
                .unwrap()
        );
        // Training ids: exactly the prompt's, then the response as plain text.
        let (ids, prompt_len) = f.example(&tok, &e).unwrap();
        assert_eq!(prompt_len, prompt.len(), "{name}");
        assert_eq!(&ids[..prompt_len], &prompt[..]);
        assert_eq!(&ids[prompt_len..], &tok.encode("Red.").unwrap()[..]);
        // One sequence start, the template's own (Llama), or none (Qwen).
        let starts = ids
            .iter()
            .filter(|&&i| Some(i) == tok.special_id("<|begin_of_text|>"))
            .count();
        assert_eq!(
            starts,
            usize::from(template == ChatTemplate::Llama3),
            "{name}"
        );
        // The response is data, not markup: a special token in it is refused.
        assert!(f
            .example(&tok, &entry("x", "", &format!("a{end}b")))
            .is_err());
        assert_eq!(f.extract("  Red.\n"), "Red.");
    }
}

#[test]
fn llama_3_1_and_qwen3_vocabularies_train_in_their_templates() {
    let dir =
        std::env::temp_dir().join(format!("scratchgpt-instruct-vocab-{}", std::process::id()));
    let e = entry("Name a colour.", "", "Red.");
    for (name, added, template, marker) in [
        (
            "hf-llama-tiny",
            vec!["<|eom_id|>"],
            ChatTemplate::Llama31,
            "Cutting Knowledge Date",
        ),
        (
            "hf-qwen3-tiny",
            vec!["<think>", "</think>"],
            ChatTemplate::Qwen3,
            "<think>\n\n</think>\n\n",
        ),
    ] {
        let json = extended_tokenizer_json(name, &added, &dir.join(name));
        let tok = BpeTokenizer::from_dir(json.parent().unwrap()).unwrap();
        let f = InstructFormat::for_tokenizer(&tok).unwrap();
        assert_eq!(f.template(), template);
        let (ids, prompt_len) = f.example(&tok, &e).unwrap();
        let prompt = tok.decode(&ids[..prompt_len]).unwrap();
        assert!(prompt.contains(marker), "{prompt:?}");
        assert_eq!(prompt, template.render("Name a colour.", None));
        assert_eq!(tok.decode(&ids[prompt_len..]).unwrap(), "Red.");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn alpaca_format_is_the_books_on_gpt2_and_gets_the_bos_elsewhere() {
    let e = entry("Name a colour.", "a warm one", "Red.");
    let gpt2 = BpeTokenizer::gpt2();
    let book = InstructFormat::book();
    assert_eq!(book.template(), ChatTemplate::Alpaca);
    assert_eq!(book.end_id(), 50256);
    assert_eq!(book.stop_ids(), &[50256]);
    let (ids, prompt_len) = book.example(gpt2, &e).unwrap();
    assert_eq!(ids, gpt2.encode(&format_example(&e)).unwrap());
    assert_eq!(
        prompt_len,
        gpt2.encode(&format!("{}\n\n### Response:\n", format_input(&e)))
            .unwrap()
            .len()
    );
    assert_eq!(
        book.prompt(gpt2, &e).unwrap(),
        gpt2.encode(&format_input(&e)).unwrap()
    );
    assert_eq!(book.extract("### Response:\nRed. "), "Red.");
    // Alpaca on Llama 3's vocabulary: its sequence start first, its end of text last.
    let llama = tokenizer("hf-llama-tiny");
    let f = InstructFormat::new(ChatTemplate::Alpaca, &llama).unwrap();
    assert_eq!(Some(f.end_id()), llama.special_id("<|end_of_text|>"));
    let (ids, prompt_len) = f.example(&llama, &e).unwrap();
    assert_eq!(Some(ids[0]), llama.special_id("<|begin_of_text|>"));
    assert_eq!(&ids[1..], &llama.encode(&format_example(&e)).unwrap()[..]);
    assert_eq!(
        prompt_len,
        1 + llama
            .encode(&format!("{}\n\n### Response:\n", format_input(&e)))
            .unwrap()
            .len()
    );
    // No marker of where a response begins, or a template the vocabulary lacks: clear errors.
    let e = InstructFormat::new(ChatTemplate::Plain, gpt2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain"), "{e}");
    let e = InstructFormat::new(ChatTemplate::Llama3, gpt2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("<|begin_of_text|>"), "{e}");
}

#[test]
fn collated_chat_batches_learn_the_turn_end_and_ignore_the_padding() {
    let tok = tokenizer("hf-qwen3-tiny");
    let f = InstructFormat::for_tokenizer(&tok).unwrap();
    let entries = [
        entry("Say yes.", "", "yes"),
        entry("Say a longer thing, please.", "now", "a longer thing"),
    ];
    let data = InstructionDataset::new(&entries, &tok, &f).unwrap();
    assert_eq!(data.end_id, f.end_id());
    let b = data.batch(&[0, 1], 1024, true).unwrap();
    let t = b.inputs.shape()[1];
    let (x, y) = (b.inputs.data(), b.targets.data());
    let n0 = data.encoded[0].len();
    assert!(n0 < data.encoded[1].len());
    // Row 0: the response's targets, then its turn end, then ignored padding (padded with the
    // turn end, whose targets are ignored).
    let p0 = data.prompt_lengths[0];
    assert!(y[..p0 - 1].iter().all(|&v| v == -100), "prompt masked");
    for p in p0 - 1..n0 - 1 {
        assert_eq!(y[p], x[p + 1]);
    }
    assert_eq!(y[n0 - 1], f.end_id() as i64);
    assert!(y[n0..t].iter().all(|&v| v == -100));
    assert!(x[n0..t].iter().all(|&v| v == f.end_id() as i64));
}

/// A random Llama or Qwen3 folder with the fixture's tokenizer (605 ids, or more with `added`
/// tokens) and a context that holds the chat prompts.
fn model_folder(preset: &str, fixture_name: &str, added: &[&str], tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "scratchgpt-instruct-{tag}-{preset}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = GptConfig::preset(preset).unwrap();
    cfg.vocab_size = 608;
    cfg.context_length = 96;
    cfg.drop_rate = 0.0;
    export_hf(
        &GptModel::new(&cfg, 5).unwrap(),
        &dir,
        ExportOptions::default(),
    )
    .unwrap();
    extended_tokenizer_json(fixture_name, added, &dir);
    dir
}

/// 20 short entries: 17 train, 2 test, 1 validation.
fn data_file(dir: &Path) -> PathBuf {
    let entries: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            let word = ["yes", "no", "maybe", "red"][i % 4];
            serde_json::json!({"instruction": format!("Say {word}."),
                "input": if i % 2 == 0 { "" } else { "now" }, "output": word})
        })
        .collect();
    let path = dir.join("instructions.json");
    std::fs::write(&path, serde_json::to_string(&entries).unwrap()).unwrap();
    path
}

fn run(args: &[&str]) -> (bool, String) {
    let o = Command::new(BIN)
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn finetune(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "finetune",
        "instruct",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "2",
        "--eval-iter",
        "1",
        "--eval-freq",
        "1",
        "--test-limit",
        "2",
        "--max-new-tokens",
        "3",
        "--lr",
        "1e-3",
    ];
    if !extra.contains(&"--resume") {
        args.extend(["--model", model.to_str().unwrap()]);
    }
    args.extend(extra);
    run(&args)
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    load_resumable(path)
        .unwrap()
        .model
        .named_parameters()
        .iter()
        .map(|(n, p)| (n.clone(), p.to_vec().unwrap()))
        .collect()
}

#[test]
fn finetune_instruct_trains_llama_and_qwen3_on_their_own_templates() {
    for (preset, fixture_name, added, template) in [
        ("llama-tiny", "hf-llama-tiny", &[][..], ChatTemplate::Llama3),
        ("qwen3-tiny", "hf-qwen3-tiny", &[][..], ChatTemplate::Qwen),
        (
            "qwen3-tiny",
            "hf-qwen3-tiny",
            &["<think>", "</think>"][..],
            ChatTemplate::Qwen3,
        ),
    ] {
        let model = model_folder(preset, fixture_name, added, template.name());
        let data = data_file(&model);
        for lora in [false, true] {
            let out = model.join(format!("run-lora-{lora}"));
            let mut extra = vec!["--max-steps", "2"];
            if lora {
                extra.extend(["--lora-rank", "2"]);
            }
            let (ok, log) = finetune(&model, &data, &out, &extra);
            assert!(ok, "{preset} lora {lora}: {log}");
            assert!(
                log.contains(&format!("{} template", template.name())),
                "{preset}: {log}"
            );
            // The vocabulary travels with the run; the weights-only checkpoint names the
            // template, and `chat` uses it without being told.
            assert!(out.join("tokenizer/tokenizer.json").is_file());
            assert_eq!(out.join("adapters.safetensors").is_file(), lora);
            let ck = out.join("instruct.safetensors");
            let loaded = load_checkpoint(&ck).unwrap();
            assert_eq!(loaded.task, Task::Instruct { template });
            assert!(!loaded.model.has_lora(), "merged");
            let responses =
                std::fs::read_to_string(out.join("instruction-data-with-response.json")).unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&responses)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            let mut child = Command::new(BIN)
                .args(["chat", "--checkpoint", ck.to_str().unwrap()])
                .args(["--temperature", "0", "--max-new-tokens", "3"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"Say yes.\n")
                .unwrap();
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // The resumable checkpoint is a run of the same vocabulary: it continues from
            // there (checked exactly in the next test).
            assert!(out.join("checkpoint.safetensors").is_file());
        }
        // A template the vocabulary lacks, or none at all, is refused before training.
        let wrong = if preset == "llama-tiny" {
            "qwen"
        } else {
            "llama3"
        };
        let (ok, log) = finetune(
            &model,
            &data,
            &model.join("wrong"),
            &["--template", wrong, "--max-steps", "1"],
        );
        assert!(!ok && log.contains("does not have"), "{log}");
        let (ok, log) = finetune(
            &model,
            &data,
            &model.join("plain"),
            &["--template", "plain", "--max-steps", "1"],
        );
        assert!(!ok && log.contains("plain"), "{log}");
        // Classification and DPO read their data with GPT-2's vocabulary: a clear refusal.
        let (ok, log) = run(&[
            "finetune",
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--max-steps",
            "1",
        ]);
        assert!(!ok && log.contains("own tokenizer"), "{log}");
        std::fs::remove_dir_all(&model).unwrap();
    }
}

/// Stopped after one step and resumed (from the run folder, which holds the tokenizer), a Llama
/// run with LoRA ends with the weights of an uninterrupted one, bit for bit.
#[test]
fn finetune_instruct_on_llama_resumes_exactly() {
    let model = model_folder("llama-tiny", "hf-llama-tiny", &[], "resume");
    let data = data_file(&model);
    for lora in [false, true] {
        let lora_args: &[&str] = if lora { &["--lora-rank", "2"] } else { &[] };
        let whole = model.join(format!("whole-{lora}"));
        let parts = model.join(format!("parts-{lora}"));
        let with = |steps: &'static str| {
            let mut v = vec!["--max-steps", steps, "--drop-rate", "0.1"];
            v.extend(lora_args);
            v
        };
        let (ok, log) = finetune(&model, &data, &whole, &with("3"));
        assert!(ok, "{log}");
        let (ok, log) = finetune(&model, &data, &parts, &with("1"));
        assert!(ok, "{log}");
        let resume = parts.join("checkpoint.safetensors");
        let mut args = with("3");
        args.extend(["--resume", resume.to_str().unwrap()]);
        let (ok, log) = finetune(&model, &data, &parts, &args);
        assert!(ok, "{log}");
        assert!(log.contains("resuming at step 1"), "{log}");
        assert_eq!(
            weights(&whole.join("checkpoint.safetensors")),
            weights(&resume),
            "lora {lora}"
        );
        // Another template than the run's is not an exact continuation.
        let mut args = with("4");
        args.extend(["--resume", resume.to_str().unwrap(), "--template", "alpaca"]);
        let (ok, log) = finetune(&model, &data, &parts, &args);
        assert!(!ok && log.contains("--template"), "{log}");
    }
    std::fs::remove_dir_all(&model).unwrap();
}

/// A short run on Qwen's chat template learns the answers and to end them: greedy replies to the
/// training prompts are the right words, stopped at `<|im_end|>` (so nothing follows them).
#[test]
fn a_short_chat_template_run_learns_to_answer_and_stop() {
    use scratchgpt::finetune::instruct_train::{respond, train_instructions, InstructTrainOptions};
    use scratchgpt::optim::{AdamW, AdamWConfig};
    use scratchgpt::train::Engine;
    let tok = tokenizer("hf-qwen3-tiny");
    let f = InstructFormat::for_tokenizer(&tok).unwrap();
    let words = ["yes", "no", "maybe", "red"];
    let entries: Vec<InstructionEntry> = (0..16)
        .map(|i| entry(&format!("Say {}.", words[i % 4]), "", words[i % 4]))
        .collect();
    let train = InstructionDataset::new(&entries, &tok, &f).unwrap();
    let val = InstructionDataset::new(&entries[..4], &tok, &f).unwrap();
    let mut cfg = GptConfig::preset("qwen3-tiny").unwrap();
    cfg.vocab_size = 605;
    cfg.context_length = 64;
    cfg.drop_rate = 0.0;
    let m = GptModel::new(&cfg, 3).unwrap();
    let mut opt = AdamW::new(
        m.named_parameters(),
        AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    );
    let mut engine = Engine::new(&m, &mut opt);
    let opts = InstructTrainOptions {
        num_epochs: 30,
        batch_size: 8,
        eval_freq: 20,
        eval_iter: 1,
        lr: 1e-2,
        seed: 1,
        max_steps: None,
        allowed_max_length: 1024,
        mask_instructions: true,
        start_ids: Vec::new(),
        sample_tokens: 0,
    };
    let run = train_instructions(&mut engine, &m, &train, &val, &tok, &f, &opts, |_| {}).unwrap();
    let (first, last) = (run.train_losses[0], *run.train_losses.last().unwrap());
    assert!(last < 0.05 * first, "train loss {first} → {last}");
    for e in &entries[..4] {
        assert_eq!(respond(&m, &tok, &f, e, 10).unwrap(), e.output);
    }
}
