//! `ballast bench`: N five-step turns with instant tools on the sled log, every event durable
//! before its effect, compared with raw sled appends of the same records in the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::demo::run::{DemoError, percentile};
use crate::embedded::Embedded;
use crate::event::{PlanStep, TurnRequest};
use crate::exec::catalog::{Impact, ToolSpec};
use crate::exec::{ExecutionPlane, PlanRequest, Planner, Retriever, Tool, ToolError, Toolbox};
use crate::ids::{Offset, Partition, TurnId};
use crate::log::LogError;
use crate::log::Scan;
use crate::runtime::{Deps, RuntimeError, RuntimeStats, Worker, WorkerConfig};
use crate::turn::{ExecFailure, Planned, Retrieval, ToolInvocation};

pub mod http;
pub mod http_fleet;
pub mod kafka;
mod load;
pub mod model;
pub mod personal;
pub mod policy;
pub mod waiting;

pub const STEPS: usize = 5;

/// How the turns a bench timed ended. Printed with every bench: a throughput figure means
/// something only with the outcome it was measured on (a bench whose turns are all refused at
/// the plan measures refusals).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutcomeMix {
    counts: BTreeMap<&'static str, usize>,
}

impl OutcomeMix {
    pub fn add(&mut self, outcome: crate::event::Outcome) {
        *self.counts.entry(outcome.as_str()).or_default() += 1;
    }

    pub fn count(&self, outcome: crate::event::Outcome) -> usize {
        self.counts.get(outcome.as_str()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// `outcomes: succeeded=N failed=N denied=N escalated=N reversed=N escalation_failed=N`.
    pub fn render(&self) -> String {
        let parts: Vec<String> = crate::event::Outcome::ALL
            .iter()
            .map(|o| format!("{}={}", o.as_str(), self.count(*o)))
            .collect();
        format!("outcomes: {}\n", parts.join(" "))
    }
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub turns: usize,
    pub events: u64,
    pub appends: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub avg_record_bytes: usize,
    pub raw_appends_per_sec: f64,
    /// With the vault: the cost of tokenizing one request (and sealing its values durably)
    /// before it is written, which the API and intake pay outside the engine's clock.
    pub tokenize_us_per_request: Option<f64>,
    /// Snapshots written during the run and the seconds they took, summed over partitions
    /// (known for the embedded worker).
    pub snapshots: Option<(u64, f64)>,
    /// Kafka: the commit interval of the run above, and the same turns measured in the same
    /// run with a transaction per round (interval 0), for comparison.
    pub per_round: Option<(u64, Box<BenchReport>)>,
    /// How the timed turns ended.
    pub outcomes: OutcomeMix,
}

impl BenchReport {
    pub fn turns_per_sec(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn baseline_ratio(&self) -> f64 {
        self.events_per_sec() / self.raw_appends_per_sec.max(1e-9)
    }
    pub fn render(&self) -> String {
        let mut out = format!(
            "turns={}\nevents={}\nturns_per_sec={:.0}\nevents_per_sec={:.0}\np50_ms={:.2}\np99_ms={:.2}\n",
            self.turns,
            self.events,
            self.turns_per_sec(),
            self.events_per_sec(),
            self.p50_ms,
            self.p99_ms,
        );
        if self.appends > 0 {
            out.push_str(&format!(
                "events_per_append={:.1}\n",
                self.events as f64 / self.appends as f64
            ));
        }
        out.push_str(&format!(
            "avg_record_bytes={}\nraw_appends_per_sec={:.0}\nbaseline_ratio={:.3}\n",
            self.avg_record_bytes,
            self.raw_appends_per_sec,
            self.baseline_ratio(),
        ));
        if let Some((n, secs)) = self.snapshots {
            out.push_str(&format!("snapshots={n}\nsnapshot_secs={secs:.3}\n"));
        }
        if let Some((interval, base)) = &self.per_round {
            out.push_str(&format!(
                "commit_interval_ms={interval}\nper_round_turns_per_sec={:.0}\nper_round_p50_ms={:.2}\nper_round_p99_ms={:.2}\nper_round_baseline_ratio={:.3}\np50_added_ms={:.2}\n",
                base.turns_per_sec(),
                base.p50_ms,
                base.p99_ms,
                base.baseline_ratio(),
                self.p50_ms - base.p50_ms,
            ));
        }
        // The closed loop times each turn from its request's append (see `load.rs`).
        out.push_str("latency_from=submission\n");
        out.push_str(&self.outcomes.render());
        out
    }
}

struct InstantTool(ToolSpec);

#[async_trait]
impl Tool for InstantTool {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }
    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        Ok(json!({"ok": true, "step": call.call_id}))
    }
}

/// Asks for the five calls at once, then answers once it has their results.
struct FixedPlanner;

#[async_trait]
impl Planner for FixedPlanner {
    async fn plan(&self, r: &PlanRequest) -> Result<Planned, ExecFailure> {
        let answered = r.conversation.steps.is_empty();
        Ok(Planned {
            model_version: "1".into(),
            prompt_template_hash: "0".into(),
            steps: if answered {
                (0..STEPS)
                    .map(|i| PlanStep {
                        tool: format!("step{i}"),
                        args_json: json!({"n": i}).to_string(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            confidence: 0.9,
            input_tokens: 100,
            output_tokens: 20,
            content: (!answered).then(|| "done".to_string()),
            finish_reason: Some(if answered { "tool_calls" } else { "stop" }.into()),
            ..Planned::empty("bench")
        })
    }
}

pub(crate) struct NoContext;

#[async_trait]
impl Retriever for NoContext {
    async fn retrieve(
        &self,
        _t: TurnId,
        _tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        Ok(Retrieval {
            query: query.into(),
            documents: vec![],
            latency_ms: 0,
        })
    }
}

pub(crate) fn instant_tools() -> Vec<Arc<dyn Tool>> {
    (0..STEPS)
        .map(|i| {
            Arc::new(InstantTool(ToolSpec {
                name: format!("step{i}"),
                description: "instant".into(),
                args_schema: json!({"type": "object"}),
                result_schema: json!({"type": "object"}),
                auth_scopes: vec![],
                impact: Impact::Low,
                idempotent: true,
                compensation: None,
                timeout_ms: 1_000,
                ..ToolSpec::default()
            })) as Arc<dyn Tool>
        })
        .collect()
}

/// Runs `turns` turns with at most `in_flight` of them admitted at once (across all partitions).
/// `turns` requests for five-step turns.
pub(crate) fn bench_requests(turns: usize) -> Vec<TurnRequest> {
    (0..turns)
        .map(|i| TurnRequest {
            turn_id: TurnId::from_parts(
                1_767_225_600_000 + i as u64,
                (i as u128).to_be_bytes()[6..].try_into().unwrap_or([0; 10]),
            ),
            tenant: "bench".into(),
            user_id: format!("u{}", i % 100),
            text: "run the five steps".into(),
            channel: "bench".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
            session_id: None,
        })
        .collect()
}

/// No context, a fixed five-step plan, instant tools.
pub(crate) fn instant_plane() -> ExecutionPlane {
    ExecutionPlane {
        retriever: Arc::new(NoContext),
        planner: Arc::new(FixedPlanner),
        tools: Toolbox::new(instant_tools()),
    }
}

/// Waits for `turns` finished turns; returns their wall latencies in µs, sorted, and how they
/// ended.
pub(crate) async fn collect(
    rx: &mut mpsc::UnboundedReceiver<crate::runtime::TurnFinished>,
    turns: usize,
) -> (Vec<u64>, OutcomeMix) {
    let mut latencies_us = Vec::with_capacity(turns);
    let mut outcomes = OutcomeMix::default();
    while latencies_us.len() < turns {
        match rx.recv().await {
            Some(f) => {
                latencies_us.push(f.wall_latency_us.unwrap_or(0));
                outcomes.add(f.outcome);
            }
            None => break,
        }
    }
    latencies_us.sort_unstable();
    (latencies_us, outcomes)
}

pub async fn run(
    turns: usize,
    partitions: u32,
    in_flight: usize,
) -> Result<BenchReport, DemoError> {
    run_on(
        bench_requests(turns),
        instant_plane(),
        partitions,
        in_flight,
        None,
    )
    .await
}

/// Runs `requests` through a worker over a fresh sled data dir; with `master`, through the
/// vault as `serve` does: each request tokenized before it is written (timed apart, see
/// [`BenchReport::tokenize_us_per_request`]), values revealed at the execution plane's edge and
/// sealed again in what comes back.
pub(crate) async fn run_on(
    mut requests: Vec<TurnRequest>,
    exec: ExecutionPlane,
    partitions: u32,
    in_flight: usize,
    master: Option<crate::vault::crypto::Key>,
) -> Result<BenchReport, DemoError> {
    let turns = requests.len();
    let dir = tempfile::tempdir().map_err(DemoError::Journal)?;
    // BALLAST_BENCH_KEEP=1: keep the data dir to look inside (`turns`, `trace`).
    let path = if std::env::var_os("BALLAST_BENCH_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("bench data dir kept: {}", kept.display());
        kept
    } else {
        dir.path().to_path_buf()
    };
    let emb = Embedded::open(&path, partitions)?;
    let vault = master.map(|m| emb.vault(m, crate::guard::Redactor::builtin()));
    let mut tokenize_us_per_request = None;
    if let Some(v) = &vault {
        let started = Instant::now();
        for r in &mut requests {
            let records = v.tokenize_request(r).map_err(RuntimeError::from)?;
            v.persist(&records).map_err(RuntimeError::from)?;
        }
        tokenize_us_per_request = Some(started.elapsed().as_secs_f64() * 1e6 / turns.max(1) as f64);
    }
    let cfg = WorkerConfig {
        max_turns_per_partition: in_flight.div_ceil(emb.partitions() as usize).max(1),
        ..WorkerConfig::default()
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let mut deps = Deps::new(
        emb.events.clone(),
        emb.requests.clone(),
        emb.codecs.clone(),
        exec,
        emb.state.clone(),
    )
    .with_outcomes(out_tx)
    .with_effect_bound(cfg.max_concurrent_effects);
    if let Some(v) = vault {
        deps = deps.with_vault(v);
    }
    let worker = Worker::new(deps, cfg);
    let stats = worker.stats();
    let (stop_tx, stop_rx) = watch::channel(false);
    let parts: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let started = Instant::now();
    let task = tokio::spawn(async move { worker.run(parts, stop_rx).await });
    let run = load::closed_loop(
        emb.requests.as_ref(),
        &emb.codecs.requests,
        &requests,
        in_flight,
        &mut out_rx,
    )
    .await?;
    let (latencies_us, outcomes) = (run.latencies_us, run.outcomes);
    let elapsed = started.elapsed();
    stop_tx.send_replace(true);
    task.await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;
    let events = RuntimeStats::get(&stats.events_appended);
    let mut bytes = 0usize;
    for p in (0..emb.partitions()).map(Partition) {
        let mut scan = Scan::new(emb.events.as_ref(), p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(8192).await? {
            bytes += batch
                .iter()
                .map(|s| s.key.len() + s.value.len())
                .sum::<usize>();
        }
    }
    let avg = bytes / (events.max(1) as usize);
    let raw = raw_sled_appends(events as usize, avg)?;
    Ok(BenchReport {
        turns,
        events,
        appends: RuntimeStats::get(&stats.appends),
        elapsed,
        p50_ms: percentile(&latencies_us, 0.50) as f64 / 1000.0,
        p99_ms: percentile(&latencies_us, 0.99) as f64 / 1000.0,
        avg_record_bytes: avg,
        raw_appends_per_sec: raw,
        tokenize_us_per_request,
        per_round: None,
        outcomes,
        snapshots: Some((
            RuntimeStats::get(&stats.snapshots),
            RuntimeStats::get(&stats.snapshot_micros) as f64 / 1e6,
        )),
    })
}

/// The baseline: `n` records of `size` bytes inserted into one sled tree with dense offset keys,
/// then one flush — the fastest sled takes these bytes durably, with no engine around it.
fn raw_sled_appends(n: usize, size: usize) -> Result<f64, LogError> {
    let dir = tempfile::tempdir().map_err(|e| LogError::storage(e, false))?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(None)
        .open()
        .map_err(|e| LogError::storage(e, false))?;
    let tree = db
        .open_tree("raw")
        .map_err(|e| LogError::storage(e, false))?;
    let value = vec![0x5a_u8; size];
    let started = Instant::now();
    for i in 0..n as u64 {
        tree.insert(i.to_be_bytes(), value.as_slice())
            .map_err(|e| LogError::storage(e, false))?;
    }
    db.flush().map_err(|e| LogError::storage(e, false))?;
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
