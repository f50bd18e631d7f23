//! The project's HTTP (`ureq`, with rustls for https): an agent with timeouts and a bounded
//! reply, and a JSON POST. Only commands the user points at a server use it — a model server for
//! judging or writing preference data, and `download` ([`hub`], through the `hf-hub` crate and
//! its own ureq); nothing in training touches the network.

pub mod hub;

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// Largest reply read into memory (a chat reply is a few KB; a server that sends more is
/// refused rather than followed).
pub const MAX_REPLY_BYTES: u64 = 16 << 20;

/// How long to wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client whose requests each end within `timeout` (connecting, sending, waiting and
/// reading together). Status codes are read, not turned into errors, so a server's own error
/// message can be reported.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .http_status_as_error(false)
        .user_agent(concat!("scratchgpt/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn net_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Network {
        url: url.to_string(),
        msg: e.to_string(),
    }
}

/// POSTs `body` as JSON to `url` with extra `headers`; returns the reply parsed as JSON. A reply
/// that is not 2xx, larger than [`MAX_REPLY_BYTES`], or not JSON is an error naming the URL (and
/// quoting the server's message).
pub fn post_json(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Result<Value> {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut reply = request
        .send(body.to_string())
        .map_err(|e| net_error(url, e))?;
    let status = reply.status();
    let text = reply
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_string()
        .map_err(|e| net_error(url, e))?;
    if !status.is_success() {
        let quoted: String = text.trim().chars().take(500).collect();
        return Err(net_error(
            url,
            format!("the server answered {status}: {quoted}"),
        ));
    }
    serde_json::from_str(&text).map_err(|e| net_error(url, format!("the reply is not JSON: {e}")))
}
