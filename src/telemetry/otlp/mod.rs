//! Traces in the team's own tracing backend: every finished turn as OpenTelemetry spans
//! ([`spans`]) sent to an OTLP endpoint, over HTTP/protobuf or gRPC, through the
//! `opentelemetry-otlp` exporter ([`exporter`]). The projection that feeds it follows the
//! embedded log from `ballast serve` (`serve/otlp_feed.rs`).
//!
//! Like every projection it follows the log: per partition it reads from its checkpoint, and on
//! each `TurnCompleted` it reads the turn's events, masks them as every view is masked, and
//! exports the turn's spans. The checkpoint advances only after the export succeeded, so a crash
//! (or a collector that is down) re-exports from the last checkpoint and loses nothing; span ids
//! come from event ids, so what is sent twice is the same span, not a new one. `ballast_otlp_*`
//! metrics give spans exported, failures and the lag (turn finished → its spans accepted).

pub mod spans;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use serde::{Deserialize, Serialize};

pub const SPANS_EXPORTED: &str = "ballast_otlp_spans_exported_total";
pub const EXPORT_FAILURES: &str = "ballast_otlp_export_failures_total";
pub const EXPORT_LAG: &str = "ballast_otlp_export_lag_seconds";

/// `[telemetry]` in `ballast.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where spans go: `http://collector:4318` (HTTP; `/v1/traces` is added) or
    /// `http://collector:4317` (gRPC). Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    pub otlp_protocol: OtlpProtocol,
    /// Headers (HTTP) or metadata (gRPC) of each export, e.g. an API key; values may name
    /// `${VAR}`.
    pub otlp_headers: BTreeMap<String, String>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// One export's timeout.
    pub otlp_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            otlp_headers: BTreeMap::new(),
            service_name: "ballast".into(),
            otlp_timeout_ms: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

impl TelemetryConfig {
    /// What is wrong with this section, as (field, message).
    pub fn problems(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(url) = &self.otlp_endpoint {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => out.push(("otlp_endpoint", "the scheme must be http or https".into())),
                Err(e) => out.push(("otlp_endpoint", e.to_string())),
            }
        }
        for (k, v) in &self.otlp_headers {
            if let Err(var) = crate::exec::http_tool::expand(v, env) {
                out.push((
                    "otlp_headers",
                    format!("{k}: environment variable {var} is not set"),
                ));
            }
        }
        if !(1..=120_000).contains(&self.otlp_timeout_ms) {
            out.push(("otlp_timeout_ms", "between 1 and 120000".into()));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("[telemetry] {0}")]
    Config(String),
    #[error("otlp exporter: {0}")]
    Build(String),
}

/// The exporter `config` describes (its endpoint must be set).
pub fn exporter(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    if let Some((field, message)) = config.problems(env).into_iter().next() {
        return Err(OtlpError::Config(format!("{field}: {message}")));
    }
    let endpoint = config
        .otlp_endpoint
        .clone()
        .ok_or_else(|| OtlpError::Config("otlp_endpoint is not set".into()))?;
    let mut headers = HashMap::new();
    for (k, v) in &config.otlp_headers {
        let value = crate::exec::http_tool::expand(v, env)
            .map_err(|var| OtlpError::Config(format!("otlp_headers.{k}: {var} is not set")))?;
        headers.insert(k.clone(), value);
    }
    let timeout = Duration::from_millis(config.otlp_timeout_ms);
    let built = match config.otlp_protocol {
        OtlpProtocol::HttpProtobuf => {
            let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
                endpoint
            } else {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(timeout)
                .with_headers(headers)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut map = reqwest::header::HeaderMap::new();
            for (k, v) in headers {
                let name =
                    reqwest::header::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| OtlpError::Config(format!("otlp_headers.{k}: {e}")))?;
                let value = reqwest::header::HeaderValue::from_str(&v)
                    .map_err(|e| OtlpError::Config(format!("otlp_headers.{k}: {e}")))?;
                map.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map);
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata)
                .build()
        }
    };
    built.map_err(|e| OtlpError::Build(e.to_string()))
}
