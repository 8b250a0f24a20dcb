use std::path::PathBuf;

use clap::Args;

use ballast::runtime::shutdown;
use ballast::serve::{ServeOptions, run as run_serve};

/// Where `ballast serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing). Default with --config: its `log.data_dir`.
    #[arg(long, required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// Configuration file (see examples/ballast.toml): planners (OpenAI-compatible servers),
    /// tools (HTTP endpoints), policies, budgets, guards, ladder, SLO targets, log backend.
    #[arg(long, conflicts_with_all = ["policies", "service_latency_ms"])]
    config: Option<PathBuf>,
    /// HTTP address of the API, the dashboard, `/metrics`, `/healthz` and `/readyz` (port 0
    /// picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Policy directory (`*.cedar`, `control.toml`), reloaded on change. Defaults to the
    /// built-in examples/demo/policies.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Upper bound of each simulated service call of the demo tools, in milliseconds.
    #[arg(long, default_value_t = 4)]
    service_latency_ms: u64,
    /// API tokens (hashed), tenants, roles, rate limit. Default: DATA_DIR/auth.toml (add tokens
    /// with `ballast token`).
    #[arg(long)]
    auth: Option<PathBuf>,
    /// Without a master key ([vault] master_key_file, $BALLAST_MASTER_KEY_FILE), seal personal
    /// values with this user's development key (~/.cache/ballast/dev-master.key, outside the
    /// data dir, made on first use) instead of refusing to start. For demos and tests only.
    #[arg(long)]
    dev_key: bool,
    /// Export every finished turn as OpenTelemetry spans to this OTLP endpoint
    /// (`http://127.0.0.1:4318`; overrides `[telemetry] otlp_endpoint`).
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    #[arg(long)]
    otlp_protocol: Option<String>,
    /// Serve the configuration's deployment on Kafka at these bootstrap servers (as `ballast
    /// worker --config C --bootstrap B` runs it), whatever its `[log] backend` says.
    #[arg(long, requires = "config")]
    bootstrap: Option<String>,
    /// Kafka backend: topic names are `<prefix>.requests`, `<prefix>.turn-events`, … (as the
    /// workers').
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Kafka backend: the workers' consumer group, whose committed offsets measure their
    /// backlog (as `ballast worker --group`).
    #[arg(long, default_value = "ballast-workers")]
    worker_group: String,
    /// Kafka backend: requests a partition's workers may be behind before new turns there are
    /// refused with 503 and Retry-After.
    #[arg(long, default_value_t = 10_000)]
    max_backlog: u64,
    /// Kafka backend: events this replica's projections may be behind before /readyz answers
    /// 503.
    #[arg(long, default_value_t = 10_000)]
    max_lag: u64,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    let mut loaded = match (&a.config, &a.bootstrap) {
        (Some(path), Some(b)) => Some(ballast::config::load_on_kafka(path, Some(b))?),
        (Some(path), None) => Some(ballast::config::load(path)?),
        (None, _) => None,
    };
    for w in loaded.iter().flat_map(|l| l.warnings.iter()) {
        tracing::warn!("{w}");
    }
    let fleet = match &loaded {
        Some(l) if l.config.log.backend == ballast::config::Backend::Kafka => {
            let mut f = ballast::serve::fleet::FleetOptions::new(
                l.config.log.bootstrap.clone().unwrap_or_default(),
                &a.topic_prefix,
            );
            f.worker_group = a.worker_group.clone();
            f.max_backlog = a.max_backlog;
            f.max_lag = a.max_lag;
            Some(f)
        }
        _ => None,
    };
    let data_dir = match (a.data_dir, &mut loaded) {
        (Some(d), Some(l)) => {
            l.config.log.data_dir = d.clone();
            d
        }
        (Some(d), None) => d,
        (None, Some(l)) => l.config.log.data_dir.clone(),
        (None, None) => anyhow::bail!("--data-dir or --config is needed"),
    };
    let mut telemetry = loaded
        .as_ref()
        .map(|l| l.config.telemetry.clone())
        .unwrap_or_default();
    if let Some(e) = a.otlp_endpoint {
        telemetry.otlp_endpoint = Some(e);
    }
    if let Some(p) = a.otlp_protocol {
        telemetry.otlp_protocol = match p.as_str() {
            "http/protobuf" | "http" => ballast::telemetry::otlp::OtlpProtocol::HttpProtobuf,
            "grpc" => ballast::telemetry::otlp::OtlpProtocol::Grpc,
            other => anyhow::bail!("--otlp-protocol {other:?}: http/protobuf or grpc"),
        };
    }
    let mut opts = ServeOptions::new(data_dir, a.listen);
    opts.telemetry = telemetry;
    if let Some(l) = &loaded {
        opts.worker = l.config.worker.apply(opts.worker);
    }
    opts.config = loaded.map(std::sync::Arc::new);
    opts.policies = a.policies;
    opts.service_latency_ms = a.service_latency_ms;
    opts.auth = a.auth;
    opts.commands = Some(super::local_handler());
    opts.dev_key = a.dev_key;
    // Tests and scripts read the address from this line.
    let announce = |addr| {
        let _ = super::emit(&format!("listening on http://{addr}\n"));
    };
    match fleet {
        Some(fleet) => {
            // A replica runs no partition and answers no local CLI socket: the data dir is a
            // cache of the topics, not a deployment's record.
            opts.commands = None;
            ballast::serve::fleet::run(opts, fleet, rx, announce).await?
        }
        None => run_serve(opts, rx, announce).await?,
    }
    Ok(())
}
