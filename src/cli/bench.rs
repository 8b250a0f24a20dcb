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
    if a.vault {
        let report = ballast::bench::personal::run(a.turns, partitions, a.in_flight).await?;
        return super::emit(&report.render());
    }
    let report = match a.bootstrap {
        Some(b) => ballast::bench::kafka::run(&b, a.turns, partitions, a.in_flight).await?,
        None => ballast::bench::run(a.turns, partitions, a.in_flight).await?,
    };
    super::emit(&report.render())
}
