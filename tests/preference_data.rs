//! The DPO preference data (book ch. 7 bonus): the bundled file parses and splits as the book's
//! (935 / 110 / 55), the collate function pads chosen and rejected to one length and masks
//! everything but the response, and bad entries are errors naming the entry and the field.

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::preference_data::{
    collate_preferences, encode_preference, parse_preference_json, read_preference_json,
    split_preferences, EncodedPreference,
};

const PAD: i64 = 50256;

#[test]
fn the_books_file_parses_and_splits_85_10_5() {
    let data = read_preference_json(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/instruction-data-with-preference.json"
    ))
    .unwrap();
    assert_eq!(data.len(), 1100);
    assert_eq!(data[0].entry.input, "freind --> friend");
    assert!(data[0].rejected.contains("flat out wrong"));
    let (train, test, val) = split_preferences(&data).unwrap();
    assert_eq!((train.len(), test.len(), val.len()), (935, 110, 55));
    // Encoded as the book's PreferenceDataset: the prompt is a prefix of both full texts.
    let e = encode_preference(&data[0], BpeTokenizer::gpt2()).unwrap();
    assert!(e.chosen.starts_with(&e.prompt) && e.rejected.starts_with(&e.prompt));
    assert_ne!(e.chosen, e.rejected);
}

#[test]
fn collate_pads_to_one_length_and_masks_all_but_the_response() {
    let item = EncodedPreference {
        prompt: vec![1, 2, 3],
        chosen: vec![1, 2, 3, 4, 5, 6, 7],
        rejected: vec![1, 2, 3, 4, 5, 8],
    };
    let b = collate_preferences(std::slice::from_ref(&item), None, true).unwrap();
    // Common length = the longest sequence + 1 = 8.
    assert_eq!(b.chosen, [vec![1, 2, 3, 4, 5, 6, 7, PAD]]);
    assert_eq!(b.rejected, [vec![1, 2, 3, 4, 5, 8, PAD, PAD]]);
    // The first prompt_len + 2 = 5 positions and the padding are masked out.
    let (f, t) = (false, true);
    assert_eq!(b.chosen_mask, [vec![f, f, f, f, f, t, t, f]]);
    assert_eq!(b.rejected_mask, [vec![f, f, f, f, f, t, f, f]]);
    // Without prompt masking only padding is masked; a length cap truncates rows and masks.
    let b = collate_preferences(&[item], Some(6), false).unwrap();
    assert_eq!(b.chosen_mask, [vec![t, t, t, t, t, t]]);
    assert_eq!(b.rejected[0].len(), 6);
    assert!(collate_preferences(&[], None, true).is_err());
}

#[test]
fn bad_entries_name_the_entry_and_the_field() {
    let ok = r#"{"instruction": "i", "input": "", "output": "o", "chosen": "c", "rejected": "r"}"#;
    let cases = [
        (
            format!(r#"[{ok}, {{"instruction": "i", "input": "", "rejected": "r"}}]"#),
            "entry 1: missing string field \"chosen\"",
        ),
        (
            r#"[{"instruction": "i", "input": "", "chosen": "c", "rejected": "  "}]"#.to_string(),
            "entry 0: \"rejected\" is empty",
        ),
        ("{}".to_string(), "expected a JSON list"),
        ("[".to_string(), "not valid JSON"),
    ];
    for (text, want) in cases {
        let e = parse_preference_json(&text, "prefs.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want) && e.contains("prefs.json"), "{e}");
    }
    assert_eq!(
        parse_preference_json(&format!("[{ok}]"), "x")
            .unwrap()
            .len(),
        1
    );
}
