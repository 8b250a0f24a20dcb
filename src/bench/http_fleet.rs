//! `ballast bench --http --bootstrap B`: the same one-tool turns through the HTTP API of a
//! `serve` replica over Kafka — `POST /v1/turns?wait_ms` produced to the request topic, run by a
//! Kafka worker, followed back from the turn-event topic by the replica — against the embedded
//! `serve` measured in the same run (`bench::http`). Both run in this process, with the same
//! planes (the demo's, no simulated service latency), the same token and the same clients, so
//! the ratio is what the log between the API and the worker costs.
//!
//! While the clients run, `/readyz` is sampled every 100 ms for the replica's projection lag
//! (events on the turn-event topic its projections have not folded yet), printed as p50 and max.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::http::{HttpBenchError, Level, bench_token, client, level, wait_ready};
use crate::demo::run::percentile;
use crate::kafka::worker::{VaultOptions, WorkerOptions, run as run_worker};
use crate::kafka::{Topics, init};
use crate::log::kafka::KafkaConfig;
use crate::runtime::WorkerConfig;
use crate::serve::ServeOptions;
use crate::serve::fleet::FleetOptions;

/// The replica's figures: each client count's, and the projection lag sampled meanwhile.
#[derive(Clone, Debug)]
pub struct FleetRun {
    pub levels: Vec<Level>,
    /// `/readyz`'s `x-ballast-projection-lag` samples (events), in the order taken.
    pub lag_samples: Vec<u64>,
}

use crate::serve::follower::LAG_HEADER;

fn err(e: impl std::fmt::Display) -> HttpBenchError {
    HttpBenchError::Unexpected(e.to_string())
}

/// Runs `turns` turns at each client count through one replica and one worker on fresh topics.
pub async fn run(
    bootstrap: &str,
    clients: &[usize],
    turns: usize,
    partitions: u32,
) -> Result<FleetRun, HttpBenchError> {
    let kafka = KafkaConfig::new(bootstrap);
    let prefix = format!("bench-http-{}", uuid::Uuid::now_v7().simple());
    let topics = Topics::new(&prefix);
    init(&kafka, &topics, partitions, 1).await.map_err(err)?;
    let dir = tempfile::tempdir()?;
    let (replica_dir, worker_dir) = (dir.path().join("replica"), dir.path().join("worker"));
    std::fs::create_dir_all(&replica_dir)?;
    std::fs::create_dir_all(&worker_dir)?;
    let token = bench_token(&replica_dir.join("auth.toml"))?;
    let (stop_tx, stop_rx) = watch::channel(false);

    // The worker: the demo's planes, as the embedded bench's server runs them; the same
    // development master key the replica uses, so each reads what the other sealed.
    let planes = crate::demo::planes::served_demo_planes(&worker_dir, None, 0).map_err(err)?;
    let master = crate::vault::Vault::dev_master(&worker_dir).map_err(err)?;
    let group = format!("{prefix}-workers");
    let worker = WorkerOptions {
        kafka: kafka.clone(),
        topics: topics.clone(),
        group: group.clone(),
        data_dir: worker_dir,
        transactional: true,
        worker: WorkerConfig::default(),
        session_timeout_ms: 10_000,
        intake: crate::control::claims::IntakeTrust::trust_all(),
        vault: Some(VaultOptions {
            master,
            detector: crate::guard::Redactor::builtin(),
        }),
    };
    let worker_task = tokio::spawn(run_worker(
        worker,
        planes.exec,
        Some(planes.control),
        None,
        stop_rx.clone(),
    ));

    let mut opts = ServeOptions::new(
        replica_dir,
        "127.0.0.1:0"
            .parse()
            .map_err(|e| err(format!("listen address: {e}")))?,
    );
    opts.service_latency_ms = 0;
    opts.dev_key = true;
    let mut fleet = FleetOptions::new(bootstrap.to_string(), &prefix);
    fleet.worker_group = group;
    let (addr_tx, addr_rx) = oneshot::channel();
    let server = tokio::spawn(crate::serve::fleet::run(opts, fleet, stop_rx, move |a| {
        let _ = addr_tx.send(a);
    }));
    let addr = addr_rx
        .await
        .map_err(|_| err("the replica did not start"))?;
    let base = format!("http://{addr}");
    let client = client()?;

    let result = async {
        wait_ready(&client, &base).await?;
        let sampling = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (done_tx, done_rx) = watch::channel(false);
        let sampler = tokio::spawn(sample_lag(
            client.clone(),
            base.clone(),
            Arc::clone(&sampling),
            done_rx,
        ));
        let mut levels = Vec::new();
        for (i, &c) in clients.iter().enumerate() {
            levels.push(level(&client, &base, &token, i, c.max(1), turns).await?);
        }
        done_tx.send_replace(true);
        let _ = sampler.await;
        let lag_samples = std::mem::take(&mut *sampling.lock().map_err(err)?);
        Ok::<_, HttpBenchError>(FleetRun {
            levels,
            lag_samples,
        })
    }
    .await;
    stop_tx.send_replace(true);
    let served = server.await.map_err(err)?;
    let worked = worker_task.await.map_err(err)?;
    let run = result?;
    served.map_err(HttpBenchError::Serve)?;
    worked.map_err(|e| err(format!("the worker: {e}")))?;
    Ok(run)
}

async fn sample_lag(
    client: reqwest::Client,
    base: String,
    into: Arc<std::sync::Mutex<Vec<u64>>>,
    mut done: watch::Receiver<bool>,
) {
    let url = format!("{base}/readyz");
    while !*done.borrow() {
        if let Ok(r) = client.get(&url).send().await
            && let Some(lag) = r
                .headers()
                .get(LAG_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            && let Ok(mut v) = into.lock()
        {
            v.push(lag);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = done.changed() => {}
        }
    }
}

/// The replica's levels beside the embedded server's, with their ratio, and the lag.
pub fn render(embedded: &[Level], run: &FleetRun) -> String {
    let mut out = super::http::render("embedded log, in-process server", embedded);
    out.push_str(&super::http::render(
        "Kafka: a serve replica and a worker in this process",
        &run.levels,
    ));
    for k in &run.levels {
        if let Some(e) = embedded.iter().find(|e| e.clients == k.clients) {
            out.push_str(&format!(
                "clients={} kafka_vs_embedded_turns_per_sec={:.2} kafka_vs_embedded_p50={:.2}\n",
                k.clients,
                k.turns_per_sec() / e.turns_per_sec().max(1e-9),
                k.p50_ms / e.p50_ms.max(1e-9),
            ));
        }
    }
    let mut lag: Vec<f64> = run.lag_samples.iter().map(|&l| l as f64).collect();
    lag.sort_by(f64::total_cmp);
    out.push_str(&format!(
        "projection_lag_events samples={} p50={:.0} p99={:.0} max={:.0}\n",
        lag.len(),
        percentile(&lag, 0.50),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or(0.0),
    ));
    out
}
