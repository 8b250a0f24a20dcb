use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(default_value = "ballast.toml")]
    file: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints every problem as `file:line:col: key: message`; exits non-zero when there are errors.
pub async fn run(a: CheckConfigArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let origin = a.file.display().to_string();
    let base = ballast::config::check::base_of(&a.file);
    let report = ballast::config::check::check(&text, &origin, &base, &|v| std::env::var(v).ok());
    if a.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        let mut out = String::new();
        for e in &report.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        for w in &report.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        if report.errors.is_empty() {
            out.push_str(&format!("{origin}: ok\n"));
            for line in &report.summary {
                out.push_str(&format!("  {line}\n"));
            }
        }
        super::emit(&out)?;
    }
    if !report.errors.is_empty() {
        // The findings are the message; exit 1 without repeating them.
        std::process::exit(1);
    }
    Ok(())
}
