//! The chapter-6 classifier: which parameters train, the prediction read at the last real token
//! (padding-invariant), and a few steps that learn.

use scratchgpt::data::BpeTokenizer;
use scratchgpt::finetune::classifier::{Classifier, Trainable};
use scratchgpt::finetune::spam_data::{balance_and_split, read_spam_tsv, SpamDataset, PAD_ID};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};

fn tiny() -> GptModel {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = 0.0;
    GptModel::new(&cfg, 4).unwrap()
}

#[test]
fn only_the_head_final_norm_and_last_block_train() {
    let c = Classifier::new(tiny(), 2, Trainable::LastBlocks(1), 1).unwrap();
    let params = c.model.named_parameters();
    for (name, p) in &params {
        let want = name.starts_with("out_head.")
            || name.starts_with("final_norm.")
            || name.starts_with("trf_blocks.1.");
        assert_eq!(p.requires_grad(), want, "{name}");
    }
    assert_eq!(c.model.out_head.weight.shape(), vec![2, 48]);
    let expected: usize = params
        .iter()
        .filter(|(n, _)| {
            n.starts_with("out_head.")
                || n.starts_with("final_norm.")
                || n.starts_with("trf_blocks.1.")
        })
        .map(|(_, p)| p.numel())
        .sum();
    assert_eq!(c.trainable_parameters(), expected);
    assert_eq!(
        Classifier::new(tiny(), 2, Trainable::All, 1)
            .unwrap()
            .trainable_parameters(),
        c.model.num_parameters()
    );
    assert!(Classifier::new(tiny(), 2, Trainable::LastBlocks(3), 1).is_err());
    assert!(Classifier::new(tiny(), 1, Trainable::All, 1).is_err());
}

#[test]
fn the_prediction_does_not_depend_on_padding() {
    let c = Classifier::new(tiny(), 2, Trainable::LastBlocks(1), 1).unwrap();
    let text: Vec<u32> = vec![3, 1000, 42, 77];
    let mut padded = text.clone();
    padded.extend([PAD_ID; 6]);
    let ctx = ForwardCtx::eval();
    let short = c
        .logits(std::slice::from_ref(&text), &[4], &ctx)
        .unwrap()
        .to_vec()
        .unwrap();
    let long = c
        .logits(&[padded.clone()], &[4], &ctx)
        .unwrap()
        .to_vec()
        .unwrap();
    for (a, b) in short.iter().zip(&long) {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "{short:?} vs {long:?}"
        );
    }
    // The book's choice — the last position — reads the padding and changes the answer.
    let last = c.logits(&[padded], &[10], &ctx).unwrap().to_vec().unwrap();
    assert!(
        short.iter().zip(&last).any(|(a, b)| (a - b).abs() > 1e-4),
        "{short:?} vs {last:?}"
    );
    assert!(c.logits(std::slice::from_ref(&text), &[5], &ctx).is_err());
    assert!(c.logits(&[text], &[0], &ctx).is_err());
}

#[test]
fn a_few_steps_on_spam_messages_lower_the_loss_and_leave_frozen_weights_alone() {
    let m = read_spam_tsv(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/SMSSpamCollection.tsv"
    ))
    .unwrap();
    let s = balance_and_split(&m, 123).unwrap();
    let tok = BpeTokenizer::gpt2();
    let train = SpamDataset::new(&s.train[..16], tok, Some(32)).unwrap();
    let c = Classifier::new(tiny(), 2, Trainable::LastBlocks(1), 2).unwrap();
    let frozen_before = c.model.trf_blocks[0].ff.fc1.weight.to_vec().unwrap();
    let mut opt = AdamW::new(
        c.model
            .named_parameters()
            .into_iter()
            .filter(|(_, p)| p.requires_grad())
            .collect(),
        AdamWConfig {
            lr: 5e-3,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        },
    );
    let ctx = ForwardCtx::eval();
    let mut losses = Vec::new();
    for _ in 0..12 {
        opt.zero_grad();
        let loss = c
            .loss(&train.ids, &train.lengths, &train.labels, &ctx)
            .unwrap();
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    assert!(losses[11] < 0.5 * losses[0], "losses {losses:?}");
    assert_eq!(
        c.model.trf_blocks[0].ff.fc1.weight.to_vec().unwrap(),
        frozen_before
    );
    assert!(
        c.model.trf_blocks[0].ff.fc1.weight.grad().is_none(),
        "frozen parameters get no gradient buffer"
    );
    let acc = c.accuracy(&train, 8, None).unwrap();
    assert!(acc > 0.8, "training accuracy {acc}");
}
