use std::path::PathBuf;

use clap::Args;

use ballast::audit::backtest::{Window, backtest};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::Scan;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The turn's id.
    turn_id: TurnId,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// The chains as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reveal: super::RevealArgs,
}

/// For each side effect of the turn, the chain of facts that caused it.
pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let opened = super::open_log(&a.log).await?;
    let found = ballast::operator::read_turn(
        opened.events.as_ref(),
        &opened.codecs,
        &opened.index,
        a.turn_id,
    )
    .await?;
    let mut events: Vec<_> = found
        .map(|(_, e)| e.into_iter().map(|(_, e)| e).collect())
        .unwrap_or_default();
    a.reveal
        .show(
            &opened,
            &a.log.data_dir,
            a.turn_id,
            "cli-audit",
            &mut events,
        )
        .await?;
    let Some(report) = ballast::audit::audit(&events) else {
        anyhow::bail!("turn {} is not in {}", a.turn_id, a.log.data_dir.display());
    };
    if a.json {
        return super::emit(&(serde_json::to_string_pretty(&report)? + "\n"));
    }
    super::emit(&report.render())
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The policy directory to evaluate (`*.cedar`, `control.toml`).
    #[arg(long)]
    policies: PathBuf,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// Tool catalog the policies are typed against (default: the demo catalog).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Only decisions at or after this time (RFC 3339, or ms since the epoch).
    #[arg(long)]
    since: Option<String>,
    /// Only decisions at or before this time (RFC 3339, or ms since the epoch).
    #[arg(long)]
    until: Option<String>,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

/// Milliseconds since the epoch from an integer, an RFC 3339 time or a date (UTC midnight).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    ballast::audit::parse_time(s).map_err(|e| anyhow::anyhow!(e))
}

/// Re-evaluates every recorded policy decision under `--policies`, without calling any planner
/// or tool, and prints what would change.
pub async fn backtest_cmd(a: BacktestArgs) -> anyhow::Result<()> {
    let catalog = match &a.catalog {
        Some(path) => ballast::exec::catalog::Catalog::load(path)?,
        None => ballast::demo::tools::demo_catalog(),
    };
    let control = ballast::control::CedarControlPlane::load(&a.policies, catalog.clone())?;
    let window = Window {
        since_ms: a.since.as_deref().map(parse_time).transpose()?,
        until_ms: a.until.as_deref().map(parse_time).transpose()?,
    };
    let opened = super::open_log(&a.log).await?;
    // Every turn's events, in log order per partition, grouped by turn.
    let mut turns: std::collections::BTreeMap<TurnId, Vec<ballast::event::Event>> =
        std::collections::BTreeMap::new();
    for p in (0..opened.events.partitions()).map(Partition) {
        let mut scan = Scan::new(opened.events.as_ref(), p, Offset::ZERO);
        while let Some(chunk) = scan.next_chunk(4096).await? {
            for s in chunk {
                if let Ok(e) = opened.codecs.events.decode(&s.value) {
                    turns.entry(e.turn_id).or_default().push(e);
                }
            }
        }
    }
    let report = backtest(turns.into_values(), &control, &catalog, window);
    if a.json {
        let serde_json::Value::Object(mut v) = serde_json::to_value(&report)? else {
            anyhow::bail!("the backtest report did not serialise as a JSON object");
        };
        v.insert(
            "affected_turns".into(),
            serde_json::to_value(report.affected_turns())?,
        );
        return super::emit(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    super::emit(&report.render())
}
