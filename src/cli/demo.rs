use std::path::PathBuf;

use clap::Args;

use ballast::demo::run::{DemoOptions, run as run_demo};
use ballast::runtime::shutdown;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory (created if missing). A fresh temporary directory when omitted.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Turns in the generated workload.
    #[arg(long, default_value_t = 1000)]
    turns: usize,
    /// Workload seed: the same seed gives the same turns.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Partitions of a new data dir.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Upper bound of each simulated service call, in milliseconds.
    #[arg(long, default_value_t = 4)]
    service_latency_ms: u64,
    /// Policy directory (`*.cedar`, `control.toml`) instead of the built-in examples/demo/policies;
    /// reloaded when its files change.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Run through Kafka at this bootstrap address instead of the embedded sled log.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Worker processes to start (with --bootstrap); 0 when workers run elsewhere. Embedded, 0
    /// only writes the workload and submits its requests, for `ballast serve` to run.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Topic names are `<prefix>.requests`, `<prefix>.turn-events`, … (with --bootstrap).
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let (dir, _keep) = match a.data_dir {
        Some(d) => {
            ballast::embedded::check_data_dir(&d)?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("ballast-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t.keep()))
        }
    };
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    if let Some(bootstrap) = a.bootstrap {
        let opts = ballast::kafka::demo::KafkaDemoOptions {
            kafka: ballast::log::kafka::KafkaConfig::new(bootstrap),
            topics: ballast::kafka::Topics::new(&a.topic_prefix),
            data_dir: dir,
            turns: a.turns,
            seed: a.seed,
            workers: a.workers,
            partitions: a.partitions,
            service_latency_ms: a.service_latency_ms,
            exe: std::env::current_exe()?,
        };
        let summary = ballast::kafka::demo::run(opts, rx).await?;
        super::emit(&summary.render())?;
        if summary.interrupted {
            std::process::exit(130);
        }
        return Ok(());
    }
    let mut opts = DemoOptions::new(dir, a.turns);
    opts.seed = a.seed;
    opts.partitions = a.partitions;
    opts.service_latency_ms = a.service_latency_ms;
    opts.policies = a.policies;
    opts.submit_only = a.workers == 0;
    let summary = run_demo(opts, rx).await?;
    super::emit(&summary.render())?;
    if summary.interrupted {
        std::process::exit(130);
    }
    Ok(())
}
