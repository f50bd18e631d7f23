//! Hugging Face `tokenizer.json` files (Llama 3's and Qwen's kind) give the ids of the
//! `tokenizers` library: the fixtures' 40 cases per tokenizer (ASCII, contractions in any case,
//! digit runs, accents and NFC, CJK, emoji, newlines, runs of spaces, chat markup, partial special
//! strings) — ids, pre-tokenizer pieces, special tokens matched or as text, the BOS, decoding.
//! GPT-2's vocabulary written as a `tokenizer.json` encodes as tiktoken does (pair-ranked merges
//! agree with GPT-2's id-ranked ones). A folder round-trips; `tokenize` reads one; what the
//! engine does not run is a clear error.

use std::path::{Path, PathBuf};

use scratchgpt::data::bpe::byte_unicode::{byte_to_char_table, bytes_to_token};
use scratchgpt::data::BpeTokenizer;
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn cases(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name).join("tokenizer_cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_fixture(name: &str, bos: Option<u32>) {
    let tok = BpeTokenizer::from_dir(fixture(name)).unwrap();
    assert_eq!(tok.bos_id(), bos, "{name}: the post-processor's BOS");
    let specials = tok.special_tokens();
    let all: Vec<&str> = specials.iter().map(|s| s.0.as_str()).collect();
    let table = byte_to_char_table();
    let cases = cases(name);
    assert_eq!(cases.len(), 40);
    for c in &cases {
        let (label, text) = (c["name"].as_str().unwrap(), c["text"].as_str().unwrap());
        let want = ids(&c["ids"]);
        let got = tok.encode_with_special(text, &all).unwrap();
        assert_eq!(got, want, "{name} {label}: {text:?}");
        let pieces: Vec<String> = c["pre_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tok.pre_tokens(text).unwrap(), pieces, "{name} {label}");
        for (id, t) in got.iter().zip(c["tokens"].as_array().unwrap()) {
            if !all.iter().any(|s| Some(*s) == t.as_str()) {
                let bytes = tok.token_bytes(*id).unwrap();
                assert_eq!(bytes_to_token(bytes, &table), t.as_str().unwrap());
            }
        }
        if let Some(as_text) = c.get("ids_special_as_text") {
            assert_eq!(tok.encode_ordinary(text).unwrap(), ids(as_text), "{label}");
            // Without --allow-special, a special token in the text is refused, not guessed.
            assert!(tok.encode(text).is_err(), "{label}");
        }
        if let Some(with_bos) = c.get("ids_add_special_tokens") {
            let mut v = vec![bos.unwrap()];
            v.extend(&want);
            assert_eq!(v, ids(with_bos), "{label}");
        }
        if c["decode_equals_text"].as_bool() == Some(true) {
            assert_eq!(tok.decode(&want).unwrap(), text, "{label}");
        }
    }
    // The-verdict's token count, as the library gives it.
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    let verdict = include_str!("../data/the-verdict.txt");
    assert_eq!(
        tok.encode(verdict).unwrap().len() as u64,
        meta["meta"]["verdict_tokens"].as_u64().unwrap(),
        "{name}: the-verdict"
    );
}

#[test]
fn llama3_tokenizer_json_matches_the_tokenizers_library() {
    check_fixture("hf-llama-tiny", Some(600));
}

#[test]
fn qwen3_tokenizer_json_with_nfc_matches_the_tokenizers_library() {
    check_fixture("hf-qwen3-tiny", None);
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scratchgpt-hftok-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_tokenizer_json_folder_round_trips_and_tokenize_reads_it() {
    let src = fixture("hf-qwen3-tiny");
    let tok = BpeTokenizer::from_dir(&src).unwrap();
    let dir = temp("roundtrip");
    tok.save(&dir).unwrap();
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(src.join("tokenizer.json")).unwrap(),
        "saved unchanged"
    );
    assert!(tok.is_tokenizer_json());
    let again = BpeTokenizer::from_dir(&dir).unwrap();
    let text = "<|im_start|>user\nCafe\u{301} costs 12345 yen?<|im_end|>";
    let all = ["<|im_start|>", "<|im_end|>"];
    assert_eq!(
        again.encode_with_special(text, &all).unwrap(),
        tok.encode_with_special(text, &all).unwrap()
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args([
            "tokenize",
            "--tokenizer",
            dir.to_str().unwrap(),
            "--allow-special",
            "--ids",
            text,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: Vec<u32> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed, tok.encode_with_special(text, &all).unwrap());
    // A folder holds one format: saving GPT-2's files over it removes the tokenizer.json, which
    // would otherwise shadow them, and the other way round.
    BpeTokenizer::gpt2().save(&dir).unwrap();
    assert!(!dir.join("tokenizer.json").exists());
    assert!(!BpeTokenizer::from_dir(&dir).unwrap().is_tokenizer_json());
    tok.save(&dir).unwrap();
    assert!(!dir.join("encoder.json").exists() && !dir.join("vocab.bpe").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// GPT-2's own vocabulary as a `tokenizer.json` (the layout of the hub's `gpt2/tokenizer.json`:
/// ByteLevel with its built-in regex, merges as "a b" strings, empty affixes): the pair-ranked
/// merging gives tiktoken's ids.
#[test]
fn gpt2_as_a_tokenizer_json_encodes_as_tiktoken_does() {
    let encoder: Value = serde_json::from_str(include_str!("../data/gpt2/encoder.json")).unwrap();
    let merges: Vec<&str> = include_str!("../data/gpt2/vocab.bpe")
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.is_empty())
        .collect();
    let mut vocab = encoder.as_object().unwrap().clone();
    vocab.remove("<|endoftext|>");
    let file = json!({
        "version": "1.0",
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
            "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
            "byte_fallback": false, "vocab": vocab, "merges": merges},
    });
    // The hub's file marks <|endoftext|> "normalized": true, harmless without a normalizer.
    let mut file = file;
    file["added_tokens"][0]["normalized"] = json!(false);
    let tok = BpeTokenizer::from_tokenizer_json(&file.to_string(), "gpt2 tokenizer.json").unwrap();
    let tiktoken = tiktoken_rs::r50k_base().unwrap();
    let verdict = include_str!("../data/the-verdict.txt");
    assert_eq!(
        tok.encode(verdict).unwrap(),
        tiktoken.encode_ordinary(verdict)
    );
    assert_eq!(
        tok.encode_with_special("a<|endoftext|>b", &["<|endoftext|>"])
            .unwrap(),
        vec![64, 50256, 65]
    );
}

#[test]
fn what_the_engine_does_not_run_is_a_clear_error() {
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("hf-llama-tiny").join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| -> String {
        let mut v = base.clone();
        edit(&mut v);
        BpeTokenizer::from_tokenizer_json(&v.to_string(), "t.json")
            .expect_err("refused")
            .to_string()
    };
    let e =
        broken(&|v| v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = json!("(?<=a"));
    assert!(e.contains("cannot be run"), "{e}");
    let e = broken(&|v| v["normalizer"] = json!({"type": "NFKC"}));
    assert!(e.contains("normalizer"), "{e}");
    let e = broken(&|v| v["model"]["type"] = json!("WordPiece"));
    assert!(e.contains("WordPiece"), "{e}");
    let e = broken(&|v| v["model"]["byte_fallback"] = json!(true));
    assert!(e.contains("byte_fallback"), "{e}");
    let e = broken(&|v| v["added_tokens"][0]["lstrip"] = json!(true));
    assert!(e.contains("lstrip"), "{e}");
    let e = broken(&|v| v["model"]["merges"][0] = json!(["h", "zzz"]));
    assert!(e.contains("zzz"), "{e}");
    let e = broken(&|v| v["pre_tokenizer"]["pretokenizers"][0]["behavior"] = json!("Removed"));
    assert!(e.contains("pre-tokenizer"), "{e}");
    // An empty added token would match everywhere; a huge id would not be a dense vocabulary.
    let e = broken(&|v| v["added_tokens"][0]["content"] = json!(""));
    assert!(e.contains("empty"), "{e}");
    let e = broken(&|v| v["added_tokens"][0]["id"] = json!(1_000_000_000_000u64));
    assert!(e.contains("not one of"), "{e}");
    let e = broken(&|v| v["model"]["vocab"]["he"] = json!(99_999_999));
    assert!(e.contains("not one of"), "{e}");
    // A template that appends an end token is not half applied.
    let e = broken(&|v| {
        v["post_processor"]["processors"][1]["single"]
            .as_array_mut()
            .unwrap()
            .push(json!({"SpecialToken": {"id": "<|eot_id|>", "type_id": 0}}))
    });
    assert!(e.contains("post-processor"), "{e}");
    let e = broken(&|v| v["decoder"] = json!({"type": "WordPiece"}));
    assert!(e.contains("decoder"), "{e}");
    let e = broken(&|v| v["truncation"] = json!({"max_length": 8}));
    assert!(e.contains("truncation"), "{e}");
    // A folder with neither format names both.
    let dir = temp("empty");
    let e = BpeTokenizer::from_dir(&dir).expect_err("empty").to_string();
    assert!(
        e.contains("encoder.json") || e.contains("tokenizer.json"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `ignore_merges`, a piece that is a vocabulary entry is taken whole even when no merge
/// builds it; without, the merges decide.
#[test]
fn ignore_merges_takes_a_whole_vocabulary_entry_first() {
    let table = byte_to_char_table();
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(table[b as usize].to_string(), json!(vocab.len()));
    }
    vocab.insert("ab".into(), json!(256)); // no merge makes it
    vocab.insert("bc".into(), json!(257));
    let file = |ignore: bool| {
        json!({
            "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "model": {"type": "BPE", "ignore_merges": ignore, "vocab": vocab.clone(),
                      "merges": [["b", "c"]]},
        })
        .to_string()
    };
    let with = BpeTokenizer::from_tokenizer_json(&file(true), "t").unwrap();
    let without = BpeTokenizer::from_tokenizer_json(&file(false), "t").unwrap();
    assert_eq!(with.encode("ab").unwrap(), vec![256]);
    assert_eq!(without.encode("ab").unwrap(), vec![97, 98]);
    assert_eq!(without.encode("abc").unwrap(), vec![97, 257]);
}

mod oracle {
    //! The `tokenizers` library itself (a dev-dependency, the test oracle only) against ours on
    //! random texts built from fragments that exercise every alternative of the two regexes.
    use super::*;
    use proptest::prelude::*;

    const FRAGMENTS: &[&str] = &[
        "a",
        "the",
        "He",
        " quick",
        "  ",
        "   ",
        "\n",
        "\r\n",
        "\n\n",
        "\t",
        " \n ",
        "'s",
        "'LL",
        "'Re",
        "'t",
        "don't",
        "12345",
        "7",
        "3.14",
        "café",
        "e\u{301}",
        "A\u{30a}",
        "日本語",
        "한국어",
        "Привет",
        "😀",
        "👍🏽",
        "!",
        "...",
        "?!",
        "ǅ",
        "ﬁ",
        "<|im_start|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|im_",
        "|>",
        "x=1;",
        "\u{a0}",
    ];

    fn check(name: &str, text: &str) -> std::result::Result<(), TestCaseError> {
        let ours = BpeTokenizer::from_dir(fixture(name)).unwrap();
        let specials = ours.special_tokens();
        let all: Vec<&str> = specials.iter().map(|s| s.0.as_str()).collect();
        let theirs =
            tokenizers::Tokenizer::from_file(fixture(name).join("tokenizer.json")).unwrap();
        let want = theirs.encode(text, false).unwrap().get_ids().to_vec();
        prop_assert_eq!(
            ours.encode_with_special(text, &all).unwrap(),
            want,
            "{:?}",
            text
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]
        #[test]
        fn ids_equal_the_tokenizers_library(parts in proptest::collection::vec(0..FRAGMENTS.len(), 0..12)) {
            let text: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
            check("hf-llama-tiny", &text)?;
            check("hf-qwen3-tiny", &text)?;
        }
    }
}
