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
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let report = ballast::bench::run(a.turns, a.partitions.unwrap_or(cores), a.in_flight).await?;
    super::emit(&report.render())
}
