//! A control-plane test rig: the embedded sled log, the demo policies and tools, a manual
//! clock, and helpers that assert exact event sequences.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ballast::clock::ManualClock;
use ballast::control::{CedarControlPlane, ControlPlane};
use ballast::demo::kb::KbRetriever;
use ballast::demo::tools::{EffectsJournal, demo_tools};
use ballast::embedded::Embedded;
use ballast::event::{
    CommandAction, EscalationRung, Event, HandoffResolution, Payload, PlanStep, TurnCommand,
    TurnRequest,
};
use ballast::exec::scripted::{Script, ScriptedPlanner, WorkloadTurn};
use ballast::exec::{ExecutionPlane, Toolbox};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::EventLog;
use ballast::projection::turn_index::TurnIndex;
use ballast::runtime::{Deps, TurnFinished, Worker, WorkerConfig};
use ballast::submit::submit;
use serde_json::json;
use tokio::sync::{mpsc, watch};

pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/policies");
pub const T0: i64 = 1_767_225_600_000;

/// The demo policies with a test control.toml: approvals wait a minute, a user may spend
/// 10 000 µ¤ per hour, and models are free (so tool costs alone decide budgets).
pub fn policy_dir(root: &Path) -> PathBuf {
    let dir = root.join("policies");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["baseline.cedar", "refunds.cedar", "confidence.cedar"] {
        std::fs::copy(Path::new(EXAMPLES).join(f), dir.join(f)).expect("copy policy");
    }
    std::fs::write(
        dir.join("control.toml"),
        r#"
approval_ttl_ms = 60000
[budgets]
window_ms = 3600000
[budgets.user]
cost_micros = 10000
[profiles.general]
model = "scripted"
reserve_tokens = 1000
micros_per_1k_tokens = 0
[profiles.specialist]
model = "scripted-specialist"
reserve_tokens = 1000
micros_per_1k_tokens = 0
[[routing.rules]]
name = "billing-to-specialist"
class = "billing"
profile = "specialist"
[guards]
handoff_ttl_ms = 60000
forbidden_phrases = ["we guarantee"]
"#,
    )
    .expect("write control.toml");
    dir
}

pub fn turn(i: u64, user: &str, steps: Vec<PlanStep>, confidence: f64) -> WorkloadTurn {
    // The request names the amount, so the refund's key arguments are grounded.
    let amount = steps
        .iter()
        .find_map(|s| {
            serde_json::from_str::<serde_json::Value>(&s.args_json)
                .ok()?
                .get("amount_cents")?
                .as_i64()
        })
        .unwrap_or(0);
    WorkloadTurn {
        turn_id: TurnId::from_parts(T0 as u64 + i, [i as u8; 10]),
        tenant: "acme".into(),
        user_id: user.into(),
        text: format!(
            "Order A1001 arrived broken, refund {}.{:02} EUR please",
            amount / 100,
            amount % 100
        ),
        scenario: "test".into(),
        script: Script {
            steps,
            confidence,
            batch: Vec::new(),
        },
        attributes: BTreeMap::from([
            ("roles".to_string(), "customer".to_string()),
            ("class".to_string(), "billing".to_string()),
            (
                "scopes".to_string(),
                ballast::demo::workload::SCOPES.to_string(),
            ),
        ]),
        session_id: None,
    }
}

pub fn refund(amount: i64) -> Vec<PlanStep> {
    vec![PlanStep {
        tool: "issue_refund".into(),
        args_json: json!({"order_id": "A1001", "amount_cents": amount}).to_string(),
    }]
}

pub fn requests(w: &[WorkloadTurn]) -> Vec<TurnRequest> {
    w.iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "chat".into(),
            attributes: t.attributes.clone(),
            submitted_at_ms: T0,
            session_id: t.session_id.clone(),
        })
        .collect()
}

pub struct Running {
    pub rx: mpsc::UnboundedReceiver<TurnFinished>,
    #[allow(dead_code)]
    pub stats: Arc<ballast::runtime::RuntimeStats>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn finished(&mut self, n: usize) -> Vec<TurnFinished> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
                .await
                .expect("turns finish in time")
                .expect("worker alive");
            out.push(f);
        }
        out
    }

    /// As [`Running::finished`], moving `clock` on by `step_ms` whenever nothing finished for
    /// 20 ms: the worker's timers (retry backoff) run on that clock, so turns that wait for
    /// one need time to pass — virtual time, a step at a time, as tokio's paused clock does.
    #[allow(dead_code)]
    pub async fn finished_moving(
        &mut self,
        n: usize,
        clock: &ManualClock,
        step_ms: i64,
    ) -> Vec<TurnFinished> {
        let mut out = Vec::new();
        for _ in 0..1_500 {
            if out.len() >= n {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(20), self.rx.recv()).await {
                Ok(f) => out.push(f.expect("worker alive")),
                Err(_) => clock.advance(step_ms),
            }
        }
        assert_eq!(out.len(), n, "turns finish in time");
        out
    }

    pub async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.expect("worker stops cleanly");
    }
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub emb: Embedded,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        policy_dir(root.path());
        Self::reopen(root, Arc::new(ManualClock::new(T0)))
    }

    pub fn reopen(root: tempfile::TempDir, clock: Arc<ManualClock>) -> Self {
        let emb = Embedded::open(&root.path().join("data"), 2).expect("open");
        Env { root, emb, clock }
    }

    /// Closes the data dir (sled allows one process at a time) and hands back what reopens it.
    pub fn close(self) -> (tempfile::TempDir, Arc<ManualClock>) {
        (self.root, self.clock)
    }

    pub fn policies(&self) -> PathBuf {
        self.root.path().join("policies")
    }

    pub fn journal(&self) -> PathBuf {
        self.root.path().join("effects.jsonl")
    }

    pub fn exec(&self, w: &[WorkloadTurn]) -> ExecutionPlane {
        let journal = EffectsJournal::open(&self.journal()).expect("journal");
        ExecutionPlane {
            retriever: Arc::new(KbRetriever::new(Duration::ZERO)),
            planner: ScriptedPlanner::new(w, Duration::ZERO),
            tools: Toolbox::new(demo_tools(journal, 0)),
        }
    }

    pub fn control(&self, w: &[WorkloadTurn]) -> Arc<CedarControlPlane> {
        let catalog = self.exec(w).tools.catalog().clone();
        Arc::new(CedarControlPlane::load(&self.policies(), catalog).expect("policies load"))
    }

    pub fn start(&self, w: &[WorkloadTurn], control: Arc<dyn ControlPlane>) -> Running {
        self.start_with(w, control, WorkerConfig::default())
    }

    pub fn start_with(
        &self,
        w: &[WorkloadTurn],
        control: Arc<dyn ControlPlane>,
        cfg: WorkerConfig,
    ) -> Running {
        let (tx, rx) = mpsc::unbounded_channel();
        let deps = Deps::new(
            self.emb.events.clone(),
            self.emb.requests.clone(),
            self.emb.codecs.clone(),
            self.exec(w),
            self.emb.state.clone(),
        )
        .with_journals(self.emb.journals())
        .with_control(control)
        .with_clock(self.clock.clone())
        .with_outcomes(tx);
        let worker = Worker::new(deps, cfg);
        let stats = worker.stats();
        let (stop, stop_rx) = watch::channel(false);
        let parts: Vec<Partition> = (0..self.emb.partitions()).map(Partition).collect();
        let task = tokio::spawn(async move { worker.run(parts, stop_rx).await.expect("runs") });
        Running {
            rx,
            stats,
            stop,
            task,
        }
    }

    pub async fn submit(&self, w: &[WorkloadTurn]) {
        submit(
            self.emb.requests.as_ref(),
            &self.emb.codecs.requests,
            &requests(w),
        )
        .await
        .expect("submit");
    }

    pub async fn events(&self, t: TurnId) -> Vec<Event> {
        let mut out = Vec::new();
        for p in (0..self.emb.partitions()).map(Partition) {
            for s in self
                .emb
                .events
                .read(p, Offset::ZERO, 1_000_000)
                .await
                .expect("read")
            {
                let e = self.emb.codecs.events.decode(&s.value).expect("decodes");
                if e.turn_id == t {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Waits until the turn's last event is ApprovalRequested.
    pub async fn awaiting_approval(&self, t: TurnId) {
        for _ in 0..300 {
            if matches!(
                self.events(t).await.last().map(|e| &e.payload),
                Some(Payload::ApprovalRequested(_))
            ) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "turn {t} never asked for approval: {:?}",
            kinds(&self.events(t).await)
        );
    }

    pub async fn answer(&self, t: TurnId, granted: bool) {
        let index = TurnIndex::open(&self.emb.store).expect("index");
        index
            .catch_up(self.emb.events.as_ref(), &self.emb.codecs.events)
            .await
            .expect("catch up");
        self.emb
            .desk(&index)
            .answer_approval(
                t,
                granted,
                Some("checked with the customer".into()),
                ("ops-anna", T0),
            )
            .await
            .expect("answer");
    }

    /// Waits until the turn is handed to a person (the worker recorded it).
    pub async fn handed_off(&self, t: TurnId) {
        for _ in 0..300 {
            let handed = self.events(t).await.iter().any(|e| {
                matches!(&e.payload, Payload::EscalationRaised(r) if r.rung == EscalationRung::HumanHandoff)
            });
            if handed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("turn {t} was never handed off");
    }

    /// Waits until the turn is handed off, then resolves the handoff as an operator.
    pub async fn resolve_handoff(&self, t: &WorkloadTurn) {
        for _ in 0..300 {
            let handed = self.events(t.turn_id).await.iter().any(|e| {
                matches!(&e.payload, Payload::EscalationRaised(r) if r.rung == EscalationRung::HumanHandoff)
            });
            if handed {
                let command = TurnCommand {
                    turn_offset: None,
                    command_id: format!("resolve-{}", t.turn_id),
                    turn_id: t.turn_id,
                    tenant: t.tenant.clone(),
                    operator: "ops-anna".into(),
                    issued_at_ms: T0,
                    action: CommandAction::HandoffResolve(HandoffResolution {
                        resolution: "called the customer".into(),
                    }),
                };
                ballast::operator::send(
                    self.emb.requests.as_ref(),
                    &self.emb.codecs,
                    &t.user_id,
                    &command,
                )
                .await
                .expect("send");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("turn {} was never handed off", t.turn_id);
    }

    pub fn side_effects(&self) -> usize {
        std::fs::read_to_string(self.journal())
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// Event kinds, with each PolicyEvaluated as `Policy(checkpoint:decision)`.
pub fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.payload {
            Payload::PolicyEvaluated(p) => {
                format!("Policy({}:{})", p.checkpoint.as_str(), p.decision.as_str())
            }
            _ => e.kind().to_string(),
        })
        .collect()
}

pub fn policy_ids(events: &[Event]) -> Vec<Vec<String>> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::PolicyEvaluated(p) => Some(p.policy_ids.clone()),
            _ => None,
        })
        .collect()
}

pub const OPENING: [&str; 6] = [
    "TurnRequested",
    "RouteSelected",
    "ContextRetrieved",
    "BudgetReserved",
    "PlanProposed",
    "BudgetCommitted",
];

pub fn expect(rest: &[&str]) -> Vec<String> {
    OPENING.iter().chain(rest).map(|s| s.to_string()).collect()
}

pub const CALL_RAN: [&str; 4] = [
    "BudgetReserved",
    "ToolCallStarted",
    "ToolCallCompleted",
    "BudgetCommitted",
];
