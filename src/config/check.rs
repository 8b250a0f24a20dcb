//! `ballast check-config`: a configuration file checked as a whole — syntax and types, then
//! what only the whole can tell (every routed profile has a planner, every catalog tool an
//! implementation, the policies compile against the catalog) — with each problem at its line.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Backend, BallastConfig, PlannerConfig};
use crate::control::ControlConfig;
use crate::exec::catalog::Catalog;
use crate::exec::http_tool::HttpTool;
use crate::exec::openai::OpenAiPlanner;
use crate::toml_lines::{line_col, locate};

/// One finding, where it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The dotted key it concerns, when it concerns one.
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

pub fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    #[serde(skip)]
    pub config: Option<BallastConfig>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// What the file configures, a line each, when it is valid.
    pub summary: Vec<String>,
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
    report: Report,
}

impl Ctx<'_> {
    fn at(&self, key: &str, message: String) -> Problem {
        let pos = locate(self.text, key);
        Problem {
            file: self.origin.to_string(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: Some(key.to_string()),
            message,
        }
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let p = self.at(key, message.into());
        self.report.errors.push(p);
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let p = self.at(key, message.into());
        self.report.warnings.push(p);
    }

    fn elsewhere(&mut self, file: &Path, line: Option<usize>, message: String) {
        self.report.errors.push(Problem {
            file: file.display().to_string(),
            line,
            column: None,
            key: None,
            message,
        });
    }
}

/// Checks the text of a configuration file. `base` resolves its relative paths; `env` reads
/// environment variables (API keys, header values).
pub fn check(
    text: &str,
    origin: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Report {
    let mut cx = Ctx {
        text,
        origin,
        report: Report::default(),
    };
    // TOML allows nan and infinities; no setting means anything by them.
    let non_finite = crate::toml_lines::non_finite(text);
    for (key, line, column) in &non_finite {
        cx.report.errors.push(Problem {
            file: origin.to_string(),
            line: Some(*line),
            column: Some(*column),
            key: Some(key.clone()),
            message: "nan and infinities are not settings".into(),
        });
    }
    if !non_finite.is_empty() {
        return cx.report;
    }
    let config: BallastConfig = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            // Valid TOML with values of the wrong type: every section's error, not the first.
            if toml::from_str::<toml::Table>(text).is_ok() {
                let all = super::sections::type_errors(text);
                if !all.is_empty() {
                    for (line, column, message) in all {
                        cx.report.errors.push(Problem {
                            file: origin.to_string(),
                            line,
                            column,
                            key: None,
                            message,
                        });
                    }
                    return cx.report;
                }
            }
            let pos = e.span().map(|s| line_col(text, s.start));
            cx.report.errors.push(Problem {
                file: origin.to_string(),
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                key: None,
                // The parser can leave the message empty (a stray control character): say what
                // it is rather than print nothing.
                message: match e.message().trim() {
                    "" => "not valid TOML here".to_string(),
                    m => m.to_string(),
                },
            });
            return cx.report;
        }
    };
    let mut resolved = config.clone();
    super::resolve_paths(&mut resolved, base);

    check_log(&mut cx, &resolved);
    check_vault(&mut cx, &resolved);
    check_retrieval(&mut cx, &resolved, env);
    let control = control_config(&mut cx, &resolved);
    if let Some(control) = &control {
        check_control(&mut cx, control);
    }
    let catalog = check_catalog(&mut cx, &resolved, env);
    if let (Some(control), Some(catalog)) = (&control, &catalog) {
        check_planners(&mut cx, &resolved, control, catalog, env);
    }
    if let Some(catalog) = &catalog {
        check_policies(&mut cx, &resolved, catalog);
    }
    if cx.report.errors.is_empty() {
        cx.report.summary = summary(&resolved, control.as_ref(), catalog.as_ref());
        cx.report.config = Some(config);
    }
    cx.report
}

fn check_log(cx: &mut Ctx<'_>, c: &BallastConfig) {
    if c.log.backend == Backend::Kafka && c.log.bootstrap.as_deref().is_none_or(str::is_empty) {
        cx.error("log.bootstrap", "the kafka backend needs bootstrap servers");
    }
    if !(1..=1024).contains(&c.log.partitions) {
        cx.error("log.partitions", "partitions must be between 1 and 1024");
    }
    for (key, message) in c.worker.problems() {
        cx.error(&format!("worker.{key}"), message);
    }
    for (tenant, grants) in &c.intake.tenants {
        if let Err(e) = grants.validate() {
            cx.error(&format!("intake.tenants.{tenant}"), e);
        }
    }
}

/// The master key file `serve` and `worker` will read: there, readable, 32 bytes in hex, and
/// private to its owner.
fn check_vault(cx: &mut Ctx<'_>, c: &BallastConfig) {
    let Some(path) = &c.vault.master_key_file else {
        return;
    };
    if let Err(e) = crate::vault::Vault::read_master(path) {
        cx.error("vault.master_key_file", e.to_string());
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        cx.warn(
            "vault.master_key_file",
            format!(
                "{} can be read by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
        );
    }
}

fn control_config(cx: &mut Ctx<'_>, c: &BallastConfig) -> Option<ControlConfig> {
    let file = c
        .policies
        .as_ref()
        .map(|d| d.join(crate::control::CONFIG_FILE));
    match (&c.control, file.filter(|f| f.exists())) {
        (Some(control), Some(file)) => {
            cx.warn(
                "control",
                format!(
                    "{} is ignored: [control] in this file is used",
                    file.display()
                ),
            );
            Some(control.clone())
        }
        (Some(control), None) => Some(control.clone()),
        (None, Some(file)) => match ControlConfig::load(&file) {
            Ok(control) => Some(control),
            Err(e) => {
                cx.elsewhere(&file, None, e.to_string());
                None
            }
        },
        (None, None) => Some(ControlConfig::default()),
    }
}

fn check_control(cx: &mut Ctx<'_>, control: &ControlConfig) {
    for (key, message) in control.problems() {
        cx.error(&format!("control.{key}"), message);
    }
}

fn check_catalog(
    cx: &mut Ctx<'_>,
    c: &BallastConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Catalog> {
    check_mcp(cx, c, env);
    let Some(path) = &c.catalog else {
        if c.mcp.is_empty() {
            cx.error(
                "catalog",
                "no tools: give `catalog` (a JSON file of HTTP tools) or [[mcp]] servers",
            );
            // The other checks still run against an empty catalog: every problem at once.
            return Some(Catalog::default());
        }
        check_overrides(cx, c, &Catalog::default());
        return Some(Catalog::default());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            cx.error("catalog", format!("{}: {e}", path.display()));
            return None;
        }
    };
    let catalog = match Catalog::from_json(&text) {
        Ok(c) => c,
        Err(message) => {
            cx.elsewhere(path, None, message);
            return None;
        }
    };
    let client = reqwest::Client::new();
    for tool in catalog.iter() {
        // The tool's entry, for errors: the line where its name is given.
        let line = text
            .lines()
            .position(|l| l.contains(&format!("\"{}\"", tool.name)) && l.contains("\"name\""))
            .map(|i| i + 1);
        if tool.http.is_some() {
            if let Err(e) = HttpTool::new(tool.clone(), client.clone(), env) {
                cx.elsewhere(path, line, e.to_string());
            }
        } else {
            cx.elsewhere(
                path,
                line,
                format!(
                    "tool {} has no \"http\" endpoint: a catalog tool is an HTTP endpoint, other tools come from [[mcp]] servers",
                    tool.name
                ),
            );
        }
        for message in crate::exec::overrides::spec_problems(tool, &catalog) {
            cx.elsewhere(path, line, message);
        }
    }
    if catalog.is_empty() && c.mcp.is_empty() {
        cx.error(
            "catalog",
            "the catalog is empty and there are no [[mcp]] servers: no tools",
        );
    }
    check_overrides(cx, c, &catalog);
    Some(catalog)
}

/// `[[mcp]]` entries: each well formed, names distinct. Their tools are listed only when a
/// worker starts (or `ballast tools` asks), so overrides of them are checked then.
fn check_mcp(cx: &mut Ctx<'_>, c: &BallastConfig, env: &dyn Fn(&str) -> Option<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, server) in c.mcp.iter().enumerate() {
        if !seen.insert(server.name.as_str()) {
            cx.error(
                &format!("mcp.{i}.name"),
                format!("server {:?} is given twice", server.name),
            );
        }
        for (field, message) in server.problems(env) {
            cx.error(&format!("mcp.{i}.{field}"), message);
        }
    }
}

/// `[tools.NAME]`: each names a catalog tool or could name an MCP server's, and what it sets is
/// valid for a catalog tool.
fn check_overrides(cx: &mut Ctx<'_>, c: &BallastConfig, catalog: &Catalog) {
    for (name, o) in &c.tools {
        let key = format!("tools.{name}");
        match catalog.get(name) {
            Some(spec) => {
                let mut spec = spec.clone();
                o.apply(&mut spec);
                for message in crate::exec::overrides::spec_problems(&spec, catalog) {
                    cx.error(&key, message);
                }
            }
            None if c
                .mcp
                .iter()
                .any(|s| name.starts_with(&format!("{}_", s.name))) => {}
            None => cx.error(
                &key,
                format!("{name} is not in the catalog and no [[mcp]] server's name prefixes it"),
            ),
        }
    }
}

fn check_retrieval(cx: &mut Ctx<'_>, c: &BallastConfig, env: &dyn Fn(&str) -> Option<String>) {
    if c.execution.retriever == super::RetrieverKind::DemoKb {
        cx.error(
            "execution.retriever",
            "the demo knowledge base is only for `ballast demo` and `ballast drill`: set [retrieval] kind = \"http\" or \"index\" (or \"none\")",
        );
    }
    for (field, message) in c.retrieval.problems(env) {
        cx.error(&format!("retrieval.{field}"), message);
    }
    for (field, message) in c.telemetry.problems(env) {
        cx.error(&format!("telemetry.{field}"), message);
    }
}

fn check_planners(
    cx: &mut Ctx<'_>,
    c: &BallastConfig,
    control: &ControlConfig,
    catalog: &Catalog,
    env: &dyn Fn(&str) -> Option<String>,
) {
    for name in control.profiles.keys() {
        if !c.planners.contains_key(name) && !c.planners.is_empty() {
            cx.error(
                "planners",
                format!("profile {name:?} has no [planners.{name}] entry"),
            );
        }
    }
    for (name, planner) in &c.planners {
        let key = format!("planners.{name}");
        if !control.profiles.contains_key(name) {
            cx.warn(&key, format!("{name:?} is not a profile of the control configuration, so nothing routes to it"));
        }
        let PlannerConfig::Openai(openai) = planner else {
            continue;
        };
        if let Err(e) = OpenAiPlanner::new(openai.clone(), catalog.clone()) {
            let field = if openai.model.trim().is_empty() {
                "model"
            } else if e.to_string().contains("max_response_bytes") {
                "max_response_bytes"
            } else {
                "base_url"
            };
            cx.error(&format!("{key}.{field}"), e.to_string());
        }
        if openai.timeout_ms == 0 {
            cx.error(&format!("{key}.timeout_ms"), "must be positive");
        }
        if let Some(conf) = openai.default_confidence
            && !(0.0..=1.0).contains(&conf)
        {
            cx.error(
                &format!("{key}.default_confidence"),
                "a confidence is between 0 and 1",
            );
        }
        if let Some(var) = &openai.api_key_env
            && env(var).is_none_or(|v| v.trim().is_empty())
        {
            cx.warn(
                &format!("{key}.api_key_env"),
                format!("${var} is not set: requests go without an API key"),
            );
        }
    }
}

fn check_policies(cx: &mut Ctx<'_>, c: &BallastConfig, catalog: &Catalog) {
    let Some(dir) = &c.policies else { return };
    if !dir.is_dir() {
        cx.error("policies", format!("{} is not a directory", dir.display()));
        return;
    }
    if let Err(e) = crate::control::cedar::Policies::load_dir(dir, catalog) {
        // Policy errors name their own file and line.
        let message = e.to_string();
        let problems = if c.mcp.is_empty() {
            &mut cx.report.errors
        } else {
            // The MCP servers' tools (and their arguments) are known only once they are listed:
            // `ballast tools` checks the policies against the whole catalog.
            &mut cx.report.warnings
        };
        problems.push(Problem {
            file: dir.display().to_string(),
            line: None,
            column: None,
            key: None,
            message,
        });
    }
}

fn summary(
    c: &BallastConfig,
    control: Option<&ControlConfig>,
    catalog: Option<&Catalog>,
) -> Vec<String> {
    let mut lines = vec![match c.log.backend {
        Backend::Embedded => format!("log: embedded sled in {}", c.log.data_dir.display()),
        Backend::Kafka => format!(
            "log: kafka at {} (state in {})",
            c.log.bootstrap.as_deref().unwrap_or(""),
            c.log.data_dir.display()
        ),
    }];
    if let (Some(catalog), Some(file)) = (catalog, &c.catalog) {
        lines.push(format!(
            "tools: {} over HTTP (catalog {})",
            catalog.len(),
            file.display()
        ));
    }
    for s in &c.mcp {
        lines.push(format!(
            "mcp server {}: {} (tools listed at start: `ballast tools`)",
            s.name,
            s.describe()
        ));
    }
    lines.push(match c.retrieval.kind {
        crate::exec::retrieval::RetrievalKind::None => "retrieval: none".into(),
        crate::exec::retrieval::RetrievalKind::Http => format!(
            "retrieval: http at {}",
            c.retrieval.url.as_deref().unwrap_or("")
        ),
        crate::exec::retrieval::RetrievalKind::Index => format!(
            "retrieval: index in {}",
            c.retrieval
                .index_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ),
    });
    for (name, p) in &c.planners {
        lines.push(match p {
            PlannerConfig::Openai(o) => {
                format!("planner {name}: {} at {}", o.model, o.base_url)
            }
            PlannerConfig::Scripted { workload } => match workload {
                Some(w) => format!("planner {name}: scripted, playing {}", w.display()),
                None => format!("planner {name}: scripted"),
            },
        });
    }
    if c.planners.is_empty() {
        lines.push("planners: scripted for every profile".into());
    }
    lines.push(match &c.policies {
        Some(d) => format!("policies: {}", d.display()),
        None => "policies: built-in".into(),
    });
    if let Some(control) = control {
        let ladder: Vec<&str> = control.guards.ladder.iter().map(|r| r.as_str()).collect();
        lines.push(format!("ladder: {}", ladder.join(" → ")));
        lines.push(format!(
            "slo: task success ≥ {}, hallucination with action ≤ {}, latency ≤ {} ms for {}, escalation success ≥ {}",
            control.slo.task_success,
            control.slo.hallucination_with_action_max,
            control.slo.latency_threshold_ms,
            control.slo.latency_target,
            control.slo.escalation_success
        ));
    }
    lines
}

/// The file's directory, for resolving its relative paths.
pub fn base_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
