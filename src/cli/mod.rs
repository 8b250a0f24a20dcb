//! Command-line interface: one file per command. Names and flags are contracts other work builds on.

mod approve;
mod audit;
mod bench;
mod check_config;
mod demo;
mod drill;
mod handoff;
mod kafka;
mod late;
mod outcomes;
mod replay;
mod serve;
mod slo;
mod token;
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
    /// Grant the approval a turn is waiting for.
    Approve(approve::ApprovalArgs),
    /// Deny the approval a turn is waiting for (the turn ends as denied).
    Deny(approve::ApprovalArgs),
    /// Turns handed to a human operator: list, accept, resolve.
    Handoff(handoff::HandoffArgs),
    /// Finished turns' outcome records (what analytics consumers read), as JSON lines.
    Outcomes(outcomes::OutcomesArgs),
    /// Each SLO: target, value, error budget left and burn rates over 5m, 30m, 1h, 6h and 3d;
    /// `slo rules` writes the Prometheus alerting rules.
    Slo(slo::SloArgs),
    /// Rebuild every projection from offset 0 and print its digest (equal to the live one).
    Replay(replay::ReplayArgs),
    /// For each side effect of a turn, the chain of recorded facts that caused it.
    Audit(audit::AuditArgs),
    /// Re-evaluate every recorded policy decision under another policy set (no model, no tool).
    Backtest(audit::BacktestArgs),
    /// Undo a finished turn's completed calls by their compensations, newest first.
    Reverse(late::ReverseArgs),
    /// Attach a late outcome label to a finished turn (e.g. hallucination_with_action).
    Label(late::LabelArgs),
    /// Run the embedded deployment: worker, projections, HTTP API, dashboard, `/metrics`.
    Serve(serve::ServeArgs),
    /// Run a workload without and with injected faults; print the SLOs side by side.
    Drill(drill::DrillArgs),
    /// Validate a configuration file (ballast.toml); errors point at the line.
    CheckConfig(check_config::CheckConfigArgs),
    /// Issue an API token (tenant, roles) for `ballast serve`; only its hash is stored.
    Token(token::TokenArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a).await,
        Command::Turns(a) => turns::run(a).await,
        Command::Trace(a) => trace::run(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Kafka(a) => kafka::run(a).await,
        Command::Worker(a) => worker::run(a).await,
        Command::Approve(a) => approve::run(a, true).await,
        Command::Deny(a) => approve::run(a, false).await,
        Command::Handoff(a) => handoff::run(a).await,
        Command::Outcomes(a) => outcomes::run(a).await,
        Command::Slo(a) => slo::run(a).await,
        Command::Replay(a) => replay::run(a).await,
        Command::Audit(a) => audit::audit(a).await,
        Command::Backtest(a) => audit::backtest_cmd(a).await,
        Command::Reverse(a) => late::reverse(a).await,
        Command::Label(a) => late::label(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Token(a) => token::run(a).await,
        Command::Drill(a) => drill::run(a).await,
        Command::CheckConfig(a) => check_config::run(a).await,
    }
}

/// What the read commands work on: the turn log (sled, or Kafka with `--bootstrap`), its codecs
/// and the turn index, caught up (cached in the data dir).
struct Opened {
    events: std::sync::Arc<dyn ballast::log::EventLog>,
    codecs: ballast::event::codec::Codecs,
    index: TurnIndex,
    outcomes: ballast::projection::outcomes::OutcomeView,
    projections: ballast::projection::Projections,
    store: ballast::log::SledStore,
}

/// Where the read commands find the turn log.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// Read the turn log from Kafka (the data dir then only caches the index).
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
}

/// The turn log with its projections caught up.
async fn open_log(a: &LogArgs) -> anyhow::Result<Opened> {
    let opened = open_raw(&a.data_dir, a.bootstrap.as_deref(), &a.topic_prefix).await?;
    opened
        .projections
        .catch_up(opened.events.as_ref(), &opened.codecs.events, &|_| {})
        .await?;
    Ok(opened)
}

/// The turn log and its projections as stored (not caught up).
async fn open_raw(
    dir: &Path,
    bootstrap: Option<&str>,
    topic_prefix: &str,
) -> anyhow::Result<Opened> {
    if !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    let (events, codecs, store): (std::sync::Arc<dyn ballast::log::EventLog>, _, _) =
        match bootstrap {
            None => {
                let emb = Embedded::open(dir, 0)?;
                (emb.events.clone(), emb.codecs.clone(), emb.store.clone())
            }
            Some(b) => {
                let store = ballast::log::SledStore::open(dir)?;
                let codecs = ballast::embedded::load_codecs(&store)?;
                let topics = ballast::kafka::Topics::new(topic_prefix);
                let cfg = ballast::log::kafka::KafkaConfig::new(b);
                let events =
                    std::sync::Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.events).await?);
                (events, codecs, store)
            }
        };
    let index = TurnIndex::open(&store)?;
    let outcomes = ballast::projection::outcomes::OutcomeView::open(&store)?;
    let projections = ballast::projection::Projections::standard(&store)?;
    Ok(Opened {
        events,
        codecs,
        index,
        outcomes,
        projections,
        store,
    })
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
