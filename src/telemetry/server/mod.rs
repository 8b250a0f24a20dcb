//! The HTTP server of long-running processes (the API, the dashboard, `/metrics`, `/healthz`):
//! an accept loop of its own around axum's router, so that connections are bounded.
//!
//! - At start the soft file limit is raised to the hard one; open connections are bounded below
//!   it, with a reserve of descriptors for the rest of the process (`fds`), or lower if
//!   configured ([`Limits::max`]).
//! - At the bound a new connection still gets in: an older one gives way — one that has not
//!   authenticated first, never an authenticated caller's with a request in flight (`slots`).
//! - A connection that has not authenticated must send a complete request head within
//!   [`Limits::header_timeout`] of connecting or of its previous response; every connection,
//!   trusted or not, is closed after [`Limits::idle_timeout`] without a complete request head
//!   (hyper's header-read timer, which runs from the moment a connection is idle).
//! - On stop, connections without a request in flight close at once, the others after their
//!   response, or after [`DRAIN`].
//!
//! HTTP/1.1 only: the API's clients, browsers over plain TCP and Prometheus all speak it.

pub mod fds;
pub mod slots;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use slots::{Admitted, InFlight, Slot, Slots};

/// The answer to a connection refused at the bound.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";

/// How long a stopping server waits for the responses in flight.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The bounds on connections, read again for each new connection (the API's come from
/// `auth.toml`, which is re-read while serving).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// At most this many open connections; `None`: as many as the file limit allows, less a
    /// reserve. Never above that either way.
    pub max: Option<usize>,
    /// How long a connection that has not authenticated may take to send a complete request
    /// head, from connecting or from its previous response.
    pub header_timeout: Duration,
    /// How long any connection may stay without a complete request head after its previous
    /// response (keep-alive).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max: None,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the server reads its current [`Limits`].
pub type LimitsSource = Arc<dyn Fn() -> Limits + Send + Sync>;

/// Fixed limits.
pub fn fixed(limits: Limits) -> LimitsSource {
    Arc::new(move || limits.clone())
}

/// The connection a request came on, in the request's extensions: the API marks it trusted
/// when a request on it authenticates (and not when one fails), which protects its slot.
#[derive(Clone)]
pub struct ConnectionTrust(Arc<Slot>);

impl ConnectionTrust {
    pub fn trust(&self) {
        self.0.set_trusted(true);
    }

    pub fn distrust(&self) {
        self.0.set_trusted(false);
    }
}

/// Serves `router` on `listener` until `stop` turns true (see the module docs).
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: LimitsSource,
    mut stop: watch::Receiver<bool>,
) {
    let bound = fds::bound_for_this_process();
    tracing::info!(bound, "HTTP connections bounded");
    let slots = Arc::new(Slots::default());
    loop {
        if *stop.borrow() {
            break;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors despite the bound (something else took them): the
                // connection that would give way to a new one goes now, and the next accept
                // waits a moment rather than spinning.
                if e.raw_os_error().is_some_and(is_fd_exhaustion) && slots.evict_one() {
                    super::record::http_connection_closed("evicted");
                }
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let current = limits();
        let max = current.max.map_or(bound, |m| m.min(bound));
        super::record::http_connection_bound(max);
        match slots.admit(max) {
            Admitted::In { slot, evicted } => {
                if evicted {
                    super::record::http_connection_closed("evicted");
                }
                super::record::http_connections(slots.len());
                tokio::spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    slot,
                    Arc::clone(&slots),
                    current,
                    stop.clone(),
                ));
            }
            Admitted::Full => {
                // Only authenticated callers with requests in flight: this one is told so,
                // without waiting for the socket to take it.
                super::record::http_connection_closed("refused");
                let _ = stream.try_write(BUSY);
                drop(stream);
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, slots.drained()).await.is_err() {
        slots.evict_all();
    }
}

fn is_fd_exhaustion(errno: i32) -> bool {
    errno == nix::errno::Errno::EMFILE as i32 || errno == nix::errno::Errno::ENFILE as i32
}

/// Serves one connection until it closes, times out, gives way to a newer one, or the server
/// stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Arc<Slot>,
    slots: Arc<Slots>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let slot = Arc::clone(&slot);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = slot.begin();
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut()
                .insert(ConnectionTrust(Arc::clone(&slot)));
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.idle_timeout.max(limits.header_timeout));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = idle_stranger(&slot, limits.header_timeout);
    tokio::pin!(idle);
    let mut draining = None;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        super::record::http_connection_closed("idle_timeout");
                    }
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            () = slot.evicted() => break,
            () = &mut idle => {
                super::record::http_connection_closed("header_timeout");
                break;
            }
            _ = stop.changed(), if draining.is_none() => {
                // Idle (or never asked anything): close now; else after the response.
                conn.as_mut().graceful_shutdown();
                if !slot.busy() {
                    break;
                }
                draining = Some(tokio::time::Instant::now() + DRAIN);
            }
            () = tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)), if draining.is_some() => break,
        }
    }
    slots.release(&slot);
    super::record::http_connections(slots.len());
}

/// Resolves when the connection has not authenticated and has sat idle — connected, or after
/// a response, without a complete next request head — for `limit`.
async fn idle_stranger(slot: &Slot, limit: Duration) {
    loop {
        match slot.idle_deadline(limit) {
            Some(left) if left.is_zero() => return,
            Some(left) => tokio::time::sleep(left).await,
            // Trusted or busy: looked at again after a while (it may become neither).
            None => tokio::time::sleep(limit).await,
        }
    }
}

/// A response body that keeps its request counted as in flight until it has been sent (or the
/// connection dropped it).
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
