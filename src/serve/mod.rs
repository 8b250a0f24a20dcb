//! `ballast serve`: the embedded deployment as one long-running process — a worker on every
//! partition of the data dir, the projections kept caught up from the log, the SLO gauges they
//! feed, and an HTTP server on 127.0.0.1 with the API and dashboard (`api`), `/metrics`,
//! `/healthz` and `/readyz`.

pub mod fleet;
pub mod follower;
mod otlp_feed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::embedded::{Embedded, EmbeddedError};
use crate::ids::Partition;
use crate::projection::{ProjectionError, Projections};
use crate::runtime::{RuntimeError, Worker, WorkerConfig};
use crate::telemetry::exporter::{self, ExporterError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Exporter(#[from] ExporterError),
    #[error(transparent)]
    Planes(#[from] crate::demo::planes::PlanesError),
    #[error(transparent)]
    Auth(#[from] crate::api::auth::AuthError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Socket(#[from] crate::local_socket::SocketError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error(transparent)]
    Submissions(#[from] crate::api::submissions::SubmissionError),
    #[error("{0}")]
    Telemetry(String),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub policies: Option<PathBuf>,
    pub service_latency_ms: u64,
    /// Bearer tokens (hashed), tenants, roles and the rate limit (default `DATA_DIR/auth.toml`).
    pub auth: Option<PathBuf>,
    pub worker: WorkerConfig,
    /// How often the projections look for new events.
    pub refresh: Duration,
    /// A configuration file (`ballast.toml`): its planners, tools and policies replace the
    /// demo's; its data dir and partitions are used.
    pub config: Option<Arc<crate::config::Loaded>>,
    /// Runs CLI commands sent to the data dir's local socket (`local_socket`), so operators
    /// and auditors use the CLI on the live system. `None`: no socket.
    pub commands: Option<crate::local_socket::Handler>,
    /// Use (or make) the data dir's development master key when no master key is configured.
    pub dev_key: bool,
    /// Export finished turns as OpenTelemetry spans (when its endpoint is set).
    pub telemetry: crate::telemetry::otlp::TelemetryConfig,
}

impl ServeOptions {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServeOptions {
            data_dir,
            listen,
            policies: None,
            service_latency_ms: 4,
            auth: None,
            worker: WorkerConfig::default(),
            refresh: Duration::from_millis(250),
            config: None,
            commands: None,
            telemetry: Default::default(),
            dev_key: false,
        }
    }
}

/// Runs until `stop` turns true; `bound` is told the HTTP address once it listens.
pub async fn run(
    opts: ServeOptions,
    stop: watch::Receiver<bool>,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    // A new data dir is created (the help promises it), before anything looks inside it.
    std::fs::create_dir_all(&opts.data_dir).map_err(EmbeddedError::Io)?;
    let planes = match &opts.config {
        Some(loaded) => loaded.planes().await?,
        // The demo domain's planner follows the data dir's workload file (written by `ballast
        // demo`); requests it does not script get the planner's fallback plan.
        None => crate::demo::planes::served_demo_planes(
            &opts.data_dir,
            opts.policies.as_deref(),
            opts.service_latency_ms,
        )?,
    };
    let partitions = opts
        .config
        .as_ref()
        .filter(|_| !opts.data_dir.join("sled").exists())
        .map_or(0, |c| c.config.log.partitions);
    let emb = Embedded::open(&opts.data_dir, partitions)?;
    let (exec, control, _watcher) = (planes.exec, planes.control, planes.watcher);
    let slo_config = control.config().slo.clone();
    // Personal values rest sealed: no master key, no serving (unless told to use a
    // development key).
    let configured = opts
        .config
        .as_ref()
        .and_then(|c| c.config.vault.master_key_file.clone());
    let (master, source) = crate::vault::Vault::resolve_master(
        configured.as_deref(),
        opts.dev_key.then_some(opts.data_dir.as_path()),
    )?;
    source.announce();
    let guards = control.config().guards.clone();
    let detector =
        crate::guard::Redactor::with_options(&guards.redact_patterns, guards.redact_ip_addresses)
            .unwrap_or_else(|_| crate::guard::Redactor::builtin());
    let vault = emb.vault(master, detector);
    // A wrong master key is refused here, not met as a 503 on every request later.
    vault.check_master()?;

    let handle = exporter::install()?;
    let ready = follower::Readiness::new(Arc::new(AtomicBool::new(false)), u64::MAX);
    let projections = Projections::standard(&emb.store)?;
    // CLI commands run in this process share its database and projections while it serves.
    let _serving = emb.serving(projections.clone());
    let socket = match &opts.commands {
        Some(handler) => {
            Some(crate::local_socket::serve(&opts.data_dir, handler.clone(), stop.clone()).await?)
        }
        None => None,
    };
    let (auth, limits) = open_auth(&opts, &stop)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let api = Arc::new(
        crate::api::AppState::new(
            emb.clone(),
            projections.clone(),
            auth,
            slo_config.clone(),
            clock,
        )?
        .with_vault(Arc::clone(&vault)),
    );
    // Before anything is answered: a submission a crash left half-done is settled from the log.
    api.submissions
        .reconcile(emb.requests.as_ref(), &emb.codecs)
        .await?;
    let router = exporter::router(handle)
        .merge(health(ready.clone()))
        .merge(crate::api::router(api));
    let (addr, server) = exporter::serve(opts.listen, router, limits, stop.clone()).await?;
    bound(addr);

    let deps = emb
        .deps(exec, control)
        .with_effect_bound(opts.worker.max_concurrent_effects)
        .with_vault(vault);
    let worker = Worker::new(deps, opts.worker.clone());
    let partitions: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let worker_stop = stop.clone();
    let worker_task = tokio::spawn(async move { worker.run(partitions, worker_stop).await });

    // A served demo labels the turns its workload stages to go wrong, once they end.
    if opts.config.is_none() {
        let path = opts.data_dir.join("workload.jsonl");
        if let Ok(workload) = crate::exec::scripted::read_workload(&path) {
            let staged = crate::demo::annotate::staged(&workload);
            if !staged.is_empty() {
                tokio::spawn(crate::demo::annotate::run(
                    emb.clone(),
                    staged,
                    stop.clone(),
                ));
            }
        }
    }
    if opts.telemetry.otlp_endpoint.is_some() {
        let exporter =
            crate::telemetry::otlp::exporter(&opts.telemetry, &|v| std::env::var(v).ok())
                .map_err(|e| ServeError::Telemetry(e.to_string()))?;
        tracing::info!(endpoint = ?opts.telemetry.otlp_endpoint, protocol = ?opts.telemetry.otlp_protocol, "exporting turns as OpenTelemetry spans");
        let owner = otlp_feed::LocalOwnership::open(&emb.store).map_err(ServeError::Telemetry)?;
        tokio::spawn(otlp_feed::run(
            emb.clone().into(),
            exporter,
            opts.telemetry.service_name.clone(),
            owner,
            stop.clone(),
        ));
    }
    follower::follow(
        &projections,
        emb.events.as_ref(),
        &emb.codecs,
        &emb.store,
        &slo_config,
        ready,
        opts.refresh,
        None,
        stop.clone(),
    )
    .await?;
    worker_task
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;
    let _ = server.await;
    if let Some(socket) = socket {
        let _ = socket.await;
    }
    Ok(())
}

/// The auth file (`--auth`, else `DATA_DIR/auth.toml`), re-read every second until `stop`, and
/// the connection bounds its `[connections]` sets — for the embedded `serve` and a replica alike.
pub(crate) fn open_auth(
    opts: &ServeOptions,
    stop: &watch::Receiver<bool>,
) -> Result<
    (
        Arc<crate::api::auth::AuthStore>,
        crate::telemetry::server::LimitsSource,
    ),
    ServeError,
> {
    let auth_path = opts
        .auth
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("auth.toml"));
    let auth = Arc::new(crate::api::auth::AuthStore::open(&auth_path)?);
    if auth.current().tokens.is_empty() {
        tracing::warn!(path = %auth_path.display(), "no API tokens yet: every API call is refused until one is added (`ballast token`; the file is re-read every second)");
    }
    tokio::spawn(Arc::clone(&auth).watch(Duration::from_secs(1), stop.clone()));
    let limits: crate::telemetry::server::LimitsSource = {
        let auth = Arc::clone(&auth);
        Arc::new(move || auth.current().connections.limits())
    };
    Ok((auth, limits))
}

/// `/healthz`: the process answers. `/readyz`: the projections have caught up once (and, on a
/// replica, are within their lag bound), so reads reflect the log.
fn health(ready: follower::Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let answer = ready.check();
                // The projections' lag (events not folded yet) as last measured, for load
                // balancers and benches that weigh replicas by it.
                let lag = [(follower::LAG_HEADER, ready.lag().to_string())];
                async move {
                    match answer {
                        Ok(()) => (StatusCode::OK, lag, "ready\n".to_string()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, lag, format!("{why}\n")),
                    }
                }
            }),
        )
}
