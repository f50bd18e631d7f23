//! The chapter-6 spam data: the file as plain lines, the book's balanced split sizes, padding to
//! the longest training text, and malformed input as clear errors.

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::spam_data::{
    balance_and_split, parse_spam_tsv, read_spam_tsv, SpamDataset, PAD_ID,
};

const TSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/SMSSpamCollection.tsv");

#[test]
fn the_file_and_the_books_split_sizes() {
    let m = read_spam_tsv(TSV).unwrap();
    assert_eq!(m.len(), 5574);
    assert_eq!(m.iter().filter(|x| x.label == 0).count(), 4827);
    assert_eq!(m.iter().filter(|x| x.label == 1).count(), 747);
    let s = balance_and_split(&m, 123).unwrap();
    assert_eq!(
        (s.train.len(), s.validation.len(), s.test.len()),
        (1045, 149, 300)
    );
    let all: Vec<_> = s.train.iter().chain(&s.validation).chain(&s.test).collect();
    assert_eq!(
        all.iter().filter(|x| x.label == 1).count(),
        747,
        "balanced: every spam, as much ham"
    );
    // Seeded: the same seed gives the same split, another seed another.
    let again = balance_and_split(&m, 123).unwrap();
    assert_eq!(s.train, again.train);
    assert_ne!(s.train, balance_and_split(&m, 124).unwrap().train);
}

#[test]
fn padding_to_the_longest_training_text() {
    let m = read_spam_tsv(TSV).unwrap();
    let s = balance_and_split(&m, 123).unwrap();
    let tok = BpeTokenizer::gpt2();
    let train = SpamDataset::new(&s.train, tok, None).unwrap();
    let val = SpamDataset::new(&s.validation, tok, Some(train.max_length)).unwrap();
    assert!(
        train.max_length > 50,
        "the longest training message has {} tokens",
        train.max_length
    );
    assert!(train.ids.iter().all(|r| r.len() == train.max_length));
    assert!(val.ids.iter().all(|r| r.len() == train.max_length));
    for (row, &len) in train.ids.iter().zip(&train.lengths) {
        assert!(row[len..].iter().all(|&t| t == PAD_ID));
        assert!(len > 0);
    }
    let first = tok.encode(&s.train[0].text).unwrap();
    assert_eq!(&train.ids[0][..first.len()], &first[..]);
}

#[test]
fn malformed_files_name_the_line() {
    let e = parse_spam_tsv("ham\thello\nno tab here\n", "x.tsv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("no tab"), "{e}");
    let e = parse_spam_tsv("ham\thello\neggs\tbacon\n", "x.tsv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("\"eggs\""), "{e}");
    assert!(parse_spam_tsv("\n\n", "x.tsv")
        .unwrap_err()
        .to_string()
        .contains("no messages"));
    let few = parse_spam_tsv("ham\ta\nspam\tb\n", "x.tsv").unwrap();
    let e = balance_and_split(&few, 1).unwrap_err().to_string();
    assert!(e.contains("split is empty"), "{e}");
    assert!(read_spam_tsv("/nonexistent/spam.tsv").is_err());
}
