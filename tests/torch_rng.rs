//! `--init torch`: our PyTorch-compatible generator draws what torch 2.15 drew after
//! `torch.manual_seed(123)` for a sequence of `uniform_`, `normal_` (vectorised and scalar
//! paths), `nn.Linear` and `nn.Embedding` initialisations (tests/fixtures/torch-rng).

use scratchgpt::nn::{Embedding, Linear};
use scratchgpt::tensor::rng::Rng;
use scratchgpt::Tensor;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Uniform draws must be bit-exact; normals may differ in the last bit (PyTorch's AVX2 build
/// uses SLEEF's ln/cos/sin, we use the C library's).
fn check(what: &str, got: &[f32], want: &[f32], exact: bool) {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
        if exact {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: {g} vs {w}");
        } else {
            assert!(
                (g - w).abs() <= 64.0 * f32::EPSILON * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }
    eprintln!("{what}: worst relative difference {worst:e}");
}

#[test]
fn the_torch_generator_draws_what_pytorch_draws() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/torch-rng/expected.json")).unwrap();
    let mut rng = Rng::torch(fixture["seed"].as_u64().unwrap());
    let mut checked = 0;
    for step in fixture["sequence"].as_array().unwrap() {
        let shape: Vec<usize> = step["shape"]
            .as_array()
            .map(|s| s.iter().map(|d| d.as_u64().unwrap() as usize).collect())
            .unwrap_or_default();
        match step["op"].as_str().unwrap() {
            "uniform" => {
                let t = Tensor::<f32>::uniform_from(
                    &shape,
                    step["low"].as_f64().unwrap(),
                    step["high"].as_f64().unwrap(),
                    &mut rng,
                );
                check(
                    "uniform_",
                    &t.to_vec().unwrap(),
                    &floats(&step["values"]),
                    true,
                );
            }
            "normal" => {
                let t = Tensor::<f32>::normal_from(
                    &shape,
                    step["mean"].as_f64().unwrap(),
                    step["std"].as_f64().unwrap(),
                    &mut rng,
                );
                check(
                    "normal_",
                    &t.to_vec().unwrap(),
                    &floats(&step["values"]),
                    false,
                );
            }
            "linear" => {
                let (i, o) = (step["in"].as_u64().unwrap(), step["out"].as_u64().unwrap());
                let l = Linear::<f32>::new(i as usize, o as usize, true, &mut rng);
                check(
                    "Linear.weight",
                    &l.weight.to_vec().unwrap(),
                    &floats(&step["weight"]),
                    true,
                );
                check(
                    "Linear.bias",
                    &l.bias.unwrap().to_vec().unwrap(),
                    &floats(&step["bias"]),
                    true,
                );
            }
            "embedding" => {
                let (n, d) = (step["num"].as_u64().unwrap(), step["dim"].as_u64().unwrap());
                let e = Embedding::<f32>::new(n as usize, d as usize, &mut rng);
                check(
                    "Embedding.weight",
                    &e.weight.to_vec().unwrap(),
                    &floats(&step["weight"]),
                    false,
                );
            }
            other => panic!("unknown op {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 9);
}

#[test]
fn the_scratchgpt_stream_is_unchanged_by_default() {
    // `Rng::new` keeps its own (SplitMix64) stream: existing seeds keep their weights.
    let a = Tensor::<f32>::uniform_from(&[4], 0.0, 1.0, &mut Rng::new(123));
    let b = Tensor::<f32>::uniform_from(&[4], 0.0, 1.0, &mut Rng::torch(123));
    assert_ne!(a.to_vec().unwrap(), b.to_vec().unwrap());
}

#[test]
fn torch_init_draws_the_golden_fixtures_initial_weights() {
    // tests/fixtures/book-gpt-tiny/weights.safetensors is PyTorch's GPTModel(cfg) right after
    // torch.manual_seed(123): our `--init torch` must build the same weights, tensor by tensor.
    use scratchgpt::gpt::safetensors_io::read_safetensors;
    use scratchgpt::gpt::{GptConfig, GptModel};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/book-gpt-tiny");
    let cfg = GptConfig {
        vocab_size: 512,
        context_length: 32,
        emb_dim: 48,
        n_heads: 4,
        n_layers: 2,
        drop_rate: 0.0,
        qkv_bias: false,
        tie_weights: false,
        num_classes: None,
        arch: scratchgpt::gpt::Architecture::Gpt2,
    };
    let model = GptModel::new_torch_init(&cfg, 123).unwrap();
    let want = read_safetensors(format!("{dir}/weights.safetensors")).unwrap();
    let mut n = 0;
    for (name, p) in model.named_parameters() {
        let w = want[&name].to_tensor(&name).unwrap().to_vec().unwrap();
        let exact = !name.ends_with("emb.weight"); // embeddings are the vectorised normals
        check(&name, &p.to_vec().unwrap(), &w, exact);
        n += 1;
    }
    assert_eq!(n, 31);
}
