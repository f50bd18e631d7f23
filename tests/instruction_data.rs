//! Chapter 7's data: the Alpaca format, the 935/110/55 split, and the book's collate check.

use scratchgpt::finetune::instruction_data::{
    collate, format_example, format_input, parse_instruction_json, read_instruction_json,
    split_instructions, IGNORE_INDEX,
};

const P: i64 = 50256;
const I: i64 = IGNORE_INDEX;

#[test]
fn the_books_collate_example() {
    let b = collate(
        &[vec![0, 1, 2, 3, 4], vec![5, 6], vec![7, 8, 9]],
        50256,
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        b.inputs,
        vec![
            vec![0, 1, 2, 3, 4],
            vec![5, 6, P, P, P],
            vec![7, 8, 9, P, P]
        ]
    );
    assert_eq!(
        b.targets,
        vec![
            vec![1, 2, 3, 4, P],
            vec![6, P, I, I, I],
            vec![8, 9, P, I, I]
        ]
    );
    let t = collate(&[vec![0, 1, 2, 3, 4], vec![5, 6]], 50256, Some(3), None).unwrap();
    assert_eq!(t.inputs, vec![vec![0, 1, 2], vec![5, 6, P]]);
    assert_eq!(t.targets, vec![vec![1, 2, 3], vec![6, P, I]]);
    // Exercise 7.2: prompts of 3 and 1 tokens are not learned.
    let m = collate(
        &[vec![0, 1, 2, 3, 4], vec![5, 6]],
        50256,
        None,
        Some(&[3, 1]),
    )
    .unwrap();
    assert_eq!(m.targets, vec![vec![I, I, 3, 4, P], vec![6, P, I, I, I]]);
    assert!(collate(&[], 50256, None, None).is_err());
}

#[test]
fn the_alpaca_format_and_the_split() {
    let data = read_instruction_json(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/instruction-data.json"
    ))
    .unwrap();
    assert_eq!(data.len(), 1100);
    let (train, test, val) = split_instructions(&data).unwrap();
    assert_eq!((train.len(), test.len(), val.len()), (935, 110, 55));
    assert_eq!(train[0], data[0]);
    assert_eq!(test[0], data[935]);
    assert_eq!(val[0], data[1045]);
    assert_eq!(
        format_example(&data[0]),
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nEvaluate the following phrase by transforming it into the spelling given.\n\n### Input:\nfreind --> friend\n\n### Response:\nThe spelling of the given phrase \"freind\" is incorrect, the correct spelling is \"friend\"."
    );
    assert!(
        !format_input(&data[2]).contains("### Input:"),
        "no input section when the input is empty"
    );
}

#[test]
fn bad_entries_are_named() {
    let e = parse_instruction_json(r#"[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "output": "d"}]"#, "x.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("entry 1") && e.contains("\"input\""), "{e}");
    assert!(parse_instruction_json("{}", "x.json")
        .unwrap_err()
        .to_string()
        .contains("list"));
    assert!(split_instructions(&[]).is_err());
}
