//! The book's training loop with the model on a device (the engine on emulated `cuda:0`), against
//! the same loop on the CPU: the same losses step for step — with dropout, whose masks are the
//! same on both devices — the same evaluation lines, and weights and optimizer state that
//! checkpoints read where they live.

use scratchgpt::backend::cuda;
use scratchgpt::data::{split_train_val, BpeTokenizer, DataLoader, GptDataset};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig, LrSchedule};
use scratchgpt::train::{engine_for, train_with_engine, TrainEvent, TrainOptions, TrainState};
use scratchgpt::Device;

const VERDICT: &str = include_str!("../data/the-verdict.txt");

fn loaders(ctx: usize) -> (DataLoader, DataLoader) {
    let tok = BpeTokenizer::gpt2();
    let (train, val) = split_train_val(VERDICT, 0.9).unwrap();
    let ds = |t: &str| GptDataset::new(&tok.encode(t).unwrap(), ctx, ctx).unwrap();
    (
        DataLoader::new(ds(train), 2, true, true, 1).unwrap(),
        DataLoader::new(ds(val), 2, false, false, 1).unwrap(),
    )
}

/// Step losses and eval losses of 4 steps of the tiny model (context 16) on either device.
fn run(on_gpu: bool, drop_rate: f64) -> (Vec<f64>, Vec<f64>, GptModel, AdamW) {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.context_length = 16;
    cfg.drop_rate = drop_rate;
    let model = GptModel::new(&cfg, 11).unwrap();
    let mut opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr: 1e-3,
            ..AdamWConfig::default()
        },
    );
    let (mut tl, mut vl) = loaders(16);
    let opts = TrainOptions {
        num_epochs: 1,
        eval_freq: 2,
        eval_iter: 1,
        start_context: "Every effort".into(),
        max_steps: Some(4),
        seed: 3,
        schedule: LrSchedule::constant(1e-3),
        clip: Some(1.0),
        sample_tokens: 2,
        grad_accum: 1,
        save: None,
        stop: None,
    };
    let (mut steps, mut evals) = (Vec::new(), Vec::new());
    let mut state = TrainState::default();
    {
        let device = if on_gpu {
            cuda::install_emulator(0);
            Device::Cuda(0)
        } else {
            Device::Cpu
        };
        let mut engine = engine_for(device, &model, &mut opt).unwrap();
        train_with_engine(
            engine.as_mut(),
            &mut tl,
            &mut vl,
            &opts,
            BpeTokenizer::gpt2(),
            &mut state,
            |e| match e {
                TrainEvent::Step { loss, .. } => steps.push(*loss),
                TrainEvent::Eval { val_loss, .. } => evals.push(*val_loss),
                _ => {}
            },
        )
        .unwrap();
    }
    (steps, evals, model, opt)
}

#[test]
fn the_engine_on_a_device_trains_like_on_the_cpu() {
    check(0.0);
}

#[test]
fn the_engine_on_a_device_trains_like_on_the_cpu_with_dropout() {
    check(0.1);
}

fn check(drop_rate: f64) {
    let (cpu_steps, cpu_evals, cpu_model, cpu_opt) = run(false, drop_rate);
    let (gpu_steps, gpu_evals, gpu_model, gpu_opt) = run(true, drop_rate);
    assert_eq!(gpu_model.device(), Device::Cuda(0));
    assert_eq!(cpu_steps.len(), 4);
    assert_eq!(gpu_steps.len(), 4);
    for (c, g) in cpu_steps
        .iter()
        .zip(&gpu_steps)
        .chain(cpu_evals.iter().zip(&gpu_evals))
    {
        assert!(
            (c - g).abs() <= 1e-4 * c.abs(),
            "losses: cpu {cpu_steps:?} {cpu_evals:?} vs gpu {gpu_steps:?} {gpu_evals:?}"
        );
    }
    // The device run's weights and optimizer state read back from the device. Adam moves a
    // weight by about lr per step whatever the gradient's size, so weights whose gradients are
    // rounding noise may differ by up to that; a missing sync or a skipped update would differ by
    // several steps' worth (4 steps × lr).
    assert_eq!(gpu_opt.t, cpu_opt.t);
    for ((name, c), (_, g)) in cpu_model
        .named_parameters()
        .iter()
        .zip(gpu_model.named_parameters().iter())
    {
        let (c, g) = (c.to_vec().unwrap(), g.to_vec().unwrap());
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = c
            .iter()
            .zip(&g)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-3,
            "{name}: weights differ by {diff} (scale {scale}; lr 1e-3)"
        );
    }
    for (c, g) in cpu_opt.state.iter().zip(&gpu_opt.state) {
        assert_eq!(c.name, g.name);
        let diff =
            c.v.to_vec()
                .unwrap()
                .iter()
                .zip(g.v.to_vec().unwrap().iter())
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let scale =
            c.v.to_vec()
                .unwrap()
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            diff <= 1e-3 * scale.max(1e-12),
            "{}: second moments differ by {diff} (scale {scale})",
            c.name
        );
    }
}
