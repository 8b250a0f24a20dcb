use clap::Args;

#[derive(Debug, Args)]
pub struct InjectionArgs {
    /// Only scenarios whose name (domain/attack/placement) contains this.
    #[arg(long)]
    scenario: Option<String>,
    /// The guards to run with (`[control.guards]` of a ballast.toml); default: the defaults.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the prompt-injection suite and prints, per scenario, whether the attacker's call ran,
/// whether the user's task completed (attacked and clean), and what was blocked or confirmed.
pub async fn run(a: InjectionArgs) -> anyhow::Result<()> {
    let guards = match &a.config {
        Some(path) => ballast::config::load_control(path)?.guards,
        None => ballast::guard::GuardConfig::default(),
    };
    let report = ballast::injection::run(&guards, a.scenario.as_deref())?;
    if a.json {
        return super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    super::emit(&report.render())
}
