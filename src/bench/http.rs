//! `ballast bench --http`: one-tool turns submitted through the HTTP API of an in-process
//! `serve` (embedded log, demo planes, no simulated service latency) by 1, 16, 64… concurrent
//! clients, each `POST /v1/turns?wait_ms=…` returning the finished turn. Prints turns/s,
//! latency from the POST to its answer, the process's CPU time per turn (server and clients
//! together: the clients are a small share, a keep-alive connection each) and how the timed
//! turns ended.
//!
//! The bench's token grants its requests the customer role and the support scopes, as a
//! backend's would (`ballast token --grants … --defaults …`): a token without them gets every
//! turn refused at its plan, and the bench would time refusals (8 events, no tool call) instead
//! of turns that look an order up and answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::demo::run::percentile;
use crate::serve::{ServeError, ServeOptions};

#[derive(Debug, thiserror::Error)]
pub enum HttpBenchError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bench setup: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Unexpected(String),
}

/// What the bench's token lets its requests assert, and what a request asserting nothing gets:
/// the demo's customer role and the scopes of the tools its turns call.
pub const GRANTS: &[&str] = &["role:customer", "support:*"];
pub const DEFAULTS: &[&str] = &["role:customer", "support:lookup_order", "support:search_kb"];

/// One client count's figures.
#[derive(Clone, Debug)]
pub struct Level {
    pub clients: usize,
    pub turns: usize,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Process CPU (user + system) per turn; `None` where /proc is not there.
    pub cpu_ms_per_turn: Option<f64>,
    /// How the timed turns ended.
    pub outcomes: super::OutcomeMix,
}

impl Level {
    pub fn turns_per_sec(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The figures of `levels`, measured against `what` (e.g. "embedded log, in-process server").
pub fn render(what: &str, levels: &[Level]) -> String {
    let mut out = format!("http: one-tool turns through POST /v1/turns?wait_ms ({what})\n");
    for l in levels {
        out.push_str(&format!(
            "clients={} turns={} turns_per_sec={:.0} p50_ms={:.2} p99_ms={:.2} cpu_ms_per_turn={}\n",
            l.clients,
            l.turns,
            l.turns_per_sec(),
            l.p50_ms,
            l.p99_ms,
            l.cpu_ms_per_turn
                .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
        ));
        out.push_str(&format!("clients={} {}", l.clients, l.outcomes.render()));
    }
    out.push_str("latency_from=post (the request's submission) to the finished turn's answer\n");
    out
}

/// Process CPU time in ms from /proc/self/stat (utime + stime, in clock ticks of 10 ms).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// Runs `turns` turns at each client count in `clients`, against one server and data dir.
pub async fn run(
    clients: &[usize],
    turns: usize,
    partitions: u32,
) -> Result<Vec<Level>, HttpBenchError> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let token = bench_token(&data.join("auth.toml"))?;
    // The data dir's partitions are fixed when it is created.
    drop(crate::embedded::Embedded::open(&data, partitions).map_err(ServeError::from)?);

    let mut opts = ServeOptions::new(
        data,
        "127.0.0.1:0"
            .parse()
            .map_err(|e| HttpBenchError::Unexpected(format!("listen address: {e}")))?,
    );
    opts.service_latency_ms = 0;
    opts.dev_key = true;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (addr_tx, addr_rx) = oneshot::channel();
    let server = tokio::spawn(crate::serve::run(opts, stop_rx, move |a| {
        let _ = addr_tx.send(a);
    }));
    let addr = addr_rx
        .await
        .map_err(|_| HttpBenchError::Unexpected("the server did not start".into()))?;
    let base = format!("http://{addr}");
    let client = client()?;
    wait_ready(&client, &base).await?;

    let mut levels = Vec::new();
    let result = async {
        for (i, &c) in clients.iter().enumerate() {
            levels.push(level(&client, &base, &token, i, c.max(1), turns).await?);
        }
        Ok::<_, HttpBenchError>(())
    }
    .await;
    stop_tx.send_replace(true);
    let served = server
        .await
        .map_err(|e| HttpBenchError::Unexpected(e.to_string()))?;
    result?;
    served?;
    Ok(levels)
}

/// A token for the bench tenant in `auth` (a new file), and no rate limit worth the name: the
/// bench measures the server, not the limiter.
pub(super) fn bench_token(auth: &std::path::Path) -> Result<String, HttpBenchError> {
    std::fs::write(
        auth,
        "[rate]\nrequests_per_second = 1000000.0\nburst = 1000000.0\n",
    )?;
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let (token, entry) = crate::api::auth::AuthConfig::issue_with(
        "bench",
        "bench",
        vec![crate::api::auth::Role::Submitter],
        crate::control::claims::Grants::new(owned(GRANTS), owned(DEFAULTS)),
    );
    crate::api::auth::AuthConfig::append(auth, &entry)?;
    Ok(token)
}

pub(super) fn client() -> Result<reqwest::Client, HttpBenchError> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Until `/readyz` answers 200 (at most 60 s).
pub(super) async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<(), HttpBenchError> {
    for _ in 0..1200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(HttpBenchError::Unexpected(
        "the server never became ready".into(),
    ))
}

pub(super) async fn level(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    level_no: usize,
    clients: usize,
    turns: usize,
) -> Result<Level, HttpBenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_ms();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, next) = (client.clone(), Arc::clone(&next));
        let url = format!("{base}/v1/turns?wait_ms=30000");
        let auth = format!("Bearer {token}");
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut outcomes = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= turns {
                    break;
                }
                // A user per turn, as many customers asking at once: one user's turns would
                // run into the demo's per-user budget (and share a partition) after ~100.
                let body = serde_json::json!({
                    "user_id": format!("bench-user-{level_no}-{n}"),
                    "text": format!("Where is my order A{:04}? (#{n}, client {c})", 1000 + n % 9000),
                });
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status();
                let view: serde_json::Value = r.json().await?;
                if status.as_u16() != 200
                    || view.get("status").and_then(|s| s.as_str()) != Some("terminal")
                {
                    return Err(HttpBenchError::Unexpected(format!(
                        "a turn did not finish in time: {status} {view}"
                    )));
                }
                latencies.push(t0.elapsed().as_secs_f64() * 1e3);
                let outcome = view.get("outcome").and_then(|o| o.as_str());
                match crate::event::Outcome::ALL
                    .into_iter()
                    .find(|o| Some(o.as_str()) == outcome)
                {
                    Some(o) => outcomes.push(o),
                    None => {
                        return Err(HttpBenchError::Unexpected(format!(
                            "a finished turn without a known outcome: {view}"
                        )));
                    }
                }
            }
            Ok::<_, HttpBenchError>((latencies, outcomes))
        });
    }
    let mut latencies = Vec::with_capacity(turns);
    let mut outcomes = super::OutcomeMix::default();
    while let Some(done) = tasks.join_next().await {
        let (l, o) = done.map_err(|e| HttpBenchError::Unexpected(e.to_string()))??;
        latencies.extend(l);
        o.into_iter().for_each(|o| outcomes.add(o));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_ms())
        .map(|(b, a)| (a - b) / turns.max(1) as f64);
    latencies.sort_by(f64::total_cmp);
    Ok(Level {
        clients,
        turns,
        elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        cpu_ms_per_turn: cpu,
        outcomes,
    })
}
