//! The flags that pick a model server (`finetune instruct --judge-url`, `make-preference-data`).

use std::time::Duration;

use scratchgpt::finetune::model_server::{ChatApi, ModelServer};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ApiChoice {
    /// Ollama's `/api/chat` (the book's choice).
    Ollama,
    /// `/v1/chat/completions`: OpenAI, vLLM, llama.cpp's server, LM Studio, …
    Openai,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// The model's name on the server.
    #[arg(long, default_value = "llama3")]
    pub judge_model: String,
    /// The server's API.
    #[arg(long, value_enum, default_value = "ollama")]
    pub judge_api: ApiChoice,
    /// Environment variable holding the API key, sent as a bearer token (OpenAI-compatible API;
    /// unset = no key, as local servers need none).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Seconds one answer may take.
    #[arg(long, default_value_t = 600)]
    pub judge_timeout: u64,
}

impl ServerArgs {
    /// The server at `url` with these settings.
    pub fn connect(&self, url: &str) -> anyhow::Result<ModelServer> {
        if self.judge_timeout == 0 {
            anyhow::bail!("--judge-timeout must be at least 1 second");
        }
        let api = match self.judge_api {
            ApiChoice::Ollama => ChatApi::Ollama,
            ApiChoice::Openai => ChatApi::OpenAi,
        };
        let key = match api {
            ChatApi::OpenAi => std::env::var(&self.api_key_env).ok(),
            ChatApi::Ollama => None,
        };
        Ok(ModelServer::new(
            url,
            &self.judge_model,
            api,
            key,
            Duration::from_secs(self.judge_timeout),
        )?)
    }
}
