use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Five-step turns to run.
    #[arg(long, default_value_t = 20_000)]
    turns: usize,
    #[arg(long, default_value_t = 8)]
    partitions: u32,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let report = ballast::bench::run(a.turns, a.partitions).await?;
    super::emit(&report.render())
}
