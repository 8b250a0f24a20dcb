//! Traces in the team's own tracing backend: a projection that exports every finished turn as
//! OpenTelemetry spans ([`spans`]) to an OTLP endpoint, over HTTP/protobuf or gRPC, through the
//! `opentelemetry-otlp` exporter.
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

use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::embedded::Embedded;
use crate::event::Payload;
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, Scan};

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

const CHECKPOINTS_TREE: &str = "otlp_export_checkpoints";
/// Turns exported per call to the collector, at most.
const TURNS_PER_EXPORT: usize = 64;

/// Follows the embedded log and exports every finished turn until `stop` turns true.
pub async fn run(
    emb: Embedded,
    mut exporter: opentelemetry_otlp::SpanExporter,
    service_name: String,
    mut stop: watch::Receiver<bool>,
) {
    exporter.set_resource(&Resource::builder().with_service_name(service_name).build());
    let scope = InstrumentationScope::builder("ballast")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let checkpoints = match emb.store.tree(CHECKPOINTS_TREE) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "otlp export: no checkpoint tree; not exporting");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut progressed = false;
        let mut failed = false;
        for p in (0..emb.events.partitions()).map(Partition) {
            match export_partition(&emb, &exporter, &scope, &checkpoints, p).await {
                Ok(n) => progressed |= n > 0,
                Err(e) => {
                    failed = true;
                    metrics::counter!(EXPORT_FAILURES).increment(1);
                    tracing::warn!(partition = %p, error = %e, "otlp export failed; retrying from the checkpoint");
                }
            }
        }
        if *stop.borrow() {
            break;
        }
        let pause = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        } else {
            backoff = Duration::from_millis(200);
            if progressed {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    let _ = exporter.shutdown();
}

/// Exports the turns that finished in `p` since its checkpoint; returns how many.
async fn export_partition(
    emb: &Embedded,
    exporter: &opentelemetry_otlp::SpanExporter,
    scope: &InstrumentationScope,
    checkpoints: &sled::Tree,
    p: Partition,
) -> Result<usize, String> {
    let key = p.0.to_be_bytes();
    let from = checkpoints
        .get(key)
        .map_err(|e| e.to_string())?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    let mut scan = Scan::new(emb.events.as_ref(), p, Offset(from));
    // (offset after the TurnCompleted, turn, completed at) of each finished turn, in order.
    let mut finished = Vec::new();
    let mut end = from;
    while let Some(chunk) = scan.next_chunk(4096).await.map_err(|e| e.to_string())? {
        for stored in chunk {
            end = stored.offset.0 + 1;
            // Only completions matter here; the rest is read back per turn.
            let Ok(e) = emb.codecs.events.decode(&stored.value) else {
                continue;
            };
            if matches!(e.payload, Payload::TurnCompleted(_)) {
                finished.push((stored.offset.0 + 1, e.turn_id, e.at_ms));
            }
        }
        if finished.len() >= TURNS_PER_EXPORT {
            break;
        }
    }
    let complete_scan = finished.len() < TURNS_PER_EXPORT;
    if finished.is_empty() {
        if end > from {
            checkpoints
                .insert(key, &end.to_be_bytes())
                .map_err(|e| e.to_string())?;
        }
        return Ok(0);
    }
    let index =
        crate::projection::turn_index::TurnIndex::open(&emb.store).map_err(|e| e.to_string())?;
    let mut batch = Vec::new();
    let mut masker = crate::vault::view::Masker::new(Some(emb.vault_store.as_ref()));
    let mut exported = 0;
    for (_, turn, _) in &finished {
        // The turn index may not have caught up with the log yet: stop here, come back later.
        let Some((_, events)) =
            crate::operator::read_turn(emb.events.as_ref(), &emb.codecs, &index, *turn)
                .await
                .map_err(|e| e.to_string())?
        else {
            break;
        };
        let mut events: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
        masker.events(&mut events);
        batch.extend(spans::spans(&events, scope));
        exported += 1;
    }
    if exported == 0 {
        return Ok(0);
    }
    let count = batch.len();
    exporter.export(batch).await.map_err(|e| e.to_string())?;
    let now = SystemClock.now_ms();
    for (_, _, at_ms) in &finished[..exported] {
        metrics::gauge!(EXPORT_LAG).set((now - at_ms).max(0) as f64 / 1000.0);
    }
    metrics::counter!(SPANS_EXPORTED).increment(count as u64);
    // Past the last exported completion; past everything read when every turn in it went out.
    let next = if exported == finished.len() && complete_scan {
        end
    } else {
        finished[exported - 1].0
    };
    checkpoints
        .insert(key, &next.to_be_bytes())
        .map_err(|e| e.to_string())?;
    checkpoints.flush_async().await.map_err(|e| e.to_string())?;
    Ok(exported)
}
