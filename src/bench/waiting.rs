//! `ballast bench --waiting N`: what a crash costs a worker holding N turns that wait for a
//! person.
//!
//! Two phases, each its own process (the CLI runs them, see `cli/bench.rs`): [`park`] runs N
//! five-step turns whose first call needs an operator's approval until every one waits, and
//! reports; the parent then kills it with SIGKILL (no drain, no final snapshot — what the
//! periodic snapshots wrote is what there is). [`resume`] opens the same data directory in a
//! fresh process and measures the time until every partition has recovered its turns, re-armed
//! their deadlines and consumes requests again, and how much resident memory that took per
//! waiting turn.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{bench_requests, instant_plane};
use crate::control::CedarControlPlane;
use crate::control::ControlConfig;
use crate::control::ControlPlane;
use crate::control::cedar::{BUILTIN_POLICIES, Policies};
use crate::demo::run::DemoError;
use crate::embedded::Embedded;
use crate::ids::Partition;
use crate::runtime::{Deps, RuntimeError, RuntimeStats, Worker, WorkerConfig};
use crate::submit::submit;

/// The bench's first step needs a person: every turn parks on an approval.
const CONFIRM_FIRST_STEP: &str = r#"@id("bench.confirm_first_step")
@decision("require_confirmation")
@reason("the bench parks every turn on an approval")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"step0");
"#;

/// Turns to wait for before giving up on a phase that stopped progressing.
const STALL: Duration = Duration::from_secs(120);

fn worker(emb: &Embedded) -> Result<Worker, DemoError> {
    let exec = instant_plane();
    let catalog = exec.tools.catalog().clone();
    let policies = Policies::from_sources(
        &[
            ("builtin.cedar".into(), BUILTIN_POLICIES.into()),
            ("bench.cedar".into(), CONFIRM_FIRST_STEP.into()),
        ],
        &catalog,
    )
    .map_err(|e| DemoError::Runtime(RuntimeError::Task(e.to_string())))?;
    // A day to answer: nothing expires while the bench runs.
    let config = ControlConfig {
        approval_ttl_ms: 24 * 3_600_000,
        ..ControlConfig::default()
    };
    let control: Arc<dyn ControlPlane> =
        Arc::new(CedarControlPlane::new(config, catalog, policies, None));
    let deps = Deps::new(
        emb.events.clone(),
        emb.requests.clone(),
        emb.codecs.clone(),
        exec,
        emb.state.clone(),
    )
    .with_control(control);
    Ok(Worker::new(deps, WorkerConfig::default()))
}

/// Polls `counter` until it reaches `target`; an error if it stops moving for [`STALL`].
async fn wait_for(counter: &std::sync::atomic::AtomicU64, target: u64) -> Result<(), DemoError> {
    let mut last = (RuntimeStats::get(counter), Instant::now());
    loop {
        let now = RuntimeStats::get(counter);
        if now >= target {
            return Ok(());
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(DemoError::Runtime(RuntimeError::Task(format!(
                "stalled at {now} of {target}"
            ))));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Phase one: N turns parked on approvals in a fresh data directory. Returns once all wait,
/// with the worker still running (the caller reports, then is killed).
pub async fn park(
    dir: &Path,
    waiting: usize,
    partitions: u32,
) -> Result<(String, watch::Sender<bool>), DemoError> {
    let emb = Embedded::open(dir, partitions)?;
    let worker = worker(&emb)?;
    let stats = worker.stats();
    let (stop_tx, stop_rx) = watch::channel(false);
    let parts: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let started = Instant::now();
    tokio::spawn(async move { worker.run(parts, stop_rx).await });
    for chunk in bench_requests(waiting).chunks(5_000) {
        submit(emb.requests.as_ref(), &emb.codecs.requests, chunk).await?;
    }
    wait_for(&stats.approvals_requested, waiting as u64).await?;
    let report = format!(
        "parked={waiting}\npark_secs={:.1}\nevents={}\nsnapshots={}\n",
        started.elapsed().as_secs_f64(),
        RuntimeStats::get(&stats.events_appended),
        RuntimeStats::get(&stats.snapshots),
    );
    Ok((report, stop_tx))
}

/// Phase two, in a fresh process after the kill: open, recover, resume; measure.
pub async fn resume(dir: &Path, waiting: usize) -> Result<String, DemoError> {
    let rss_start = rss_bytes();
    let started = Instant::now();
    let emb = Embedded::open(dir, 0)?;
    let opened_ms = started.elapsed().as_secs_f64() * 1e3;
    // What the turns add is measured from here: opening the data directory (sled's page
    // table and cache, ~180 MB whatever waits) is the process's cost, printed apart.
    let rss_before = rss_bytes();
    let worker = worker(&emb)?;
    let stats = worker.stats();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let parts: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let n = parts.len() as u64;
    tokio::spawn(async move { worker.run(parts, stop_rx).await });
    wait_for(&stats.partitions_ready, n).await?;
    let resume_ms = started.elapsed().as_secs_f64() * 1e3;
    let resumed = RuntimeStats::get(&stats.resumed_turns);
    let rss_after = rss_bytes();
    let per_turn = match (rss_before, rss_after) {
        (Some(a), Some(b)) if resumed > 0 => b.saturating_sub(a) / resumed,
        _ => 0,
    };
    let mb = |x: Option<u64>| x.map_or(0.0, |b| b as f64 / (1 << 20) as f64);
    if resumed != waiting as u64 {
        return Err(DemoError::Runtime(RuntimeError::Task(format!(
            "resumed {resumed} turns, {waiting} were waiting"
        ))));
    }
    // No turn finishes here: every one waits for a person, before the kill and after.
    let outcomes = format!(
        "{} waiting_for_a_person={waiting}\n",
        super::OutcomeMix::default().render().trim_end()
    );
    Ok(format!(
        "waiting={waiting}\nresume_ms={resume_ms:.0}\nopen_ms={opened_ms:.0}\nreplayed_events={}\nparked_turns={}\nrss_start_mb={:.0}\nrss_opened_mb={:.0}\nrss_resumed_mb={:.0}\nbytes_per_waiting_turn={per_turn}\n",
        RuntimeStats::get(&stats.replayed_events),
        RuntimeStats::get(&stats.parked_turns),
        mb(rss_start),
        mb(rss_before),
        mb(rss_after),
    ) + &outcomes)
}

/// Resident set size of this process (Linux `/proc/self/statm`).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
