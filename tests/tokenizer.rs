//! The book's tokenizers (ch. 2) and GPT-2's BPE, checked against the book's numbers and against
//! tiktoken (through tiktoken-rs, a dev-dependency used only as the oracle).

use proptest::prelude::*;
use scratchgpt::data::bpe::train::train_bpe;
use scratchgpt::data::{BpeTokenizer, SimpleTokenizerV1, SimpleTokenizerV2};

const VERDICT: &str = include_str!("../data/the-verdict.txt");

fn tiktoken() -> &'static tiktoken_rs::CoreBPE {
    static T: std::sync::OnceLock<tiktoken_rs::CoreBPE> = std::sync::OnceLock::new();
    T.get_or_init(|| tiktoken_rs::r50k_base().unwrap())
}

#[test]
fn simple_tokenizer_matches_the_book() {
    let tokens = scratchgpt::data::simple::split_simple(VERDICT);
    assert_eq!(tokens.len(), 4690);
    let v1 = SimpleTokenizerV1::from_text(VERDICT);
    assert_eq!(v1.vocab_size(), 1130);
    let text = "\"It's the last he painted, you know,\" \n           Mrs. Gisburn said with pardonable pride.";
    let ids = v1.encode(text).unwrap();
    assert_eq!(
        ids,
        vec![
            1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793,
            7
        ]
    );
    assert_eq!(
        v1.decode(&ids).unwrap(),
        "\" It' s the last he painted, you know,\" Mrs. Gisburn said with pardonable pride."
    );
    let e = v1.encode("Hello, do you like tea?").unwrap_err();
    assert!(e.to_string().contains("\"Hello\""), "{e}");

    let v2 = SimpleTokenizerV2::from_text(VERDICT);
    assert_eq!(v2.vocab_size(), 1132);
    let text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace.";
    let ids = v2.encode(text);
    assert_eq!(
        ids,
        vec![1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    );
    assert_eq!(
        v2.decode(&ids).unwrap(),
        "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."
    );
    assert!(v2.decode(&[5000]).is_err());
}

#[test]
fn gpt2_bpe_matches_the_book_and_tiktoken() {
    let t = BpeTokenizer::gpt2();
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.special_id("<|endoftext|>"), Some(50256));
    let verdict = t.encode(VERDICT).unwrap();
    assert_eq!(verdict.len(), 5145);
    assert_eq!(verdict, tiktoken().encode_ordinary(VERDICT));
    assert_eq!(t.decode(&verdict).unwrap(), VERDICT);

    let text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.";
    let ids = t.encode_with_special(text, &["<|endoftext|>"]).unwrap();
    assert_eq!(
        ids,
        vec![
            15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114,
            1659, 617, 34680, 27271, 13
        ]
    );
    assert_eq!(t.decode(&ids).unwrap(), text);
    let e = t.encode(text).unwrap_err().to_string();
    assert!(e.contains("<|endoftext|>") && e.contains("byte 24"), "{e}");
    assert!(t.encode_with_special(text, &["<|nope|>"]).is_err());

    // the book's BPE tests
    assert_eq!(t.encode("Hello,").unwrap(), vec![15496, 11]);
    assert_eq!(t.encode("Implementations").unwrap(), vec![3546, 26908, 602]);
    for s in [
        "line one\nline two",
        "windows\r\nline",
        "  leading",
        "repeated   spaces  here",
        "tabs\t\tand\n\n\nnewlines ",
        " ",
        "",
        "é日本語🙂 mixed 123 4567",
    ] {
        assert_eq!(t.encode(s).unwrap(), tiktoken().encode_ordinary(s), "{s:?}");
        assert_eq!(t.decode(&t.encode(s).unwrap()).unwrap(), s);
    }
    assert!(t.decode(&[50257]).is_err());
}

fn unicode_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        "[a-zA-Z]{1,8}",
        "[0-9]{1,6}",
        "[ \t\n\r]{1,4}",
        "[,.;:!?'\"()\\-]{1,3}",
        "'(s|t|re|ve|m|ll|d|S|T)",
        "[\u{4e00}-\u{9fff}]{1,4}",
        "[\u{3040}-\u{30ff}]{1,4}",
        "[\u{1f300}-\u{1f64f}]{1,3}",
        "[a-z][\u{0300}-\u{036f}]{1,2}",
        "[\u{0660}-\u{0669}\u{00bc}-\u{00be}\u{2160}-\u{2168}]{1,3}",
        "[\u{00a0}\u{2000}-\u{200a}\u{3000}\u{0085}]{1,2}",
        "[\u{0400}-\u{04ff}\u{0590}-\u{05ff}\u{0900}-\u{097f}]{1,5}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn gpt2_bpe_equals_tiktoken_on_random_unicode(s in unicode_text()) {
        let t = BpeTokenizer::gpt2();
        let ours = t.encode_ordinary(&s).unwrap();
        prop_assert_eq!(&ours, &tiktoken().encode_ordinary(&s), "text {:?}", s);
        prop_assert_eq!(t.decode(&ours).unwrap(), s);
    }
}

#[test]
fn gpt2_files_load_from_a_folder_and_round_trip_through_save() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-tok-{}", std::process::id()));
    let t = BpeTokenizer::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/gpt2")).unwrap();
    assert_eq!(
        t.encode(VERDICT).unwrap(),
        BpeTokenizer::gpt2().encode(VERDICT).unwrap()
    );
    t.save(&dir).unwrap();
    let back = BpeTokenizer::from_dir(&dir).unwrap();
    assert_eq!(back.vocab_size(), 50257);
    assert_eq!(back.encode(VERDICT).unwrap(), t.encode(VERDICT).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_vocabulary_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-badtok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = BpeTokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("encoder.json"), "{e}");
    std::fs::write(dir.join("encoder.json"), "{not json").unwrap();
    std::fs::write(dir.join("vocab.bpe"), "#version: 0.2\nĠ t\n").unwrap();
    let e = BpeTokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("encoder.json"), "{e}");
    std::fs::write(dir.join("encoder.json"), "{}").unwrap();
    std::fs::write(dir.join("vocab.bpe"), "#version: 0.2\nĠ t x\n").unwrap();
    let e = BpeTokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("vocab.bpe") && e.contains("line 2"), "{e}");
    std::fs::write(dir.join("vocab.bpe"), [0xff, 0xfe, b'a']).unwrap();
    let e = BpeTokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("UTF-8") && e.contains("offset 0"), "{e}");
    assert!(BpeTokenizer::from_dir(dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The obvious trainer: recount every pair after every merge. Same tie rule.
fn naive_train(text: &str, merges_wanted: usize) -> Vec<(u32, u32)> {
    use std::collections::HashMap;
    let order = scratchgpt::data::bpe::byte_unicode::bytes_in_rank_order();
    let mut id_of = [0u32; 256];
    for (r, b) in order.iter().enumerate() {
        id_of[*b as usize] = r as u32;
    }
    let mut words: Vec<Vec<u32>> = scratchgpt::data::bpe::pretokenize::pre_tokens(text)
        .into_iter()
        .map(|p| p.bytes().map(|b| id_of[b as usize]).collect())
        .collect();
    let mut merges = Vec::new();
    while merges.len() < merges_wanted {
        let mut counts: HashMap<(u32, u32), i64> = HashMap::new();
        for w in &words {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += 1;
            }
        }
        let Some((&pair, _)) = counts
            .iter()
            .max_by_key(|(p, c)| (**c, std::cmp::Reverse(**p)))
        else {
            break;
        };
        let new = 256 + merges.len() as u32;
        merges.push(pair);
        for w in &mut words {
            let mut out = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && (w[i], w[i + 1]) == pair {
                    out.push(new);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
    }
    merges
}

#[test]
fn bpe_trainer_matches_a_full_recount_and_round_trips() {
    let text = &VERDICT[..6000];
    let trained = train_bpe(text, 256 + 150 + 1, &["<|endoftext|>"]).unwrap();
    assert_eq!(trained.merges(), naive_train(text, 150).as_slice());
    assert_eq!(trained.vocab_size(), 407);
    assert_eq!(trained.special_id("<|endoftext|>"), Some(406));
    // deterministic
    assert_eq!(
        train_bpe(text, 407, &["<|endoftext|>"]).unwrap().merges(),
        trained.merges()
    );
    // compresses and round-trips, also through the GPT-2 file format
    let ids = trained.encode(VERDICT).unwrap();
    assert!(
        ids.len() * 10 < VERDICT.len() * 6,
        "{} tokens for {} bytes",
        ids.len(),
        VERDICT.len()
    );
    assert_eq!(trained.decode(&ids).unwrap(), VERDICT);
    let dir = std::env::temp_dir().join(format!("scratchgpt-trained-{}", std::process::id()));
    trained.save(&dir).unwrap();
    let back = BpeTokenizer::from_dir(&dir).unwrap();
    assert_eq!(back.encode(VERDICT).unwrap(), ids);
    assert_eq!(
        back.encode_with_special("a<|endoftext|>b", &["<|endoftext|>"])
            .unwrap()[1],
        406
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // specials are never merged across
    let t = train_bpe("ab<|endoftext|>ab<|endoftext|>ab", 300, &["<|endoftext|>"]).unwrap();
    assert!(t.merges().len() <= 2, "{:?}", t.merges());
    assert!(train_bpe("abc", 100, &[]).is_err());
    assert!(train_bpe("abc", 300, &[""]).is_err());
    assert!(train_bpe("abc", 300, &["<|x|>", "<|x|>"]).is_err());
}
