//! Llama 3 and Qwen3 on the one model: the transformers fixtures (`hf-llama-tiny`,
//! `hf-qwen3-tiny`) recomputed within their tolerances — logits at every position, loss, every
//! gradient's norm, greedy ids with and without the KV cache — from the files as saved and from
//! the forms real checkpoints take (a transformers-4 `config.json`, BF16, shards, an untied
//! head); export and reload; checkpoints keep the family; bad folders are clear errors.

use std::path::{Path, PathBuf};

use scratchgpt::gpt::hf_llama::{export_hf, load_hf, ExportDtype, ExportOptions};
use scratchgpt::gpt::reference_check::{check_hf_fixture, is_hf_fixture};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::nn::ForwardCtx;
use scratchgpt::Ids;
use serde_json::{json, Value};

const FIXTURES: [&str; 2] = ["hf-llama-tiny", "hf-qwen3-tiny"];

/// Our own fixtures, written by transformers 4.55 (benches/reference/make_hf_decoder_fixtures.py):
/// untied heads, BF16 weights in three shards with their index, transformers-4 configs.
const OWN_FIXTURES: [&str; 2] = [
    "hf-llama-untied-bf16-sharded",
    "hf-qwen3-untied-bf16-sharded",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scratchgpt-hf-llama-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of a fixture's model files (config, weights, expected values).
fn copy_fixture(name: &str, to: &Path) {
    for f in ["config.json", "model.safetensors", "expected.json"] {
        std::fs::copy(fixture(name).join(f), to.join(f)).unwrap();
    }
}

fn assert_all_ok(dir: &Path, label: &str) {
    let lines = check_hf_fixture(dir).unwrap();
    assert_eq!(lines.len(), 12, "{label}: {lines:?}");
    for l in &lines {
        assert!(l.ok, "{label}: {l:?}");
    }
}

fn logits(m: &GptModel, ids: &[i64]) -> Vec<f32> {
    m.forward(
        &Ids::new(ids.to_vec(), &[1, ids.len()]).unwrap(),
        &ForwardCtx::eval(),
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

#[test]
fn the_llama_and_qwen3_fixtures_pass_every_check() {
    for name in FIXTURES {
        assert!(is_hf_fixture(fixture(name)));
        assert_all_ok(&fixture(name), name);
        let m = load_hf(fixture(name)).unwrap();
        assert_eq!(m.cfg.arch.name(), &name[3..name.len() - 5]);
        assert!(m.pos_emb.is_none(), "rotary models have no position table");
        assert!(m.cfg.tie_weights);
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
        )
        .unwrap();
        // The file's numbers, counted as transformers counts them (a tied head once).
        let count = if name == "hf-llama-tiny" {
            102_720
        } else {
            115_136
        };
        assert_eq!(m.num_parameters(), count);
        assert_eq!(m.cfg.num_parameters(), count);
        assert_eq!(
            expected["grad_l2_norms"].as_object().unwrap().len(),
            m.named_parameters().len()
        );
    }
}

/// The forms real checkpoints take, each written by transformers itself: an untied head
/// (`lm_head.weight`), BF16 weights (upcast exactly), three shards named by an index (a layer
/// split across two of them), a transformers-4 `config.json`.
#[test]
fn untied_bf16_sharded_transformers_4_fixtures_pass_every_check() {
    for name in OWN_FIXTURES {
        let dir = fixture(name);
        assert!(is_hf_fixture(&dir));
        assert!(!dir.join("model.safetensors").exists());
        assert_all_ok(&dir, name);
        let m = load_hf(&dir).unwrap();
        assert!(!m.cfg.tie_weights, "{name}");
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        assert!(expected["grad_l2_norms"]
            .as_object()
            .unwrap()
            .contains_key("lm_head.weight"));
        // Every weight is a bf16 value: its low 16 bits are zero.
        for (n, p) in m.named_parameters() {
            assert!(
                p.to_vec()
                    .unwrap()
                    .iter()
                    .all(|x| x.to_bits() & 0xffff == 0),
                "{name} {n}"
            );
        }
    }
}

/// The hub's Llama 3.x and Qwen3 files are transformers-4 configs: a top-level `rope_theta` and a
/// `rope_scaling` dict (or null), `torch_dtype`. The same weights under that config pass the
/// same checks.
#[test]
fn a_transformers_4_config_gives_the_same_model() {
    for name in FIXTURES {
        let dir = temp(&format!("tf4-{name}"));
        copy_fixture(name, &dir);
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let params = cfg["rope_parameters"].take();
        cfg.as_object_mut().unwrap().remove("rope_parameters");
        cfg.as_object_mut().unwrap().remove("dtype");
        cfg["torch_dtype"] = json!("float32");
        cfg["rope_theta"] = params["rope_theta"].clone();
        cfg["rope_scaling"] = if params["rope_type"] == "llama3" {
            let mut s = params.clone();
            s.as_object_mut().unwrap().remove("rope_theta");
            s
        } else {
            Value::Null
        };
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        assert_all_ok(&dir, &format!("{name} (transformers-4 config)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Export writes a folder the loader reads back to the same model: F32 in one file exactly;
/// BF16 in shards (with `model.safetensors.index.json`) to bf16's rounding, every value the
/// nearest bf16 of ours.
#[test]
fn export_round_trips_in_f32_and_in_bf16_shards() {
    for name in FIXTURES {
        let m = load_hf(fixture(name)).unwrap();
        let ids: Vec<i64> = vec![3, 200, 17, 99, 45, 1, 255, 8];
        let want = logits(&m, &ids);

        let dir = temp(&format!("f32-{name}"));
        export_hf(&m, &dir, ExportOptions::default()).unwrap();
        let back = load_hf(&dir).unwrap();
        assert_eq!(back.cfg, m.cfg, "{name}");
        assert_eq!(logits(&back, &ids), want, "{name}: F32 export is exact");

        // Shards of at most 64 KB: the tiny model takes several files.
        let opts = ExportOptions {
            dtype: ExportDtype::Bf16,
            max_shard_bytes: Some(64 * 1024),
            ..ExportOptions::default()
        };
        export_hf(&m, &dir, opts).unwrap();
        assert!(
            !dir.join("model.safetensors").exists(),
            "the single file is replaced"
        );
        let index: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        let shards: std::collections::BTreeSet<&str> = index["weight_map"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(shards.len() >= 2, "{name}: {shards:?}");
        let bf = load_hf(&dir).unwrap();
        for ((n, a), (_, b)) in m.named_parameters().iter().zip(bf.named_parameters()) {
            for (x, y) in a.to_vec().unwrap().iter().zip(b.to_vec().unwrap()) {
                let rounded = scratchgpt::gpt::hf_weights::bf16_to_f32(
                    scratchgpt::gpt::hf_weights::f32_to_bf16(*x),
                );
                assert_eq!(rounded, y, "{name} {n}");
            }
        }
        let got = logits(&bf, &ids);
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            worst > 0.0 && worst < 0.1,
            "{name}: bf16 logits differ by {worst}"
        );
        // Back to one F32 file: the shards and index go.
        export_hf(&bf, &dir, ExportOptions::default()).unwrap();
        assert!(!dir.join("model.safetensors.index.json").exists());
        assert!(dir.join("model.safetensors").is_file());
        assert_eq!(logits(&load_hf(&dir).unwrap(), &ids), got);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// An untied model (Llama-3.1-8B, Qwen3-8B) stores `lm_head.weight` and uses it.
#[test]
fn an_untied_head_is_its_own_matrix() {
    for name in FIXTURES {
        let mut m = load_hf(fixture(name)).unwrap();
        m.cfg.tie_weights = false;
        let head: Vec<f32> = m
            .tok_emb
            .weight
            .to_vec()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, x)| x * 0.5 + (i % 7) as f32 * 0.01)
            .collect();
        m.out_head.weight = scratchgpt::Tensor::from_vec(head, &m.tok_emb.weight.shape())
            .unwrap()
            .requires_grad_(true);
        let ids: Vec<i64> = vec![5, 6, 7, 8];
        let want = logits(&m, &ids);
        let dir = temp(&format!("untied-{name}"));
        export_hf(&m, &dir, ExportOptions::default()).unwrap();
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["tie_word_embeddings"], false);
        let back = load_hf(&dir).unwrap();
        assert!(!back.cfg.tie_weights);
        assert_eq!(back.num_parameters(), m.num_parameters());
        assert_eq!(logits(&back, &ids), want);
        // Untied but no head in the file: an error, not a random head.
        let st = std::fs::read(dir.join("model.safetensors")).unwrap();
        let without = drop_tensor(&st, "lm_head.weight");
        std::fs::write(dir.join("model.safetensors"), without).unwrap();
        let e = load_hf(&dir).unwrap_err().to_string();
        assert!(e.contains("lm_head.weight"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A safetensors file without one tensor (or with an extra one), rewritten with the crate.
fn drop_tensor(bytes: &[u8], name: &str) -> Vec<u8> {
    rewrite(bytes, |n| n != name, None)
}

fn rewrite(
    bytes: &[u8],
    keep: impl Fn(&str) -> bool,
    extra: Option<(&str, Vec<usize>, Vec<f32>)>,
) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    if let Some((n, shape, v)) = extra {
        owned.push((
            n.to_string(),
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn bad_folders_are_clear_errors() {
    let name = "hf-llama-tiny";
    let dir = temp("bad");
    copy_fixture(name, &dir);
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    let err = |dir: &Path| load_hf(dir).map(|_| ()).unwrap_err().to_string();

    // An old checkpoint's rotary buffer is ignored; the model is unchanged.
    let with_buffer = rewrite(
        &original,
        |_| true,
        Some((
            "model.layers.0.self_attn.rotary_emb.inv_freq",
            vec![8],
            vec![1.0; 8],
        )),
    );
    std::fs::write(dir.join("model.safetensors"), &with_buffer).unwrap();
    assert_all_ok(&dir, "with an inv_freq buffer");

    // A tensor the family does not have (here: Qwen3's q_norm in a Llama) is refused by name.
    let extra = rewrite(
        &original,
        |_| true,
        Some((
            "model.layers.0.self_attn.q_norm.weight",
            vec![16],
            vec![1.0; 16],
        )),
    );
    std::fs::write(dir.join("model.safetensors"), &extra).unwrap();
    let e = err(&dir);
    assert!(e.contains("q_norm") && e.contains("llama"), "{e}");

    // A missing tensor.
    std::fs::write(
        dir.join("model.safetensors"),
        drop_tensor(&original, "model.layers.1.mlp.up_proj.weight"),
    )
    .unwrap();
    assert!(err(&dir).contains("model.layers.1.mlp.up_proj.weight"));

    // A truncated file.
    std::fs::write(
        dir.join("model.safetensors"),
        &original[..original.len() / 2],
    )
    .unwrap();
    assert!(err(&dir).contains("safetensors"), "{}", err(&dir));

    // No weights at all.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(err(&dir).contains("no weights"), "{}", err(&dir));

    // An index that points outside the folder, or at a shard without the tensor.
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}).to_string(),
    )
    .unwrap();
    assert!(
        err(&dir).contains("not a file name in this folder"),
        "{}",
        err(&dir)
    );
    std::fs::write(dir.join("shard.safetensors"), &original).unwrap();
    let mut map: serde_json::Map<String, Value> = safetensors::SafeTensors::deserialize(&original)
        .unwrap()
        .names()
        .into_iter()
        .map(|n| (n.to_string(), json!("shard.safetensors")))
        .collect();
    map.insert("model.extra.weight".into(), json!("shard.safetensors"));
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({ "weight_map": map }).to_string(),
    )
    .unwrap();
    assert!(err(&dir).contains("model.extra.weight"), "{}", err(&dir));
    std::fs::write(dir.join("model.safetensors.index.json"), "{not json").unwrap();
    assert!(err(&dir).contains("not valid JSON"), "{}", err(&dir));

    // A config of another family, or with what the decoder does not run.
    std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &original).unwrap();
    let cfg = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"silu\"", "\"gelu\"")).unwrap();
    assert!(err(&dir).contains("hidden_act"), "{}", err(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The family is part of a checkpoint: a Qwen3 saved and loaded is the same Qwen3 (GQA, head
/// size, norms' ε, RoPE and its scaling), not a GPT.
#[test]
fn checkpoints_keep_the_architecture() {
    use scratchgpt::train::checkpoint::{load_checkpoint, save_task_checkpoint, Task};
    for preset in ["llama-tiny", "qwen3-tiny", "llama3.2-1b"] {
        let mut cfg = GptConfig::preset(preset).unwrap();
        if preset == "llama3.2-1b" {
            // The real model's settings (scaling included) on a small body.
            cfg.vocab_size = 64;
            cfg.emb_dim = 32;
            cfg.n_layers = 1;
            cfg.context_length = 64;
            if let scratchgpt::gpt::Architecture::Llama(d) = &mut cfg.arch {
                d.hidden_dim = 48;
                d.head_dim = 8;
            }
        }
        let m = GptModel::new(&cfg, 5).unwrap();
        let dir = temp(&format!("ckpt-{preset}"));
        let path = dir.join("model.safetensors");
        save_task_checkpoint(
            &path,
            &m,
            None,
            &scratchgpt::train::TrainState::default(),
            &scratchgpt::train::checkpoint::RunInfo::gpt2(0),
            &Task::Pretrain,
        )
        .unwrap();
        let back = load_checkpoint(&path).unwrap().model;
        assert_eq!(back.cfg, m.cfg, "{preset}");
        let ids: Vec<i64> = vec![1, 2, 3, 4, 5];
        assert_eq!(logits(&back, &ids), logits(&m, &ids), "{preset}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The presets of the published models count what their model cards say.
#[test]
fn the_real_presets_have_the_published_sizes() {
    let count = |p: &str| GptConfig::preset(p).unwrap().num_parameters();
    assert_eq!(count("llama3.2-1b"), 1_235_814_400);
    assert_eq!(count("llama3.2-3b"), 3_212_749_824);
    // Qwen3-0.6B: 0.44B without the (tied) embedding.
    let qwen = GptConfig::preset("qwen3-0.6b").unwrap();
    assert_eq!(qwen.num_parameters(), 596_049_920);
    assert_eq!(
        qwen.num_parameters() - qwen.vocab_size * qwen.emb_dim,
        440_467_456
    );
    for p in GptConfig::PRESETS {
        GptConfig::preset(p).unwrap().validate().unwrap();
    }
}

/// A Llama trains on the bundled text like the book's GPT: the loss falls.
#[test]
fn a_tiny_llama_and_qwen3_learn() {
    use scratchgpt::optim::{AdamW, AdamWConfig};
    for preset in ["llama-tiny", "qwen3-tiny"] {
        let cfg = GptConfig::preset(preset).unwrap();
        let m = GptModel::new(&cfg, 1).unwrap();
        let mut opt = AdamW::new(
            m.named_parameters(),
            AdamWConfig {
                lr: 1e-2,
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
        );
        let ids = Ids::new((0..16).map(|i| (i * 37 % 500) as i64).collect(), &[2, 8]).unwrap();
        let targets = Ids::new(
            (0..16).map(|i| ((i + 1) * 37 % 500) as i64).collect(),
            &[2, 8],
        )
        .unwrap();
        let mut losses = Vec::new();
        for step in 0..15 {
            let loss = m
                .forward(&ids, &ForwardCtx::train(step))
                .unwrap()
                .cross_entropy(&targets)
                .unwrap();
            losses.push(loss.item().unwrap());
            opt.zero_grad();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        assert!(losses[14] < 0.5 * losses[0], "{preset}: {:?}", losses);
    }
}

/// A tied config whose file also stores `lm_head.weight`: equal to the embedding it is the tie
/// written out (still tied); different, the file's head is the function (untied); the only copy
/// (the embedding deduplicated away on save), it is the embedding.
#[test]
fn a_head_stored_beside_a_tied_config_is_read_as_the_file_says() {
    let name = "hf-llama-tiny";
    let base = load_hf(fixture(name)).unwrap();
    let ids: Vec<i64> = vec![9, 8, 7, 6, 5];
    let original = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let embed = base.tok_emb.weight.to_vec().unwrap();
    let shape = base.tok_emb.weight.shape();
    let dir = temp("tied-head");
    copy_fixture(name, &dir);

    let same = rewrite(
        &original,
        |_| true,
        Some(("lm_head.weight", shape.clone(), embed.clone())),
    );
    std::fs::write(dir.join("model.safetensors"), same).unwrap();
    let m = load_hf(&dir).unwrap();
    assert!(m.cfg.tie_weights);
    assert_eq!(logits(&m, &ids), logits(&base, &ids));

    let only_head = rewrite(
        &original,
        |n| n != "model.embed_tokens.weight",
        Some(("lm_head.weight", shape.clone(), embed.clone())),
    );
    std::fs::write(dir.join("model.safetensors"), only_head).unwrap();
    let m = load_hf(&dir).unwrap();
    assert!(m.cfg.tie_weights);
    assert_eq!(logits(&m, &ids), logits(&base, &ids));

    let other: Vec<f32> = embed.iter().map(|x| -x).collect();
    let different = rewrite(&original, |_| true, Some(("lm_head.weight", shape, other)));
    std::fs::write(dir.join("model.safetensors"), different).unwrap();
    let m = load_hf(&dir).unwrap();
    assert!(!m.cfg.tie_weights, "a different head unties");
    assert_eq!(
        m.out_head.weight.to_vec().unwrap(),
        embed.iter().map(|x| -x).collect::<Vec<_>>()
    );
    assert_ne!(logits(&m, &ids), logits(&base, &ids));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sizes in config.json are checked against the file before anything is allocated; a
/// model type we do not run, or a tensor the index does not list, is refused by name.
#[test]
fn configs_that_do_not_match_their_files_are_refused() {
    let name = "hf-qwen3-tiny";
    let dir = temp("mismatch");
    copy_fixture(name, &dir);
    let cfg = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    let mut v: Value = serde_json::from_str(&cfg).unwrap();
    let err = |dir: &Path| load_hf(dir).map(|_| ()).unwrap_err().to_string();

    v["num_hidden_layers"] = json!(3);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    assert!(
        err(&dir).contains("missing tensor model.layers.2."),
        "{}",
        err(&dir)
    );
    // Wider than the file: every name is there, the numbers are not.
    v["num_hidden_layers"] = json!(2);
    v["intermediate_size"] = json!(130);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    assert!(err(&dir).contains("parameters"), "{}", err(&dir));
    v["intermediate_size"] = json!(128);
    // A vocabulary no machine holds: an error, not an allocation.
    v["num_hidden_layers"] = json!(2);
    v["vocab_size"] = json!(1u64 << 50);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    assert!(err(&dir).contains("parameters"), "{}", err(&dir));
    v["vocab_size"] = json!(256);
    v["model_type"] = json!("mistral");
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    assert!(err(&dir).contains("\"mistral\""), "{}", err(&dir));

    // A shard holding a tensor its index does not name.
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let st = std::fs::rename(dir.join("model.safetensors"), dir.join("only.safetensors"));
    st.unwrap();
    let original = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&original)
        .unwrap()
        .names()
        .into_iter()
        .filter(|n| *n != "model.norm.weight")
        .map(|n| n.to_string())
        .collect();
    let map: serde_json::Map<String, Value> = names
        .into_iter()
        .map(|n| (n, json!("only.safetensors")))
        .collect();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({ "weight_map": map }).to_string(),
    )
    .unwrap();
    assert!(err(&dir).contains("model.norm.weight"), "{}", err(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Generation allocates the cache it uses, not the model's context: a model whose context is
/// ten million tokens (its full cache would be gigabytes) generates at once.
#[test]
fn generation_does_not_allocate_the_whole_context() {
    use scratchgpt::gpt::{generate, generate_cached, Sampling};
    let mut cfg = GptConfig::preset("llama-tiny").unwrap();
    cfg.context_length = 10_000_000;
    cfg.drop_rate = 0.0;
    let m = GptModel::new(&cfg, 3).unwrap();
    let prompt = [1u32, 2, 3];
    let a = generate_cached(&m, &prompt, 6, cfg.context_length, &Sampling::default()).unwrap();
    let b = generate(&m, &prompt, 6, cfg.context_length, &Sampling::default()).unwrap();
    assert_eq!(a, b);
}

/// `generate`, `eval` and `export` on a Llama folder with its own tokenizer.json: the prompt
/// starts with `<|begin_of_text|>` (as transformers encodes it), and the end tokens stop it.
#[test]
fn the_commands_run_a_llama_folder_with_its_tokenizer() {
    let dir = temp("cli-llama");
    let mut cfg = GptConfig::preset("llama-tiny").unwrap();
    cfg.vocab_size = 605; // the fixture tokenizer's ids
    cfg.drop_rate = 0.0;
    let m = GptModel::new(&cfg, 11).unwrap();
    export_hf(&m, &dir, ExportOptions::default()).unwrap();
    std::fs::copy(
        fixture("hf-llama-tiny").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let tok = scratchgpt::data::BpeTokenizer::from_dir(&dir).unwrap();
    let bos = tok.bos_id().unwrap();
    let ids = tok.encode_for_model("Hello<|eot_id|>").unwrap();
    assert_eq!(ids[0], bos);
    assert_eq!(*ids.last().unwrap(), tok.special_id("<|eot_id|>").unwrap());
    assert!(tok
        .end_ids()
        .contains(&tok.special_id("<|end_of_text|>").unwrap()));

    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{args:?}: {text}");
        text
    };
    let d = dir.to_str().unwrap();
    let out = run(&[
        "generate",
        "--model",
        d,
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "5",
        "--eos",
    ]);
    assert!(out.contains("Hello"), "{out}");
    // The same model without the KV cache gives the same text.
    let again = run(&[
        "generate",
        "--model",
        d,
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "5",
        "--eos",
        "--no-kv-cache",
    ]);
    assert_eq!(out, again);
    let eval = run(&["eval", "--model", d, "--text", "Hello world, hello tea."]);
    assert!(eval.to_lowercase().contains("loss"), "{eval}");
    // Export it again, in bf16 shards: config.json carries the tokenizer's bos and end ids.
    let out_dir = dir.join("re-export");
    run(&[
        "export",
        "--model",
        d,
        "--hf-out",
        out_dir.to_str().unwrap(),
        "--dtype",
        "bf16",
        "--max-shard-size",
        "1",
    ]);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["bos_token_id"], json!(bos));
    assert!(cfg["eos_token_id"].is_array() || cfg["eos_token_id"].is_number());
    assert!(out_dir.join("tokenizer.json").is_file());
    assert!(out_dir.join("model.safetensors.index.json").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}
