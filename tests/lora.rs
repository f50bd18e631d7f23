//! LoRA (appendix E): the book's trainable-parameter count, an adapted model that starts equal
//! to its base, training that touches only the adapters (frozen weights get no gradient and no
//! optimizer state), merging, and adapter files.

use scratchgpt::finetune::classifier::{Classifier, Trainable};
use scratchgpt::finetune::lora::{load_lora_adapters, save_lora_adapters};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::checkpoint::{load_checkpoint, save_task_checkpoint, Task};
use scratchgpt::train::TrainState;
use scratchgpt::Ids;

fn tiny() -> GptModel {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = 0.0;
    GptModel::new(&cfg, 5).unwrap()
}

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("scratchgpt-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn trainable(m: &GptModel) -> usize {
    m.num_trainable_parameters()
}

fn ids() -> Ids {
    Ids::new((0..16).map(|i| (i * 37 % 50257) as i64).collect(), &[2, 8]).unwrap()
}

fn logits(m: &GptModel) -> Vec<f32> {
    scratchgpt::autograd::no_grad(|| m.forward(&ids(), &ForwardCtx::eval()))
        .unwrap()
        .to_vec()
        .unwrap()
}

/// Names of the parameters the optimizer would train (those that require a gradient).
fn trainable_names(model: &GptModel) -> Vec<String> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn rank_16_alpha_16_on_the_gpt2_small_classifier_trains_2_666_528_parameters() {
    // The book's appendix E count: every Linear of gpt2-small (12 × 6 per block) plus the new
    // 2-class head, 16·(in + out) each.
    let cfg = GptConfig::preset_with_context("gpt2-small", 256).unwrap();
    let c = Classifier::new(GptModel::new(&cfg, 1).unwrap(), 2, Trainable::All, 1).unwrap();
    let mut model = c.model;
    model.add_lora(16, 16.0, 123).unwrap();
    assert_eq!(trainable(&model), 2_666_528);
    assert_eq!(model.lora_settings(), Some((16, 16.0)));
}

#[test]
fn an_adapted_model_starts_equal_to_its_base_and_only_adapters_train() {
    let base = tiny();
    let before = logits(&base);
    let mut model = base.clone();
    model.add_lora(4, 8.0, 7).unwrap();
    // B = 0: the update is zero, the outputs are the base model's.
    assert_eq!(logits(&model), before);
    let names = trainable_names(&model);
    assert!(names.iter().all(|n| n.contains(".lora.")), "{names:?}");
    assert_eq!(names.len(), 2 * (6 * 2 + 1));

    // A few steps: the loss falls, only adapters change, frozen weights never get a gradient,
    // and the optimizer holds moments for the adapters alone.
    let mut opt = AdamW::new(
        model.named_parameters(),
        AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        },
    );
    assert_eq!(opt.state.len(), names.len());
    let targets = Ids::new((1..17).map(|i| (i * 37 % 50257) as i64).collect(), &[2, 8]).unwrap();
    let mut losses = Vec::new();
    for _ in 0..5 {
        opt.zero_grad();
        let loss = model
            .forward(&ids(), &ForwardCtx::eval())
            .unwrap()
            .cross_entropy(&targets)
            .unwrap();
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        for (name, p) in model.named_parameters() {
            assert_eq!(p.grad().is_some(), name.contains(".lora."), "{name}");
        }
        opt.step().unwrap();
    }
    assert!(losses[4] < losses[0], "{losses:?}");
    for ((name, a), (_, b)) in base.named_parameters().iter().zip(
        model
            .named_parameters()
            .iter()
            .filter(|(n, _)| !n.contains(".lora.")),
    ) {
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{name} changed");
    }

    // Merging folds the adapters in: same function, no adapters, base parameter names.
    let trained = logits(&model);
    assert_ne!(trained, before);
    let mut merged = model.clone();
    merged.merge_lora().unwrap();
    assert!(!merged.has_lora());
    let after = logits(&merged);
    let worst = trained
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "merged differs by {worst}");
    assert_eq!(
        merged.named_parameters().len(),
        base.named_parameters().len()
    );

    // Adapter files: only the adapters, reapplied to the same base give the same outputs.
    let dir = scratch_dir("lora");
    let path = dir.join("adapters.safetensors");
    save_lora_adapters(&path, &model).unwrap();
    let reloaded = load_lora_adapters(&path, base.clone()).unwrap();
    assert_eq!(logits(&reloaded), trained);
    // A different base shape is refused, naming the mismatch.
    let mut other = GptConfig::preset("tiny").unwrap();
    other.n_layers = 3;
    let e = load_lora_adapters(&path, GptModel::new(&other, 1).unwrap())
        .expect_err("wrong base")
        .to_string();
    assert!(e.contains("layers"), "{e}");
    // A weights-only checkpoint cannot silently drop adapters: saving refuses (a resumable one,
    // with the optimizer, keeps them unmerged: tests/finetune_resume.rs), and loading an
    // adapter file as a checkpoint is refused.
    let e = save_task_checkpoint(
        dir.join("ck.safetensors"),
        &model,
        None,
        &TrainState::default(),
        &scratchgpt::train::checkpoint::RunInfo::gpt2(1),
        &Task::Pretrain,
    )
    .expect_err("adapters")
    .to_string();
    assert!(e.contains("LoRA"), "{e}");
    assert!(load_checkpoint(&path).is_err());
}

#[test]
fn a_lora_classifier_keeps_its_head_in_the_adapter_file() {
    let c = Classifier::new(tiny(), 2, Trainable::All, 3).unwrap();
    let mut model = c.model;
    model.add_lora(2, 2.0, 9).unwrap();
    // Train B a little so the adapters are not zero.
    for (name, p) in model.named_parameters() {
        if name.ends_with(".lora.B") {
            let n = p.numel();
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
            p.set_value(
                scratchgpt::Tensor::from_vec(v, &p.shape())
                    .unwrap()
                    .value()
                    .unwrap(),
            )
            .unwrap();
        }
    }
    let dir = scratch_dir("lora-head");
    let path = dir.join("a.safetensors");
    save_lora_adapters(&path, &model).unwrap();
    // The base is the plain language model; the head comes from the file.
    let reloaded = load_lora_adapters(&path, tiny()).unwrap();
    assert_eq!(reloaded.cfg.num_classes, Some(2));
    assert_eq!(logits(&reloaded), logits(&model));
}

#[test]
fn lora_on_a_tied_model_unties_the_head_so_its_adapter_trains_and_is_saved() {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = 0.0;
    cfg.tie_weights = true;
    let base = GptModel::new(&cfg, 8).unwrap();
    let mut model = base.clone();
    model.add_lora(2, 2.0, 1).unwrap();
    assert!(!model.cfg.tie_weights);
    let names = trainable_names(&model);
    assert!(names.contains(&"out_head.lora.A".to_string()), "{names:?}");
    assert_eq!(names.len(), 2 * (6 * 2 + 1));
    // Same function as the tied base before training.
    assert_eq!(logits(&model), logits(&base));
    let dir = scratch_dir("lora-tied");
    let path = dir.join("a.safetensors");
    save_lora_adapters(&path, &model).unwrap();
    let reloaded = load_lora_adapters(&path, base.clone()).unwrap();
    assert_eq!(logits(&reloaded), logits(&model));
}

/// LoRA on Llama's and Qwen3's SwiGLU blocks: adapters on all seven projections (q, k, v, o,
/// gate, up, down) and the head, the model starting equal to its base, the file round trip, and
/// adapters refused on a base of another family (a Llama's and a Qwen3's adapters share names).
#[test]
fn lora_on_llama_and_qwen3_adapts_every_projection_and_knows_its_family() {
    let dir = scratch_dir("lora-decoders");
    let build = |preset: &str| {
        let mut cfg = GptConfig::preset(preset).unwrap();
        cfg.drop_rate = 0.0;
        GptModel::new(&cfg, 5).unwrap()
    };
    for (preset, other) in [("llama-tiny", "qwen3-tiny"), ("qwen3-tiny", "llama-tiny")] {
        let base = build(preset);
        let mut model = base.clone();
        model.add_lora(4, 8.0, 3).unwrap();
        assert_eq!(
            logits(&model),
            logits(&base),
            "{preset}: B = 0 starts at the base"
        );
        let adapted: Vec<String> = trainable_names(&model)
            .into_iter()
            .filter(|n| n.ends_with("lora.A"))
            .collect();
        // 2 layers × 7 projections + the head.
        assert_eq!(adapted.len(), 2 * 7 + 1, "{preset}: {adapted:?}");
        assert!(adapted.contains(&"trf_blocks.1.ff.fc3.lora.A".to_string()));
        assert!(trainable_names(&model).iter().all(|n| n.contains(".lora.")));
        let path = dir.join(format!("{preset}.safetensors"));
        save_lora_adapters(&path, &model).unwrap();
        let reloaded = load_lora_adapters(&path, base.clone()).unwrap();
        assert_eq!(logits(&reloaded), logits(&model));
        let e = load_lora_adapters(&path, build(other))
            .unwrap_err()
            .to_string();
        assert!(e.contains(preset.trim_end_matches("-tiny")), "{e}");
        let e = load_lora_adapters(&path, tiny()).unwrap_err().to_string();
        assert!(e.contains("gpt2"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
