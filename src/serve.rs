//! `ballast serve`: the embedded deployment as one long-running process — a worker on every
//! partition of the data dir, the projections kept caught up from the log, the SLO gauges they
//! feed, and an HTTP server on 127.0.0.1 with the API and dashboard (`api`), `/metrics`,
//! `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::embedded::{Embedded, EmbeddedError};
use crate::ids::Partition;
use crate::projection::{ProjectionError, Projections, outcomes::OutcomeView, slo};
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
    Planes(#[from] crate::settle::PlanesError),
    #[error(transparent)]
    Auth(#[from] crate::api::auth::AuthError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
        }
    }
}

/// Runs until `stop` turns true; `bound` is told the HTTP address once it listens.
pub async fn run(
    opts: ServeOptions,
    stop: watch::Receiver<bool>,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let planes = match &opts.config {
        Some(loaded) => loaded.planes()?,
        // The demo domain's planner follows the data dir's workload file (written by `ballast
        // demo`); requests it does not script get the planner's fallback plan.
        None => crate::settle::demo_planes(
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

    let handle = exporter::install()?;
    let ready = Arc::new(AtomicBool::new(false));
    let projections = Projections::standard(&emb.store)?;
    let auth_path = opts
        .auth
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("auth.toml"));
    let auth = crate::api::auth::AuthConfig::load(&auth_path)?;
    if auth.tokens.is_empty() {
        tracing::warn!(path = %auth_path.display(), "no API tokens: every API call is refused (add one with `ballast token`)");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let api = Arc::new(crate::api::AppState {
        emb: emb.clone(),
        projections: projections.clone(),
        index: crate::projection::turn_index::TurnIndex::open(&emb.store)?,
        outcomes: OutcomeView::open(&emb.store)?,
        rate: crate::api::rate::RateLimiter::new(auth.rate.clone(), Arc::clone(&clock)),
        auth,
        slo: slo_config.clone(),
        clock,
    });
    let router = exporter::router(handle)
        .merge(health(Arc::clone(&ready)))
        .merge(crate::api::router(api));
    let (addr, server) = exporter::serve(opts.listen, router, stop.clone()).await?;
    bound(addr);

    let deps = emb
        .deps(exec, control)
        .with_effect_bound(opts.worker.max_concurrent_effects);
    let worker = Worker::new(deps, opts.worker.clone());
    let partitions: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let worker_stop = stop.clone();
    let worker_task = tokio::spawn(async move { worker.run(partitions, worker_stop).await });

    let outcomes = OutcomeView::open(&emb.store)?;
    let mut stop_projections = stop.clone();
    loop {
        let done = projections
            .catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
            .await?;
        let lag = projections.behind(emb.events.as_ref()).await?;
        crate::telemetry::record::projections(done.read, lag);
        let now = SystemClock.now_ms();
        let recent = outcomes.since(now.saturating_sub(slo_config.period_ms))?;
        crate::telemetry::record::slo(&slo::compute(&recent, now, &slo_config));
        ready.store(true, Ordering::Release);
        if *stop_projections.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.refresh) => {}
            _ = stop_projections.changed() => {}
        }
    }
    ready.store(false, Ordering::Release);
    worker_task
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;
    let _ = server.await;
    Ok(())
}

/// `/healthz`: the process answers. `/readyz`: the projections have caught up once, so reads
/// reflect the log.
fn health(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "catching up\n")
                    }
                }
            }),
        )
}
