//! `ballast tools --config F [--json]`: the resolved catalog — the catalog file's HTTP tools and
//! every MCP server's, with `[tools.NAME]` overrides applied — as a reviewer checks it before
//! going live. MCP servers are started (or reached) and listed; the policies are compiled
//! against the whole catalog, which `check-config` cannot do without the servers.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// The configuration file.
    #[arg(long, default_value = "ballast.toml")]
    config: PathBuf,
    /// One JSON object: the tools, and each MCP server's state.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    source: String,
    impact: &'static str,
    idempotent: bool,
    trust: &'static str,
    scopes: Vec<String>,
    sinks: Vec<String>,
    key_args: Vec<String>,
    sensitive_output: bool,
    deterministic: bool,
    compensation: Option<String>,
    cost_micros: i64,
    timeout_ms: u64,
    description: String,
}

pub async fn run(a: ToolsArgs) -> anyhow::Result<()> {
    let loaded = ballast::config::load(&a.config)?;
    let resolved = loaded.tools(false).await?;
    let policies = match &loaded.config.policies {
        Some(dir) => ballast::control::cedar::Policies::load_dir(dir, &resolved.catalog)
            .map(|_| format!("{}: compile against this catalog", dir.display()))?,
        None => "built-in".to_string(),
    };
    let rows: Vec<Row> = resolved
        .catalog
        .iter()
        .map(|s| Row {
            name: s.name.clone(),
            source: resolved
                .sources
                .get(&s.name)
                .map(|x| x.to_string())
                .unwrap_or_default(),
            impact: s.impact.as_str(),
            idempotent: s.idempotent,
            trust: if s.trusted() { "trusted" } else { "untrusted" },
            scopes: s.auth_scopes.clone(),
            sinks: s.sinks.clone(),
            key_args: s.key_args.clone(),
            sensitive_output: s.sensitive_output,
            deterministic: s.deterministic,
            compensation: s.compensation.clone(),
            cost_micros: s.cost_micros,
            timeout_ms: s.timeout_ms,
            description: s.description.clone(),
        })
        .collect();
    for server in &resolved.servers {
        server.shutdown().await;
    }
    if a.json {
        let servers: Vec<_> = loaded
            .config
            .mcp
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "at": s.describe()}))
            .collect();
        let out = serde_json::json!({"tools": rows, "mcp_servers": servers, "policies": policies});
        return super::emit(&format!("{}\n", serde_json::to_string_pretty(&out)?));
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let header = [
        "NAME",
        "SOURCE",
        "IMPACT",
        "IDEMPOTENT",
        "TRUST",
        "SCOPES",
        "SINKS",
    ];
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.source.clone(),
                r.impact.to_string(),
                if r.idempotent { "yes" } else { "no" }.to_string(),
                r.trust.to_string(),
                list(&r.scopes),
                list(&r.sinks),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &table {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header.map(String::from));
    for r in &table {
        out.push_str(&line(r));
    }
    out.push_str(&format!("{} tools; policies: {policies}\n", rows.len()));
    super::emit(&out)
}
