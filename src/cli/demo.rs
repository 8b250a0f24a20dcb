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
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let (dir, _keep) = match a.data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new().prefix("ballast-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t.keep()))
        }
    };
    let mut opts = DemoOptions::new(dir, a.turns);
    opts.seed = a.seed;
    opts.partitions = a.partitions;
    opts.service_latency_ms = a.service_latency_ms;
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    let summary = run_demo(opts, rx).await?;
    super::emit(&summary.render())?;
    if summary.interrupted {
        std::process::exit(130);
    }
    Ok(())
}
