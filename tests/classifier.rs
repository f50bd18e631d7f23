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
    let frozen_before = c.model.trf_blocks[0].ff.linears("ff")[0]
        .1
        .weight
        .to_vec()
        .unwrap();
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
        c.model.trf_blocks[0].ff.linears("ff")[0]
            .1
            .weight
            .to_vec()
            .unwrap(),
        frozen_before
    );
    assert!(
        c.model.trf_blocks[0].ff.linears("ff")[0]
            .1
            .weight
            .grad()
            .is_none(),
        "frozen parameters get no gradient buffer"
    );
    let acc = c.accuracy(&train, 8, None).unwrap();
    assert!(acc > 0.8, "training accuracy {acc}");
}

/// Texts a tiny model can separate: "spam" offers prizes, "ham" talks about lunch.
fn synthetic(n: usize) -> Vec<scratchgpt::finetune::spam_data::Message> {
    use scratchgpt::finetune::spam_data::Message;
    let spam = [
        "WIN a FREE prize now, call",
        "Claim your cash prize! Txt WIN",
        "Urgent! You won a free holiday, call now",
    ];
    let ham = [
        "see you at lunch later",
        "ok I'll be home soon",
        "can you pick up milk on the way",
    ];
    (0..n)
        .map(|i| Message {
            label: (i % 2) as u8,
            text: if i % 2 == 1 {
                format!("{} {}", spam[i % 3], i)
            } else {
                format!("{} {}", ham[i % 3], i)
            },
        })
        .collect()
}

#[test]
fn a_batch_targets_only_the_last_real_token_and_its_loss_is_the_classifier_loss() {
    use scratchgpt::train::calc_loss_batch;
    let tok = BpeTokenizer::gpt2();
    let data = SpamDataset::new(&synthetic(6), tok, None).unwrap();
    let b = data.batch(&[0, 3, 5]);
    let t = data.max_length;
    assert_eq!(b.inputs.shape(), &[3, t]);
    let targets = b.targets.data();
    for (row, &i) in [0usize, 3, 5].iter().enumerate() {
        for p in 0..t {
            let want = if p == data.lengths[i] - 1 {
                data.labels[i] as i64
            } else {
                -100
            };
            assert_eq!(targets[row * t + p], want, "row {row} position {p}");
        }
    }
    let c = Classifier::new(tiny(), 2, Trainable::LastBlocks(1), 2).unwrap();
    let ctx = ForwardCtx::eval();
    let rows: Vec<Vec<u32>> = [0, 3, 5].iter().map(|&i| data.ids[i].clone()).collect();
    let lengths: Vec<usize> = [0, 3, 5].iter().map(|&i| data.lengths[i]).collect();
    let labels: Vec<u8> = [0, 3, 5].iter().map(|&i| data.labels[i]).collect();
    let direct = c
        .loss(&rows, &lengths, &labels, &ctx)
        .unwrap()
        .item()
        .unwrap();
    let masked = calc_loss_batch(&c.model, &b, &ctx).unwrap().item().unwrap();
    assert!((direct - masked).abs() < 1e-6, "{direct} vs {masked}");
    // Drop-last batching and seeded shuffling.
    assert_eq!(data.batch_indices(4, None, true), vec![vec![0, 1, 2, 3]]);
    assert_eq!(data.batch_indices(4, None, false).len(), 2);
}

#[test]
fn train_classifier_simple_learns_prints_the_book_lines_and_is_deterministic() {
    use scratchgpt::finetune::classify_train::{
        train_classifier_simple, ClassifierEvent, ClassifierTrainOptions,
    };
    use scratchgpt::train::Engine;
    let tok = BpeTokenizer::gpt2();
    let train = SpamDataset::new(&synthetic(48), tok, None).unwrap();
    let val = SpamDataset::new(&synthetic(16), tok, Some(train.max_length)).unwrap();
    let run_once = || {
        let c = Classifier::new(tiny(), 2, Trainable::All, 2).unwrap();
        let mut opt = AdamW::new(
            c.model.named_parameters(),
            AdamWConfig {
                lr: 1e-3,
                weight_decay: 0.1,
                ..AdamWConfig::default()
            },
        );
        let mut engine = Engine::new(&c.model, &mut opt);
        let opts = ClassifierTrainOptions {
            num_epochs: 3,
            eval_freq: 4,
            eval_iter: 2,
            batch_size: 8,
            lr: 1e-3,
            ..ClassifierTrainOptions::default()
        };
        let mut lines = Vec::new();
        let run = train_classifier_simple(&mut engine, &train, &val, &opts, |e| {
            if let Some(l) = e.book_line() {
                lines.push(l);
            }
            if let ClassifierEvent::Step { loss, .. } = e {
                assert!(loss.is_finite());
            }
        })
        .unwrap();
        (run, lines)
    };
    let (run, lines) = run_once();
    assert_eq!(run.steps, 18);
    assert_eq!(run.examples_seen, 144);
    assert_eq!(lines[0].split(':').next(), Some("Ep 1 (Step 000000)"));
    assert!(lines[0].contains("Train loss") && lines[0].contains("Val loss"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("Training accuracy: ") && l.contains("% | Validation accuracy: ")));
    assert_eq!(run.train_accs.len(), 3);
    assert!(
        *run.val_accs.last().unwrap() >= 0.9,
        "validation accuracy {:?}",
        run.val_accs
    );
    assert!(run.train_losses.last().unwrap() < &run.train_losses[0]);
    let (again, _) = run_once();
    assert_eq!(
        run.train_losses, again.train_losses,
        "same seed, same losses"
    );
    assert_eq!(run.val_accs, again.val_accs);
}

#[test]
fn a_classifier_checkpoint_round_trips_with_its_labels() {
    use scratchgpt::train::checkpoint::{load_checkpoint, save_task_checkpoint, Task};
    use scratchgpt::train::TrainState;
    let c = Classifier::new(tiny(), 2, Trainable::LastBlocks(1), 2).unwrap();
    let dir = std::env::temp_dir().join(format!("scratchgpt-cls-ck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.safetensors");
    let labels = vec!["not spam".to_string(), "spam".to_string()];
    save_task_checkpoint(
        &path,
        &c.model,
        None,
        &TrainState::default(),
        &scratchgpt::train::checkpoint::RunInfo::gpt2(1),
        &Task::Classify {
            labels: labels.clone(),
            max_length: Some(120),
        },
    )
    .unwrap();
    let ck = load_checkpoint(&path).unwrap();
    assert_eq!(
        ck.task,
        Task::Classify {
            labels,
            max_length: Some(120)
        }
    );
    assert!(ck.optimizer.is_none());
    let back = Classifier::from_trained(ck.model).unwrap();
    let rows = vec![vec![5u32, 6, 7, 8]];
    assert_eq!(
        back.predict(&rows, &[3]).unwrap(),
        c.predict(&rows, &[3]).unwrap()
    );
    // Wrong label count for the head: refused.
    assert!(save_task_checkpoint(
        &path,
        &c.model,
        None,
        &TrainState::default(),
        &scratchgpt::train::checkpoint::RunInfo::gpt2(1),
        &Task::Classify {
            labels: vec!["a".into(), "b".into(), "c".into()],
            max_length: None,
        },
    )
    .is_err());
    assert!(Classifier::from_trained(tiny()).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
