//! `ballast worker`: any number of processes in one consumer group share the partitions.
//!
//! The group consumer subscribes to `ballast.requests` only for membership: it pauses what it is
//! assigned and never reads records. For each assigned partition the worker runs a partition
//! actor, which rebuilds its turns (local snapshot cache + the turn-event topic's tail), reads
//! requests itself and commits each round in a Kafka transaction. On revocation the actors drain
//! — in-flight calls finish and are recorded — before the rebalance completes, so the next owner
//! resumes clean turns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::{mpsc, watch};

use super::Topics;
use super::journal::KafkaJournals;
use crate::embedded::{EmbeddedError, load_codecs};
use crate::exec::ExecutionPlane;
use crate::ids::Partition;
use crate::log::kafka::{KafkaConfig, KafkaLog, kafka_error};
use crate::log::{EventLog, LogError, SledStore};
use crate::runtime::state_store::SledStateStore;
use crate::runtime::{Deps, RuntimeError, TurnFinished, Worker, WorkerConfig};

#[derive(Debug, thiserror::Error)]
pub enum KafkaWorkerError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("state store: {0}")]
    Store(#[from] crate::runtime::state_store::StoreError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    /// Local cache: snapshots, the started-turn set, writer schemas.
    pub data_dir: PathBuf,
    pub transactional: bool,
    pub worker: WorkerConfig,
    pub session_timeout_ms: u32,
    /// Which end-user claims each tenant's producers may make (`[intake]`); requests asserting
    /// more are dead-lettered.
    pub intake: crate::control::claims::IntakeTrust,
    /// The vault's master key and detector: personal values are tokenized at intake and at
    /// the execution plane's edge, sealed in `PREFIX.vault`. `None`: no vault (values stay as
    /// the guards leave them) — for benches of the bare engine only.
    pub vault: Option<VaultOptions>,
}

#[derive(Clone)]
pub struct VaultOptions {
    pub master: crate::vault::crypto::Key,
    pub detector: crate::guard::Redactor,
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultOptions { master: <secret>, .. }")
    }
}

/// A running partition actor: its stop switch and its task.
type Actor = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), RuntimeError>>,
);

enum Membership {
    Assigned(Vec<Partition>),
    Revoked(Vec<Partition>, std::sync::mpsc::SyncSender<()>),
}

struct GroupContext {
    tx: mpsc::UnboundedSender<Membership>,
    requests: String,
}

impl ClientContext for GroupContext {}

fn partitions_of(r: &Rebalance<'_>, requests: &str) -> Vec<Partition> {
    match r {
        Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == requests)
            .map(|e| Partition(e.partition().max(0) as u32))
            .collect(),
        Rebalance::Error(_) => Vec::new(),
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = r {
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            if self
                .tx
                .send(Membership::Revoked(partitions_of(r, &self.requests), ack))
                .is_ok()
            {
                // Hand the partitions back only once their actors have drained.
                let _ = done.recv_timeout(Duration::from_secs(60));
            }
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            // Membership only: the actors read requests themselves.
            let _ = c.pause(tpl);
            let _ = self
                .tx
                .send(Membership::Assigned(partitions_of(r, &self.requests)));
        }
    }
}

/// Runs a worker until `shutdown` turns true; then leaves the group, draining its partitions.
pub async fn run(
    opts: WorkerOptions,
    exec: ExecutionPlane,
    control: Option<Arc<dyn crate::control::ControlPlane>>,
    outcomes: Option<mpsc::UnboundedSender<TurnFinished>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KafkaWorkerError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(EmbeddedError::Io)?;
    let store = SledStore::open(&opts.data_dir).map_err(|source| EmbeddedError::Open {
        dir: opts.data_dir.display().to_string(),
        source,
    })?;
    let codecs = load_codecs(&store)?;
    let state = Arc::new(SledStateStore::open(&store)?);
    let topics = &opts.topics;
    let events = Arc::new(KafkaLog::open(&opts.kafka, &topics.events).await?);
    let requests = Arc::new(KafkaLog::open(&opts.kafka, &topics.requests).await?);
    let outcome_partitions = KafkaLog::open(&opts.kafka, &topics.outcomes)
        .await?
        .partitions();
    let dead_letter_partitions = KafkaLog::open(&opts.kafka, &topics.dead_letters)
        .await?
        .partitions();
    let escalation_partitions = KafkaLog::open(&opts.kafka, &topics.escalations)
        .await?
        .partitions();
    let vault = match &opts.vault {
        Some(v) => {
            let replica = Arc::new(
                super::vault::KafkaVault::open(&opts.kafka, topics, &store, &opts.data_dir).await?,
            );
            replica.sync().await?;
            let tail =
                Arc::clone(&replica).spawn_tail(Duration::from_millis(500), shutdown.clone());
            let vault = crate::vault::Vault::new(v.master, replica.local(), v.detector.clone())
                .with_replica(replica.clone());
            vault.check_master()?;
            Some((Arc::new(vault), replica, tail))
        }
        None => None,
    };
    if requests.partitions() != events.partitions() {
        return Err(LogError::PartitionMismatch {
            name: topics.requests.clone(),
            existing: requests.partitions(),
            requested: events.partitions(),
        }
        .into());
    }

    let (member_tx, mut member_rx) = mpsc::unbounded_channel();
    let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
        opts.kafka
            .client()
            .set("group.id", &opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", opts.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (opts.session_timeout_ms / 4).max(500).to_string(),
            )
            .create_with_context(GroupContext {
                tx: member_tx,
                requests: topics.requests.clone(),
            })
            .map_err(kafka_error)?,
    );
    consumer
        .subscribe(&[topics.requests.as_str()])
        .map_err(kafka_error)?;

    let journals = KafkaJournals {
        cfg: opts.kafka.clone(),
        topics: topics.clone(),
        group: opts.group.clone(),
        transactional: opts.transactional,
        outcome_partitions,
        dead_letter_partitions,
        escalation_partitions,
        vault_partitions: vault.as_ref().map_or(1, |(_, r, _)| r.partitions()),
        membership: Some(Arc::clone(&consumer) as Arc<dyn super::journal::GroupMetadata>),
    };
    let mut deps = Deps::new(events.clone(), requests.clone(), codecs, exec, state)
        .with_journals(Arc::new(journals))
        .with_effect_bound(opts.worker.max_concurrent_effects)
        .with_intake(opts.intake.clone());
    if let Some(control) = control {
        deps = deps.with_control(control);
    }
    if let Some(tx) = outcomes {
        deps = deps.with_outcomes(tx);
    }
    if let Some((v, _, _)) = &vault {
        deps = deps.with_vault(Arc::clone(v));
    }
    let worker = Worker::new(deps, opts.worker.clone());

    // The group consumer must be polled for rebalances (and heartbeats' errors) to be served.
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = {
        let consumer = Arc::clone(&consumer);
        let stop = Arc::clone(&stop_polling);
        std::thread::Builder::new()
            .name("ballast-group".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // Paused partitions deliver nothing; anything else is ignored.
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                // Leave the group: the revoke callback runs in these polls.
                consumer.unsubscribe();
                for _ in 0..50 {
                    let _ = consumer.poll(Duration::from_millis(100));
                    if consumer
                        .assignment()
                        .map(|a| a.count() == 0)
                        .unwrap_or(true)
                    {
                        break;
                    }
                }
            })
            .map_err(|e| RuntimeError::Task(e.to_string()))?
    };

    let mut actors: HashMap<Partition, Actor> = HashMap::new();
    let stop_actor =
        |actors: &mut HashMap<_, (watch::Sender<bool>, tokio::task::JoinHandle<_>)>,
         p: Partition| {
            actors.remove(&p).map(|(stop, handle)| {
                stop.send_replace(true);
                handle
            })
        };
    // An actor that ended (fenced, a terminal error) while its partition is still assigned is
    // started again: a worker never holds a partition without working it. The tick throttles
    // restarts to one a second per partition.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let ended: Vec<Partition> = actors
                    .iter()
                    .filter(|(_, (_, handle))| handle.is_finished())
                    .map(|(p, _)| *p)
                    .collect();
                for p in ended {
                    if let Some(handle) = stop_actor(&mut actors, p) {
                        report(handle.await);
                    }
                    tracing::warn!(pid = std::process::id(), partition = %p, "partition actor ended while assigned; restarting it");
                    let (stop, stop_rx) = watch::channel(false);
                    actors.insert(p, (stop, worker.spawn_partition(p, stop_rx)));
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            msg = member_rx.recv() => match msg {
                None => break,
                Some(Membership::Assigned(ps)) => {
                    tracing::info!(pid = std::process::id(), partitions = ?ps, "assigned");
                    for p in ps {
                        let (stop, stop_rx) = watch::channel(false);
                        let handle = worker.spawn_partition(p, stop_rx);
                        actors.insert(p, (stop, handle));
                    }
                }
                Some(Membership::Revoked(ps, ack)) => {
                    tracing::info!(pid = std::process::id(), partitions = ?ps, "revoked; draining");
                    let handles: Vec<_> = ps.iter().filter_map(|p| stop_actor(&mut actors, *p)).collect();
                    for h in handles {
                        report(h.await);
                    }
                    let _ = ack.send(());
                }
            }
        }
    }
    // Drain every actor first, then leave the group (whose revoke callback finds no receiver).
    let ps: Vec<Partition> = actors.keys().copied().collect();
    let handles: Vec<_> = ps
        .into_iter()
        .filter_map(|p| stop_actor(&mut actors, p))
        .collect();
    for h in handles {
        report(h.await);
    }
    drop(member_rx);
    stop_polling.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    if let Some((_, _, tail)) = vault {
        tail.abort();
    }
    Ok(())
}

fn report(joined: Result<Result<(), RuntimeError>, tokio::task::JoinError>) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(RuntimeError::Fenced(why))) => {
            tracing::warn!(%why, "partition taken over by another worker")
        }
        Ok(Err(e)) => tracing::error!(error = %e, "partition stopped"),
        Err(e) => tracing::error!(error = %e, "partition task panicked"),
    }
}
