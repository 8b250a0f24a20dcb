//! The Prometheus recorder and the `/metrics` endpoint of every long-running process.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

/// Where a long-running process serves `/metrics` unless told otherwise.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and describes
/// every metric.
pub fn install() -> Result<PrometheusHandle, ExporterError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &super::LATENCY_BUCKETS)
        .map_err(|e| ExporterError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| ExporterError::Install(e.to_string()))?;
    super::describe();
    let handle = HANDLE.get_or_init(|| handle).clone();
    // Histograms are drained into their buckets by upkeep; without it their samples pile up.
    let upkeep = handle.clone();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
    }
    Ok(handle)
}

/// `GET /metrics` in the Prometheus text format.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Serves `router` on `addr` until `stop` turns true, its connections bounded by `limits`
/// (`server`); returns the bound address (port 0 picks one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    limits: super::server::LimitsSource,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ExporterError> {
    let listener = listen(addr).map_err(|source| ExporterError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let task = tokio::spawn(super::server::run(listener, router, limits, stop));
    Ok((bound, task))
}

/// The listening socket, with a deep accept queue: under a flood of connections a full queue
/// drops new ones' SYNs, and a client whose SYN is dropped waits a second or more to retry.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // The kernel caps it at net.core.somaxconn.
    socket.listen(4096)
}

/// Installs the recorder and serves `/metrics` alone (for workers); prints where to stderr.
pub async fn serve_metrics(
    addr: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ExporterError> {
    let handle = install()?;
    let limits = super::server::fixed(super::server::Limits::default());
    let (bound, task) = serve(addr, router(handle), limits, stop).await?;
    eprintln!("metrics on http://{bound}/metrics");
    Ok((bound, task))
}
