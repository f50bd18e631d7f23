//! Pretraining a tiny GPT on the-verdict: the loss falls, the same seed gives the same losses,
//! a NaN stops the run with the step, and the parameter count formula matches the book.

use scratchgpt::data::{split_train_val, BpeTokenizer, DataLoader, GptDataset};
use scratchgpt::gpt::{generate, GptConfig, GptModel, Sampling};
use scratchgpt::optim::{AdamW, AdamWConfig, LrSchedule};
use scratchgpt::train::checkpoint::{load_checkpoint, save_checkpoint};
use scratchgpt::train::{train_model_simple, TrainEvent, TrainOptions, TrainState};

const VERDICT: &str = include_str!("../data/the-verdict.txt");

fn tiny(drop_rate: f64) -> GptConfig {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = drop_rate;
    cfg
}

fn loaders(ctx: usize, batch: usize, seed: u64) -> (DataLoader, DataLoader) {
    let tok = BpeTokenizer::gpt2();
    let (train, val) = split_train_val(VERDICT, 0.9).unwrap();
    let ds = |t: &str| GptDataset::new(&tok.encode(t).unwrap(), ctx, ctx).unwrap();
    (
        DataLoader::new(ds(train), batch, true, true, seed).unwrap(),
        DataLoader::new(ds(val), batch, false, false, seed).unwrap(),
    )
}

fn run(cfg: &GptConfig, seed: u64, max_steps: usize, lr: f64) -> (Vec<f64>, Vec<f64>, GptModel) {
    let model = GptModel::new(cfg, seed).unwrap();
    let (mut tl, mut vl) = loaders(cfg.context_length, 4, seed);
    let mut opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr,
            ..AdamWConfig::default()
        },
    );
    let opts = TrainOptions {
        num_epochs: 10,
        eval_freq: 1000,
        eval_iter: 2,
        start_context: "Every effort moves you".into(),
        max_steps: Some(max_steps),
        seed,
        schedule: LrSchedule::constant(lr),
        clip: Some(1.0),
        sample_tokens: 5,
        grad_accum: 1,
        save: None,
        stop: None,
    };
    let mut step_losses = Vec::new();
    let mut state = TrainState::default();
    train_model_simple(
        &model,
        &mut opt,
        &mut tl,
        &mut vl,
        &opts,
        BpeTokenizer::gpt2(),
        &mut state,
        |e| {
            if let TrainEvent::Step { loss, .. } = e {
                step_losses.push(*loss);
            }
        },
    )
    .unwrap();
    (step_losses, state.val_losses, model)
}

#[test]
fn tiny_gpt_loss_falls_on_the_verdict() {
    let (losses, val, model) = run(&tiny(0.0), 7, 60, 2e-3);
    assert_eq!(losses.len(), 60);
    let first = losses[0];
    let last: f64 = losses[55..].iter().sum::<f64>() / 5.0;
    assert!(
        (first - (50257f64).ln()).abs() < 0.6,
        "initial loss {first} should be near ln(50257) = 10.8"
    );
    assert!(
        last < first - 3.0,
        "loss fell only from {first:.3} to {last:.3}"
    );
    assert_eq!(val.len(), 1, "evaluated at step 0 only (eval_freq 1000)");
    // sampling with temperature and top-k is seeded
    let prompt = BpeTokenizer::gpt2()
        .encode("Every effort moves you")
        .unwrap();
    let s = Sampling {
        temperature: 1.0,
        top_k: Some(20),
        top_p: None,
        eos_ids: Vec::new(),
        seed: 5,
    };
    let a = generate(&model, &prompt, 8, 32, &s).unwrap();
    assert_eq!(a, generate(&model, &prompt, 8, 32, &s).unwrap());
    assert_eq!(a.len(), prompt.len() + 8);
}

#[test]
fn the_same_seed_gives_the_same_losses_with_dropout() {
    let (a, _, _) = run(&tiny(0.1), 11, 6, 1e-3);
    let (b, _, _) = run(&tiny(0.1), 11, 6, 1e-3);
    assert_eq!(a, b);
    let (c, _, _) = run(&tiny(0.1), 12, 6, 1e-3);
    assert_ne!(a, c);
}

#[test]
fn a_nan_loss_stops_training_with_the_step() {
    let cfg = tiny(0.0);
    let model = GptModel::new(&cfg, 1).unwrap();
    let (mut tl, mut vl) = loaders(32, 4, 1);
    let mut opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr: 1e30,
            ..AdamWConfig::default()
        },
    );
    let opts = TrainOptions {
        num_epochs: 1,
        eval_freq: 1000,
        eval_iter: 1,
        start_context: "Every".into(),
        max_steps: Some(20),
        seed: 1,
        schedule: LrSchedule::constant(1e30),
        clip: None,
        sample_tokens: 1,
        grad_accum: 1,
        save: None,
        stop: None,
    };
    let mut state = TrainState::default();
    let e = train_model_simple(
        &model,
        &mut opt,
        &mut tl,
        &mut vl,
        &opts,
        BpeTokenizer::gpt2(),
        &mut state,
        |_| {},
    )
    .unwrap_err();
    // Step 0 applied the huge update; its evaluation is the first loss that sees NaN weights.
    let e = e.to_string();
    assert!(
        e.contains("after step 0") && e.contains("not finite"),
        "{e}"
    );
}

#[test]
fn parameter_counts_match_the_book() {
    let mut cfg = GptConfig::preset("gpt2-small").unwrap();
    assert_eq!(cfg.num_parameters(), 163_009_536);
    assert_eq!(
        cfg.num_parameters() - cfg.vocab_size * cfg.emb_dim,
        124_412_160,
        "considering weight tying"
    );
    cfg.tie_weights = true;
    assert_eq!(cfg.num_parameters(), 124_412_160);
    // the model agrees with the formula, and a tied head is one shared parameter
    let mut t = tiny(0.0);
    t.tie_weights = true;
    let m = GptModel::new(&t, 0).unwrap();
    assert_eq!(m.num_parameters(), t.num_parameters());
    assert_eq!(m.out_head.weight.id(), m.tok_emb.weight.id());
    for (name, want) in [
        ("gpt2-medium", (1024, 24, 16)),
        ("gpt2-large", (1280, 36, 20)),
        ("gpt2-xl", (1600, 48, 25)),
    ] {
        let c = GptConfig::preset(name).unwrap();
        assert_eq!((c.emb_dim, c.n_layers, c.n_heads), want);
    }
    assert!(GptConfig::preset("gpt5").is_err());
}

fn options(seed: u64, max_steps: usize) -> TrainOptions {
    TrainOptions {
        num_epochs: 5,
        eval_freq: 4,
        eval_iter: 2,
        start_context: "Every effort".into(),
        max_steps: Some(max_steps),
        seed,
        schedule: LrSchedule {
            peak_lr: 1e-3,
            initial_lr: 1e-5,
            min_lr: 1e-4,
            warmup_steps: 3,
            total_steps: 14,
            cosine: true,
        },
        clip: Some(1.0),
        sample_tokens: 3,
        grad_accum: 1,
        save: None,
        stop: None,
    }
}

/// Trains until `max_steps`, from `state`, returning the step losses seen.
fn train_to(
    model: &GptModel,
    opt: &mut AdamW,
    state: &mut TrainState,
    max_steps: usize,
) -> Vec<f64> {
    let (mut tl, mut vl) = loaders(32, 16, 9);
    let mut losses = Vec::new();
    train_model_simple(
        model,
        opt,
        &mut tl,
        &mut vl,
        &options(9, max_steps),
        BpeTokenizer::gpt2(),
        state,
        |e| {
            if let TrainEvent::Step { loss, .. } = e {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    losses
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_losses() {
    let cfg = tiny(0.1);
    // uninterrupted: 14 steps (9 batches per epoch, so the run crosses an epoch boundary)
    let model = GptModel::new(&cfg, 9).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let mut state = TrainState::default();
    let straight = train_to(&model, &mut opt, &mut state, 14);
    assert_eq!(straight.len(), 14);

    // interrupted after 6 steps, checkpointed, restored into fresh objects, continued
    let model = GptModel::new(&cfg, 9).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let mut state = TrainState::default();
    let first = train_to(&model, &mut opt, &mut state, 6);
    let path = std::env::temp_dir().join(format!(
        "scratchgpt-resume-{}.safetensors",
        std::process::id()
    ));
    save_checkpoint(&path, &model, &opt, &state, 9).unwrap();
    drop((model, opt));
    let ck = load_checkpoint(&path).unwrap();
    assert_eq!(ck.state, {
        let mut s = state.clone();
        s.train_secs = 0.0;
        s.session_tokens = 0;
        s
    });
    let mut opt = ck.optimizer.unwrap();
    let mut state = ck.state;
    let rest = train_to(&ck.model, &mut opt, &mut state, 14);
    assert_eq!(
        [first, rest].concat(),
        straight,
        "a resumed run must give the same losses, bit for bit"
    );

    // a truncated checkpoint is a clear error, and so is a non-checkpoint file
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_checkpoint(&path).err().expect("truncated").to_string();
    assert!(e.contains("checkpoint"), "{e}");
    std::fs::write(&path, b"hello").unwrap();
    assert!(load_checkpoint(&path).is_err());
    std::fs::remove_file(&path).unwrap();
    assert!(load_checkpoint(&path).is_err());
}

#[test]
fn freezing_stops_gradients_and_updates() {
    let model = GptModel::new(&tiny(0.0), 3).unwrap();
    model.freeze_all();
    assert_eq!(model.unfreeze("trf_blocks.1."), 13);
    assert_eq!(model.unfreeze("final_norm."), 2);
    let (mut tl, _) = loaders(32, 4, 3);
    let batch = &tl.epoch()[0];
    let loss =
        scratchgpt::train::calc_loss_batch(&model, batch, &scratchgpt::nn::ForwardCtx::eval())
            .unwrap();
    loss.backward().unwrap();
    for (name, p) in model.named_parameters() {
        let trainable = name.starts_with("trf_blocks.1.") || name.starts_with("final_norm.");
        assert_eq!(p.grad().is_some(), trainable, "{name}");
    }
    let frozen = model.tok_emb.weight.to_vec().unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    opt.step().unwrap();
    assert_eq!(
        model.tok_emb.weight.to_vec().unwrap(),
        frozen,
        "frozen weights do not move"
    );
}

/// Trains `steps` optimizer steps of `accum` micro-batches of `batch` sequences (dropout 0),
/// returning the step losses and the final weights.
fn accumulated(batch: usize, accum: usize, steps: usize) -> (Vec<f64>, Vec<Vec<f32>>) {
    let cfg = tiny(0.0);
    let model = GptModel::new(&cfg, 5).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let (mut tl, mut vl) = loaders(32, batch, 5);
    let mut opts = options(5, steps);
    opts.grad_accum = accum;
    opts.eval_freq = 1000;
    let mut losses = Vec::new();
    train_model_simple(
        &model,
        &mut opt,
        &mut tl,
        &mut vl,
        &opts,
        BpeTokenizer::gpt2(),
        &mut TrainState::default(),
        |e| {
            if let TrainEvent::Step { loss, .. } = e {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    let weights = model
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    (losses, weights)
}

#[test]
fn gradient_accumulation_trains_as_the_big_batch_does() {
    // 3 micro-batches of 2 = one batch of 6: the same windows (the shuffle does not depend on
    // the batch size), the same mean loss, the same gradient — so the same AdamW steps, to f32
    // rounding (the sums are ordered differently).
    let (big_losses, big_w) = accumulated(6, 1, 5);
    let (acc_losses, acc_w) = accumulated(2, 3, 5);
    assert_eq!(big_losses.len(), 5);
    assert_eq!(acc_losses.len(), 5);
    for (a, b) in big_losses.iter().zip(&acc_losses) {
        assert!((a - b).abs() < 1e-4 * a.abs(), "loss {a} vs {b}");
    }
    let mut worst = 0.0f32;
    for (a, b) in big_w.iter().zip(&acc_w) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    // lr 1e-3 × 5 steps: a weight moves by up to ~5e-3; rounding differences stay far below.
    assert!(worst < 2e-5, "weights differ by {worst}");
    // And accumulation is not a no-op: 2 sequences per step train differently.
    let (small_losses, _) = accumulated(2, 1, 5);
    assert_ne!(small_losses, acc_losses);
}

#[test]
fn a_loss_plot_with_non_finite_values_is_drawn() {
    // A diverged run's losses (NaN, ∞) must not hang or break the figure.
    let path = std::env::temp_dir().join(format!("scratchgpt-nanplot-{}.png", std::process::id()));
    scratchgpt::train::plot::plot_losses(
        &path,
        1.0,
        &[1, 2, 3],
        &[5.0, f64::NAN, f64::INFINITY],
        &[6.0, f64::NAN, 4.0],
    )
    .unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    scratchgpt::train::plot::plot_losses(&path, 1.0, &[1], &[f64::NAN], &[f64::NAN]).unwrap();
    std::fs::remove_file(&path).unwrap();
}
