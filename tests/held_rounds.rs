//! Rounds held in an open transaction (`[worker] commit_interval_ms`, what the Kafka journal
//! does): a journal that keeps rounds pending until `flush`, and a tool that checks, every time
//! it is called, that the event which decided the call is already durable. Nothing may act on a
//! round a crash could still take back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ballast::demo::kb::KbRetriever;
use ballast::event::codec::{Codecs, SchemaRegistry};
use ballast::event::{Outcome, Payload};
use ballast::exec::catalog::{Impact, ToolSpec};
use ballast::exec::scripted::ScriptedPlanner;
use ballast::exec::{ExecutionPlane, Tool, ToolError, Toolbox};
use ballast::ids::{Offset, Partition};
use ballast::log::{EventLog, MemoryLog};
use ballast::runtime::journal::{Held, Journal, Journals, Round};
use ballast::runtime::state_store::{MemoryStateStore, StateStore};
use ballast::runtime::{Deps, RuntimeError, RuntimeStats, Worker, WorkerConfig};
use ballast::submit::submit;
use ballast::turn::ToolInvocation;
use serde_json::json;
use tokio::sync::{mpsc, watch};

mod common;
use common::scripted::{requests as scripted_requests, workload};

#[derive(Default)]
struct Tally {
    holds: AtomicUsize,
    flushes: AtomicUsize,
}

/// Keeps held rounds in memory; a flush commits them, in order, through the inner journal.
struct Holding {
    inner: Arc<dyn Journals>,
    tally: Arc<Tally>,
}

struct HoldingJournal {
    inner: Box<dyn Journal>,
    pending: Vec<Round>,
    tally: Arc<Tally>,
}

#[async_trait]
impl Journals for Holding {
    async fn open(&self, partition: Partition) -> Result<Box<dyn Journal>, RuntimeError> {
        Ok(Box::new(HoldingJournal {
            inner: self.inner.open(partition).await?,
            pending: Vec::new(),
            tally: Arc::clone(&self.tally),
        }))
    }
}

#[async_trait]
impl Journal for HoldingJournal {
    async fn commit(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError> {
        self.hold(partition, round).await?;
        self.flush(partition).await
    }

    async fn hold(&mut self, _partition: Partition, round: Round) -> Result<Held, RuntimeError> {
        self.tally.holds.fetch_add(1, Ordering::SeqCst);
        self.pending.push(round);
        Ok(Held::Pending)
    }

    async fn flush(&mut self, partition: Partition) -> Result<Option<Offset>, RuntimeError> {
        self.tally.flushes.fetch_add(1, Ordering::SeqCst);
        // A commit takes a while (a coordinator round trip): an effect released early would
        // run before it ends.
        if !self.pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut end = None;
        for round in std::mem::take(&mut self.pending) {
            if let Some(e) = self.inner.commit(partition, round).await? {
                end = Some(e);
            }
        }
        Ok(end)
    }

    fn publishes_outcomes(&self) -> bool {
        false
    }
}

/// A tool that looks for the `ToolCallStarted` of each call it is given in the durable log.
struct Witness {
    spec: ToolSpec,
    events: Arc<dyn EventLog>,
    codecs: Codecs,
    calls: AtomicUsize,
    undecided: Mutex<Vec<String>>,
}

#[async_trait]
impl Tool for Witness {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut seen = false;
        for p in (0..self.events.partitions()).map(Partition) {
            let stored = self
                .events
                .read(p, Offset::ZERO, 1_000_000)
                .await
                .map_err(|e| ToolError::terminal(e.to_string()))?;
            seen |= stored.iter().any(|s| {
                self.codecs.events.decode(&s.value).is_ok_and(|e| {
                    matches!(&e.payload, Payload::ToolCallStarted(st)
                        if st.call_id == call.call_id && st.attempt == call.attempt)
                })
            });
        }
        if !seen {
            self.undecided
                .lock()
                .map_err(|_| ToolError::terminal("poisoned"))?
                .push(call.call_id.clone());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(json!({"summary": "done", "key": call.idempotency_key}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_rounds_release_their_effects_only_once_committed() {
    let events: Arc<dyn EventLog> = Arc::new(MemoryLog::new(2));
    let requests: Arc<dyn EventLog> = Arc::new(MemoryLog::new(2));
    let codecs = Codecs::new(SchemaRegistry::new()).expect("codecs");
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    let witness = Arc::new(Witness {
        spec: ToolSpec {
            name: "refund".into(),
            description: "refund".into(),
            args_schema: json!({"type": "object"}),
            result_schema: json!({"type": "object"}),
            impact: Impact::Medium,
            idempotent: true,
            timeout_ms: 60_000,
            ..ToolSpec::default()
        },
        events: Arc::clone(&events),
        codecs: codecs.clone(),
        calls: AtomicUsize::new(0),
        undecided: Mutex::new(Vec::new()),
    });
    let w = workload(40, "refund", 2, 0.9);
    let tally = Arc::new(Tally::default());
    let exec = ExecutionPlane {
        retriever: Arc::new(KbRetriever::new(Duration::ZERO)),
        planner: ScriptedPlanner::new(&w, Duration::ZERO),
        tools: Toolbox::new(vec![witness.clone() as Arc<dyn Tool>]),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let deps = Deps::new(
        Arc::clone(&events),
        Arc::clone(&requests),
        codecs.clone(),
        exec,
        Arc::clone(&store),
    );
    // The journal the worker would use (the log's), holding rounds until a flush.
    let journals = Holding {
        inner: Arc::clone(&deps.journals),
        tally: Arc::clone(&tally),
    };
    let deps = deps.with_journals(Arc::new(journals)).with_outcomes(tx);
    let cfg = WorkerConfig {
        commit_interval_ms: 100,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(deps, cfg);
    let stats = worker.stats();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        worker
            .run(vec![Partition(0), Partition(1)], stop_rx)
            .await
            .expect("worker runs")
    });
    submit(requests.as_ref(), &codecs.requests, &scripted_requests(&w))
        .await
        .expect("submit");
    for _ in 0..w.len() {
        let f = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("turns finish in time")
            .expect("worker alive");
        assert_eq!(f.outcome, Outcome::Succeeded, "{f:?}");
    }
    stop.send_replace(true);
    task.await.expect("joins");

    assert_eq!(witness.calls.load(Ordering::SeqCst), 80);
    let undecided = witness.undecided.lock().expect("lock").clone();
    assert!(
        undecided.is_empty(),
        "calls ran before the event deciding them was committed: {undecided:?}"
    );
    // Every held round reached the log by the end (the drain flushes), each event once.
    let mut logged = 0u64;
    for p in (0..2).map(Partition) {
        logged += events
            .read(p, Offset::ZERO, 1_000_000)
            .await
            .expect("read")
            .len() as u64;
    }
    assert_eq!(logged, RuntimeStats::get(&stats.events_appended));
    let (holds, flushes) = (
        tally.holds.load(Ordering::SeqCst),
        tally.flushes.load(Ordering::SeqCst),
    );
    assert!(
        flushes > 0 && holds >= flushes,
        "{holds} holds, {flushes} flushes"
    );
}
