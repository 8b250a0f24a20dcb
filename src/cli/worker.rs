use std::path::PathBuf;

use clap::Args;

use ballast::exec::scripted::read_workload;
use ballast::kafka::worker::{WorkerOptions, run as run_worker};
use ballast::log::kafka::KafkaConfig;
use ballast::runtime::{WorkerConfig, shutdown};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Bootstrap servers. Default with --config: its `log.bootstrap`.
    #[arg(long, required_unless_present = "config")]
    bootstrap: Option<String>,
    /// A configuration file (`ballast.toml`, kafka backend): its planners, tools, policies and
    /// `[control]` replace the demo's, and its `log` section gives the bootstrap servers and data
    /// dir unless the flags say otherwise.
    #[arg(long, conflicts_with_all = ["workload", "effects", "policies"])]
    config: Option<PathBuf>,
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
    #[arg(long, required_unless_present = "config")]
    workload: Option<PathBuf>,
    /// Where the demo tools journal real side effects.
    #[arg(long, required_unless_present = "config")]
    effects: Option<PathBuf>,
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
    /// Without a master key ([vault] master_key_file, $BALLAST_MASTER_KEY_FILE), seal personal
    /// values with this machine's development key (~/.cache/ballast/dev-master.key, made on
    /// first use and shared by its workers) instead of refusing to start. Demos and tests only:
    /// workers on other machines cannot read what it seals.
    #[arg(long)]
    dev_key: bool,
}

pub async fn run(a: WorkerArgs) -> anyhow::Result<()> {
    let loaded = match &a.config {
        Some(path) => Some(ballast::config::load_on_kafka(
            path,
            a.bootstrap.as_deref(),
        )?),
        None => None,
    };
    let bootstrap = match (&a.bootstrap, &loaded) {
        (Some(b), _) => b.clone(),
        (None, Some(l)) => l.config.log.bootstrap.clone().unwrap_or_default(),
        (None, None) => anyhow::bail!("--bootstrap or --config is needed"),
    };
    let (dir, _keep) = match (a.data_dir.clone(), &loaded) {
        (Some(d), _) => (d, None),
        (None, Some(l)) => (l.config.log.data_dir.clone(), None),
        (None, None) => {
            let t = tempfile::Builder::new()
                .prefix("ballast-worker-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let configured = loaded
        .as_ref()
        .and_then(|l| l.config.vault.master_key_file.clone());
    let (master, source) = ballast::vault::Vault::resolve_master(
        configured.as_deref(),
        // This user's development key, outside every data dir: one for all its workers.
        a.dev_key.then_some(dir.as_path()),
    )?;
    source.announce();
    let worker = loaded.as_ref().map_or_else(WorkerConfig::default, |l| {
        l.config.worker.apply(WorkerConfig::default())
    });
    let (planes, intake) = match loaded {
        Some(mut l) => {
            std::fs::create_dir_all(&dir)?;
            l.config.log.data_dir = dir.clone();
            if l.config.intake.tenants.is_empty() {
                tracing::warn!(
                    "no [intake] in the configuration: requests asserting roles or scopes are dead-lettered"
                );
            }
            (l.planes().await?, l.config.intake.clone())
        }
        // The demo's producer is the demo itself: its claims are trusted.
        None => (
            demo_planes(&a)?,
            ballast::control::claims::IntakeTrust::trust_all(),
        ),
    };
    let (exec, control, _watcher) = (planes.exec, planes.control, planes.watcher);
    let guards = control.config().guards.clone();
    let detector =
        ballast::guard::Redactor::with_options(&guards.redact_patterns, guards.redact_ip_addresses)
            .map_err(|e| anyhow::anyhow!("[guards] redact_patterns: {e}"))?;
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    let (_, metrics) =
        ballast::telemetry::exporter::serve_metrics(a.metrics_addr, rx.clone()).await?;
    let opts = WorkerOptions {
        kafka: KafkaConfig::new(bootstrap),
        topics: ballast::kafka::Topics::new(&a.topic_prefix),
        group: a.group,
        data_dir: dir,
        transactional: !a.no_transactions,
        worker,
        session_timeout_ms: a.session_timeout_ms,
        intake,
        vault: Some(ballast::kafka::worker::VaultOptions { master, detector }),
    };
    run_worker(opts, exec, Some(control), None, rx).await?;
    metrics.abort();
    Ok(())
}

/// The demo's planes: the scripted planner over a workload file, the demo tools, and the policy
/// directory (or the built-in demo policies).
fn demo_planes(a: &WorkerArgs) -> anyhow::Result<ballast::settle::Planes> {
    let (Some(workload), Some(effects)) = (&a.workload, &a.effects) else {
        anyhow::bail!("--workload and --effects are needed without --config");
    };
    Ok(ballast::demo::planes::demo_planes_from(
        &read_workload(workload)?,
        effects,
        a.policies.as_deref(),
        a.service_latency_ms,
    )?)
}
