//! `ballast bench --bootstrap B`: the same five-step turns through a Kafka worker, against a
//! raw idempotent producer writing the same number of same-size records to the same broker in
//! the same run. The worker runs twice on fresh topics: with transactions spanning rounds
//! (`--commit-interval-ms`, the report's main figures) and with a transaction per round (the
//! `per_round_*` figures), so what the interval buys and the latency it adds are side by side.

use std::time::Instant;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use super::{BenchReport, bench_requests, instant_plane};
use crate::demo::run::{DemoError, percentile};
use crate::event::codec::{Codecs, SchemaRegistry};
use crate::ids::{Offset, Partition};
use crate::kafka::worker::{WorkerOptions, run as run_worker};
use crate::kafka::{Topics, init};
use crate::log::Scan;
use crate::log::kafka::{KafkaConfig, KafkaLog, ensure_topic, kafka_error};
use crate::log::{EventLog, LogError};
use crate::runtime::{RuntimeError, WorkerConfig};

pub async fn run(
    bootstrap: &str,
    turns: usize,
    partitions: u32,
    in_flight: usize,
    commit_interval_ms: u64,
) -> Result<BenchReport, DemoError> {
    let cfg = KafkaConfig::new(bootstrap);
    let base = engine(&cfg, turns, partitions, in_flight, 0).await?;
    let mut report = engine(&cfg, turns, partitions, in_flight, commit_interval_ms).await?;
    let raw = raw_kafka_appends(
        &cfg,
        &format!("bench-{}.raw", uuid::Uuid::now_v7().simple()),
        partitions,
        report.events as usize,
        report.avg_record_bytes,
    )
    .await?;
    report.raw_appends_per_sec = raw;
    let mut base = base;
    base.raw_appends_per_sec = raw;
    report.per_round = Some((commit_interval_ms, Box::new(base)));
    Ok(report)
}

/// The turns through a Kafka worker on fresh topics (the baseline is filled in by the caller).
async fn engine(
    cfg: &KafkaConfig,
    turns: usize,
    partitions: u32,
    in_flight: usize,
    commit_interval_ms: u64,
) -> Result<BenchReport, DemoError> {
    let cfg = cfg.clone();
    let prefix = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let topics = Topics::new(&prefix);
    init(&cfg, &topics, partitions, 1).await?;
    let codecs = Codecs::new(SchemaRegistry::new()).map_err(|e| DemoError::Runtime(e.into()))?;
    let requests = KafkaLog::open(&cfg, &topics.requests).await?;

    let dir = tempfile::tempdir().map_err(DemoError::Journal)?;
    let opts = WorkerOptions {
        kafka: cfg.clone(),
        topics: topics.clone(),
        group: format!("{prefix}-workers"),
        data_dir: dir.path().to_path_buf(),
        transactional: true,
        worker: WorkerConfig {
            max_turns_per_partition: in_flight.div_ceil(partitions.max(1) as usize).max(1),
            commit_interval_ms,
            ..WorkerConfig::default()
        },
        session_timeout_ms: 10_000,
        intake: crate::control::claims::IntakeTrust::trust_all(),
        // As deployed: the vault on (tokenizing the bench's requests, sealing in the topic).
        vault: Some(crate::kafka::worker::VaultOptions {
            master: crate::vault::crypto::random_key(),
            detector: crate::guard::Redactor::builtin(),
        }),
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_worker(
        opts,
        instant_plane(),
        None,
        Some(out_tx),
        stop_rx,
    ));
    // Steady state: the clock starts at the first finished turn, after group join and fencing.
    let run = super::load::closed_loop(
        &requests,
        &codecs.requests,
        &bench_requests(turns),
        in_flight,
        &mut out_rx,
    )
    .await?;
    let (latencies_us, elapsed, outcomes) = (run.latencies_us, run.steady, run.outcomes);
    stop_tx.send_replace(true);
    task.await
        .map_err(|e| RuntimeError::Task(e.to_string()))?
        .map_err(|e| DemoError::Runtime(RuntimeError::Task(e.to_string())))?;

    let events_log = KafkaLog::open(&cfg, &topics.events).await?;
    let (mut events, mut bytes) = (0u64, 0usize);
    for p in (0..events_log.partitions()).map(Partition) {
        let mut scan = Scan::new(&events_log, p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(20_000).await? {
            events += batch.len() as u64;
            bytes += batch
                .iter()
                .map(|s| s.key.len() + s.value.len())
                .sum::<usize>();
        }
    }
    let avg = bytes / (events.max(1) as usize);
    // The steady-state window covers all but the first turn's events.
    let per_turn = events / turns.max(1) as u64;
    Ok(BenchReport {
        turns: turns.saturating_sub(1),
        events: events.saturating_sub(per_turn),
        appends: 0,
        elapsed,
        p50_ms: percentile(&latencies_us, 0.50) as f64 / 1000.0,
        p99_ms: percentile(&latencies_us, 0.99) as f64 / 1000.0,
        avg_record_bytes: avg,
        raw_appends_per_sec: 0.0,
        // Kafka's bench requests carry no personal values: nothing to time apart.
        tokenize_us_per_request: None,
        snapshots: None,
        per_round: None,
        outcomes,
    })
}

/// The baseline: an idempotent producer (`acks=all`) writing `n` records of `size` bytes to a
/// fresh topic on the same broker, all acknowledged.
async fn raw_kafka_appends(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: u32,
    n: usize,
    size: usize,
) -> Result<f64, LogError> {
    ensure_topic(cfg, topic, partitions, 1, &[]).await?;
    let producer: FutureProducer = cfg
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(kafka_error)?;
    let value = vec![0x5a_u8; size];
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n.min(50_000));
    for i in 0..n {
        let key = (i as u64).to_be_bytes();
        let record = FutureRecord::to(topic)
            .partition((i as u32 % partitions.max(1)) as i32)
            .key(&key[..])
            .payload(&value[..]);
        match producer.send_result(record) {
            Ok(d) => pending.push(d),
            Err((e, _)) => return Err(kafka_error(e)),
        }
        if pending.len() >= 50_000 {
            for d in pending.drain(..) {
                let _ = d.await;
            }
        }
    }
    for d in pending {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(kafka_error(e)),
            Err(_) => return Err(LogError::Closed),
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
