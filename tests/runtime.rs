//! The worker end to end, in process: memory and sled logs, crashes simulated by dropping a
//! worker mid-call, restarts checked against the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ballast::demo::kb::KbRetriever;
use ballast::embedded::Embedded;
use ballast::event::codec::{Codecs, SchemaRegistry};
use ballast::event::{
    CommandAction, Event, HandoffResolution, Outcome, Payload, ToolFailureKind, TurnCommand,
};
use ballast::exec::catalog::{Impact, ToolSpec};
use ballast::exec::scripted::{ScriptedPlanner, WorkloadTurn};
use ballast::exec::{ExecutionPlane, Tool, ToolError, Toolbox};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::{EventLog, MemoryLog, Record};
use ballast::runtime::state_store::{MemoryStateStore, StateStore};
use ballast::runtime::{Deps, RuntimeStats, TurnFinished, Worker, WorkerConfig};
use ballast::submit::submit;
use ballast::turn::ToolInvocation;
use serde_json::json;
use tokio::sync::{mpsc, watch};

mod common;
use common::scripted::{requests, workload};

/// A tool that counts calls, tracks concurrency, and can be told to hang.
struct Probe {
    spec: ToolSpec,
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    hang: bool,
}

#[async_trait]
impl Tool for Probe {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"summary": format!("{} ok", call.tool), "key": call.idempotency_key}))
    }
}

#[derive(Clone, Default)]
struct Counters {
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

fn probe(name: &str, idempotent: bool, hang: bool, c: &Counters) -> Arc<dyn Tool> {
    Arc::new(Probe {
        spec: ToolSpec {
            name: name.into(),
            description: name.into(),
            args_schema: json!({"type": "object"}),
            result_schema: json!({"type": "object"}),
            auth_scopes: vec![],
            impact: Impact::Medium,
            idempotent,
            compensation: None,
            timeout_ms: 3_600_000,
            ..ToolSpec::default()
        },
        calls: Arc::clone(&c.calls),
        running: Arc::clone(&c.running),
        max_running: Arc::clone(&c.max_running),
        hang,
    })
}

struct Rig {
    events: Arc<dyn EventLog>,
    requests: Arc<dyn EventLog>,
    codecs: Codecs,
    store: Arc<dyn StateStore>,
}

impl Rig {
    fn memory(partitions: u32) -> Self {
        Rig {
            events: Arc::new(MemoryLog::new(partitions)),
            requests: Arc::new(MemoryLog::new(partitions)),
            codecs: Codecs::new(SchemaRegistry::new()).expect("codecs"),
            store: Arc::new(MemoryStateStore::default()),
        }
    }

    fn sled(emb: &Embedded) -> Self {
        Rig {
            events: emb.events.clone(),
            requests: emb.requests.clone(),
            codecs: emb.codecs.clone(),
            store: emb.state.clone(),
        }
    }

    /// Starts a worker over every partition; returns its outcome stream, stats, stop switch and task.
    fn start(
        &self,
        w: &[WorkloadTurn],
        tools: Vec<Arc<dyn Tool>>,
        cfg: WorkerConfig,
    ) -> (
        mpsc::UnboundedReceiver<TurnFinished>,
        Arc<RuntimeStats>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = ExecutionPlane {
            retriever: Arc::new(KbRetriever::new(Duration::ZERO)),
            planner: ScriptedPlanner::new(w, Duration::ZERO),
            tools: Toolbox::new(tools),
        };
        let deps = Deps::new(
            Arc::clone(&self.events),
            Arc::clone(&self.requests),
            self.codecs.clone(),
            exec,
            Arc::clone(&self.store),
        )
        .with_outcomes(tx)
        .with_effect_bound(cfg.max_concurrent_effects);
        let worker = Worker::new(deps, cfg);
        let stats = worker.stats();
        let (stop, stop_rx) = watch::channel(false);
        let parts: Vec<Partition> = (0..self.events.partitions()).map(Partition).collect();
        let task =
            tokio::spawn(async move { worker.run(parts, stop_rx).await.expect("worker runs") });
        (rx, stats, stop, task)
    }

    async fn all_events(&self) -> Vec<Event> {
        let mut out = Vec::new();
        for p in (0..self.events.partitions()).map(Partition) {
            for s in self
                .events
                .read(p, Offset::ZERO, 1_000_000)
                .await
                .expect("read")
            {
                out.push(self.codecs.events.decode(&s.value).expect("decodes"));
            }
        }
        out
    }
}

async fn collect(rx: &mut mpsc::UnboundedReceiver<TurnFinished>, n: usize) -> Vec<TurnFinished> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("turns finish in time")
            .expect("worker alive");
        out.push(f);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_turns_to_completion_within_its_concurrency_bound() {
    let rig = Rig::memory(4);
    let c = Counters::default();
    let w = workload(60, "refund", 2, 0.9);
    submit(rig.requests.as_ref(), &rig.codecs.requests, &requests(&w))
        .await
        .expect("submit");
    let cfg = WorkerConfig {
        max_concurrent_effects: 3,
        ..WorkerConfig::default()
    };
    let (mut rx, stats, stop, task) = rig.start(&w, vec![probe("refund", true, false, &c)], cfg);
    let done = collect(&mut rx, 60).await;
    assert!(done.iter().all(|f| f.outcome == Outcome::Succeeded));
    stop.send_replace(true);
    task.await.expect("joins");
    assert_eq!(c.calls.load(Ordering::SeqCst), 120);
    assert!(c.max_running.load(Ordering::SeqCst) <= 3, "bound respected");
    assert!(
        c.max_running.load(Ordering::SeqCst) >= 2,
        "effects do run concurrently"
    );
    // Each turn's events are dense, in one partition, opened and closed once.
    let events = rig.all_events().await;
    assert_eq!(
        events.len() as u64,
        RuntimeStats::get(&stats.events_appended)
    );
    let mut by_turn: BTreeMap<TurnId, Vec<i64>> = BTreeMap::new();
    for e in &events {
        by_turn.entry(e.turn_id).or_default().push(e.seq);
    }
    assert_eq!(by_turn.len(), 60);
    for seqs in by_turn.values() {
        assert_eq!(seqs, &(0..seqs.len() as i64).collect::<Vec<_>>());
    }
    assert!(
        RuntimeStats::get(&stats.appends) < events.len() as u64,
        "events are batched per append"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_requests_start_one_turn_misrouted_ones_are_forwarded_and_bad_records_dead_lettered()
 {
    let rig = Rig::memory(2);
    let c = Counters::default();
    let w = workload(5, "refund", 1, 0.9);
    let reqs = requests(&w);
    submit(rig.requests.as_ref(), &rig.codecs.requests, &reqs)
        .await
        .expect("submit");
    submit(rig.requests.as_ref(), &rig.codecs.requests, &reqs[..2])
        .await
        .expect("submit again");
    // Garbage, and a valid request sent to the wrong partition.
    rig.requests
        .append(
            Partition(0),
            vec![Record {
                key: b"x".to_vec(),
                value: b"not avro".to_vec(),
            }],
        )
        .await
        .expect("append");
    let home = rig.events.partition_for(&ballast::ids::routing_key(
        &reqs[0].tenant,
        &reqs[0].user_id,
    ));
    let wrong = Partition(1 - home.0);
    let mut stray = reqs[0].clone();
    stray.turn_id = w[0].turn_id;
    rig.requests
        .append(
            wrong,
            vec![Record {
                key: stray.turn_id.key(),
                value: rig.codecs.requests.encode(&stray).expect("enc"),
            }],
        )
        .await
        .expect("append");
    let (mut rx, stats, stop, task) = rig.start(
        &w,
        vec![probe("refund", true, false, &c)],
        WorkerConfig::default(),
    );
    collect(&mut rx, 5).await;
    // Give the worker time to read (and skip) everything after the last completion.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send_replace(true);
    task.await.expect("joins");
    assert!(rx.try_recv().is_err(), "no second run of any turn");
    assert_eq!(c.calls.load(Ordering::SeqCst), 5);
    // The misrouted copy is passed on to its partition, which drops it as a duplicate.
    assert_eq!(RuntimeStats::get(&stats.forwarded_requests), 1);
    assert_eq!(RuntimeStats::get(&stats.duplicate_requests), 3);
    let dead = rig.store.dead_letters().expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead.iter().any(|d| d.reason.contains("undecodable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_resumes_from_the_snapshot_without_rereading_the_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = workload(40, "refund", 2, 0.9);
    let c = Counters::default();
    {
        let emb = Embedded::open(dir.path(), 4).expect("open");
        let rig = Rig::sled(&emb);
        submit(rig.requests.as_ref(), &rig.codecs.requests, &requests(&w))
            .await
            .expect("submit");
        let (mut rx, stats, stop, task) = rig.start(
            &w,
            vec![probe("refund", true, false, &c)],
            WorkerConfig::default(),
        );
        collect(&mut rx, 40).await;
        stop.send_replace(true);
        task.await.expect("joins");
        assert!(
            RuntimeStats::get(&stats.snapshots) >= 4,
            "a snapshot per partition on shutdown"
        );
    }
    let emb = Embedded::open(dir.path(), 0).expect("reopen");
    let rig = Rig::sled(&emb);
    let more = workload(45, "refund", 2, 0.9);
    submit(
        rig.requests.as_ref(),
        &rig.codecs.requests,
        &requests(&more[40..]),
    )
    .await
    .expect("submit");
    let (mut rx, stats, stop, task) = rig.start(
        &more,
        vec![probe("refund", true, false, &c)],
        WorkerConfig::default(),
    );
    collect(&mut rx, 5).await;
    stop.send_replace(true);
    task.await.expect("joins");
    assert_eq!(
        RuntimeStats::get(&stats.replayed_events),
        0,
        "recovery read no event the snapshot covered"
    );
    assert_eq!(
        RuntimeStats::get(&stats.turns_started),
        5,
        "old requests were not consumed again"
    );
    assert_eq!(c.calls.load(Ordering::SeqCst), 90);
}

/// Starts turns whose only call hangs, "crashes" the worker mid-call (aborted, no draining; its
/// hanging calls are left behind like a dead process's), then starts a new worker on the same
/// logs and state store. Returns the events, the calls the new worker made, and its outcomes.
/// (The real-process version with sled and kill -9 is tests/crash.rs.)
async fn crash_during_call(idempotent: bool) -> (Vec<Event>, usize, Vec<TurnFinished>) {
    let rig = Rig::memory(2);
    let w = workload(3, "act", 1, 0.9);
    let hanging = Counters::default();
    submit(rig.requests.as_ref(), &rig.codecs.requests, &requests(&w))
        .await
        .expect("submit");
    let (_rx, _stats, _stop, task) = rig.start(
        &w,
        vec![probe("act", idempotent, true, &hanging)],
        WorkerConfig::default(),
    );
    for _ in 0..500 {
        if hanging.calls.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hanging.calls.load(Ordering::SeqCst),
        3,
        "all three calls in flight"
    );
    task.abort();
    let _ = task.await;
    let after = Counters::default();
    let (mut rx, _stats, stop, task) = rig.start(
        &w,
        vec![probe("act", idempotent, false, &after)],
        WorkerConfig::default(),
    );
    if !idempotent {
        // Each turn is handed to a person; an operator resolves the three handoffs.
        for _ in 0..500 {
            let raised = rig
                .all_events()
                .await
                .iter()
                .filter(|e| e.kind() == "EscalationRaised")
                .count();
            if raised == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for t in &w {
            let command = TurnCommand {
                turn_offset: None,
                command_id: format!("resolve-{}", t.turn_id),
                turn_id: t.turn_id,
                tenant: t.tenant.clone(),
                operator: "ops".into(),
                issued_at_ms: 0,
                action: CommandAction::HandoffResolve(HandoffResolution {
                    resolution: "checked with the provider: it ran once".into(),
                }),
            };
            ballast::operator::send(rig.requests.as_ref(), &rig.codecs, &t.user_id, &command)
                .await
                .expect("send");
        }
    }
    let done = collect(&mut rx, 3).await;
    stop.send_replace(true);
    task.await.expect("joins");
    (
        rig.all_events().await,
        after.calls.load(Ordering::SeqCst),
        done,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_non_idempotent_call_is_escalated_never_rerun() {
    let (events, calls_after, done) = crash_during_call(false).await;
    assert_eq!(calls_after, 0, "not run again");
    assert!(done.iter().all(|f| f.outcome == Outcome::Escalated));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "HandoffResolved")
            .count(),
        3
    );
    let unknown = events
        .iter()
        .filter(|e| matches!(&e.payload, Payload::ToolCallFailed(f) if f.kind == ToolFailureKind::OutcomeUnknown))
        .count();
    assert_eq!(unknown, 3);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "EscalationRaised")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_an_idempotent_call_is_retried_with_the_same_key() {
    let (events, calls_after, done) = crash_during_call(true).await;
    assert_eq!(calls_after, 3, "each retried once");
    assert!(done.iter().all(|f| f.outcome == Outcome::Succeeded));
    for turn in done.iter().map(|f| f.turn_id) {
        let keys: Vec<(i32, String)> = events
            .iter()
            .filter(|e| e.turn_id == turn)
            .filter_map(|e| match &e.payload {
                Payload::ToolCallStarted(s) => Some((s.attempt, s.idempotency_key.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].0, keys[1].0), (1, 2));
        assert_eq!(keys[0].1, keys[1].1, "same idempotency key");
    }
}

/// A tool that waits until its gate opens.
struct Gated {
    spec: ToolSpec,
    gate: watch::Receiver<bool>,
}

#[async_trait]
impl Tool for Gated {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, _call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        Ok(json!({"summary": "done"}))
    }
}

/// Operator commands share the request log with requests. With every slot taken and requests
/// queued behind, a command appended after them is still applied at once (the partition reads
/// ahead while it cannot admit); the queued requests then run in order, nothing lost, the
/// command applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_not_stuck_behind_requests_waiting_for_a_slot() {
    let rig = Rig::memory(1);
    let c = Counters::default();
    let (open, gate) = watch::channel(false);
    let first = workload(1, "lookup", 1, 0.9);
    let mut queued = workload(6, "slow", 1, 0.9);
    for (i, t) in queued.iter_mut().enumerate() {
        t.turn_id = TurnId::from_parts(1_767_225_700_000 + i as u64, [7; 10]);
    }
    let all: Vec<WorkloadTurn> = first.iter().chain(&queued).cloned().collect();
    let spec = probe("slow", true, false, &c).spec().clone();
    let slow: Arc<dyn Tool> = Arc::new(Gated { spec, gate });
    let cfg = WorkerConfig {
        max_turns_per_partition: 1,
        ..WorkerConfig::default()
    };
    let (mut rx, _stats, stop, task) =
        rig.start(&all, vec![probe("lookup", true, false, &c), slow], cfg);
    submit(
        rig.requests.as_ref(),
        &rig.codecs.requests,
        &requests(&first),
    )
    .await
    .expect("submit");
    let done = collect(&mut rx, 1).await;
    assert_eq!(done[0].turn_id, first[0].turn_id);
    // The only slot is taken by the first gated turn; five requests wait behind it.
    submit(
        rig.requests.as_ref(),
        &rig.codecs.requests,
        &requests(&queued),
    )
    .await
    .expect("submit");
    let label = TurnCommand {
        turn_offset: None,
        command_id: "label-1".into(),
        turn_id: first[0].turn_id,
        tenant: "acme".into(),
        operator: "reviewer".into(),
        issued_at_ms: 0,
        action: CommandAction::Label(ballast::event::LabelTurn {
            label: "incorrect".into(),
            note: None,
        }),
    };
    ballast::operator::send(rig.requests.as_ref(), &rig.codecs, "u0", &label)
        .await
        .expect("send");
    let labeled = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e.payload, Payload::OutcomeLabeled(_)))
            .count()
    };
    let mut seen = 0;
    for _ in 0..500 {
        seen = labeled(&rig.all_events().await);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 1, "the label arrived while the slot was still taken");
    // The labelled turn's outcome is published again; no queued turn finished (gate shut).
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
        assert_eq!(f.turn_id, first[0].turn_id, "only the labelled turn");
    }
    open.send_replace(true);
    let rest = collect(&mut rx, 6).await;
    let order: Vec<TurnId> = rest.iter().map(|f| f.turn_id).collect();
    let want: Vec<TurnId> = queued.iter().map(|t| t.turn_id).collect();
    assert_eq!(order, want, "queued requests admitted in log order");
    stop.send_replace(true);
    task.await.expect("joins");
    assert_eq!(labeled(&rig.all_events().await), 1, "labelled once");
}
