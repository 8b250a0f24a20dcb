//! The OTLP feed of `ballast serve`: a projection that follows the embedded log and exports
//! every finished turn as OpenTelemetry spans (`telemetry::otlp::spans`) through the exporter
//! `telemetry::otlp::exporter` built. It lives with `serve` because it reads the embedded
//! deployment (log, turn index, vault) — telemetry itself depends on none of those.
//!
//! Per partition it reads from its checkpoint; on each `TurnCompleted` it reads the turn's
//! events, masks them as every view is masked, and exports the turn's spans. The checkpoint
//! advances only after the export succeeded, so a crash (or a collector that is down) re-exports
//! from the last checkpoint and loses nothing.

use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::embedded::Embedded;
use crate::event::Payload;
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, Scan};
use crate::telemetry::otlp::{EXPORT_FAILURES, EXPORT_LAG, SPANS_EXPORTED, spans};

const CHECKPOINTS_TREE: &str = "otlp_export_checkpoints";
/// Turns exported per call to the collector, at most.
const TURNS_PER_EXPORT: usize = 64;

/// Follows the embedded log and exports every finished turn until `stop` turns true.
pub(crate) async fn run(
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
    let mut exported = Vec::new();
    for f @ (_, turn, _) in &finished {
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
        exported.push(f);
    }
    let Some(&&(last_after, _, _)) = exported.last() else {
        return Ok(0);
    };
    let count = batch.len();
    exporter.export(batch).await.map_err(|e| e.to_string())?;
    let now = SystemClock.now_ms();
    for (_, _, at_ms) in &exported {
        metrics::gauge!(EXPORT_LAG).set((now - at_ms).max(0) as f64 / 1000.0);
    }
    metrics::counter!(SPANS_EXPORTED).increment(count as u64);
    // Past the last exported completion; past everything read when every turn in it went out.
    let next = if exported.len() == finished.len() && complete_scan {
        end
    } else {
        last_after
    };
    checkpoints
        .insert(key, &next.to_be_bytes())
        .map_err(|e| e.to_string())?;
    checkpoints.flush_async().await.map_err(|e| e.to_string())?;
    Ok(exported.len())
}
