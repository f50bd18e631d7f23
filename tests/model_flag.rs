//! `--model NAME|DIR` (the shared model flag; `--gpt2` stays as its alias): a folder, or a hub
//! name resolved in the local Hugging Face cache (HF_HUB_CACHE / HF_HOME layout, `refs/main` →
//! `snapshots/<commit>/`), offline; a name not in the cache is a clear error, never a download.

use std::path::{Path, PathBuf};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-gpt2-tiny");

/// A hub cache holding the tiny GPT-2 fixture as `repo` at a made-up commit.
fn cache_with(root: &Path, repo: &str) -> PathBuf {
    let hub = root.join("hub");
    let model = hub.join(format!("models--{}", repo.replace('/', "--")));
    let snap = model.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(model.join("refs")).unwrap();
    std::fs::write(model.join("refs").join("main"), "0123abcd\n").unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(FIXTURE).join(f), snap.join(f)).unwrap();
    }
    hub
}

fn generate(env: &[(&str, &Path)], model_args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"));
    cmd.env_remove("HF_HUB_CACHE").env_remove("HF_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd
        .arg("generate")
        .args(model_args)
        .args(["--prompt", "Hello", "--max-new-tokens", "3"])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_hub_name_resolves_in_the_local_cache_and_a_folder_still_works() {
    let root = std::env::temp_dir().join(format!("scratchgpt-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let hub = cache_with(&root, "openai-community/gpt2");
    // HF_HOME/hub; the short name also finds openai-community/gpt2.
    let (ok, by_name, err) = generate(&[("HF_HOME", &root)], &["--model", "gpt2"]);
    assert!(ok, "{err}");
    // HF_HUB_CACHE, the full name.
    let (ok, by_full, err) = generate(
        &[("HF_HUB_CACHE", &hub)],
        &["--model", "openai-community/gpt2"],
    );
    assert!(ok, "{err}");
    // The folder itself, under the old flag name.
    let (ok, by_dir, err) = generate(&[], &["--gpt2", FIXTURE]);
    assert!(ok, "{err}");
    assert_eq!(by_name, by_dir);
    assert_eq!(by_full, by_dir);

    // Not cached: an error naming the cache and what to do, not a download.
    let (ok, _, err) = generate(&[("HF_HOME", &root)], &["--model", "Qwen/Qwen3-0.6B"]);
    assert!(!ok);
    assert!(
        err.contains("Qwen/Qwen3-0.6B is neither a folder nor in the Hugging Face cache")
            && err.contains("models--Qwen--Qwen3-0.6B")
            && err.contains("nothing is downloaded at run time"),
        "{err}"
    );
    let (ok, _, err) = generate(&[], &["--model", "/no/such/dir"]);
    assert!(!ok);
    assert!(err.contains("/no/such/dir: no such folder"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
