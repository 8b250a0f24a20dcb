//! A planner that asks an OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama,
//! llama.cpp server, …) for a plan by tool calling. The catalog's JSON schemas are the tool
//! definitions; the model's tool calls are the plan's steps, in order.
//!
//! Transport failures, timeouts, 429 and 5xx are retried a bounded number of times with
//! exponential backoff (honouring `Retry-After`), then reported as retryable, so the turn's own
//! retry budget and ladder take over. A 4xx other than 408/429 is terminal: asking again
//! unchanged cannot help. A body that cannot become a plan is reported as retryable once the
//! retries are spent (models answer differently on a second try).

pub mod wire;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use super::{PlanRequest, Planner};
use crate::exec::types::{ExecFailure, Planned};

/// How to reach one model. Lives in the configuration file under `[planners.<profile>]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1` for Ollama.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key; none is sent when it is unset or empty.
    pub api_key_env: Option<String>,
    /// One HTTP exchange, connection included.
    pub timeout_ms: u64,
    /// Extra attempts after the first for retryable failures.
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub max_tokens: u32,
    pub temperature: f64,
    /// Ask for token logprobs; the plan's confidence is exp(mean logprob).
    pub logprobs: bool,
    /// The confidence recorded when the server returns no logprobs. Unset, the plan records
    /// NaN — a dropped confidence signal — and the escalation ladder decides.
    pub default_confidence: Option<f64>,
    /// A larger response body fails the exchange (retryable, like any unusable answer).
    pub max_response_bytes: usize,
    /// The system prompt of this profile (default: a tool-using support agent that cites the
    /// context documents as `[doc:ID]`).
    pub system_prompt: Option<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            timeout_ms: 30_000,
            max_retries: 2,
            backoff_ms: 250,
            max_backoff_ms: 4_000,
            max_tokens: 512,
            temperature: 0.0,
            logprobs: true,
            default_confidence: None,
            max_response_bytes: super::body::DEFAULT_MAX_RESPONSE_BYTES,
            system_prompt: None,
        }
    }
}

/// Why one exchange with the server failed; whether to try again is decided here.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(transparent)]
    Malformed(#[from] wire::Malformed),
    #[error("configuration: {0}")]
    Config(String),
}

impl ModelError {
    /// What went wrong, without the server's words (for logs).
    pub fn kind(&self) -> String {
        match self {
            ModelError::Transport { .. } => "transport".into(),
            ModelError::Timeout(ms) => format!("timeout after {ms} ms"),
            ModelError::Status { status, .. } => format!("HTTP {status}"),
            ModelError::Malformed(_) => "malformed completion".into(),
            ModelError::Config(_) => "configuration".into(),
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            ModelError::Transport { .. } | ModelError::Timeout(_) | ModelError::Malformed(_) => {
                true
            }
            ModelError::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || *status >= 500
            }
            ModelError::Config(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub struct OpenAiPlanner {
    config: OpenAiConfig,
    client: reqwest::Client,
    url: String,
    catalog: Catalog,
    template_hash: String,
    system: String,
}

impl OpenAiPlanner {
    pub fn new(config: OpenAiConfig, catalog: Catalog) -> Result<Self, ModelError> {
        if config.model.trim().is_empty() {
            return Err(ModelError::Config("model is empty".into()));
        }
        if !(1..=super::body::MAX_RESPONSE_CAP).contains(&config.max_response_bytes) {
            return Err(ModelError::Config(format!(
                "max_response_bytes must be between 1 and {}",
                super::body::MAX_RESPONSE_CAP
            )));
        }
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|e| ModelError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ModelError::Config(format!(
                "base_url {:?}: scheme must be http or https",
                config.base_url
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 10_000)))
            .build()
            .map_err(|e| ModelError::Config(e.to_string()))?;
        let system = config
            .system_prompt
            .clone()
            .unwrap_or_else(|| wire::SYSTEM_TEMPLATE.to_string());
        Ok(OpenAiPlanner {
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            template_hash: wire::template_hash(&system, &catalog),
            system,
            config,
            client,
            catalog,
        })
    }

    fn api_key(&self) -> Option<String> {
        let var = self.config.api_key_env.as_deref()?;
        std::env::var(var).ok().filter(|k| !k.trim().is_empty())
    }

    /// One exchange: the response body on a 2xx, else the error it amounts to.
    async fn exchange(&self, body: &serde_json::Value) -> Result<Vec<u8>, ModelError> {
        let mut req = self.client.post(&self.url).json(body);
        if let Some(key) = self.api_key() {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match super::body::read_capped(resp, self.config.max_response_bytes).await {
            Ok(b) => b,
            Err(super::body::BodyError::Transport(e)) => return Err(self.transport(e)),
            Err(e @ super::body::BodyError::TooLarge { .. }) => {
                return Err(ModelError::Transport {
                    url: self.url.clone(),
                    message: e.to_string(),
                });
            }
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ModelError::Status {
                status: status.as_u16(),
                message: text.chars().take(300).collect(),
                retry_after,
            });
        }
        Ok(bytes)
    }

    fn transport(&self, e: reqwest::Error) -> ModelError {
        if e.is_timeout() {
            ModelError::Timeout(self.config.timeout_ms)
        } else {
            ModelError::Transport {
                url: self.url.clone(),
                message: e.to_string(),
            }
        }
    }

    fn backoff(&self, retry: u32, error: &ModelError) -> Duration {
        let exp = self
            .config
            .backoff_ms
            .saturating_mul(1u64 << retry.min(16))
            .min(self.config.max_backoff_ms);
        let wait = Duration::from_millis(exp);
        let cap = Duration::from_millis(self.config.max_backoff_ms);
        error.retry_after().map_or(wait, |ra| ra.min(cap).max(wait))
    }

    /// Asks until an answer parses, a terminal error, or the retries are spent; the answer
    /// and the digest of the messages sent.
    pub async fn complete(
        &self,
        request: &PlanRequest,
    ) -> Result<(wire::Completion, String), ModelError> {
        let (body, digest) = wire::request_body(
            request,
            &self.catalog,
            &wire::BodyOptions {
                model: &self.config.model,
                system: &self.system,
                max_tokens: self.config.max_tokens,
                temperature: self.config.temperature,
                logprobs: self.config.logprobs,
            },
        );
        let mut retry = 0;
        loop {
            let result = match self.exchange(&body).await {
                Ok(bytes) => wire::parse_completion(&bytes).map_err(ModelError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(c) => return Ok((c, digest)),
                Err(e) if e.retryable() && retry < self.config.max_retries => {
                    let wait = self.backoff(retry, &e);
                    // The error's text may echo the request (cleartext personal values): logs get
                    // its kind only; the text reaches the record tokenized, at the plane's edge.
                    tracing::warn!(error = e.kind(), retry, wait_ms = wait.as_millis() as u64, model = %self.config.model, "model call failed; retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Planner for OpenAiPlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure> {
        let started = Instant::now();
        let (completion, digest) = self.complete(request).await.map_err(|e| ExecFailure {
            retryable: e.retryable(),
            message: format!("{}: {e}", self.config.model),
            latency_ms: started.elapsed().as_millis() as i64,
        })?;
        // Estimates for servers that report no usage.
        let approx_in: i64 = wire::messages(&self.system, request)
            .iter()
            .map(|m| super::scripted::approx_tokens(&m.to_string()))
            .sum();
        let approx_out: i64 = completion
            .steps
            .iter()
            .map(|s| super::scripted::approx_tokens(&s.args_json))
            .sum::<i64>()
            + completion
                .content
                .as_deref()
                .map_or(0, super::scripted::approx_tokens);
        Ok(Planned {
            model: self.config.model.clone(),
            // What the server says answered; its backend fingerprint is recorded beside it.
            model_version: completion.model.clone().unwrap_or_else(|| "unknown".into()),
            prompt_template_hash: self.template_hash.clone(),
            steps: completion.steps,
            confidence: completion
                .confidence
                .or(self.config.default_confidence)
                .unwrap_or(f64::NAN),
            input_tokens: completion.input_tokens.unwrap_or(approx_in),
            output_tokens: completion.output_tokens.unwrap_or(approx_out.max(1)),
            latency_ms: started.elapsed().as_millis() as i64,
            content: completion.content,
            finish_reason: completion.finish_reason,
            system_fingerprint: completion.fingerprint,
            messages_digest: Some(digest),
        })
    }
}
