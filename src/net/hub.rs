//! `scratchgpt download NAME`: a model's files from the Hugging Face hub into the hub's own cache
//! layout, through the `hf-hub` crate — the one command that fetches anything. Afterwards every
//! `--model NAME` finds the folder offline ([`crate::gpt::hub_cache`]).
//!
//! What is fetched: `config.json` (required), the weights as safetensors — `model.safetensors`,
//! or `model.safetensors.index.json` and exactly the shards it names (PyTorch `.bin` files are
//! never read here, so a repository with only those is an error) — and the tokenizer and
//! generation files that exist (`tokenizer.json`, `tokenizer_config.json`, `vocab.json`,
//! `merges.txt`, `special_tokens_map.json`, `generation_config.json`). Nothing else (ONNX, Flax,
//! the `original/` folder of Meta's weights).
//!
//! The environment, as huggingface_hub reads it: the cache folder of
//! [`crate::gpt::hub_cache::hub_cache_dir`] (`HF_HUB_CACHE`, `HF_HOME`, …), `HF_ENDPOINT` (a
//! mirror, or the tests' loopback server), `HF_TOKEN` (gated models such as Llama 3; else the
//! token file `huggingface-cli login` wrote).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;

use crate::data::text_file::read_text;
use crate::error::{Error, Result};
use crate::gpt::hf_weights::INDEX_FILE;
use crate::gpt::hub_cache::hub_cache_dir;

/// The hub's address unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Optional files fetched when the repository has them.
const EXTRA_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "generation_config.json",
];

/// Where and how to download.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    /// Progress bars on the terminal.
    pub progress: bool,
}

impl HubSettings {
    /// The settings the environment gives (see the module docs).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let cache_dir = hub_cache_dir();
        // Where `huggingface-cli login` writes it: $HF_TOKEN_PATH, else $HF_HOME/token, else
        // the default home's (not beside an $HF_HUB_CACHE, which may be elsewhere).
        let token_path = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| {
            var("HF_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    var("XDG_CACHE_HOME")
                        .map(PathBuf::from)
                        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                        .unwrap_or_else(|| PathBuf::from(".cache"))
                        .join("huggingface")
                })
                .join("token")
        });
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(&token_path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        HubSettings {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir,
            token,
            progress: false,
        }
    }
}

/// The repository a name downloads: GPT-2's short names live under `openai-community/` now.
pub fn repo_id(name: &str) -> String {
    match name {
        "gpt2" | "gpt2-medium" | "gpt2-large" | "gpt2-xl" => format!("openai-community/{name}"),
        other => other.to_string(),
    }
}

/// What a download did.
#[derive(Clone, Debug)]
pub struct Downloaded {
    /// The snapshot folder (`…/models--org--name/snapshots/<commit>`): a model folder.
    pub dir: PathBuf,
    /// The files it holds, in the order fetched.
    pub files: Vec<String>,
}

/// Downloads `name` at `revision` (a branch, tag or commit) into the cache of `settings`.
pub fn download(name: &str, revision: &str, settings: &HubSettings) -> Result<Downloaded> {
    let id = repo_id(name);
    if !valid_repo_id(&id) {
        return Err(Error::invalid(
            "download",
            format!("{name:?} is not a hub repository name (name or org/name)"),
        ));
    }
    // hf-hub asserts and unwraps on some malformed replies (a redirect without a Location, a
    // file missing after its rename); a bad server must give an error, not abort the program.
    // The default hook would print the panic as if the program had crashed: a hook installed
    // once stays silent for panics inside this call on this thread (the caller reports the
    // error) and defers to the previous hook everywhere else.
    quiet_panics_in_hub();
    IN_HUB.with(|f| f.set(true));
    let outcome = std::panic::catch_unwind(|| fetch(&id, revision, settings));
    IN_HUB.with(|f| f.set(false));
    match outcome {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(Error::Network {
                url: format!("{}/{id}", settings.endpoint),
                msg: format!("the hub client failed on a malformed reply: {what}"),
            })
        }
    }
}

thread_local! {
    static IN_HUB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn quiet_panics_in_hub() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HUB.with(|f| f.get()) {
                previous(info);
            }
        }));
    });
}

fn valid_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

fn fetch(id: &str, revision: &str, settings: &HubSettings) -> Result<Downloaded> {
    let url = format!("{}/{id}", settings.endpoint);
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(settings.progress)
        .with_retries(3)
        .build()
        .map_err(|e| hub_error(&url, id, e))?;
    let listing = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = listing.info().map_err(|e| hub_error(&url, id, e))?;
    // Every file from the one commit the listing names: a branch that moves during the download
    // must not mix two commits in one snapshot.
    let sha = info.sha.clone();
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Network {
            url,
            msg: format!("the hub named commit {sha:?}, not a 40-digit hash"),
        });
    }
    let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !listed.contains(&"config.json") {
        return Err(Error::Network {
            url,
            msg: "the repository has no config.json: not a transformers model".into(),
        });
    }
    let sharded = listed.contains(&INDEX_FILE);
    let weights = if sharded {
        INDEX_FILE
    } else if listed.contains(&"model.safetensors") {
        "model.safetensors"
    } else {
        return Err(Error::Network {
            url,
            msg: format!(
                "the repository has no safetensors weights (model.safetensors or {INDEX_FILE}); PyTorch .bin files are not read"
            ),
        });
    };
    let pinned = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        sha.clone(),
    ));
    let dir = settings
        .cache_dir
        .join(format!("models--{}", id.replace('/', "--")))
        .join("snapshots")
        .join(&sha);
    let mut files = Vec::new();
    // A file already in this commit's snapshot is kept (a download resumed after a failure
    // fetches only the rest).
    let mut get = |file: &str| -> Result<()> {
        if !dir.join(file).is_file() {
            pinned.download(file).map_err(|e| hub_error(&url, id, e))?;
        }
        files.push(file.to_string());
        Ok(())
    };
    get(weights)?;
    if sharded {
        for shard in shard_names(&dir.join(INDEX_FILE))? {
            get(&shard)?;
        }
    }
    for extra in EXTRA_FILES.iter().filter(|f| listed.contains(f)) {
        get(extra)?;
    }
    // config.json last: until it is there, `--model NAME` passes the snapshot over, so an
    // interrupted download never looks like a model.
    get("config.json")?;
    Cache::new(settings.cache_dir.clone())
        .repo(Repo::with_revision(
            id.to_string(),
            RepoType::Model,
            revision.to_string(),
        ))
        .create_ref(&sha)
        .map_err(|e| Error::io(&dir, e))?;
    Ok(Downloaded { dir, files })
}

/// The distinct shard files an index names, in first-mention order; each a plain file name.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let what = index.display().to_string();
    let v: Value = serde_json::from_str(&read_text(index)?)
        .map_err(|e| Error::parse(what.clone(), format!("not valid JSON: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| Error::parse(what.clone(), "no \"weight_map\" object"))?;
    let mut out: Vec<String> = Vec::new();
    for file in map.values() {
        let f = file
            .as_str()
            .ok_or_else(|| Error::parse(what.clone(), "a shard name is not a string"))?;
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(Error::parse(
                what.clone(),
                format!("shard {f:?} is not a file name in this folder"),
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// A hub failure in words: gated and missing repositories say what to do.
fn hub_error(url: &str, id: &str, e: ApiError) -> Error {
    let text = e.to_string();
    // ureq 2 (hf-hub's client) words an HTTP error status as "<url>: status code <n>".
    let status = text
        .rsplit_once("status code ")
        .and_then(|(_, code)| code.trim().get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    let msg = match status {
        // The hub answers 401 both for a repository that does not exist and for one the
        // request may not read.
        Some(401) | Some(403) => format!(
            "{text}: {id} does not exist, or is gated or private — check the name; for a gated model accept its license on the hub, then set HF_TOKEN (or run huggingface-cli login)"
        ),
        Some(404) => format!("{text}: no repository {id} (or no such revision or file)"),
        _ => text,
    };
    Error::Network {
        url: url.to_string(),
        msg,
    }
}
