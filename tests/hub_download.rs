//! `scratchgpt download` against a fake Hugging Face hub on loopback (no network in tests): the
//! repository listing and ranged file requests the hub answers, files laid out in the hub's cache
//! (`models--org--name/{blobs,refs,snapshots}`), shards fetched from their index, then
//! `generate --model NAME` from that cache with the server gone. A gated repository needs the
//! token, a missing one says so, a repository without safetensors is refused, and a malformed
//! reply is an error rather than an abort.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use scratchgpt::gpt::hf_llama::{export_hf, ExportOptions};
use scratchgpt::gpt::{GptConfig, GptModel};
use serde_json::json;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A repository on the fake hub: its files, and whether it needs `Bearer TOKEN`.
struct FakeRepo {
    files: BTreeMap<String, Vec<u8>>,
    gated: bool,
}

/// Serves `repos` on 127.0.0.1 until the process ends; returns the endpoint and the request
/// lines (with their Authorization header) it saw.
fn serve(repos: BTreeMap<String, FakeRepo>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let (mut range, mut auth) = (None::<String>, None::<String>);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = Some(v.trim().to_string());
                }
                if lower.starts_with("authorization:") {
                    auth = Some(line["authorization:".len()..].trim().to_string());
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock()
                .unwrap()
                .push(format!("{path} auth={}", auth.clone().unwrap_or_default()));
            let reply = answer(&repos, &path, range.as_deref(), auth.as_deref());
            let _ = stream.write_all(&reply);
        }
    });
    (url, seen)
}

fn http(status: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn answer(
    repos: &BTreeMap<String, FakeRepo>,
    path: &str,
    range: Option<&str>,
    auth: Option<&str>,
) -> Vec<u8> {
    let not_found = || {
        http(
            "404 Not Found",
            &[],
            b"{\"error\":\"Repository not found\"}",
        )
    };
    // /api/models/{org}/{name}/revision/{rev}
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, _rev)) = rest.split_once("/revision/") else {
            return not_found();
        };
        let Some(r) = repos.get(repo) else {
            return not_found();
        };
        if r.gated && auth != Some("Bearer hf_secret") {
            return http("401 Unauthorized", &[], b"{\"error\":\"gated\"}");
        }
        let siblings: Vec<_> = r.files.keys().map(|f| json!({ "rfilename": f })).collect();
        let body = json!({"sha": COMMIT, "siblings": siblings}).to_string();
        return http(
            "200 OK",
            &[("Content-Type".into(), "application/json".into())],
            body.as_bytes(),
        );
    }
    // /{org}/{name}/resolve/{rev}/{file}
    let Some((repo, rest)) = path[1..].split_once("/resolve/") else {
        return not_found();
    };
    let Some((_rev, file)) = rest.split_once('/') else {
        return not_found();
    };
    if repo == "broken/redirect" {
        // A redirect with the headers hf-hub reads first but no Location: it unwraps the
        // header (a panic inside the crate, which must reach the user as an error).
        return http(
            "302 Found",
            &[
                ("ETag".into(), "\"abc\"".into()),
                ("X-Repo-Commit".into(), COMMIT.into()),
            ],
            b"",
        );
    }
    let Some(r) = repos.get(repo) else {
        return not_found();
    };
    if r.gated && auth != Some("Bearer hf_secret") {
        return http("401 Unauthorized", &[], b"");
    }
    let Some(data) = r.files.get(file) else {
        return not_found();
    };
    let start: usize = range
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end: usize = range
        .and_then(|r| r.split('-').nth(1))
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(data.len(), |e| (e + 1).min(data.len()));
    let body = &data[start.min(data.len())..end.max(start).min(data.len())];
    let etag = format!("\"{:016x}{:08x}\"", fnv(data), data.len());
    http(
        "206 Partial Content",
        &[
            (
                "Content-Range".into(),
                format!("bytes {start}-{}/{}", end.saturating_sub(1), data.len()),
            ),
            ("ETag".into(), etag),
            ("X-Repo-Commit".into(), COMMIT.into()),
        ],
        body,
    )
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn folder_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scratchgpt-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scratchgpt(args: &[&str], cache: &Path, endpoint: &str, token: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scratchgpt"));
    c.args(args)
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_HOME");
    if let Some(t) = token {
        c.env("HF_TOKEN", t);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A Llama folder a tokenizer fits: random llama-tiny weights with 605 ids, in two shards, and
/// the Llama fixture's tokenizer.json; plus a README and an ONNX file that are not fetched.
fn llama_repo(work: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = work.join("llama-src");
    let mut cfg = GptConfig::preset("llama-tiny").unwrap();
    cfg.vocab_size = 605;
    cfg.drop_rate = 0.0;
    let m = GptModel::new(&cfg, 4).unwrap();
    let opts = ExportOptions {
        max_shard_bytes: Some(200_000),
        ..ExportOptions::default()
    };
    export_hf(&m, &dir, opts).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-llama-tiny/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let mut files = folder_files(&dir);
    files.insert("README.md".into(), b"# a tiny llama".to_vec());
    files.insert("onnx/model.onnx".into(), vec![0; 64]);
    files
}

#[test]
fn download_then_generate_offline() {
    let work = temp("offline");
    let cache = work.join("cache");
    let gpt2 =
        folder_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-gpt2-tiny"));
    let mut repos = BTreeMap::new();
    repos.insert(
        "openai-community/gpt2".to_string(),
        FakeRepo {
            files: gpt2,
            gated: false,
        },
    );
    repos.insert(
        "meta-llama/Tiny-Llama".to_string(),
        FakeRepo {
            files: llama_repo(&work),
            gated: true,
        },
    );
    let (endpoint, seen) = serve(repos);

    // GPT-2's short name resolves to openai-community/gpt2, on the hub and in the cache.
    let o = scratchgpt(&["download", "gpt2"], &cache, &endpoint, None);
    assert!(o.status.success(), "{}", text(&o));
    let snapshot = cache.join(format!("models--openai-community--gpt2/snapshots/{COMMIT}"));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        snapshot.display().to_string()
    );
    assert!(snapshot.join("config.json").is_file());
    assert!(snapshot.join("model.safetensors").is_file());
    assert!(
        !snapshot.join("expected.json").exists(),
        "only what a model needs"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("models--openai-community--gpt2/refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );

    // A download that stopped part way is resumed: only the missing file is fetched again.
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    let before = seen.lock().unwrap().len();
    let o = scratchgpt(&["download", "gpt2"], &cache, &endpoint, None);
    assert!(o.status.success(), "{}", text(&o));
    let again: Vec<String> = seen.lock().unwrap()[before..].to_vec();
    assert!(again
        .iter()
        .any(|r| r.contains("/resolve/") && r.contains("model.safetensors")));
    assert!(
        !again
            .iter()
            .any(|r| r.contains("/resolve/") && r.contains("config.json")),
        "{again:?}"
    );
    assert!(snapshot.join("model.safetensors").is_file());

    // Gated: refused without the token, with a message saying what to do; fetched with it.
    let o = scratchgpt(
        &["download", "meta-llama/Tiny-Llama"],
        &cache,
        &endpoint,
        None,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("HF_TOKEN"), "{}", text(&o));
    let o = scratchgpt(
        &["download", "meta-llama/Tiny-Llama"],
        &cache,
        &endpoint,
        Some("hf_secret"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let llama = cache.join(format!("models--meta-llama--Tiny-Llama/snapshots/{COMMIT}"));
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(llama.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shards: std::collections::BTreeSet<String> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(shards.len() >= 2, "{shards:?}");
    for f in shards
        .iter()
        .map(String::as_str)
        .chain(["config.json", "tokenizer.json"])
    {
        assert!(llama.join(f).is_file(), "{f}: {}", text(&o));
    }
    assert!(!llama.join("README.md").exists() && !llama.join("onnx").exists());
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .filter(|r| r.contains("Tiny-Llama"))
            .any(|r| r.ends_with("auth=Bearer hf_secret")),
        "{requests:?}"
    );

    // The server is not asked again: generation reads the cache (pointed at a dead endpoint).
    let dead = "http://127.0.0.1:9";
    let before = seen.lock().unwrap().len();
    for name in ["gpt2", "openai-community/gpt2", "meta-llama/Tiny-Llama"] {
        let o = scratchgpt(
            &[
                "generate",
                "--model",
                name,
                "--max-new-tokens",
                "4",
                "--prompt",
                "Hello",
            ],
            &cache,
            dead,
            None,
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("Hello"));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "generation fetched nothing"
    );
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn hub_failures_are_clear_errors() {
    let work = temp("errors");
    let cache = work.join("cache");
    let mut repos = BTreeMap::new();
    let mut bin_only = BTreeMap::new();
    bin_only.insert(
        "config.json".to_string(),
        b"{\"model_type\": \"gpt2\"}".to_vec(),
    );
    bin_only.insert("pytorch_model.bin".to_string(), vec![0; 16]);
    repos.insert(
        "old/bin-only".to_string(),
        FakeRepo {
            files: bin_only,
            gated: false,
        },
    );
    let mut not_a_model = BTreeMap::new();
    not_a_model.insert("README.md".to_string(), b"hi".to_vec());
    repos.insert(
        "some/dataset-like".to_string(),
        FakeRepo {
            files: not_a_model,
            gated: false,
        },
    );
    let mut broken = BTreeMap::new();
    broken.insert("config.json".to_string(), b"{}".to_vec());
    broken.insert("model.safetensors".to_string(), vec![0; 8]);
    repos.insert(
        "broken/redirect".to_string(),
        FakeRepo {
            files: broken,
            gated: false,
        },
    );
    let (endpoint, _) = serve(repos);
    let err = |name: &str| {
        let o = scratchgpt(&["download", name], &cache, &endpoint, None);
        assert!(!o.status.success(), "{name}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{name}: {}", text(&o));
        text(&o)
    };
    assert!(err("nobody/nothing").contains("no repository nobody/nothing"));
    assert!(err("old/bin-only").contains(".bin files are not read"));
    assert!(err("some/dataset-like").contains("no config.json"));
    let broken = err("broken/redirect");
    assert!(broken.contains("malformed reply"), "{broken}");
    assert!(err("../etc").contains("not a hub repository name"));
    // Nothing reachable at all.
    let o = scratchgpt(&["download", "gpt2"], &cache, "http://127.0.0.1:9", None);
    assert!(!o.status.success());
    assert!(text(&o).contains("127.0.0.1:9"), "{}", text(&o));
    // A name absent from the cache names the download command.
    let o = scratchgpt(
        &["generate", "--model", "Qwen/Qwen3-0.6B"],
        &cache,
        "http://127.0.0.1:9",
        None,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("scratchgpt download"), "{}", text(&o));
    std::fs::remove_dir_all(&work).unwrap();
}
