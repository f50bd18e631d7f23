//! Llama 3 and Qwen3 `config.json` files in both forms transformers writes: the fixtures'
//! (transformers 5, `rope_parameters`) and the hub's (transformers 4, `rope_theta` +
//! `rope_scaling`, sometimes with `"type"`), giving the same settings; defaults where fields are
//! absent; and what the decoder does not run refused by name. The RoPE frequencies they give are
//! the fixture's (transformers' own `inv_freq`).

use scratchgpt::gpt::hf_decoder::{DecoderFamily, HfDecoderConfig};
use scratchgpt::ops::rope::Llama3Scaling;
use serde_json::{json, Value};

fn fixture(name: &str, file: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
            .join(file),
    )
    .unwrap()
}

fn parse(v: &Value) -> scratchgpt::Result<HfDecoderConfig> {
    HfDecoderConfig::parse(&v.to_string(), "config.json")
}

#[test]
fn the_fixture_configs_parse_to_their_models() {
    let llama = HfDecoderConfig::parse(&fixture("hf-llama-tiny", "config.json"), "llama").unwrap();
    assert_eq!(llama.family, DecoderFamily::Llama);
    assert_eq!(
        (llama.vocab_size, llama.hidden_size, llama.intermediate_size),
        (256, 64, 160)
    );
    assert_eq!(
        (
            llama.num_hidden_layers,
            llama.num_attention_heads,
            llama.num_key_value_heads,
            llama.head_dim
        ),
        (2, 4, 2, 16)
    );
    assert_eq!((llama.rms_norm_eps, llama.rope_theta), (1e-5, 500000.0));
    assert_eq!(
        llama.rope_scaling,
        Some(Llama3Scaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64
        })
    );
    assert!(llama.tie_word_embeddings && !llama.attention_bias);

    let qwen = HfDecoderConfig::parse(&fixture("hf-qwen3-tiny", "config.json"), "qwen").unwrap();
    assert_eq!(qwen.family, DecoderFamily::Qwen3);
    assert_eq!(
        (qwen.head_dim, qwen.hidden_size / qwen.num_attention_heads),
        (32, 16)
    );
    assert_eq!((qwen.rope_theta, qwen.rope_scaling), (1e6, None));
    assert_eq!(qwen.rms_norm_eps, 1e-6);

    // The frequencies the settings give are transformers' (expected.json["rope"]["inv_freq"],
    // float32; ours are f64: within f32 rounding).
    for (name, cfg) in [("hf-llama-tiny", &llama), ("hf-qwen3-tiny", &qwen)] {
        let expected: Value = serde_json::from_str(&fixture(name, "expected.json")).unwrap();
        let want: Vec<f64> = expected["rope"]["inv_freq_f64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let got = cfg.rope().unwrap().inv_freq();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{name}: {g} vs {w}"
            );
        }
    }
}

/// The fixture's config rewritten as transformers 4 wrote it (the hub's Llama 3.2 files).
fn transformers4(cfg: &Value, type_key: &str) -> Value {
    let mut v = cfg.clone();
    let mut params = v["rope_parameters"].clone();
    let obj = v.as_object_mut().unwrap();
    obj.remove("rope_parameters");
    obj.insert("rope_theta".into(), params["rope_theta"].take());
    let p = params.as_object_mut().unwrap();
    p.remove("rope_theta");
    let kind = p.remove("rope_type").unwrap();
    let scaling = if kind == "default" {
        Value::Null
    } else {
        p.insert(type_key.into(), kind);
        params
    };
    obj.insert("rope_scaling".into(), scaling);
    obj.remove("dtype");
    obj.insert("torch_dtype".into(), json!("bfloat16"));
    v
}

#[test]
fn transformers_4_configs_give_the_same_settings() {
    for name in ["hf-llama-tiny", "hf-qwen3-tiny"] {
        let v5: Value = serde_json::from_str(&fixture(name, "config.json")).unwrap();
        let want = parse(&v5).unwrap();
        for key in ["rope_type", "type"] {
            assert_eq!(
                parse(&transformers4(&v5, key)).unwrap(),
                want,
                "{name} {key}"
            );
        }
    }
}

#[test]
fn absent_fields_take_transformers_defaults() {
    let mut v: Value = serde_json::from_str(&fixture("hf-llama-tiny", "config.json")).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in [
        "head_dim",
        "num_key_value_heads",
        "rope_parameters",
        "tie_word_embeddings",
    ] {
        o.remove(k);
    }
    let c = parse(&v).unwrap();
    assert_eq!(c.head_dim, 64 / 4);
    assert_eq!(
        c.num_key_value_heads, 4,
        "no GQA without num_key_value_heads"
    );
    assert_eq!((c.rope_theta, c.rope_scaling), (10_000.0, None));
    assert!(!c.tie_word_embeddings);
}

#[test]
fn what_the_decoder_does_not_run_is_refused_by_name() {
    let base: Value = serde_json::from_str(&fixture("hf-qwen3-tiny", "config.json")).unwrap();
    let refused = |key: &str, value: Value, needle: &str| {
        let mut v = base.clone();
        v[key] = value;
        let e = parse(&v).expect_err(key).to_string();
        assert!(e.contains(needle), "{key}: {e}");
    };
    refused("model_type", json!("mistral"), "mistral");
    refused("hidden_act", json!("gelu"), "gelu");
    refused("use_sliding_window", json!(true), "sliding");
    refused("mlp_bias", json!(true), "mlp_bias");
    refused("num_key_value_heads", json!(3), "do not divide");
    refused(
        "rope_parameters",
        json!({"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}),
        "yarn",
    );
    refused(
        "rope_parameters",
        json!({"rope_type": "llama3", "rope_theta": 1e6}),
        "factor",
    );
    refused("head_dim", json!(31), "even");
    refused(
        "rope_parameters",
        json!({"rope_type": "default", "rope_theta": "big"}),
        "not a number",
    );
    // A theta outside the dict (a file mixing both forms) is still the theta.
    let mut mixed = base.clone();
    mixed["rope_parameters"] = json!({"rope_type": "default"});
    mixed["rope_theta"] = json!(123.0);
    assert_eq!(parse(&mixed).unwrap().rope_theta, 123.0);
    refused("vocab_size", json!("many"), "vocab_size");
    assert!(HfDecoderConfig::parse("{", "config.json").is_err());
}
