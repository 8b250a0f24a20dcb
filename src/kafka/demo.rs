//! `ballast demo --bootstrap B --workers N`: the demo workload through Kafka. Requests are
//! produced to the request topic, N `ballast worker` processes run them, and progress and the
//! summary come from the turn index built from the turn-event topic (cached in the data dir).
//! Re-running on the same data dir finishes the same workload without redoing completed work.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Topics;
use crate::clock::{Clock, SystemClock};
use crate::demo::run::{
    DemoError, DemoSummary, load_or_generate, requests_for, submitted_ids, summarize,
};
use crate::embedded::{EmbeddedError, load_codecs};
use crate::ids::Partition;
use crate::log::kafka::{KafkaConfig, KafkaLog};
use crate::log::{EventLog, SledStore};
use crate::projection::turn_index::{TurnIndex, TurnStatus};
use crate::submit::submit;

#[derive(Clone, Debug)]
pub struct KafkaDemoOptions {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub data_dir: PathBuf,
    pub turns: usize,
    pub seed: u64,
    pub workers: usize,
    pub partitions: u32,
    pub service_latency_ms: u64,
    /// The `ballast` binary to start workers with.
    pub exe: PathBuf,
}

fn spawn_worker(
    opts: &KafkaDemoOptions,
    i: usize,
    dev_key: Option<&std::path::Path>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(&opts.exe);
    // The workers share one master key: the user's, else the demo's development key.
    if let Some(dev) = dev_key {
        cmd.env(crate::vault::MASTER_KEY_ENV, dev);
    }
    cmd.arg("worker")
        .args(["--bootstrap", &opts.kafka.bootstrap])
        .args(["--group", &format!("{}-demo", opts.topics.events)])
        .args([
            "--topic-prefix",
            opts.topics.requests.trim_end_matches(".requests"),
        ])
        .arg("--data-dir")
        .arg(opts.data_dir.join(format!("worker-{i}")))
        .arg("--workload")
        .arg(opts.data_dir.join("workload.jsonl"))
        .arg("--effects")
        .arg(opts.data_dir.join("effects.jsonl"))
        .args(["--service-latency-ms", &opts.service_latency_ms.to_string()])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
}

fn stop_workers(workers: &mut [Child]) {
    for w in workers.iter() {
        // SIGTERM: each worker drains its partitions and leaves the group.
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
}

async fn log_end(log: &dyn EventLog) -> u64 {
    let mut total = 0;
    for p in (0..log.partitions()).map(Partition) {
        total += log.end(p).await.map_or(0, |o| o.0);
    }
    total
}

pub async fn run(
    opts: KafkaDemoOptions,
    mut interrupt: watch::Receiver<bool>,
) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| DemoError::Embedded(EmbeddedError::Io(e)))?;
    super::init(&opts.kafka, &opts.topics, opts.partitions, 1).await?;
    let workload = load_or_generate(&opts.data_dir, opts.turns, opts.seed)?;
    let store = SledStore::open(&opts.data_dir).map_err(|source| EmbeddedError::Open {
        dir: opts.data_dir.display().to_string(),
        source,
    })?;
    let codecs = load_codecs(&store)?;
    let events = Arc::new(KafkaLog::open(&opts.kafka, &opts.topics.events).await?);
    let requests = Arc::new(KafkaLog::open(&opts.kafka, &opts.topics.requests).await?);
    let index = TurnIndex::open(&store)?;
    index.catch_up(events.as_ref(), &codecs.events).await?;
    let events_before = log_end(events.as_ref()).await;

    let dev_key = match std::env::var_os(crate::vault::MASTER_KEY_ENV) {
        Some(_) => None,
        None => {
            let (_, source) = crate::vault::Vault::dev_master_for(&opts.data_dir)
                .map_err(|e| DemoError::Runtime(crate::runtime::RuntimeError::Vault(e)))?;
            source.announce();
            Some(source.path().to_path_buf())
        }
    };
    let mut workers = Vec::with_capacity(opts.workers);
    for i in 0..opts.workers {
        workers.push(spawn_worker(&opts, i, dev_key.as_deref()).map_err(DemoError::Spawn)?);
    }
    let (stop_operator, operator_rx) = watch::channel(false);
    let mut operator = crate::demo::operator::spawn(
        events.clone(),
        requests.clone(),
        codecs.clone(),
        &workload,
        operator_rx,
    );
    let already = submitted_ids(requests.as_ref(), &codecs.requests).await?;
    let fresh: Vec<_> = workload
        .iter()
        .filter(|t| !already.contains(&t.turn_id))
        .cloned()
        .collect();
    let submitted_now = submit(
        requests.as_ref(),
        &codecs.requests,
        &requests_for(&fresh, SystemClock.now_ms()),
    )
    .await?;

    let waiting = |index: &TurnIndex| -> Result<usize, DemoError> {
        let mut n = 0;
        for t in &workload {
            if !index
                .get(t.turn_id)?
                .is_some_and(|e| e.status == TurnStatus::Terminal)
            {
                n += 1;
            }
        }
        Ok(n)
    };
    let stall = Duration::from_secs(60);
    let mut last_progress = (Instant::now(), usize::MAX);
    let mut interrupted = *interrupt.borrow();
    let mut stalled = None;
    while !interrupted {
        index.catch_up(events.as_ref(), &codecs.events).await?;
        let left = waiting(&index)?;
        if left == 0 {
            break;
        }
        if left < last_progress.1 {
            last_progress = (Instant::now(), left);
        } else if last_progress.0.elapsed() > stall {
            stalled = Some(left);
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = interrupt.changed() => interrupted = true,
        }
    }
    stop_workers(&mut workers);
    stop_operator.send_replace(true);
    while let Some(done) = operator.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "demo operator stopped with an error");
        }
    }
    if let Some(n) = stalled {
        return Err(DemoError::Stalled(stall, n, String::new()));
    }
    let elapsed = started.elapsed();
    index.catch_up(events.as_ref(), &codecs.events).await?;
    let mut summary = summarize(&index, &workload)?;
    summary.data_dir = opts.data_dir.clone();
    summary.submitted_now = submitted_now;
    summary.events_appended = log_end(events.as_ref()).await.saturating_sub(events_before);
    summary.elapsed = elapsed;
    summary.interrupted = interrupted;
    summary.control = crate::demo::operator::tally(events.as_ref(), &codecs).await?;
    Ok(summary)
}
