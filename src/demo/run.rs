//! `ballast demo`: run the demo workload to completion on the embedded log and summarise it.
//! Re-running on the same data dir resumes: requests already submitted are not submitted again,
//! turns already finished are not redone, in-flight turns are recovered from the log.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::operator::ControlTally;
use super::tools::EffectsJournal;
use super::workload;
use crate::clock::SystemClock;
use crate::embedded::{Embedded, EmbeddedError};
use crate::event::TurnRequest;
use crate::exec::scripted::{WorkloadError, WorkloadTurn, read_workload, write_workload};
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::log::{EventLog, LogError};
use crate::projection::turn_index::{TurnIndex, TurnStatus};
use crate::runtime::{RuntimeError, RuntimeStats, Worker, WorkerConfig};
use crate::submit::{SubmitError, submit};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("effects journal: {0}")]
    Journal(std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::runtime::state_store::StoreError),
    #[error("cannot start a worker process: {0}")]
    Spawn(std::io::Error),
    /// No outcome for the stall period; the last field names some of the turns still out.
    #[error("no turn finished for {0:?}; {1} turns still running{2}")]
    Stalled(Duration, usize, String),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
}

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub data_dir: PathBuf,
    pub turns: usize,
    pub seed: u64,
    pub partitions: u32,
    /// Upper bound of each simulated service call, in ms.
    pub service_latency_ms: u64,
    pub worker: WorkerConfig,
    /// A policy directory (`*.cedar` + `control.toml`) to use instead of the built-in
    /// `examples/demo/policies`; reloaded when its files change.
    pub policies: Option<PathBuf>,
    /// Write the workload and submit its requests, but run nothing (`ballast serve` will).
    pub submit_only: bool,
    /// A drill's fault layer around the execution plane.
    pub faults: Option<crate::faults::Faults>,
    /// Submit one turn at a time, each when the one before has finished (drills: reproducible).
    pub lockstep: bool,
    /// Approval and handoff deadlines instead of the built-in demo policies' (2 s and 3 s): a
    /// lockstep run stands still while a turn waits for a person who never answers.
    pub person_ttl_ms: Option<i64>,
    /// Submitted turns left unfinished at most (default: twice the worker's slots over all
    /// partitions); the next are submitted as turns finish.
    pub window: Option<usize>,
}

impl DemoOptions {
    pub fn new(data_dir: PathBuf, turns: usize) -> Self {
        DemoOptions {
            data_dir,
            turns,
            seed: 42,
            partitions: 0,
            service_latency_ms: 4,
            worker: WorkerConfig::default(),
            policies: None,
            submit_only: false,
            faults: None,
            lockstep: false,
            person_ttl_ms: None,
            window: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub data_dir: PathBuf,
    pub turns: usize,
    pub by_outcome: BTreeMap<String, usize>,
    pub running: usize,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub submitted_now: usize,
    pub resumed_turns: u64,
    pub events_appended: u64,
    pub appends: u64,
    pub elapsed: Duration,
    pub dead_letters: u64,
    pub interrupted: bool,
    pub control: ControlTally,
}

impl DemoSummary {
    pub fn events_per_sec(&self) -> f64 {
        self.events_appended as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("data dir     {}\n", self.data_dir.display()));
        s.push_str(&format!(
            "turns        {} in the workload ({} submitted now, {} resumed after a restart)\n",
            self.turns, self.submitted_now, self.resumed_turns
        ));
        for (outcome, n) in &self.by_outcome {
            s.push_str(&format!("  {outcome:<11} {n}\n"));
        }
        if self.running > 0 {
            s.push_str(&format!("  {:<11} {}\n", "running", self.running));
        }
        s.push_str(&format!(
            "latency      p50 {} ms, p95 {} ms (TurnRequested → TurnCompleted)\n",
            self.p50_ms, self.p95_ms
        ));
        s.push_str(&format!(
            "throughput   {} events in {:.2} s = {:.0} events/s",
            self.events_appended,
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
        ));
        if self.appends > 0 {
            s.push_str(&format!(
                ", {} durable appends (group commits)",
                self.appends
            ));
        }
        s.push('\n');
        if !self.control.decisions.is_empty() {
            s.push_str(&self.control.render());
        }
        if self.dead_letters > 0 {
            s.push_str(&format!("dead letters {}\n", self.dead_letters));
        }
        if self.interrupted {
            s.push_str("interrupted  run the same command again to finish the workload\n");
        }
        s
    }
}

fn requests(turns: &[WorkloadTurn], now_ms: i64) -> Vec<TurnRequest> {
    turns
        .iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "chat".into(),
            attributes: if t.attributes.is_empty() {
                BTreeMap::from([("scenario".to_string(), t.scenario.clone())])
            } else {
                t.attributes.clone()
            },
            submitted_at_ms: now_ms,
            session_id: t.session_id.clone(),
        })
        .collect()
}

enum Stop {
    Interrupted,
    Stalled(Duration),
}

/// The turns a run waits for, and the channel their outcomes arrive on.
struct Waiting<'a> {
    turns: HashSet<TurnId>,
    finished: mpsc::UnboundedReceiver<crate::runtime::TurnFinished>,
    interrupt: &'a mut watch::Receiver<bool>,
    /// No outcome for this long: the run is stuck.
    stall: Duration,
}

impl Waiting<'_> {
    async fn until(&mut self, done: impl Fn(&HashSet<TurnId>) -> bool) -> Result<(), Stop> {
        while !done(&self.turns) {
            if *self.interrupt.borrow() {
                return Err(Stop::Interrupted);
            }
            tokio::select! {
                finished = tokio::time::timeout(self.stall, self.finished.recv()) => match finished {
                    Ok(Some(f)) => { self.turns.remove(&f.turn_id); }
                    Ok(None) => return Ok(()),
                    Err(_) => return Err(Stop::Stalled(self.stall)),
                },
                _ = self.interrupt.changed() => return Err(Stop::Interrupted),
            }
        }
        Ok(())
    }
}

pub async fn run(
    opts: DemoOptions,
    mut interrupt: watch::Receiver<bool>,
) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let emb = Embedded::open(&opts.data_dir, opts.partitions)?;
    let workload = load_or_generate(&opts.data_dir, opts.turns, opts.seed)?;
    let journal =
        EffectsJournal::open(&opts.data_dir.join("effects.jsonl")).map_err(DemoError::Journal)?;
    let exec = super::plane(&workload, journal, opts.service_latency_ms);
    let exec = match &opts.faults {
        Some(f) => f.wrap(exec),
        None => exec,
    };
    let catalog = exec.tools.catalog().clone();
    let ttl = opts.person_ttl_ms;
    let (control, _watcher) =
        super::planes::control_plane(opts.policies.as_deref(), catalog, |c| {
            if let Some(ms) = ttl {
                c.approval_ttl_ms = ms;
                c.guards.handoff_ttl_ms = ms;
            }
        })?;

    let index = TurnIndex::open(&emb.store)?;
    index
        .catch_up(emb.events.as_ref(), &emb.codecs.events)
        .await?;
    let mut waiting: HashSet<TurnId> = HashSet::new();
    for t in &workload {
        let done = index
            .get(t.turn_id)?
            .is_some_and(|e| e.status == TurnStatus::Terminal);
        if !done {
            waiting.insert(t.turn_id);
        }
    }
    let already = submitted_ids(emb.requests.as_ref(), &emb.codecs.requests).await?;
    if opts.submit_only {
        let fresh: Vec<WorkloadTurn> = workload
            .iter()
            .filter(|t| !already.contains(&t.turn_id))
            .cloned()
            .collect();
        let now_ms = crate::clock::Clock::now_ms(&SystemClock);
        let submitted_now = submit(
            emb.requests.as_ref(),
            &emb.codecs.requests,
            &requests(&fresh, now_ms),
        )
        .await?;
        let mut summary = summarize(&index, &workload)?;
        summary.data_dir = opts.data_dir.clone();
        summary.submitted_now = submitted_now;
        summary.elapsed = started.elapsed();
        return Ok(summary);
    }

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    // The demo seals its personal values with a development key (this user's, outside the
    // data dir; or one an earlier version left inside it).
    let guards = control.config().guards.clone();
    let detector =
        crate::guard::Redactor::with_options(&guards.redact_patterns, guards.redact_ip_addresses)
            .unwrap_or_else(|_| crate::guard::Redactor::builtin());
    let master = crate::vault::Vault::dev_master(&opts.data_dir)
        .map_err(|e| DemoError::Runtime(RuntimeError::Vault(e)))?;
    let deps = emb
        .deps(exec, control)
        .with_outcomes(out_tx)
        .with_effect_bound(opts.worker.max_concurrent_effects)
        .with_vault(emb.vault(master, detector));
    let worker = Worker::new(deps, opts.worker.clone());
    let stats = worker.stats();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut operator = super::operator::spawn(
        emb.events.clone(),
        emb.requests.clone(),
        emb.codecs.clone(),
        &workload,
        stop_rx.clone(),
    );
    let partitions: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let worker_task = tokio::spawn(async move { worker.run(partitions, stop_rx).await });

    let fresh: Vec<WorkloadTurn> = workload
        .iter()
        .filter(|t| !already.contains(&t.turn_id))
        .cloned()
        .collect();
    // A closed loop: at most `window` submitted turns unfinished at a time. Requests and
    // operator commands share the request log, and a partition reads it in order, admitting
    // requests as slots free up: with the whole workload submitted at once, an operator's
    // answer queued behind thousands of requests and arrived after its 2-3 s deadline on a
    // slow machine. Bounding what is unfinished bounds that wait. Lockstep is a window of one:
    // each turn submitted when the one before has finished, so what turns share (a
    // partition's breakers and budgets) sees them in workload order.
    let window = if opts.lockstep {
        1
    } else {
        opts.window.unwrap_or_else(|| {
            2 * opts.worker.max_turns_per_partition.max(1) * emb.partitions().max(1) as usize
        })
    }
    .max(1);
    let mut wait = Waiting {
        turns: waiting,
        finished: out_rx,
        interrupt: &mut interrupt,
        stall: Duration::from_secs(60),
    };
    let mut submitted_now = 0;
    let mut end = Ok(());
    let mut pending = fresh.iter();
    let mut unfinished: HashSet<TurnId> = HashSet::new();
    loop {
        let room = window.saturating_sub(unfinished.len());
        let batch: Vec<WorkloadTurn> = pending.by_ref().take(room).cloned().collect();
        if !batch.is_empty() {
            let now_ms = crate::clock::Clock::now_ms(&SystemClock);
            submitted_now += submit(
                emb.requests.as_ref(),
                &emb.codecs.requests,
                &requests(&batch, now_ms),
            )
            .await?;
            unfinished.extend(batch.iter().map(|t| t.turn_id));
        }
        if pending.len() == 0 {
            break;
        }
        end = wait
            .until(|w| unfinished.iter().any(|t| !w.contains(t)))
            .await;
        if end.is_err() {
            break;
        }
        unfinished.retain(|t| wait.turns.contains(t));
    }
    if end.is_ok() {
        // Everything else, including turns resumed from an earlier run.
        end = wait.until(HashSet::is_empty).await;
    }
    let remaining = wait.turns.len();
    stop_tx.send_replace(true);
    worker_task
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;
    while let Some(done) = operator.join_next().await {
        done.map_err(|e| RuntimeError::Task(e.to_string()))??;
    }
    let interrupted = match end {
        Ok(()) => false,
        Err(Stop::Interrupted) => true,
        Err(Stop::Stalled(stall)) => {
            let stuck = describe_stuck(&emb, &index, &wait.turns, &stats).await;
            return Err(DemoError::Stalled(stall, remaining, stuck));
        }
    };
    let elapsed = started.elapsed();

    crate::projection::Projections::standard(&emb.store)?
        .catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
        .await?;
    let mut summary = summarize(&index, &workload)?;
    summary.data_dir = opts.data_dir.clone();
    summary.submitted_now = submitted_now;
    summary.resumed_turns = RuntimeStats::get(&stats.resumed_turns);
    summary.events_appended = RuntimeStats::get(&stats.events_appended);
    summary.appends = RuntimeStats::get(&stats.appends);
    summary.elapsed = elapsed;
    summary.dead_letters = RuntimeStats::get(&stats.dead_letters);
    summary.interrupted = interrupted;
    summary.control = super::operator::tally(emb.events.as_ref(), &emb.codecs).await?;
    Ok(summary)
}

/// What a stalled run says about where it stopped: the worker's counters and, for a few of the
/// turns still out, how far each got in the log (none: its request was never admitted).
async fn describe_stuck(
    emb: &Embedded,
    index: &TurnIndex,
    turns: &HashSet<TurnId>,
    stats: &RuntimeStats,
) -> String {
    let mut out = format!(
        "\n  worker: {} partitions ready, {} turns started, {} finished, {} stale commands",
        RuntimeStats::get(&stats.partitions_ready),
        RuntimeStats::get(&stats.turns_started),
        RuntimeStats::get(&stats.turns_finished),
        RuntimeStats::get(&stats.stale_commands),
    );
    if let Err(e) = index
        .catch_up(emb.events.as_ref(), &emb.codecs.events)
        .await
    {
        out.push_str(&format!("\n  (turn index: {e})"));
        return out;
    }
    let mut some: Vec<TurnId> = turns.iter().copied().collect();
    some.sort();
    for turn in some.into_iter().take(5) {
        let line =
            match crate::operator::read_turn(emb.events.as_ref(), &emb.codecs, index, turn).await {
                Ok(None) => "no events: its request was not admitted".to_string(),
                Ok(Some((p, events))) => {
                    let kinds: Vec<&str> = events
                        .iter()
                        .rev()
                        .take(4)
                        .map(|(_, e)| e.payload.kind())
                        .collect();
                    format!(
                        "{} events in {p}, last: {}",
                        events.len(),
                        kinds.join(" < ")
                    )
                }
                Err(e) => format!("unreadable: {e}"),
            };
        out.push_str(&format!("\n  turn {turn}: {line}"));
    }
    out
}

/// Outcomes and latencies of the workload's turns, from the turn index.
pub fn summarize(index: &TurnIndex, workload: &[WorkloadTurn]) -> Result<DemoSummary, LogError> {
    let mut by_outcome = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut running = 0;
    for t in workload {
        match index.get(t.turn_id)? {
            Some(e) if e.status == TurnStatus::Terminal => {
                let o = e.outcome.map_or("unknown", |o| o.as_str());
                *by_outcome.entry(o.to_string()).or_insert(0) += 1;
                latencies.extend(e.latency_ms);
            }
            _ => running += 1,
        }
    }
    latencies.sort_unstable();
    Ok(DemoSummary {
        data_dir: PathBuf::new(),
        turns: workload.len(),
        by_outcome,
        running,
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        submitted_now: 0,
        resumed_turns: 0,
        events_appended: 0,
        appends: 0,
        elapsed: Duration::ZERO,
        dead_letters: 0,
        interrupted: false,
        control: ControlTally::default(),
    })
}

/// The workload in `dir` (written on first use, so a rerun finishes the same turns).
pub fn load_or_generate(
    dir: &std::path::Path,
    turns: usize,
    seed: u64,
) -> Result<Vec<WorkloadTurn>, WorkloadError> {
    let path = dir.join("workload.jsonl");
    if path.exists() {
        let w = read_workload(&path)?;
        if w.len() != turns {
            tracing::warn!(
                existing = w.len(),
                requested = turns,
                "data dir already holds a workload; finishing that one"
            );
        }
        Ok(w)
    } else {
        let w = workload::generate(turns, seed);
        write_workload(&path, &w)?;
        Ok(w)
    }
}

/// Requests for workload turns, stamped with `now_ms`.
pub fn requests_for(turns: &[WorkloadTurn], now_ms: i64) -> Vec<TurnRequest> {
    requests(turns, now_ms)
}

/// Turn ids already in a request log.
pub async fn submitted_ids(
    log: &dyn EventLog,
    codec: &crate::event::codec::AvroCodec<TurnRequest>,
) -> Result<HashSet<TurnId>, LogError> {
    let mut ids = HashSet::new();
    for p in (0..log.partitions()).map(Partition) {
        let mut scan = Scan::new(log, p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(4096).await? {
            ids.extend(
                batch
                    .iter()
                    .filter_map(|s| codec.decode(&s.value).ok())
                    .map(|r| r.turn_id),
            );
        }
    }
    Ok(ids)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    // Empty: the default.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}
