//! The runtime executes what the state machine decides: one actor per owned partition, effects
//! run concurrently under a global bound, results fed back as inputs.

pub(crate) mod edge;
mod executor;
pub mod journal;
mod partition;
mod records;
mod reload;
pub mod shutdown;
pub mod snapshot;
pub mod state_store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::control::ControlPlane;
use crate::event::Outcome;
use crate::event::codec::{CodecError, Codecs};
use crate::exec::ExecutionPlane;
use crate::ids::{Partition, TurnId};
use crate::log::{EventLog, LogError};
use crate::turn::Limits;
pub use snapshot::{SessionHistory, SnapshotHeader};
use state_store::{StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("partition task failed: {0}")]
    Task(String),
    /// Another worker owns the partition now (Kafka producer fencing): stop, do not retry.
    #[error("fenced: {0}")]
    Fenced(String),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

impl RuntimeError {
    /// Whether restarting the partition (recovery from the log) may get past the error.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Log(e) => e.is_retryable(),
            RuntimeError::Store(_) | RuntimeError::Task(_) => true,
            RuntimeError::Codec(_) | RuntimeError::Snapshot(_) | RuntimeError::Fenced(_) => false,
            RuntimeError::Vault(e) => e.is_retryable(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Turns a partition actor holds in flight before it stops taking requests.
    pub max_turns_per_partition: usize,
    /// Most inputs decided (and events appended) per round.
    pub batch_max: usize,
    /// Effects (model, retrieval, tool calls) running at once across all partitions.
    pub max_concurrent_effects: usize,
    /// Events appended between snapshots of a partition (a snapshot writes only the turns
    /// that changed, so this bounds the log tail a restart reads).
    pub snapshot_every: u64,
    /// A partition with events since its last snapshot writes one at least this often.
    pub snapshot_interval_ms: u64,
    /// Larger request records are dead-lettered unread.
    pub max_request_bytes: usize,
    /// Kafka transactions: how long one stays open collecting rounds (0: a transaction per
    /// round). A round's effects wait for its commit, so this bounds the latency added; a
    /// partition with nothing else to do commits at once.
    pub commit_interval_ms: u64,
    /// A session with no finished turn for this long is forgotten by the worker (its turns
    /// stay in the log; a later turn in it starts without history).
    pub session_ttl_ms: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_turns_per_partition: 32,
            batch_max: 512,
            max_concurrent_effects: 256,
            snapshot_every: 10_000,
            snapshot_interval_ms: 5_000,
            max_request_bytes: 256 * 1024,
            commit_interval_ms: 100,
            session_ttl_ms: 24 * 3_600_000,
        }
    }
}

/// A turn reached its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnFinished {
    pub turn_id: TurnId,
    pub tenant: String,
    pub outcome: Outcome,
    /// From TurnRequested to TurnCompleted, by the event timestamps.
    pub latency_ms: i64,
    /// Measured by this worker from accepting the request (None for turns resumed after a restart).
    pub wall_latency_us: Option<u64>,
}

/// Counters a worker keeps; read by the demo summary and the bench.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    pub events_appended: AtomicU64,
    pub appends: AtomicU64,
    pub turns_started: AtomicU64,
    pub turns_finished: AtomicU64,
    pub duplicate_requests: AtomicU64,
    /// Operator commands for turns no longer in flight (they arrived after the turn moved on).
    pub stale_commands: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Requests that arrived on another partition than their routing key's, passed on.
    pub forwarded_requests: AtomicU64,
    pub corrupt_events: AtomicU64,
    pub replayed_events: AtomicU64,
    pub resumed_turns: AtomicU64,
    /// Turns waiting for a person kept in the snapshot store instead of memory, now.
    pub parked_turns: AtomicU64,
    pub snapshots: AtomicU64,
    /// Time spent writing snapshots (encoding the changed turns, the batch, its flush).
    pub snapshot_micros: AtomicU64,
    /// Partitions that recovered, resumed their turns and consume requests.
    pub partitions_ready: AtomicU64,
    /// Approvals asked of a person (a turn then waits, holding no slot).
    pub approvals_requested: AtomicU64,
}

impl RuntimeStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a worker needs: logs, codecs, the two planes, a clock and its state store.
pub struct Deps {
    /// The turn log, for recovery reads and routing.
    pub events: Arc<dyn EventLog>,
    /// Where each round is committed (by default: appended to `events`).
    pub journals: Arc<dyn journal::Journals>,
    pub requests: Arc<dyn EventLog>,
    pub codecs: Codecs,
    pub exec: ExecutionPlane,
    pub control: Arc<dyn ControlPlane>,
    /// Compiled from the control plane's guard configuration and the catalog.
    pub guards: Arc<crate::guard::Guards>,
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn StateStore>,
    pub outcomes: Option<mpsc::UnboundedSender<TurnFinished>>,
    pub effect_slots: Arc<Semaphore>,
    pub stats: Arc<RuntimeStats>,
    /// Which end-user claims (`roles`, `scopes`) each tenant's producers may make. `None`: the
    /// request log is written only by Ballast itself (the embedded API checked the token), so
    /// its records are trusted as they are.
    pub intake: Option<Arc<crate::control::claims::IntakeTrust>>,
    /// Where personal values go: tokenized at intake and at the edge of the execution plane,
    /// cleartext given to the model and tools only. `None`: no vault (values are redacted,
    /// irreversibly, by the guards).
    pub vault: Option<Arc<crate::vault::Vault>>,
}

impl Deps {
    /// Deps with the core defaults: the default control plane and limits, the system clock, an
    /// effect bound of `WorkerConfig::default().max_concurrent_effects`, no outcome sink.
    pub fn new(
        events: Arc<dyn EventLog>,
        requests: Arc<dyn EventLog>,
        codecs: Codecs,
        exec: ExecutionPlane,
        store: Arc<dyn StateStore>,
    ) -> Self {
        let control = crate::control::builtin_or_fail_closed(exec.tools.catalog().clone());
        let guards = Arc::new(crate::guard::Guards::or_default(
            control.config().guards.clone(),
            exec.tools.catalog(),
        ));
        Deps {
            journals: Arc::new(journal::LogJournals {
                events: Arc::clone(&events),
                outcomes: None,
                escalations: None,
                requests: Some(Arc::clone(&requests)),
                store: Arc::clone(&store),
                vault: None,
            }),
            events,
            requests,
            codecs,
            exec,
            control,
            guards,
            limits: Limits::default(),
            clock: Arc::new(crate::clock::SystemClock),
            store,
            outcomes: None,
            effect_slots: Arc::new(Semaphore::new(
                WorkerConfig::default().max_concurrent_effects,
            )),
            stats: Arc::new(RuntimeStats::default()),
            intake: None,
            vault: None,
        }
    }

    /// Tokenizes personal values through `vault` (see [`Deps::vault`]).
    pub fn with_vault(mut self, vault: Arc<crate::vault::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Checks every request's claims against `trust` (dead-lettering the rest).
    pub fn with_intake(mut self, trust: crate::control::claims::IntakeTrust) -> Self {
        self.intake = Some(Arc::new(trust));
        self
    }

    /// Commits rounds through `journals` instead of appending to the turn log directly.
    pub fn with_journals(mut self, journals: Arc<dyn journal::Journals>) -> Self {
        self.journals = journals;
        self
    }

    /// Decides with `control` instead of the built-in policy set.
    pub fn with_control(mut self, control: Arc<dyn ControlPlane>) -> Self {
        self.guards = Arc::new(crate::guard::Guards::or_default(
            control.config().guards.clone(),
            self.exec.tools.catalog(),
        ));
        self.control = control;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends every finished turn to `tx`.
    pub fn with_outcomes(mut self, tx: mpsc::UnboundedSender<TurnFinished>) -> Self {
        self.outcomes = Some(tx);
        self
    }

    /// Bounds the effects running at once across all partitions.
    pub fn with_effect_bound(mut self, n: usize) -> Self {
        self.effect_slots = Arc::new(Semaphore::new(n.max(1)));
        self
    }
}

pub struct Worker {
    deps: Arc<Deps>,
    cfg: WorkerConfig,
}

impl Worker {
    pub fn new(deps: Deps, cfg: WorkerConfig) -> Self {
        Worker {
            deps: Arc::new(deps),
            cfg,
        }
    }

    pub fn stats(&self) -> Arc<RuntimeStats> {
        Arc::clone(&self.deps.stats)
    }

    /// Runs one partition (supervised) until `shutdown` turns true; for workers whose partitions
    /// come and go (Kafka consumer-group assignments).
    pub fn spawn_partition(
        &self,
        partition: Partition,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Result<(), RuntimeError>> {
        tokio::spawn(supervise(
            Arc::clone(&self.deps),
            partition,
            self.cfg.clone(),
            shutdown,
        ))
    }

    /// Runs the given partitions until `shutdown` turns true, then drains: no new requests,
    /// in-flight effects finish and are recorded, a snapshot is written.
    pub async fn run(
        &self,
        partitions: Vec<Partition>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), RuntimeError> {
        let mut set = JoinSet::new();
        for p in partitions {
            let deps = Arc::clone(&self.deps);
            let cfg = self.cfg.clone();
            let shutdown = shutdown.clone();
            set.spawn(supervise(deps, p, cfg, shutdown));
        }
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            let result = joined.unwrap_or_else(|e| Err(RuntimeError::Task(e.to_string())));
            if let Err(e) = result {
                tracing::error!(error = %e, "partition stopped");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Restarts a failed partition actor (recovering from the log) for as long as its errors are
/// retryable and the worker runs: an outage of the log (a broker restart) must not strand the
/// partition's turns. Backoff doubles up to 5 s; a terminal error (a corrupt record, fencing)
/// stops the partition.
async fn supervise(
    deps: Arc<Deps>,
    partition: Partition,
    cfg: WorkerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let mut restarts = 0u32;
    loop {
        let started = std::time::Instant::now();
        match partition::run_partition(Arc::clone(&deps), partition, cfg.clone(), shutdown.clone())
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && !*shutdown.borrow() => {
                // A long healthy run before this failure starts the backoff over.
                if started.elapsed() > Duration::from_secs(60) {
                    restarts = 0;
                }
                restarts += 1;
                let backoff = Duration::from_millis((100u64 << restarts.min(6)).min(5_000));
                tracing::warn!(%partition, error = %e, restarts, ?backoff, "partition failed; recovering from the log");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}
