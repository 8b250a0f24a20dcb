use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use ballast::drill::{DrillOptions, Fault, Faults};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// `demo` (the seeded demo workload) or a workload file.
    #[arg(long, default_value = "demo")]
    workload: String,
    /// A fault, as `name[:key=value,…]`: retrieval_outage[:rate=R,timeout=true],
    /// stale_context[:rate=R], contradictory_context[:rate=R],
    /// tool_schema_mismatch[:rate=R,tool=T], dropped_confidence[:rate=R],
    /// slow_tools[:rate=R,delay_ms=D], failing_tools[:rate=R,terminal=true]. Repeatable.
    #[arg(long = "fault", required = true)]
    faults: Vec<Fault>,
    /// Seeds the workload and which calls the faults hit.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Turns of the demo workload.
    #[arg(long, default_value_t = 300)]
    turns: usize,
    /// Policy directory (its control.toml `[slo]` sets the targets).
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Keep the two data dirs here (default: a temporary directory, removed after).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Run turns concurrently, as production would: faster with slow tools, but what turns
    /// share (breakers, budgets) then depends on scheduling and the report can vary run to run.
    /// By default turns run one at a time in workload order and the same seed gives the same
    /// report.
    #[arg(long)]
    concurrent: bool,
    /// The report as JSON.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// The report as Markdown.
    #[arg(long)]
    markdown: bool,
}

/// Runs the workload without and with the faults and prints the SLOs side by side.
pub async fn run(a: DrillArgs) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
        "drill {spinner} {msg} ({elapsed})",
    )?);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let opts = DrillOptions {
        workload: a.workload,
        turns: a.turns,
        faults: Faults {
            seed: a.seed,
            faults: a.faults,
        },
        policies: a.policies,
        root: a.keep,
        lockstep: !a.concurrent,
    };
    let report = ballast::drill::run(opts, &|m| bar.set_message(m.to_string())).await?;
    bar.finish_and_clear();
    let out = if a.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else if a.markdown {
        report.markdown()
    } else {
        report.render()
    };
    super::emit(&out)
}
