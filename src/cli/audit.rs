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
    log: super::LogArgs,
    /// The chains as JSON.
    #[arg(long)]
    json: bool,
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
    let events: Vec<_> = found
        .map(|(_, e)| e.into_iter().map(|(_, e)| e).collect())
        .unwrap_or_default();
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
    log: super::LogArgs,
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

/// Milliseconds since the epoch from an integer or an RFC 3339 UTC time
/// (`2026-12-01T10:00:00Z`, fractional seconds allowed).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!("{s:?} is not a time (use RFC 3339 UTC like 2026-12-01T10:00:00Z, or ms)")
    };
    let s2 = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = s2.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    Ok(((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + millis)
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
        let mut v = serde_json::to_value(&report)?;
        v["affected_turns"] = serde_json::to_value(report.affected_turns())?;
        return super::emit(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    super::emit(&report.render())
}
