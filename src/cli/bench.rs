use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Five-step turns to run.
    #[arg(long, default_value_t = 20_000)]
    turns: usize,
    /// Partitions (one actor each); defaults to the number of CPU cores.
    #[arg(long)]
    partitions: Option<u32>,
    /// Turns admitted at once across all partitions: more raises throughput and, by Little's law,
    /// latency.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Run the turns through Kafka (a worker with transactions) instead of sled.
    #[arg(long)]
    bootstrap: Option<String>,
    /// With --bootstrap: how long a transaction stays open collecting rounds (the worker's
    /// `[worker] commit_interval_ms`); the same turns also run with a transaction per round,
    /// printed as `per_round_*`.
    #[arg(long, default_value_t = ballast::runtime::WorkerConfig::default().commit_interval_ms)]
    commit_interval_ms: u64,
    /// Measure control-plane decisions instead: the cost of reviewing one tool call (and a plan)
    /// with the demo policies, against Avro-encoding the event that records it.
    #[arg(long)]
    policy: bool,
    /// Reviews to time with --policy.
    #[arg(long, default_value_t = 20_000)]
    evals: usize,
    /// Measure the engine's overhead per model step instead: agent turns (five tool-calling
    /// steps and an answer) one at a time against an instant OpenAI-compatible server on
    /// 127.0.0.1, against asking that server directly.
    #[arg(long)]
    model_steps: bool,
    /// Measure what the vault costs a turn instead: the same turns carrying personal values,
    /// without a vault and then with one, in the same run.
    #[arg(long)]
    vault: bool,
    /// Measure a crash with N turns waiting for approval instead: park N turns, kill the
    /// worker's process with SIGKILL, start a fresh one on the same data and print `resume_ms`
    /// (until every partition consumes again) and `bytes_per_waiting_turn` (resident memory).
    #[arg(long)]
    waiting: Option<usize>,
    /// Measure the HTTP API instead: one-tool turns through `POST /v1/turns?wait_ms` of an
    /// in-process `serve`, at each client count of --clients; prints turns/s, latency and CPU
    /// per turn.
    #[arg(long)]
    http: bool,
    /// Concurrent clients for --http (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Turns per client count for --http.
    #[arg(long, default_value_t = 1_000)]
    http_turns: usize,
    /// Internal (`--waiting`): the process that parks the turns in DIR, then waits to be killed.
    #[arg(long, hide = true, requires = "waiting")]
    park_dir: Option<std::path::PathBuf>,
    /// Internal (`--waiting`): the process that resumes the turns parked in DIR.
    #[arg(long, hide = true, requires = "waiting")]
    resume_dir: Option<std::path::PathBuf>,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.policy {
        return super::emit(&ballast::bench::policy::run(a.evals)?.render());
    }
    if a.model_steps {
        let turns = a.turns.min(2_000);
        return super::emit(&ballast::bench::model::run(turns).await?.render());
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let partitions = a.partitions.unwrap_or(cores);
    if let Some(waiting) = a.waiting {
        if let Some(dir) = &a.park_dir {
            let (report, _running) =
                ballast::bench::waiting::park(dir, waiting, partitions).await?;
            println!("{report}ready");
            std::io::Write::flush(&mut std::io::stdout())?;
            // The parent kills this process: the worker is still running when it dies.
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        }
        if let Some(dir) = &a.resume_dir {
            return super::emit(&ballast::bench::waiting::resume(dir, waiting).await?);
        }
        return waiting_bench(waiting, partitions).await;
    }
    if a.http {
        let levels = ballast::bench::http::run(&a.clients, a.http_turns, partitions).await?;
        for l in &levels {
            let succeeded = l.outcomes.count(ballast::event::Outcome::Succeeded);
            if succeeded < l.turns {
                eprintln!(
                    "warning: {} of {} turns at clients={} did not succeed; their figures include them",
                    l.turns - succeeded,
                    l.turns,
                    l.clients
                );
            }
        }
        if let Some(b) = &a.bootstrap {
            let fleet =
                ballast::bench::http_fleet::run(b, &a.clients, a.http_turns, partitions).await?;
            return super::emit(&ballast::bench::http_fleet::render(&levels, &fleet));
        }
        return super::emit(&ballast::bench::http::render(
            "embedded log, in-process server",
            &levels,
        ));
    }
    if a.vault {
        let report = ballast::bench::personal::run(a.turns, partitions, a.in_flight).await?;
        return super::emit(&report.render());
    }
    let report = match a.bootstrap {
        Some(b) => {
            ballast::bench::kafka::run(&b, a.turns, partitions, a.in_flight, a.commit_interval_ms)
                .await?
        }
        None => ballast::bench::run(a.turns, partitions, a.in_flight).await?,
    };
    super::emit(&report.render())
}

/// `--waiting N`: parks N turns in a child process, kills it (SIGKILL), resumes in another.
async fn waiting_bench(waiting: usize, partitions: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let common = [
        "bench".to_string(),
        "--waiting".into(),
        waiting.to_string(),
        "--partitions".into(),
        partitions.to_string(),
    ];
    let mut park = tokio::process::Command::new(&exe)
        .args(&common)
        .arg("--park-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = park
        .stdout
        .take()
        .context("parking process has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut report = String::new();
    loop {
        match lines.next_line().await? {
            Some(line) if line == "ready" => break,
            Some(line) => {
                report.push_str(&line);
                report.push('\n');
            }
            None => anyhow::bail!("the parking process ended before its turns were parked"),
        }
    }
    park.start_kill()?;
    park.wait().await?;
    let resumed = tokio::process::Command::new(&exe)
        .args(&common)
        .arg("--resume-dir")
        .arg(dir.path())
        .output()
        .await?;
    if !resumed.status.success() {
        anyhow::bail!(
            "the resuming process failed: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
    }
    report.push_str("killed=SIGKILL\n");
    report.push_str(&String::from_utf8_lossy(&resumed.stdout));
    super::emit(&report)
}
