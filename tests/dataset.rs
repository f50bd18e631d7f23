//! Sliding-window data (book §2.6) and the embedding layers (§2.7–2.8).

use scratchgpt::data::dataset::Batch;
use scratchgpt::data::{split_train_val, BpeTokenizer, DataLoader, GptDataset};
use scratchgpt::nn::Embedding;
use scratchgpt::tensor::rng::Rng;
use scratchgpt::{Ids, Tensor};

const VERDICT: &str = include_str!("../data/the-verdict.txt");

fn loader(
    text: &str,
    batch: usize,
    max_length: usize,
    stride: usize,
    shuffle: bool,
    drop_last: bool,
) -> DataLoader {
    let ids = BpeTokenizer::gpt2()
        .encode_with_special(text, &["<|endoftext|>"])
        .unwrap();
    DataLoader::new(
        GptDataset::new(&ids, max_length, stride).unwrap(),
        batch,
        shuffle,
        drop_last,
        123,
    )
    .unwrap()
}

#[test]
fn first_batches_match_the_book() {
    let mut dl = loader(VERDICT, 1, 4, 1, false, false);
    let batches = dl.epoch();
    assert_eq!(batches[0].inputs.data(), &[40, 367, 2885, 1464]);
    assert_eq!(batches[0].targets.data(), &[367, 2885, 1464, 1807]);
    assert_eq!(batches[1].inputs.data(), &[367, 2885, 1464, 1807]);
    assert_eq!(batches[1].targets.data(), &[2885, 1464, 1807, 3619]);
    // batch 8, max_length 4, stride 4: no overlap between windows
    let mut dl = loader(VERDICT, 8, 4, 4, false, false);
    let b = &dl.epoch()[0];
    assert_eq!(b.inputs.shape(), &[8, 4]);
    assert_eq!(
        &b.inputs.data()[..8],
        &[40, 367, 2885, 1464, 1807, 3619, 402, 271]
    );
}

#[test]
fn train_val_split_gives_the_books_batch_counts() {
    let (train, val) = split_train_val(VERDICT, 0.9).unwrap();
    assert_eq!(
        train.chars().count() + val.chars().count(),
        VERDICT.chars().count()
    );
    let train_dl = loader(train, 2, 256, 256, true, true);
    let val_dl = loader(val, 2, 256, 256, false, false);
    assert_eq!(train_dl.num_batches(), 9);
    assert_eq!(val_dl.num_batches(), 1);
}

#[test]
fn shuffling_is_seeded_and_changes_per_epoch() {
    let mut a = loader(VERDICT, 4, 16, 16, true, true);
    let mut b = loader(VERDICT, 4, 16, 16, true, true);
    let (a1, b1): (Vec<Batch>, Vec<Batch>) = (a.epoch(), b.epoch());
    assert!(a1 == b1, "same seed, same order");
    let a2 = a.epoch();
    assert!(a1 != a2, "a new order each epoch");
    // without drop_last every window appears exactly once per epoch
    let mut c = loader(VERDICT, 4, 16, 16, true, false);
    let windows = |bs: Vec<Batch>| {
        let mut w: Vec<Vec<i64>> = bs
            .iter()
            .flat_map(|b| {
                b.inputs
                    .data()
                    .chunks(16)
                    .map(|c| c.to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        w.sort();
        w
    };
    let (e1, e2) = (windows(c.epoch()), windows(c.epoch()));
    assert!(e1 == e2, "the same windows, reordered");
    assert_eq!(e1.len(), c.dataset().len());
}

#[test]
fn short_texts_are_clear_errors() {
    let ids = BpeTokenizer::gpt2().encode("Hello, world.").unwrap();
    let e = GptDataset::new(&ids, 256, 256).unwrap_err().to_string();
    assert!(e.contains("4 tokens") && e.contains("257"), "{e}");
    let ds = GptDataset::new(&ids, 2, 1).unwrap();
    assert_eq!(ds.len(), 2);
    assert!(
        DataLoader::new(ds, 3, false, true, 0).is_err(),
        "no complete batch"
    );
    assert!(split_train_val("abc", 1.5).is_err());
}

#[test]
fn token_and_positional_embeddings_make_the_input_embeddings() {
    // Book §2.8: vocab 50257, dim 256, batch 8 × context 4.
    let mut rng = Rng::new(123);
    let tok = Embedding::<f32>::new(50257, 256, &mut rng);
    let pos = Embedding::<f32>::new(4, 256, &mut rng);
    let mut dl = loader(VERDICT, 8, 4, 4, false, false);
    let batch = &dl.epoch()[0];
    let tok_emb = tok.forward(&batch.inputs).unwrap();
    assert_eq!(tok_emb.shape(), vec![8, 4, 256]);
    let pos_emb = pos.forward(&Ids::from_vec((0..4).collect())).unwrap();
    assert_eq!(pos_emb.shape(), vec![4, 256]);
    let input = tok_emb.add(&pos_emb).unwrap();
    assert_eq!(input.shape(), vec![8, 4, 256]);
    // row (0,1) is token 367's vector plus position 1's vector
    let want = tok.weight.get(&[367, 5]).unwrap() + pos.weight.get(&[1, 5]).unwrap();
    assert_eq!(input.get(&[0, 1, 5]).unwrap(), want);
    // gradients reach both tables: token rows used, and every position
    input.sum_all().unwrap().backward().unwrap();
    let gt = tok.weight.grad().unwrap().value().unwrap();
    assert_eq!(gt[[40, 0]], 1.0); // token 40 appears once in this batch
    assert_eq!(gt[[0, 0]], 0.0);
    assert_eq!(pos.weight.grad().unwrap().value().unwrap()[[2, 7]], 8.0); // once per batch row
    let _ = Tensor::<f32>::zeros(&[1]);
}
