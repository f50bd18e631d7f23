//! Scoring instruction responses (book §7.8). The book asks a larger model (Llama 3 via Ollama)
//! to score each response from 0 to 100; that needs a server, so here it is optional
//! ([`judge_score`] talks to an Ollama-compatible `/api/chat` on a local URL), and two offline
//! metrics always run:
//!
//! - **exact match**: the normalised response equals the normalised reference;
//! - **token F1** (as SQuAD scores answers): with P = shared words / response words and
//!   R = shared words / reference words (words counted with multiplicity), F1 = 2PR / (P + R).
//!
//! Both normalise by lower-casing, turning punctuation into spaces and collapsing whitespace, so
//! "The capital is Paris." and "the capital is paris" match.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use super::instruction_data::{format_input, InstructionEntry};
use crate::error::{Error, Result};

/// Lower-case words with punctuation removed.
pub fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether the normalised texts are equal.
pub fn exact_match(response: &str, reference: &str) -> bool {
    normalize(response) == normalize(reference)
}

/// Token-level F1 between a response and the reference (1 when both are empty).
pub fn token_f1(response: &str, reference: &str) -> f64 {
    let (r, g) = (normalize(response), normalize(reference));
    if r.is_empty() || g.is_empty() {
        return if r.is_empty() && g.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &g {
        *counts.entry(w).or_default() += 1;
    }
    let mut shared = 0usize;
    for w in &r {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                shared += 1;
            }
        }
    }
    if shared == 0 {
        return 0.0;
    }
    let (p, rc) = (
        shared as f64 / r.len() as f64,
        shared as f64 / g.len() as f64,
    );
    2.0 * p * rc / (p + rc)
}

/// Mean exact match and token F1 over (response, reference) pairs.
pub fn offline_scores(pairs: &[(String, String)]) -> Result<(f64, f64)> {
    if pairs.is_empty() {
        return Err(Error::invalid("offline_scores", "no responses to score"));
    }
    let n = pairs.len() as f64;
    let em = pairs.iter().filter(|(r, g)| exact_match(r, g)).count() as f64 / n;
    let f1 = pairs.iter().map(|(r, g)| token_f1(r, g)).sum::<f64>() / n;
    Ok((em, f1))
}

/// The book's judging prompt (§7.8) for one entry and the model's response.
pub fn judge_prompt(entry: &InstructionEntry, response: &str) -> String {
    format!(
        "Given the input `{}` and correct output `{}`, score the model response `{response}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only.",
        format_input(entry),
        entry.output
    )
}

/// Asks an Ollama-compatible server (`POST {url}/api/chat`, non-streaming, seed 123,
/// temperature 0, num_ctx 2048 as the book) to score a response; returns the integer it answers.
pub fn judge_score(
    url: &str,
    model: &str,
    entry: &InstructionEntry,
    response: &str,
) -> Result<u32> {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": judge_prompt(entry, response)}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
        "stream": false,
    });
    let reply = http_post_json(url, "/api/chat", &body)?;
    let content = reply["message"]["content"]
        .as_str()
        .ok_or_else(|| Error::parse(url, format!("no message.content in the reply {reply}")))?;
    content
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::parse(
                url,
                format!("the judge answered {content:?}, not an integer"),
            )
        })
}

/// A minimal HTTP/1.1 JSON POST over a plain TCP connection — enough for a model server on
/// localhost (no TLS, no redirects; chunked or sized bodies).
pub fn http_post_json(url: &str, path: &str, body: &Value) -> Result<Value> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::invalid("judge", format!("{url}: only http:// URLs are supported"))
    })?;
    let host = rest.trim_end_matches('/').split('/').next().unwrap_or(rest);
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let io = |e: std::io::Error| Error::invalid("judge", format!("{url}: {e}"));
    let mut stream = TcpStream::connect(&addr).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(io)?;
    let payload = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::parse(url, "malformed HTTP reply"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    if !status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        return Err(Error::parse(
            url,
            format!(
                "the server answered {status:?}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        ));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    // De-chunk the raw bytes (chunk sizes count bytes, and a chunk may end inside a UTF-8
    // character), then parse.
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&body).map_err(|e| Error::parse(url, format!("reply is not JSON: {e}")))
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body (sizes in hex, each chunk followed by
/// CRLF, a zero-size chunk last).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
