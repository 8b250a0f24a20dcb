//! The deployment configuration file (`ballast.toml`, documented in `examples/ballast.toml`):
//! the log backend, the tool catalog (HTTP or built-in tools), one planner per profile (an
//! OpenAI-compatible server or the scripted planner), the policy directory, and the control
//! configuration — budgets, guards and the escalation ladder, routing, SLO targets — that
//! otherwise lives in the policy directory's `control.toml`.
//!
//! `check.rs` validates a file with errors that name the line; `build.rs` turns a valid one
//! into the planes a worker runs.

pub mod build;
pub mod check;
mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::control::ControlConfig;
use crate::exec::openai::OpenAiConfig;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BallastConfig {
    #[serde(default)]
    pub log: LogConfig,
    /// A directory of `*.cedar` policies, reloaded on change. Unset: the built-in policy set.
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// The tool catalog (a JSON array of tool specs, each an HTTP endpoint). Optional when
    /// `[[mcp]]` servers give the tools; a configuration with no tools at all is an error.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// `[[mcp]]`: MCP servers whose tools join the catalog as `{name}_{tool}`.
    #[serde(default)]
    pub mcp: Vec<crate::exec::mcp::McpServerConfig>,
    /// `[tools.NAME]`: what the deployment says about a catalog tool over what its source says
    /// (scopes, key arguments, sinks, compensation, cost, impact, trust, …).
    #[serde(default)]
    pub tools: BTreeMap<String, crate::exec::overrides::ToolOverride>,
    /// `[retrieval]`: the team's search service (`kind = "http"`) or a local index
    /// (`kind = "index"`); unset: no retrieval.
    #[serde(default)]
    pub retrieval: crate::exec::retrieval::RetrievalConfig,
    #[serde(default)]
    pub execution: ExecutionConfig,
    /// How each planner profile of `[control.profiles]` is served, by profile name.
    #[serde(default)]
    pub planners: BTreeMap<String, PlannerConfig>,
    /// The control configuration (the schema of `control.toml`). Unset: the policy
    /// directory's `control.toml`, else the defaults.
    #[serde(default)]
    pub control: Option<ControlConfig>,
    /// Which end-user claims (`roles`, `scopes` attributes) each tenant's Kafka producers may
    /// make: `[intake.tenants.NAME] grants = [...]` (`"*"` for any other tenant). Requests
    /// asserting more are dead-lettered. API requests are bounded by their token instead.
    #[serde(default)]
    pub intake: crate::control::claims::IntakeTrust,
    #[serde(default)]
    pub vault: VaultConfig,
    /// `[telemetry]`: export every finished turn as OpenTelemetry spans to an OTLP endpoint.
    #[serde(default)]
    pub telemetry: crate::telemetry::otlp::TelemetryConfig,
    /// `[worker]`: how often partitions snapshot their turns (what a restart reads).
    #[serde(default)]
    pub worker: WorkerSection,
}

/// `[worker]`: snapshot cadence. A snapshot writes only the turns that changed since the last,
/// so frequent ones are cheap; a restart after `kill -9` reads the snapshot and the log tail
/// written after it (at most `snapshot_every_events` events, or `snapshot_interval_ms` of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    pub snapshot_every_events: u64,
    pub snapshot_interval_ms: u64,
    /// Kafka: how long a transaction stays open collecting the rounds a partition decides
    /// (0: one transaction per round). Effects wait for the commit of the events that decided
    /// them; a partition with nothing else to do commits at once.
    pub commit_interval_ms: u64,
}

impl Default for WorkerSection {
    fn default() -> Self {
        let d = crate::runtime::WorkerConfig::default();
        WorkerSection {
            snapshot_every_events: d.snapshot_every,
            snapshot_interval_ms: d.snapshot_interval_ms,
            commit_interval_ms: d.commit_interval_ms,
        }
    }
}

impl WorkerSection {
    /// Out-of-range values, as (key under `worker.`, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(100..=10_000_000).contains(&self.snapshot_every_events) {
            out.push((
                "snapshot_every_events",
                "must be between 100 and 10000000".to_string(),
            ));
        }
        if !(100..=3_600_000).contains(&self.snapshot_interval_ms) {
            out.push((
                "snapshot_interval_ms",
                "must be between 100 and 3600000 (an hour)".to_string(),
            ));
        }
        if self.commit_interval_ms > 10_000 {
            out.push((
                "commit_interval_ms",
                "must be between 0 and 10000 (a transaction times out after 60 s)".to_string(),
            ));
        }
        out
    }

    /// The worker configuration with this cadence.
    pub fn apply(&self, mut cfg: crate::runtime::WorkerConfig) -> crate::runtime::WorkerConfig {
        cfg.snapshot_every = self.snapshot_every_events;
        cfg.snapshot_interval_ms = self.snapshot_interval_ms;
        cfg.commit_interval_ms = self.commit_interval_ms;
        cfg
    }
}

/// `[vault]`: where the master key is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// A file holding 32 random bytes, hex-encoded (`openssl rand -hex 32`); relative to this
    /// file. Unset: `$BALLAST_MASTER_KEY_FILE`.
    pub master_key_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One sled database in `data_dir`: one machine, no broker.
    #[default]
    Embedded,
    /// Kafka topics on `bootstrap`; `data_dir` caches worker state and projections.
    Kafka,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub backend: Backend,
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers (`host:port,…`), for the kafka backend.
    pub bootstrap: Option<String>,
    /// Partitions of a new log (an existing one keeps its count).
    pub partitions: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            backend: Backend::Embedded,
            data_dir: PathBuf::from("ballast-data"),
            bootstrap: None,
            partitions: 8,
        }
    }
}

/// `[execution] retriever`, from before `[retrieval]`: only `"none"` still means something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrieverKind {
    /// The demo's knowledge base: refused (the demo domain is wired only by `ballast demo` and
    /// `ballast drill`); kept so the error can say what to write instead.
    DemoKb,
    /// No retrieval: plans see the request only.
    #[default]
    None,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Superseded by `[retrieval]`.
    pub retriever: RetrieverKind,
}

/// How one profile's plans are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlannerConfig {
    /// An OpenAI-compatible chat-completions server.
    Openai(OpenAiConfig),
    /// A scripted model playing a workload file (JSON lines of requests and the calls to make):
    /// `workload`, else the data dir's `workload.jsonl`. For trying a deployment without a
    /// model, and for reproductions.
    Scripted {
        #[serde(default)]
        workload: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{}", check::render(.0))]
    Invalid(Vec<check::Problem>),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error("{path}: log.backend is {found:?}: {hint}")]
    Backend {
        path: String,
        found: Backend,
        hint: &'static str,
    },
}

/// A configuration file read and checked, with relative paths resolved against its directory.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: BallastConfig,
    /// What `check` found that does not stop a run (unset API keys, ignored files).
    pub warnings: Vec<check::Problem>,
}

impl Loaded {
    /// The control configuration in force: `[control]`, else the policy directory's
    /// `control.toml`, else the defaults.
    pub fn control(&self) -> Result<ControlConfig, ConfigError> {
        if let Some(c) = &self.config.control {
            return Ok(c.clone());
        }
        if let Some(dir) = &self.config.policies {
            let file = dir.join(crate::control::CONFIG_FILE);
            if file.exists() {
                return Ok(ControlConfig::load(&file)?);
            }
        }
        Ok(ControlConfig::default())
    }
}

/// Reads `path`, checks it (`check::check`), and resolves its relative paths.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let origin = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let report = check::check(&text, &origin, base, &|v| std::env::var(v).ok());
    if !report.errors.is_empty() {
        return Err(ConfigError::Invalid(report.errors));
    }
    let mut config = report
        .config
        .ok_or_else(|| ConfigError::Invalid(Vec::new()))?;
    resolve_paths(&mut config, base);
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        warnings: report.warnings,
    })
}

/// The control configuration of a file, for commands that need only it (`ballast injection`):
/// the file must parse, but need not describe a whole deployment (tools, planners).
pub fn load_control(path: &Path) -> Result<ControlConfig, ConfigError> {
    let io = |message: String| ConfigError::Io {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    let mut config: BallastConfig = toml::from_str(&text).map_err(|e| io(e.to_string()))?;
    resolve_paths(&mut config, path.parent().unwrap_or(Path::new(".")));
    let loaded = Loaded {
        path: path.to_path_buf(),
        config,
        warnings: Vec::new(),
    };
    let control = loaded.control()?;
    let problems = control.problems();
    if let Some((key, message)) = problems.first() {
        return Err(io(format!("control.{key}: {message}")));
    }
    Ok(control)
}

/// `load`, for a command that runs `backend`: its warnings logged, another backend refused with
/// the command that runs it.
pub fn load_for(path: &Path, backend: Backend) -> Result<Loaded, ConfigError> {
    let loaded = load(path)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if loaded.config.log.backend != backend {
        return Err(ConfigError::Backend {
            path: path.display().to_string(),
            found: loaded.config.log.backend,
            hint: match backend {
                Backend::Embedded => {
                    "this command runs the embedded backend; a kafka deployment runs its turns in \
                     `ballast worker --config` and serves them with `ballast serve --config`"
                }
                Backend::Kafka => {
                    "`ballast worker` runs the kafka backend: set `[log] backend = \"kafka\"` and \
                     `bootstrap`, or pass `--bootstrap`; an embedded deployment runs its turns in \
                     `ballast serve --config`"
                }
            },
        });
    }
    Ok(loaded)
}

/// The deployment in `path` on Kafka: at `bootstrap` when given (`--bootstrap`, whatever the
/// file's `[log] backend` says: one file serves both backends), else as the file says, which
/// must then be `kafka`.
pub fn load_on_kafka(path: &Path, bootstrap: Option<&str>) -> Result<Loaded, ConfigError> {
    match bootstrap {
        Some(b) => {
            let mut loaded = load(path)?;
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            loaded.config.log.backend = Backend::Kafka;
            loaded.config.log.bootstrap = Some(b.to_string());
            Ok(loaded)
        }
        None => load_for(path, Backend::Kafka),
    }
}

/// Paths in the file are relative to the file, not to where `ballast` was started.
pub(crate) fn resolve_paths(config: &mut BallastConfig, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut config.log.data_dir);
    if let Some(p) = config.policies.as_mut() {
        resolve(p);
    }
    if let Some(p) = config.catalog.as_mut() {
        resolve(p);
    }
    if let Some(p) = config.vault.master_key_file.as_mut() {
        resolve(p);
    }
    if let Some(p) = config.retrieval.index_dir.as_mut() {
        resolve(p);
    }
    for planner in config.planners.values_mut() {
        if let PlannerConfig::Scripted {
            workload: Some(p), ..
        } = planner
        {
            resolve(p);
        }
    }
    // A child server starts in the file's directory unless its entry says otherwise, so
    // `command = ["python3", "server.py"]` means the server.py beside the file.
    for server in &mut config.mcp {
        match server.cwd.as_mut() {
            Some(p) => resolve(p),
            None if server.command.is_some() => server.cwd = Some(base.to_path_buf()),
            None => {}
        }
    }
}
