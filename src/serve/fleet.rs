//! `ballast serve` over Kafka: one replica of the front door of a scale-out deployment. It
//! holds no partition — `ballast worker` processes run the turns — and serves the same API,
//! dashboard, streams, operator desk, SLO views and OTLP export as the embedded `serve`, over
//! the topics:
//!
//! - requests are admitted (validated, claims checked, tokenized, their values sealed and
//!   published to `PREFIX.vault` first) and produced to `PREFIX.requests`; a 2xx means the
//!   request is acknowledged by the brokers;
//! - reads come from projections folded from `PREFIX.turn-events` (read_committed) into the
//!   replica's data dir, which is only a cache: delete it and the replica rebuilds it;
//! - operator commands go to the turn's request partition, as the CLI sends them;
//! - the OTLP export runs once per partition across replicas: the replicas share the turn
//!   log's partitions through a consumer group of their own, each exporting what it owns and
//!   committing how far it got;
//! - back-pressure: the worker group's committed request offsets against the topic's end give
//!   each partition's backlog; over the bound, new turns get 503 with `Retry-After`.
//!
//! What a client can rely on across replicas is in docs/guide/kafka.md ("Consistency").

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use tokio::sync::watch;

use super::{ServeError, ServeOptions, follower, health};
use crate::api::{Backlog, Logs, VaultPublish};
use crate::clock::{Clock, SystemClock};
use crate::embedded::{EmbeddedError, load_codecs};
use crate::ids::Partition;
use crate::kafka::Topics;
use crate::log::kafka::{KafkaConfig, KafkaLog, kafka_error};
use crate::log::{EventLog, SledStore};
use crate::projection::Projections;
use crate::telemetry::exporter;

/// Where a replica finds its deployment.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// The workers' consumer group: its committed request offsets measure their backlog.
    pub worker_group: String,
    /// Requests a partition's workers may be behind before the API refuses new turns there.
    pub max_backlog: u64,
    /// Events the replica's projections may be behind before `/readyz` says so.
    pub max_lag: u64,
}

impl FleetOptions {
    pub fn new(bootstrap: String, prefix: &str) -> Self {
        FleetOptions {
            kafka: KafkaConfig::new(bootstrap),
            topics: Topics::new(prefix),
            worker_group: "ballast-workers".into(),
            max_backlog: 10_000,
            max_lag: 10_000,
        }
    }

    /// The replicas' own consumer group (the OTLP export's partition ownership).
    fn replica_group(&self) -> String {
        format!(
            "{}.serve-replicas",
            self.topics.requests.trim_end_matches(".requests")
        )
    }
}

/// Runs one replica until `stop` turns true; `bound` is told the HTTP address.
pub async fn run(
    opts: ServeOptions,
    fleet: FleetOptions,
    stop: watch::Receiver<bool>,
    bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    let dir: PathBuf = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(EmbeddedError::Io)?;
    let store = SledStore::open(&dir).map_err(|source| EmbeddedError::Open {
        dir: dir.display().to_string(),
        source,
    })?;
    let codecs = load_codecs(&store)?;
    let topics = &fleet.topics;
    let events: Arc<dyn EventLog> = Arc::new(KafkaLog::open(&fleet.kafka, &topics.events).await?);
    let requests: Arc<dyn EventLog> =
        Arc::new(KafkaLog::open(&fleet.kafka, &topics.requests).await?);
    let reveals: Arc<dyn EventLog> = Arc::new(KafkaLog::open(&fleet.kafka, &topics.reveals).await?);
    if requests.partitions() != events.partitions() {
        return Err(crate::log::LogError::PartitionMismatch {
            name: topics.requests.clone(),
            existing: requests.partitions(),
            requested: events.partitions(),
        }
        .into());
    }

    // The control configuration is read for what the front door needs of it: SLO targets and
    // the personal-data detector. Planners, tools and policies are the workers' business.
    let control = match &opts.config {
        Some(loaded) => loaded.control()?,
        None => crate::control::ControlConfig::default(),
    };
    let slo_config = control.slo.clone();
    let detector = crate::guard::Redactor::with_options(
        &control.guards.redact_patterns,
        control.guards.redact_ip_addresses,
    )
    .unwrap_or_else(|_| crate::guard::Redactor::builtin());
    let configured = opts
        .config
        .as_ref()
        .and_then(|c| c.config.vault.master_key_file.clone());
    let (master, source) = crate::vault::Vault::resolve_master(
        configured.as_deref(),
        opts.dev_key.then_some(dir.as_path()),
    )?;
    source.announce();
    // The same vault as the workers': the compacted topic, a local replica, tenant keys agreed
    // through the log, under the same master key.
    let replica =
        Arc::new(crate::kafka::vault::KafkaVault::open(&fleet.kafka, topics, &store, &dir).await?);
    replica.sync().await?;
    let _tail = Arc::clone(&replica).spawn_tail(Duration::from_millis(500), stop.clone());
    let vault = Arc::new(
        crate::vault::Vault::new(master, replica.local(), detector).with_replica(replica.clone()),
    );
    // A wrong master key is refused here, not met as a 503 on every request later.
    vault.check_master()?;

    let handle = exporter::install()?;
    let ready = follower::Readiness::new(Arc::new(AtomicBool::new(false)), fleet.max_lag);
    let projections = Projections::standard(&store)?;
    let (auth, limits) = super::open_auth(&opts, &stop)?;
    let logs = Logs {
        store: store.clone(),
        events: Arc::clone(&events),
        requests: Arc::clone(&requests),
        reveals,
        codecs: codecs.clone(),
        vault_store: replica.local(),
        known: None,
    };
    let backlog = Arc::new(WorkerBacklog::new(&fleet, requests.partitions())?);
    tokio::spawn(Arc::clone(&backlog).watch(Arc::clone(&requests), stop.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut state = crate::api::AppState::new(
        logs.clone(),
        projections.clone(),
        auth,
        slo_config.clone(),
        clock,
    )?
    .with_vault(Arc::clone(&vault));
    state.follower_reads = true;
    state.backlog = Some(backlog as Arc<dyn Backlog>);
    state.vault_publish = Some(Arc::new(Published(Arc::clone(&replica))) as Arc<dyn VaultPublish>);
    let api = Arc::new(state);
    api.submissions
        .reconcile(requests.as_ref(), &codecs)
        .await?;
    let router = exporter::router(handle)
        .merge(health(ready.clone()))
        .merge(crate::api::router(api));
    let (addr, server) = exporter::serve(opts.listen, router, limits, stop.clone()).await?;
    bound(addr);
    tracing::info!(%addr, prefix = %topics.requests, workers = %fleet.worker_group, "serving a Kafka deployment (a replica: the workers run the turns)");

    if opts.telemetry.otlp_endpoint.is_some() {
        let exporter =
            crate::telemetry::otlp::exporter(&opts.telemetry, &|v| std::env::var(v).ok())
                .map_err(|e| ServeError::Telemetry(e.to_string()))?;
        let owner = super::otlp_feed::GroupOwnership::join(
            &fleet.kafka,
            &fleet.replica_group(),
            &topics.events,
        )
        .map_err(|e| ServeError::Telemetry(e.to_string()))?;
        tokio::spawn(super::otlp_feed::run(
            logs.clone(),
            exporter,
            opts.telemetry.service_name.clone(),
            owner,
            stop.clone(),
        ));
    }
    follower::follow(
        &projections,
        events.as_ref(),
        &codecs,
        &store,
        &slo_config,
        ready,
        opts.refresh,
        Some(replica.as_ref()),
        stop.clone(),
    )
    .await?;
    let _ = server.await;
    Ok(())
}

/// Records published to the vault topic before the request that names them.
struct Published(Arc<crate::kafka::vault::KafkaVault>);

#[async_trait::async_trait]
impl VaultPublish for Published {
    async fn publish(&self, records: &[crate::vault::VaultRecord]) -> Result<(), String> {
        self.0.publish(records).await.map_err(|e| e.to_string())
    }
}

/// Each request partition's backlog: the topic's end less the worker group's committed offset,
/// measured every second.
struct WorkerBacklog {
    consumer: Arc<BaseConsumer>,
    topic: String,
    max: u64,
    behind: std::sync::Mutex<Vec<u64>>,
}

impl WorkerBacklog {
    fn new(fleet: &FleetOptions, partitions: u32) -> Result<Self, ServeError> {
        // A consumer in the workers' group that never subscribes: it only reads the group's
        // committed offsets (it does not join the group, so it takes nothing from a worker).
        let consumer: BaseConsumer = fleet
            .kafka
            .client()
            .set("group.id", &fleet.worker_group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error)?;
        Ok(WorkerBacklog {
            consumer: Arc::new(consumer),
            topic: fleet.topics.requests.clone(),
            max: fleet.max_backlog,
            behind: std::sync::Mutex::new(vec![0; partitions as usize]),
        })
    }

    async fn watch(self: Arc<Self>, requests: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) {
        loop {
            match self.measure(requests.as_ref()).await {
                Ok(behind) => {
                    let total: u64 = behind.iter().sum();
                    metrics::gauge!(crate::telemetry::WORKER_BACKLOG).set(total as f64);
                    if let Ok(mut b) = self.behind.lock() {
                        *b = behind;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "worker backlog not measured"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
    }

    async fn measure(&self, requests: &dyn EventLog) -> Result<Vec<u64>, String> {
        let n = requests.partitions();
        let mut ends = Vec::with_capacity(n as usize);
        for p in (0..n).map(Partition) {
            ends.push(requests.end(p).await.map_err(|e| e.to_string())?.0);
        }
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(&topic, p as i32);
            }
            consumer.committed_offsets(tpl, Duration::from_secs(5))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(ends
            .iter()
            .enumerate()
            .map(|(p, end)| {
                let at = committed
                    .find_partition(&self.topic, p as i32)
                    .and_then(|e| match e.offset() {
                        KOffset::Offset(o) if o >= 0 => Some(o as u64),
                        _ => None,
                    })
                    // Nothing committed yet: the workers are at the start.
                    .unwrap_or(0);
                end.saturating_sub(at)
            })
            .collect())
    }
}

impl Backlog for WorkerBacklog {
    fn over(&self, partition: Partition) -> Option<(u64, u64)> {
        let behind = self
            .behind
            .lock()
            .ok()?
            .get(partition.0 as usize)
            .copied()?;
        // Retry after roughly the time the workers take to drain the excess (about a thousand
        // turns a second per partition at best), at least a second, at most a minute.
        (behind >= self.max).then(|| (behind, ((behind - self.max) / 1000).clamp(1, 60)))
    }

    fn submitted(&self, partition: Partition) {
        if let Ok(mut b) = self.behind.lock()
            && let Some(n) = b.get_mut(partition.0 as usize)
        {
            *n += 1;
        }
    }
}
