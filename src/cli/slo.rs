use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use ballast::clock::{Clock, SystemClock};
use ballast::projection::slo::{SloConfig, compute, render, tool_error_rate_and_cost};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SloArgs {
    #[command(subcommand)]
    command: Option<SloCommand>,
    #[command(flatten)]
    table: TableArgs,
}

#[derive(Debug, Args)]
struct TableArgs {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the turn log from Kafka (the data dir then only caches the projections).
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Policy directory whose control.toml `[slo]` section sets the targets (defaults otherwise).
    #[arg(long)]
    policies: Option<PathBuf>,
    /// The SLIs as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Write Prometheus recording and multi-window burn-rate alerting rules for the SLOs.
    Rules {
        /// Policy directory whose control.toml `[slo]` section sets the targets.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl SloArgs {
    pub(super) fn embedded_dir(&self) -> Option<PathBuf> {
        match (&self.command, &self.table.bootstrap) {
            (None, None) => self.table.data_dir.clone(),
            _ => None,
        }
    }
}

/// The SLO targets of a policy directory (its control.toml `[slo]`), or the defaults.
pub fn slo_config(policies: Option<&Path>) -> anyhow::Result<SloConfig> {
    match policies {
        Some(dir) => {
            let path = dir.join("control.toml");
            if path.exists() {
                Ok(ballast::control::ControlConfig::load(&path)?.slo)
            } else {
                Ok(SloConfig::default())
            }
        }
        None => Ok(SloConfig::default()),
    }
}

pub async fn run(a: SloArgs) -> anyhow::Result<()> {
    match (a.command, a.table) {
        (Some(SloCommand::Rules { policies, out }), _) => {
            let yaml = ballast::telemetry::rules::render(&slo_config(policies.as_deref())?);
            match out {
                Some(path) => Ok(std::fs::write(path, yaml)?),
                None => super::emit(&yaml),
            }
        }
        (None, t) => table(t).await,
    }
}

/// Prints each SLI with its target, value, error budget left and burn rates, computed from the
/// outcome projection of the turn log (late labels included).
async fn table(a: TableArgs) -> anyhow::Result<()> {
    let config = slo_config(a.policies.as_deref())?;
    let Some(data_dir) = a.data_dir else {
        anyhow::bail!("ballast slo needs --data-dir D (or the `rules` subcommand)");
    };
    let log = super::LogArgs {
        data_dir,
        bootstrap: a.bootstrap,
        topic_prefix: a.topic_prefix,
    };
    let opened = super::open_log(&log).await?;
    let now = SystemClock.now_ms();
    let outcomes = opened
        .outcomes
        .since(now.saturating_sub(config.period_ms))?;
    let slis = compute(&outcomes, now, &config);
    let (rate, cost) = tool_error_rate_and_cost(&outcomes, now, &config);
    if a.json {
        let out = serde_json::json!({
            "turns": outcomes.len(),
            "slis": slis,
            "tool_error_rate": rate,
            "cost_per_turn_micros": cost,
        });
        return super::emit(&(serde_json::to_string_pretty(&out)? + "\n"));
    }
    super::emit(&format!(
        "{} turns\n{}",
        outcomes.len(),
        render(&slis, rate, cost)
    ))
}
