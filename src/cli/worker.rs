use std::path::PathBuf;

use clap::Args;

use ballast::demo::tools::EffectsJournal;
use ballast::exec::scripted::read_workload;
use ballast::kafka::worker::{WorkerOptions, run as run_worker};
use ballast::log::kafka::KafkaConfig;
use ballast::runtime::{WorkerConfig, shutdown};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    bootstrap: String,
    /// Consumer group: workers in one group share the partitions.
    #[arg(long, default_value = "ballast-workers")]
    group: String,
    /// Topic names are `<prefix>.requests`, `<prefix>.turn-events`, …
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Local cache (snapshots, started turns, schemas). Defaults to a fresh temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Workload file driving the scripted planner (the demo domain).
    #[arg(long)]
    workload: PathBuf,
    /// Where the demo tools journal real side effects.
    #[arg(long)]
    effects: PathBuf,
    /// Upper bound of each simulated service call, in milliseconds.
    #[arg(long, default_value_t = 4)]
    service_latency_ms: u64,
    /// For Kafka-compatible brokers without transactions: idempotent appends only (readers still
    /// drop duplicates by per-turn sequence number, but a zombie worker is not fenced).
    #[arg(long)]
    no_transactions: bool,
    /// Policy directory (`*.cedar`, `control.toml`), reloaded on change. Defaults to the
    /// built-in examples/demo/policies.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Consumer-group session timeout.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u32,
    /// Where to serve Prometheus `/metrics` (port 0 picks a free one).
    #[arg(long, default_value = ballast::telemetry::exporter::DEFAULT_METRICS_ADDR)]
    metrics_addr: std::net::SocketAddr,
}

pub async fn run(a: WorkerArgs) -> anyhow::Result<()> {
    let (dir, _keep) = match a.data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ballast-worker-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let workload = read_workload(&a.workload)?;
    let exec = ballast::demo::plane(
        &workload,
        EffectsJournal::open(&a.effects)?,
        a.service_latency_ms,
    );
    let catalog = exec.tools.catalog().clone();
    let (control, _watcher): (std::sync::Arc<dyn ballast::control::ControlPlane>, _) =
        match &a.policies {
            Some(dir) => {
                let plane =
                    std::sync::Arc::new(ballast::control::CedarControlPlane::load(dir, catalog)?);
                let w = ballast::control::PolicyWatcher::spawn(
                    std::sync::Arc::clone(&plane),
                    std::time::Duration::from_secs(1),
                );
                (plane, Some(w))
            }
            None => (
                std::sync::Arc::new(ballast::demo::operator::demo_control(catalog)?),
                None,
            ),
        };
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    let (_, metrics) =
        ballast::telemetry::exporter::serve_metrics(a.metrics_addr, rx.clone()).await?;
    let opts = WorkerOptions {
        kafka: KafkaConfig::new(a.bootstrap),
        topics: ballast::kafka::Topics::new(&a.topic_prefix),
        group: a.group,
        data_dir: dir,
        transactional: !a.no_transactions,
        worker: WorkerConfig::default(),
        session_timeout_ms: a.session_timeout_ms,
    };
    run_worker(opts, exec, Some(control), None, rx).await?;
    metrics.abort();
    Ok(())
}
