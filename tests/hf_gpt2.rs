//! OpenAI's GPT-2 in the Hugging Face layout: the transformers fixture (tests/fixtures/
//! hf-gpt2-tiny, a random GPT-2 saved by `save_pretrained`) recomputed within its f32 tolerances;
//! the same weights stored as f16 / bf16 and in OpenAI's key layout; and every kind of bad folder
//! as one clear error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use scratchgpt::gpt::reference_check::{check_hf_fixture, is_hf_fixture};
use scratchgpt::gpt::GptModel;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");

#[test]
fn the_transformers_fixture_is_reproduced() {
    assert!(is_hf_fixture(FIXTURE));
    let lines = check_hf_fixture(FIXTURE).unwrap();
    assert_eq!(lines.len(), 9); // … and greedy with the KV cache
    for l in &lines {
        assert!(
            l.ok,
            "{} failed: abs {:.3e} rel {:.3e} tol {:.1e}",
            l.quantity, l.max_abs_err, l.max_rel_err, l.tolerance
        );
    }
}

#[test]
fn the_loaded_model_is_the_books_model_with_tied_weights() {
    let m = GptModel::from_hf_gpt2(FIXTURE).unwrap();
    assert!(m.cfg.tie_weights && m.cfg.qkv_bias);
    assert_eq!(
        (
            m.cfg.emb_dim,
            m.cfg.n_layers,
            m.cfg.n_heads,
            m.cfg.context_length
        ),
        (64, 2, 4, 64)
    );
    // One shared parameter, not a copy.
    assert_eq!(m.out_head.weight.id(), m.tok_emb.weight.id());
}

/// (name → (dtype, shape, little-endian bytes)) of the fixture's weights.
fn fixture_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let data = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, t.shape().to_vec(), data)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A GPT-2 folder with the fixture's config and the given tensors.
fn write_folder(name: &str, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scratchgpt-hf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(FIXTURE).join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| {
            (
                n.clone(),
                TensorView::new(*dt, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    dir
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn f16_and_bf16_weights_load_as_their_exact_f32_values() {
    let tensors = fixture_tensors();
    for (label, dtype) in [("f16", Dtype::F16), ("bf16", Dtype::BF16)] {
        let mut rounded = Vec::new();
        let stored: Vec<_> = tensors
            .iter()
            .map(|(n, shape, data)| {
                let (bytes, back): (Vec<u8>, Vec<f32>) = match dtype {
                    Dtype::F16 => {
                        let h: Vec<half::f16> =
                            data.iter().map(|&x| half::f16::from_f32(x)).collect();
                        (
                            h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                            h.iter().map(|x| x.to_f32()).collect(),
                        )
                    }
                    _ => {
                        let h: Vec<half::bf16> =
                            data.iter().map(|&x| half::bf16::from_f32(x)).collect();
                        (
                            h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                            h.iter().map(|x| x.to_f32()).collect(),
                        )
                    }
                };
                rounded.push((n.clone(), back));
                (n.clone(), dtype, shape.clone(), bytes)
            })
            .collect();
        let dir = write_folder(label, &stored);
        let m = GptModel::from_hf_gpt2(&dir).unwrap();
        let want = |name: &str| rounded.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(
            m.tok_emb.weight.to_vec().unwrap(),
            want("transformer.wte.weight"),
            "{label} wte"
        );
        assert_eq!(
            m.trf_blocks[1].norm2.shift().unwrap().to_vec().unwrap(),
            want("transformer.h.1.ln_2.bias"),
            "{label}"
        );
        // c_proj of the MLP is (in, out) in the file and (out, in) in ours.
        let w = want("transformer.h.0.mlp.c_proj.weight"); // (256, 64)
        let ours = m.trf_blocks[0].ff.linears("ff")[1]
            .1
            .weight
            .to_vec()
            .unwrap(); // (64, 256)
        assert_eq!(ours[3 * 256 + 200], w[200 * 64 + 3], "{label}: transposed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn openais_layout_without_prefix_and_with_mask_buffers_loads_the_same() {
    let tensors = fixture_tensors();
    let mut stored: Vec<_> = tensors
        .iter()
        .map(|(n, shape, data)| {
            (
                n.strip_prefix("transformer.").unwrap().to_string(),
                Dtype::F32,
                shape.clone(),
                f32_bytes(data),
            )
        })
        .collect();
    for i in 0..2 {
        let mask: Vec<f32> = (0..64 * 64)
            .map(|k| if k % 64 <= k / 64 { 1.0 } else { 0.0 })
            .collect();
        stored.push((
            format!("h.{i}.attn.bias"),
            Dtype::F32,
            vec![1, 1, 64, 64],
            f32_bytes(&mask),
        ));
        stored.push((
            format!("h.{i}.attn.masked_bias"),
            Dtype::F32,
            vec![],
            f32_bytes(&[-1e4]),
        ));
    }
    let dir = write_folder("openai", &stored);
    let a = GptModel::from_hf_gpt2(&dir).unwrap();
    let b = GptModel::from_hf_gpt2(FIXTURE).unwrap();
    for ((n, x), (_, y)) in a.named_parameters().iter().zip(b.named_parameters().iter()) {
        assert_eq!(x.to_vec().unwrap(), y.to_vec().unwrap(), "{n}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn error_of(dir: &Path) -> String {
    GptModel::from_hf_gpt2(dir)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn bad_folders_are_clear_errors() {
    let tensors = fixture_tensors();
    let full: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), Dtype::F32, s.clone(), f32_bytes(d)))
        .collect();

    // No config.json / no model.safetensors.
    let empty = std::env::temp_dir().join(format!("scratchgpt-hf-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        error_of(&empty).contains("config.json is missing"),
        "{}",
        error_of(&empty)
    );
    std::fs::copy(
        Path::new(FIXTURE).join("config.json"),
        empty.join("config.json"),
    )
    .unwrap();
    assert!(
        error_of(&empty).contains("no weights: neither model.safetensors"),
        "{}",
        error_of(&empty)
    );
    std::fs::remove_dir_all(&empty).unwrap();

    // A missing tensor is named.
    let missing: Vec<_> = full
        .iter()
        .filter(|t| t.0 != "transformer.h.1.ln_2.bias")
        .cloned()
        .collect();
    let dir = write_folder("missing", &missing);
    assert!(
        error_of(&dir).contains("missing tensor transformer.h.1.ln_2.bias"),
        "{}",
        error_of(&dir)
    );

    // A wrong shape: name, found, expected.
    let mut bad = full.clone();
    let i = bad
        .iter()
        .position(|t| t.0 == "transformer.wpe.weight")
        .unwrap();
    bad[i].2 = vec![32, 128];
    let dir = write_folder("shape", &bad);
    let e = error_of(&dir);
    assert!(
        e.contains("transformer.wpe.weight") && e.contains("[32, 128]") && e.contains("[64, 64]"),
        "{e}"
    );

    // An unsupported dtype.
    let mut ints = full.clone();
    ints[i].1 = Dtype::I32;
    let dir = write_folder("dtype", &ints);
    let e = error_of(&dir);
    assert!(
        e.contains("transformer.wpe.weight") && e.contains("I32"),
        "{e}"
    );

    // A truncated file and a garbage header.
    let dir = write_folder("truncated", &full);
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    assert!(
        error_of(&dir).contains("not a valid safetensors file"),
        "{}",
        error_of(&dir)
    );
    std::fs::write(&f, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    assert!(error_of(&dir).contains("not a valid safetensors file"));
    std::fs::write(&f, b"").unwrap();
    assert!(error_of(&dir).contains("not a valid safetensors file"));

    // A config that is not GPT-2's.
    std::fs::write(dir.join("config.json"), r#"{"vocab_size": 50257, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4, "activation_function": "relu"}"#).unwrap();
    assert!(error_of(&dir).contains("relu"), "{}", error_of(&dir));
    std::fs::write(dir.join("config.json"), r#"{"vocab_size": 50257}"#).unwrap();
    assert!(error_of(&dir).contains("n_positions"), "{}", error_of(&dir));
    for label in ["missing", "shape", "dtype", "truncated"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("scratchgpt-hf-{label}-{}", std::process::id())),
        );
    }
}

#[test]
fn eval_and_check_reference_on_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_scratchgpt");
    let o = std::process::Command::new(bin)
        .args(["check-reference", FIXTURE])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("9 checked, 0 failed"));
    // eval --gpt2 gives transformers' loss and top-5 for the fixture's text.
    let text = "Every effort moves you forward, step by step. Every effort moves you forward,";
    let o = std::process::Command::new(bin)
        .args(["eval", "--gpt2", FIXTURE, "--text", text, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        (j["loss"].as_f64().unwrap() - 10.851691246032715).abs() < 1e-5,
        "{j}"
    );
    let ids: Vec<u64> = j["next_top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![36870, 34211, 11026, 17781, 27598]);
    // No model source: one line naming the choices.
    let o = std::process::Command::new(bin)
        .args(["eval", "--text", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--checkpoint") && err.contains("--model"),
        "{err}"
    );
    // A prompt longer than the context.
    let long = "word ".repeat(80);
    let o = std::process::Command::new(bin)
        .args(["generate", "--gpt2", FIXTURE, "--prompt", &long])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("longer than the model's context of 64"),
        "{err}"
    );
}

#[test]
fn export_writes_the_same_file_layout_and_round_trips() {
    use scratchgpt::gpt::hf::export_hf_gpt2;
    let m = GptModel::from_hf_gpt2(FIXTURE).unwrap();
    let dir = std::env::temp_dir().join(format!("scratchgpt-hf-export-{}", std::process::id()));
    export_hf_gpt2(&m, &dir).unwrap();
    // Tensor for tensor, the export is the file transformers wrote: same keys, shapes, bytes.
    let ours = std::fs::read(dir.join("model.safetensors")).unwrap();
    let theirs = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap();
    let (a, b) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&theirs).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut want = b.names();
    want.sort();
    assert_eq!(names, want);
    for n in names {
        let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{n}");
        assert!(x.data() == y.data(), "{n}: different values");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["n_embd"], 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_untied_book_model_exports_with_its_own_head_and_the_same_function() {
    use scratchgpt::gpt::hf::export_hf_gpt2;
    use scratchgpt::gpt::GptConfig;
    use scratchgpt::nn::ForwardCtx;
    use scratchgpt::Ids;
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = 0.0; // the book's defaults otherwise: untied head, no qkv bias
    let m = GptModel::new(&cfg, 9).unwrap();
    let dir = std::env::temp_dir().join(format!("scratchgpt-hf-untied-{}", std::process::id()));
    export_hf_gpt2(&m, &dir).unwrap();
    let back = GptModel::from_hf_gpt2(&dir).unwrap();
    assert!(!back.cfg.tie_weights && back.cfg.qkv_bias);
    let ids = Ids::new(vec![5, 900, 17, 3], &[1, 4]).unwrap();
    let (x, y) = (
        m.forward(&ids, &ForwardCtx::eval())
            .unwrap()
            .to_vec()
            .unwrap(),
        back.forward(&ids, &ForwardCtx::eval())
            .unwrap()
            .to_vec()
            .unwrap(),
    );
    assert_eq!(
        x, y,
        "zero qkv biases and transposes must give the very same logits"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chat_streams_the_same_tokens_as_generate() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_scratchgpt");
    let mut child = Command::new(bin)
        .args([
            "chat",
            "--gpt2",
            FIXTURE,
            "--max-new-tokens",
            "6",
            "--temperature",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Every effort moves you\n\nstep by step\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one reply per non-empty prompt: {text:?}");
    let generated = Command::new(bin)
        .args([
            "generate",
            "--gpt2",
            FIXTURE,
            "--prompt",
            "Every effort moves you",
            "--max-new-tokens",
            "6",
            "--no-kv-cache",
        ])
        .output()
        .unwrap();
    let full = String::from_utf8(generated.stdout).unwrap();
    assert_eq!(
        full.trim_end(),
        format!("Every effort moves you{}", lines[0])
    );
}
