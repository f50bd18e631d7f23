//! A chat model behind an HTTP server, as the book's chapter 7 uses one (Llama 3 through Ollama)
//! to judge responses and to write preference data. Two APIs:
//!
//! - **Ollama**: `POST {url}/api/chat` with `{"model", "messages", "options": {"seed",
//!   "temperature", "num_ctx"}, "stream": false}`; the answer is `message.content`.
//! - **OpenAI-compatible** (OpenAI, vLLM, llama.cpp's server, LM Studio, …):
//!   `POST {url}/v1/chat/completions` (or `{url}/chat/completions` when the URL already ends in
//!   `/v1`) with `{"model", "messages", "seed", "temperature"}` and, if the key's environment
//!   variable is set, `Authorization: Bearer <key>`; the answer is `choices[0].message.content`.
//!
//! Both are asked deterministically, as the book does: seed 123, temperature 0 (and Ollama's
//! context of 2048 tokens).

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Which API the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatApi {
    Ollama,
    OpenAi,
}

/// A chat model on a server.
pub struct ModelServer {
    base: String,
    model: String,
    api: ChatApi,
    api_key: Option<String>,
    agent: ureq::Agent,
}

/// How long one answer may take by default (a large local model on a CPU is slow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl ModelServer {
    /// The server at `url` (`http://` or `https://`) serving `model` through `api`; `api_key` is
    /// sent as a bearer token (OpenAI-compatible API only). Each answer must arrive within
    /// `timeout`.
    pub fn new(
        url: &str,
        model: &str,
        api: ChatApi,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(
                "model server",
                format!("{url:?}: the URL must start with http:// or https://"),
            ));
        }
        if model.trim().is_empty() {
            return Err(Error::invalid("model server", "the model name is empty"));
        }
        Ok(ModelServer {
            base: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api,
            api_key: api_key.filter(|k| !k.is_empty()),
            agent: crate::net::agent(timeout),
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> String {
        match self.api {
            ChatApi::Ollama => format!("{}/api/chat", self.base),
            ChatApi::OpenAi if self.base.ends_with("/v1") => {
                format!("{}/chat/completions", self.base)
            }
            ChatApi::OpenAi => format!("{}/v1/chat/completions", self.base),
        }
    }

    /// The model's answer to one user message.
    pub fn chat(&self, prompt: &str) -> Result<String> {
        let messages = json!([{"role": "user", "content": prompt}]);
        let url = self.endpoint();
        let (body, headers) = match self.api {
            ChatApi::Ollama => (
                json!({
                    "model": self.model,
                    "messages": messages,
                    "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
                    "stream": false,
                }),
                vec![],
            ),
            ChatApi::OpenAi => (
                json!({
                    "model": self.model,
                    "messages": messages,
                    "seed": 123,
                    "temperature": 0,
                }),
                self.api_key
                    .as_ref()
                    .map(|k| vec![("Authorization", format!("Bearer {k}"))])
                    .unwrap_or_default(),
            ),
        };
        let reply = crate::net::post_json(&self.agent, &url, &headers, &body)?;
        let content = match self.api {
            ChatApi::Ollama => &reply["message"]["content"],
            ChatApi::OpenAi => &reply["choices"][0]["message"]["content"],
        };
        content.as_str().map(str::to_string).ok_or_else(|| {
            let field = match self.api {
                ChatApi::Ollama => "message.content",
                ChatApi::OpenAi => "choices[0].message.content",
            };
            Error::Network {
                url,
                msg: format!("the reply has no {field}: {}", brief(&reply)),
            }
        })
    }
}

/// A reply, shortened for an error message.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}
