//! Command-line interface: one file per command. Names and flags are contracts other work builds on.

mod bench;
mod demo;
mod kafka;
mod trace;
mod turns;
mod worker;

use std::path::Path;

use ballast::embedded::Embedded;
use ballast::projection::turn_index::TurnIndex;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ballast",
    version,
    about = "Event-sourced reliability runtime for AI agent turns"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the demo workload and run it to completion on the embedded sled log.
    Demo(demo::DemoArgs),
    /// List turns with their status and outcome.
    Turns(turns::TurnsArgs),
    /// Show one turn's timeline from the log.
    Trace(trace::TraceArgs),
    /// Measure N five-step turns with instant tools against raw sled appends.
    Bench(bench::BenchArgs),
    /// Kafka administration.
    Kafka(kafka::KafkaArgs),
    /// Run a worker that shares Kafka partitions with the other workers of its group.
    Worker(worker::WorkerArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a).await,
        Command::Turns(a) => turns::run(a).await,
        Command::Trace(a) => trace::run(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Kafka(a) => kafka::run(a).await,
        Command::Worker(a) => worker::run(a).await,
    }
}

/// Opens an existing data dir (read commands never create one) with its turn index caught up.
async fn open_indexed(dir: &Path) -> anyhow::Result<(Embedded, TurnIndex)> {
    if !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    let emb = Embedded::open(dir, 0)?;
    let index = TurnIndex::open(&emb.store)?;
    index
        .catch_up(emb.events.as_ref(), &emb.codecs.events)
        .await?;
    Ok((emb, index))
}

/// Writes to stdout; a closed pipe (`ballast turns | head`) ends output quietly instead of panicking.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
