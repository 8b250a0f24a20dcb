//! The OTLP feed of `ballast serve`: a projection that follows the turn log and exports every
//! finished turn as OpenTelemetry spans (`telemetry::otlp::spans`) through the exporter
//! `telemetry::otlp::exporter` built. It lives with `serve` because it reads the deployment's
//! logs, turn index and vault — telemetry itself depends on none of those.
//!
//! Per partition it reads from its checkpoint; on each `TurnCompleted` it reads the turn's
//! events, masks them as every view is masked, and exports the turn's spans. The checkpoint
//! advances only after the export succeeded, so a crash (or a collector that is down) re-exports
//! from the last checkpoint and loses nothing. Which partitions a process exports, and where
//! its checkpoints live, is its [`Ownership`]: embedded, every partition with checkpoints in the
//! data dir; replicas on Kafka share the partitions through a consumer group of their own and
//! keep checkpoints as that group's committed offsets, so each turn is exported by one replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use rdkafka::{ClientContext, TopicPartitionList as Tpl};
use tokio::sync::watch;

use crate::api::Logs;
use crate::clock::{Clock, SystemClock};
use crate::event::Payload;
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::telemetry::otlp::{EXPORT_FAILURES, EXPORT_LAG, SPANS_EXPORTED, spans};

const CHECKPOINTS_TREE: &str = "otlp_export_checkpoints";
/// Turns exported per call to the collector, at most.
const TURNS_PER_EXPORT: usize = 64;

/// Which partitions this process exports, and its checkpoint in each.
#[async_trait::async_trait]
pub(crate) trait Ownership: Send + Sync + 'static {
    /// The partitions to export now (of `all`).
    fn owned(&self, all: u32) -> Vec<Partition>;
    async fn checkpoint(&self, p: Partition) -> Result<u64, String>;
    async fn advance(&self, p: Partition, next: u64) -> Result<(), String>;
    /// Held while a partition is exported: handing the partition to another process waits
    /// for the export under way, so two never export the same turns at once.
    fn exporting(&self) -> Arc<tokio::sync::Mutex<()>>;
    /// Lets the partitions go (shutdown).
    fn leave(&self) {}
}

/// Embedded: every partition, checkpoints in the data dir.
pub(crate) struct LocalOwnership {
    tree: sled::Tree,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl LocalOwnership {
    pub(crate) fn open(store: &crate::log::SledStore) -> Result<Arc<Self>, String> {
        Ok(Arc::new(LocalOwnership {
            tree: store.tree(CHECKPOINTS_TREE).map_err(|e| e.to_string())?,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }))
    }
}

#[async_trait::async_trait]
impl Ownership for LocalOwnership {
    fn owned(&self, all: u32) -> Vec<Partition> {
        (0..all).map(Partition).collect()
    }
    async fn checkpoint(&self, p: Partition) -> Result<u64, String> {
        Ok(self
            .tree
            .get(p.0.to_be_bytes())
            .map_err(|e| e.to_string())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }
    async fn advance(&self, p: Partition, next: u64) -> Result<(), String> {
        self.tree
            .insert(p.0.to_be_bytes(), &next.to_be_bytes())
            .map_err(|e| e.to_string())?;
        self.tree
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn exporting(&self) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(&self.lock)
    }
}

/// Replicas on Kafka: a consumer group over the turn log used for membership only (its
/// partitions paused, nothing consumed through it); checkpoints are its committed offsets.
pub(crate) struct GroupOwnership {
    consumer: Arc<BaseConsumer<Handover>>,
    topic: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Hands a partition over only once its export under way has finished.
pub(crate) struct Handover {
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl ClientContext for Handover {}

impl ConsumerContext for Handover {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = r {
            // The poll thread, not the runtime: blocking here is what delays the handover.
            drop(self.lock.blocking_lock());
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            let _ = c.pause(tpl);
        }
    }
}

impl GroupOwnership {
    pub(crate) fn join(
        cfg: &crate::log::kafka::KafkaConfig,
        group: &str,
        topic: &str,
    ) -> Result<Arc<Self>, String> {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let consumer: BaseConsumer<Handover> = cfg
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500")
            .create_with_context(Handover {
                lock: Arc::clone(&lock),
            })
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (consumer, stop) = (Arc::clone(&consumer), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("ballast-otlp-group".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        // Paused partitions deliver nothing; polling serves rebalances.
                        let _ = consumer.poll(Duration::from_millis(100));
                    }
                    consumer.unsubscribe();
                    for _ in 0..30 {
                        let _ = consumer.poll(Duration::from_millis(100));
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(Arc::new(GroupOwnership {
            consumer,
            topic: topic.to_string(),
            lock,
            stop,
        }))
    }
}

#[async_trait::async_trait]
impl Ownership for GroupOwnership {
    fn owned(&self, all: u32) -> Vec<Partition> {
        let Ok(tpl) = self.consumer.assignment() else {
            return Vec::new();
        };
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .filter_map(|e| u32::try_from(e.partition()).ok())
            .filter(|p| *p < all)
            .map(Partition)
            .collect()
    }
    async fn checkpoint(&self, p: Partition) -> Result<u64, String> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let tpl = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, p.0 as i32);
            consumer.committed_offsets(tpl, Duration::from_secs(5))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(tpl
            .find_partition(&self.topic, p.0 as i32)
            .and_then(|e| match e.offset() {
                KOffset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            })
            .unwrap_or(0))
    }
    async fn advance(&self, p: Partition, next: u64) -> Result<(), String> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl: Tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, p.0 as i32, KOffset::Offset(next as i64))
                .map_err(|e| e.to_string())?;
            consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
    fn exporting(&self) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(&self.lock)
    }
    fn leave(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Follows the turn log and exports every finished turn of the partitions `owner` holds until
/// `stop` turns true.
pub(crate) async fn run(
    logs: Logs,
    mut exporter: opentelemetry_otlp::SpanExporter,
    service_name: String,
    owner: Arc<dyn Ownership>,
    mut stop: watch::Receiver<bool>,
) {
    exporter.set_resource(&Resource::builder().with_service_name(service_name).build());
    let scope = InstrumentationScope::builder("ballast")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let mut backoff = Duration::from_millis(200);
    let mut held = Vec::new();
    loop {
        let mut progressed = false;
        let mut failed = false;
        let owned = owner.owned(logs.events.partitions());
        if owned != held {
            tracing::info!(partitions = ?owned.iter().map(|p| p.0).collect::<Vec<_>>(), "otlp export: the partitions this process exports");
            held = owned.clone();
        }
        for p in owned {
            let lock = owner.exporting();
            let _exporting = lock.lock().await;
            // Still ours once the lock is held (a handover may have run while it waited).
            if !owner.owned(logs.events.partitions()).contains(&p) {
                continue;
            }
            match export_partition(&logs, &exporter, &scope, owner.as_ref(), p).await {
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
    owner.leave();
    let _ = exporter.shutdown();
}

/// Exports the turns that finished in `p` since its checkpoint; returns how many.
async fn export_partition(
    emb: &Logs,
    exporter: &opentelemetry_otlp::SpanExporter,
    scope: &InstrumentationScope,
    owner: &dyn Ownership,
    p: Partition,
) -> Result<usize, String> {
    let from = owner.checkpoint(p).await?;
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
            owner.advance(p, end).await?;
        }
        return Ok(0);
    }
    let index =
        crate::projection::turn_index::TurnIndex::open(&emb.store).map_err(|e| e.to_string())?;
    // Where each finished turn's events begin. The turn index may not have caught up with the
    // log yet: stop at the first turn it lacks, come back later.
    let mut ready = Vec::new();
    for &(after, turn, at_ms) in &finished {
        match index.get(turn).map_err(|e| e.to_string())? {
            Some(entry) => ready.push((after, turn, at_ms, entry.first_offset)),
            None => break,
        }
    }
    let Some(&(last_after, ..)) = ready.last() else {
        return Ok(0);
    };
    // One scan over the range the turns span, not a read per turn: on Kafka a read at another
    // offset opens a fresh consumer, and a read per turn made the export fall minutes behind.
    // A turn's spans are its events up to its `TurnCompleted`, so an export sent again is the
    // same spans.
    let wanted: HashMap<Vec<u8>, (TurnId, u64)> = ready
        .iter()
        .map(|&(after, turn, ..)| (turn.key(), (turn, after)))
        .collect();
    let start = ready.iter().map(|r| r.3).min().unwrap_or(from);
    let mut events: HashMap<TurnId, Vec<crate::event::Event>> = HashMap::new();
    let mut scan = Scan::new(emb.events.as_ref(), p, Offset(start));
    'scan: while let Some(chunk) = scan.next_chunk(4096).await.map_err(|e| e.to_string())? {
        for stored in chunk {
            if stored.offset.0 >= last_after {
                break 'scan;
            }
            let Some(&(turn, after)) = wanted.get(&stored.key) else {
                continue;
            };
            if stored.offset.0 < after {
                let e = emb
                    .codecs
                    .events
                    .decode(&stored.value)
                    .map_err(|e| e.to_string())?;
                events.entry(turn).or_default().push(e);
            }
        }
    }
    let mut masker = crate::vault::view::Masker::new(Some(emb.vault_store.as_ref()));
    let mut batch = Vec::new();
    for mut turn_events in events.into_values() {
        masker.events(&mut turn_events);
        batch.extend(spans::spans(&turn_events, scope));
    }
    let exported = ready;
    let count = batch.len();
    exporter.export(batch).await.map_err(|e| e.to_string())?;
    let now = SystemClock.now_ms();
    for (_, _, at_ms, _) in &exported {
        metrics::gauge!(EXPORT_LAG).set((now - at_ms).max(0) as f64 / 1000.0);
    }
    metrics::counter!(SPANS_EXPORTED).increment(count as u64);
    // Past the last exported completion; past everything read when every turn in it went out.
    let next = if exported.len() == finished.len() && complete_scan {
        end
    } else {
        last_after
    };
    owner.advance(p, next).await?;
    Ok(exported.len())
}
