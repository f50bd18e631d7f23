//! Chat templates written in code: Llama 3's headers and Qwen's ChatML rendered exactly as the
//! models' own templates render one user turn (Qwen without the thinking block), their ids equal
//! to the `tokenizers` library's for the same text, the template chosen from the vocabulary, and
//! `chat` running a Llama and a Qwen folder with them.

use std::io::Write;
use std::path::{Path, PathBuf};

use scratchgpt::data::chat_template::ChatTemplate;
use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::instruction_data::{format_input, InstructionEntry};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn the_templates_render_one_turn_as_the_models_do() {
    assert_eq!(
        ChatTemplate::Llama3.render("Hi there", Some("Be brief.")),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        ChatTemplate::Qwen.render("Hi there", None),
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        ChatTemplate::Qwen.render("Hi", Some("Be brief.")),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // Alpaca is the book's chapter 7 prompt, as instruction fine-tuning writes it.
    let entry = InstructionEntry {
        instruction: "Edit the following sentence for grammar.".into(),
        input: String::new(),
        output: String::new(),
    };
    assert_eq!(
        ChatTemplate::Alpaca.render(&entry.instruction, None),
        format!("{}\n\n### Response:\n", format_input(&entry))
    );
    // Llama 3.1+ always opens with a system turn (its template's fallback date).
    assert_eq!(
        ChatTemplate::Llama31.render("Hi", None),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // Qwen3 answers without thinking when the reply opens with the empty block.
    assert_eq!(
        ChatTemplate::Qwen3.render("Hi", None),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    assert_eq!(ChatTemplate::Plain.render(" as is ", None), " as is ");
    for (name, t) in [
        ("plain", ChatTemplate::Plain),
        ("alpaca", ChatTemplate::Alpaca),
        ("llama3", ChatTemplate::Llama3),
        ("llama3.1", ChatTemplate::Llama31),
        ("qwen", ChatTemplate::Qwen),
        ("qwen3", ChatTemplate::Qwen3),
    ] {
        assert_eq!(ChatTemplate::from_name(name).unwrap(), t);
    }
    assert!(ChatTemplate::from_name("jinja").is_err());
}

#[test]
fn the_template_comes_from_the_vocabulary_and_its_ids_are_the_librarys() {
    for (name, template) in [
        ("hf-llama-tiny", ChatTemplate::Llama3),
        ("hf-qwen3-tiny", ChatTemplate::Qwen),
    ] {
        let tok = BpeTokenizer::from_dir(fixture(name)).unwrap();
        assert_eq!(ChatTemplate::for_tokenizer(&tok), Some(template));
        let oracle =
            tokenizers::Tokenizer::from_file(fixture(name).join("tokenizer.json")).unwrap();
        for system in [None, Some("You are terse.")] {
            let text = template.render("What is 12 + 30?", system);
            let ours = template.encode(&tok, "What is 12 + 30?", system).unwrap();
            // transformers' apply_chat_template(tokenize=True): the rendered text, special tokens
            // matched, nothing added (the template writes its own <|begin_of_text|>).
            let want = oracle
                .encode(text.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            assert_eq!(ours, want, "{name} {system:?}");
        }
        let ids = template.encode(&tok, "x", None).unwrap();
        if template == ChatTemplate::Llama3 {
            let bos = tok.bos_id().unwrap();
            assert_eq!(ids.iter().filter(|&&i| i == bos).count(), 1, "one BOS");
        }
    }
    // GPT-2's vocabulary has neither, and refuses them by name.
    let gpt2 = BpeTokenizer::gpt2();
    assert_eq!(ChatTemplate::for_tokenizer(gpt2), None);
    let e = ChatTemplate::Llama3
        .encode(gpt2, "hi", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("<|begin_of_text|>"), "{e}");
    let e = ChatTemplate::Qwen
        .encode(gpt2, "hi", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("<|im_start|>"), "{e}");
}

/// `chat` on a Llama and a Qwen folder: the vocabulary's template by default, `--template` and
/// `--system` accepted, greedy replies stopping at the turn's end.
#[test]
fn chat_runs_llama_and_qwen_folders_with_their_templates() {
    use scratchgpt::gpt::hf_llama::{export_hf, ExportOptions};
    use scratchgpt::gpt::{GptConfig, GptModel};
    for (preset, fixture_name) in [
        ("llama-tiny", "hf-llama-tiny"),
        ("qwen3-tiny", "hf-qwen3-tiny"),
    ] {
        let dir =
            std::env::temp_dir().join(format!("scratchgpt-chat-{}-{preset}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = GptConfig::preset(preset).unwrap();
        cfg.vocab_size = 605;
        cfg.drop_rate = 0.0;
        export_hf(
            &GptModel::new(&cfg, 2).unwrap(),
            &dir,
            ExportOptions::default(),
        )
        .unwrap();
        std::fs::copy(
            fixture(fixture_name).join("tokenizer.json"),
            dir.join("tokenizer.json"),
        )
        .unwrap();
        let chat = |extra: &[&str]| {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
                .args(["chat", "--model", dir.to_str().unwrap()])
                .args(["--temperature", "0", "--max-new-tokens", "4"])
                .args(extra)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"Hello there\nWhat is tea?\n")
                .unwrap();
            let o = child.wait_with_output().unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).to_string(),
                String::from_utf8_lossy(&o.stderr).to_string(),
            )
        };
        let (ok, out, err) = chat(&[]);
        assert!(ok, "{preset}: {err}");
        assert_eq!(
            out.lines().count(),
            2,
            "{preset}: one reply per prompt: {out:?}"
        );
        let (ok, _, err) = chat(&["--system", "Be brief."]);
        assert!(ok, "{preset}: {err}");
        let (ok, _, err) = chat(&["--template", "plain", "--system", "x"]);
        assert!(!ok && err.contains("--system"), "{preset}: {err}");
        let wrong = if preset == "llama-tiny" {
            "qwen"
        } else {
            "llama3"
        };
        let (ok, _, err) = chat(&["--template", wrong]);
        assert!(!ok && err.contains("does not have"), "{preset}: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A Llama 3.1+ vocabulary names `<|eom_id|>`; a Qwen3 one has `<think>` and `</think>` (added,
/// not special): the vocabulary picks the template, and the ids are the library's.
#[test]
fn llama_3_1_and_qwen3_vocabularies_pick_their_templates() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-chat-vocab-{}", std::process::id()));
    for (name, added, template) in [
        (
            "hf-llama-tiny",
            vec![("<|eom_id|>", true)],
            ChatTemplate::Llama31,
        ),
        (
            "hf-qwen3-tiny",
            vec![("<think>", false), ("</think>", false)],
            ChatTemplate::Qwen3,
        ),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut t: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("tokenizer.json")).unwrap(),
        )
        .unwrap();
        let list = t["added_tokens"].as_array_mut().unwrap();
        let first = list
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .max()
            .unwrap()
            + 1;
        let template_entry = list[0].clone();
        for (k, (content, special)) in added.into_iter().enumerate() {
            let mut e = template_entry.clone();
            e["id"] = (first + k as u64).into();
            e["content"] = content.into();
            e["special"] = special.into();
            list.push(e);
        }
        std::fs::write(dir.join("tokenizer.json"), t.to_string()).unwrap();
        let tok = BpeTokenizer::from_dir(&dir).unwrap();
        assert_eq!(ChatTemplate::for_tokenizer(&tok), Some(template), "{name}");
        let oracle = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let text = template.render("Why?", Some("  Be brief. "));
        let want = oracle
            .encode(text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(
            template.encode(&tok, "Why?", Some("  Be brief. ")).unwrap(),
            want
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
