//! `--model NAME|DIR`: a folder, or a Hugging Face hub name found in the local hub cache — never
//! fetched (nothing here touches the network; a model comes into the cache by an explicit
//! download).
//!
//! The cache is huggingface_hub's layout: `$HF_HUB_CACHE` (or the older
//! `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; a repository `org/name` is the folder `models--org--name`, its
//! `refs/main` names the commit, and the files are in `snapshots/<commit>/` (a snapshot without a
//! `config.json` does not count). GPT-2's short names (`gpt2`, `gpt2-medium`, …) are also looked up
//! under `openai-community/`, where the hub moved them.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The hub cache folder the environment points at (it may not exist).
pub fn hub_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return d;
    }
    if let Some(d) = var("HF_HOME") {
        return d.join("hub");
    }
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

/// Whether `spec` reads as a hub repository name (`name` or `org/name` of letters, digits and
/// `-_.`), not a path.
fn is_repo_name(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (parts.len() == 1 || parts.len() == 2) && parts.iter().all(|p| ok(p))
}

/// The snapshot folder of `repo` in `cache`, if the cache holds one with a `config.json`.
fn snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    snapshot_dir(cache, repo).filter(|d| d.join("config.json").is_file())
}

fn snapshot_dir(cache: &Path, repo: &str) -> Option<PathBuf> {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = root.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(root.join("refs").join("main")) {
        let dir = snapshots.join(commit.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    // No usable ref: a single snapshot is unambiguous.
    let dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The folder `spec` names: an existing directory as it is, else a hub name resolved in the
/// local cache. A name that is not cached is an error saying where it was looked for.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.is_file() {
        return Err(Error::invalid(
            "--model",
            format!("{spec} is a file; give the folder that holds config.json and the weights"),
        ));
    }
    if !is_repo_name(spec) {
        return Err(Error::invalid(
            "--model",
            format!("{spec}: no such folder (and not a hub name such as gpt2 or org/name)"),
        ));
    }
    let cache = hub_cache_dir();
    let mut candidates = vec![spec.to_string()];
    if !spec.contains('/') && spec.starts_with("gpt2") {
        candidates.push(format!("openai-community/{spec}"));
    }
    for repo in &candidates {
        if let Some(dir) = snapshot(&cache, repo) {
            return Ok(dir);
        }
    }
    Err(Error::invalid(
        "--model",
        format!(
            "{spec} is neither a folder nor in the Hugging Face cache ({} looked for {}); nothing is downloaded at run time — fetch it into the cache first with `scratchgpt download {}`, or give its folder",
            cache.display(),
            candidates
                .iter()
                .map(|r| format!("models--{}", r.replace('/', "--")))
                .collect::<Vec<_>>()
                .join(" and "),
            candidates.last().expect("one at least")
        ),
    ))
}
