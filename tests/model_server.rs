//! The model-server client against fake servers on loopback: Ollama's and the OpenAI-compatible
//! API (paths, bodies, the bearer key), chunked replies split inside a UTF-8 character, error
//! statuses quoted, replies too large or not JSON refused, a silent server timed out, a closed
//! port reported — then the judge's score and `make-preference-data` end to end (choices,
//! atomic rewrites, continuing a stopped run).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scratchgpt::finetune::evaluate::judge_score;
use scratchgpt::finetune::instruction_data::InstructionEntry;
use scratchgpt::finetune::model_server::{ChatApi, ModelServer};
use scratchgpt::finetune::preference_data::read_preference_json;
use serde_json::{json, Value};

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: String,
    body: Value,
}

/// What the fake server sends back: a status and raw body bytes, or silence.
enum Reply {
    Json(u16, String),
    Chunked(String, usize),
    Raw(u16, Vec<u8>),
    Silence,
}

/// A server on 127.0.0.1 answering every request with `answer(request)`, one connection per
/// request (`Connection: close`). Returns its URL and the requests it saw.
fn serve(answer: impl Fn(&Seen) -> Reply + Send + 'static) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let Some(req) = read_request(&mut s) else {
                continue;
            };
            log.lock().unwrap().push(req.clone());
            match answer(&req) {
                Reply::Json(status, body) => respond(&mut s, status, body.as_bytes()),
                Reply::Raw(status, body) => respond(&mut s, status, &body),
                Reply::Chunked(body, at) => {
                    let (a, b) = body.as_bytes().split_at(at);
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
                        a.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(a);
                    r.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
                    r.extend_from_slice(b);
                    r.extend_from_slice(b"\r\n0\r\n\r\n");
                    let _ = s.write_all(&r);
                }
                Reply::Silence => {
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    });
    (url, seen)
}

fn respond(s: &mut TcpStream, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= split + 4 + len {
            let path = head.split_whitespace().nth(1)?.to_string();
            let body = serde_json::from_slice(&buf[split + 4..split + 4 + len]).ok()?;
            return Some(Seen {
                path,
                headers: head.to_ascii_lowercase(),
                body,
            });
        }
    }
}

fn ollama_reply(content: &str) -> String {
    json!({"message": {"role": "assistant", "content": content}}).to_string()
}

fn openai_reply(content: &str) -> String {
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        .to_string()
}

fn server(url: &str, api: ChatApi, key: Option<&str>, timeout_secs: u64) -> ModelServer {
    ModelServer::new(
        url,
        "llama3",
        api,
        key.map(str::to_string),
        Duration::from_secs(timeout_secs),
    )
    .unwrap()
}

#[test]
fn ollama_chat_sends_the_books_request_and_reads_the_answer() {
    let (url, seen) = serve(|_| Reply::Json(200, ollama_reply("Hello!")));
    let s = server(&url, ChatApi::Ollama, None, 10);
    assert_eq!(s.chat("Hi").unwrap(), "Hello!");
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.body["model"], "llama3");
    assert_eq!(req.body["messages"][0]["content"], "Hi");
    assert_eq!(req.body["options"]["seed"], 123);
    assert_eq!(req.body["options"]["temperature"], 0);
    assert_eq!(req.body["options"]["num_ctx"], 2048);
    assert_eq!(req.body["stream"], false);
    assert!(!req.headers.contains("authorization"));
}

#[test]
fn openai_chat_uses_v1_chat_completions_and_the_bearer_key() {
    let (url, seen) = serve(|_| Reply::Json(200, openai_reply("Bonjour")));
    assert_eq!(
        server(&url, ChatApi::OpenAi, Some("sk-test"), 10)
            .chat("Hi")
            .unwrap(),
        "Bonjour"
    );
    // A URL that already ends in /v1 is not doubled; no key, no header.
    let v1 = server(&format!("{url}/v1/"), ChatApi::OpenAi, None, 10);
    assert_eq!(v1.endpoint(), format!("{url}/v1/chat/completions"));
    assert_eq!(v1.chat("Hi").unwrap(), "Bonjour");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert!(seen[0].headers.contains("authorization: bearer sk-test"));
    assert_eq!(seen[0].body["seed"], 123);
    assert_eq!(seen[0].body["temperature"], 0);
    assert_eq!(seen[1].path, "/v1/chat/completions");
    assert!(!seen[1].headers.contains("authorization"));
}

#[test]
fn a_chunked_reply_split_inside_a_utf8_character_is_joined() {
    let body = ollama_reply("é 87");
    let at = body.find('é').unwrap() + 1; // between the two bytes of é
    let (url, _) = serve(move |_| Reply::Chunked(body.clone(), at));
    assert_eq!(
        server(&url, ChatApi::Ollama, None, 10).chat("x").unwrap(),
        "é 87"
    );
}

#[test]
fn server_failures_are_clear_errors() {
    let (url, _) = serve(|req| match req.body["messages"][0]["content"].as_str() {
        Some("status") => Reply::Json(404, r#"{"error":"model 'llama3' not found"}"#.into()),
        Some("text") => Reply::Raw(200, b"<html>hello</html>".to_vec()),
        Some("fields") => Reply::Json(200, r#"{"done":true}"#.into()),
        Some("huge") => Reply::Raw(200, vec![b' '; 17 << 20]),
        _ => Reply::Silence,
    });
    let s = server(&url, ChatApi::Ollama, None, 2);
    let err = |p: &str| s.chat(p).unwrap_err().to_string();
    let e = err("status");
    assert!(
        e.contains(&url) && e.contains("404") && e.contains("model 'llama3' not found"),
        "{e}"
    );
    assert!(err("text").contains("the reply is not JSON"));
    assert!(err("fields").contains("the reply has no message.content"));
    let e = err("huge");
    assert!(e.contains(&url), "{e}");
    let t0 = Instant::now();
    let e = err("silence");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the 2 s timeout held: {e}"
    );
    assert!(e.contains(&url), "{e}");

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let closed = format!("http://{port}");
    let e = server(&closed, ChatApi::Ollama, None, 2)
        .chat("x")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&closed), "{e}");

    for bad in ["ftp://x", "localhost:11434", ""] {
        let e = ModelServer::new(bad, "m", ChatApi::Ollama, None, Duration::from_secs(1));
        assert!(e.err().unwrap().to_string().contains("http:// or https://"));
    }
    assert!(ModelServer::new(&url, " ", ChatApi::Ollama, None, Duration::from_secs(1)).is_err());
}

#[test]
fn the_judge_reads_the_first_integer_over_either_api() {
    let entry = InstructionEntry {
        instruction: "Name a color.".into(),
        input: String::new(),
        output: "Blue.".into(),
    };
    let (url, seen) = serve(|req| {
        let answer = "Score: 87/100";
        if req.path == "/api/chat" {
            Reply::Json(200, ollama_reply(answer))
        } else {
            Reply::Json(200, openai_reply(answer))
        }
    });
    for api in [ChatApi::Ollama, ChatApi::OpenAi] {
        assert_eq!(
            judge_score(&server(&url, api, None, 10), &entry, "Red.").unwrap(),
            87
        );
    }
    let prompt = seen.lock().unwrap()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains("score the model response `Red.`"),
        "{prompt}"
    );
    let (url, _) = serve(|_| Reply::Json(200, ollama_reply("I cannot score this")));
    let e = judge_score(&server(&url, ChatApi::Ollama, None, 10), &entry, "x").unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
}

fn make_preference_data(url: &str, out: &std::path::Path, limit: usize) -> (i32, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["make-preference-data", "--judge-url", url, "--out"])
        .arg(out)
        .args(["--limit", &limit.to_string()])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn make_preference_data_writes_the_books_pairs_and_continues_a_stopped_run() {
    let dir = std::env::temp_dir().join(format!("scratchgpt-prefs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("prefs.json");
    let fail_after = Arc::new(Mutex::new(usize::MAX));
    let fail = fail_after.clone();
    let (url, seen) = serve(move |req| {
        let prompt = req.body["messages"][0]["content"].as_str().unwrap_or("");
        let n = *fail.lock().unwrap();
        if n == 0 {
            return Reply::Json(500, r#"{"error":"out of memory"}"#.into());
        }
        *fail.lock().unwrap() = n.saturating_sub(1);
        let politeness = if prompt.contains("to be more polite.") {
            "POLITE"
        } else {
            "RUDE"
        };
        Reply::Json(200, ollama_reply(&format!("  {politeness} rewrite\n")))
    });

    let (code, log) = make_preference_data(&url, &out, 4);
    assert_eq!(code, 0, "{log}");
    let prefs = read_preference_json(&out).unwrap();
    assert_eq!(prefs.len(), 4);
    assert_eq!(seen.lock().unwrap().len(), 4);
    let data = scratchgpt::finetune::instruction_data::parse_instruction_json(
        include_str!("../data/instruction-data.json"),
        "data",
    )
    .unwrap();
    let mut kinds = std::collections::HashSet::new();
    for (p, e) in prefs.iter().zip(&data) {
        assert_eq!(p.entry, *e);
        // Polite rewrites are chosen over the original; impolite ones rejected.
        match (p.chosen.as_str(), p.rejected.as_str()) {
            ("POLITE rewrite", r) => assert_eq!(r, e.output),
            (c, "RUDE rewrite") => assert_eq!(c, e.output),
            other => panic!("{other:?}"),
        }
        kinds.insert(p.chosen == "POLITE rewrite");
    }
    assert_eq!(
        kinds.len(),
        2,
        "the seeded coin picks both kinds in 4 entries"
    );
    let prompt = seen.lock().unwrap()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains("slightly rewrite the output to be more")
            && prompt.contains(&data[0].output),
        "{prompt}"
    );

    // A longer run continues after the 4 written entries: 3 more requests, the 2nd fails.
    *fail_after.lock().unwrap() = 1;
    let (code, log) = make_preference_data(&url, &out, 7);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("continuing after 4 of 7 entries"), "{log}");
    assert!(
        log.contains("out of memory") && log.contains("run the same command again"),
        "{log}"
    );
    assert_eq!(
        read_preference_json(&out).unwrap().len(),
        5,
        "nothing written is lost"
    );
    *fail_after.lock().unwrap() = usize::MAX;
    let (code, log) = make_preference_data(&url, &out, 7);
    assert_eq!(code, 0, "{log}");
    let again = read_preference_json(&out).unwrap();
    assert_eq!(again.len(), 7);
    assert_eq!(
        again[..4],
        prefs[..],
        "the first entries are kept as they were"
    );
    assert_eq!(seen.lock().unwrap().len(), 4 + 2 + 2);
    let (code, log) = make_preference_data(&url, &out, 7);
    assert_eq!(code, 0);
    assert!(log.contains("all 7 entries are already written"), "{log}");

    // Continuing with another seed would mix two runs' polite/impolite choices.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args([
            "make-preference-data",
            "--judge-url",
            &url,
            "--limit",
            "8",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("written with another --seed"),
        "{err}"
    );

    // An entry with nothing to rewrite is refused before any request.
    let empty = dir.join("empty.json");
    std::fs::write(
        &empty,
        r#"[{"instruction": "Say hi.", "input": "", "output": "Hi."},
            {"instruction": "Say bye.", "input": "", "output": "  "}]"#,
    )
    .unwrap();
    let before = seen.lock().unwrap().len();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["make-preference-data", "--judge-url", &url, "--data"])
        .arg(&empty)
        .arg("--out")
        .arg(dir.join("never.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("entry 1 has an empty output"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // A file that is not preference data is never overwritten.
    std::fs::write(&out, "not json").unwrap();
    let (code, log) = make_preference_data(&url, &out, 2);
    assert_ne!(code, 0);
    assert!(log.contains("exists but is not preference data"), "{log}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "not json");
    let _ = std::fs::remove_dir_all(&dir);
}
