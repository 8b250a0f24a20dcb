//! A checked configuration turned into the planes a worker runs: the tools (HTTP endpoints of
//! the catalog file and the tools of `[[mcp]]` servers, with `[tools.NAME]` overrides), a
//! planner per profile, the retriever, and the control plane. Nothing here falls back to the
//! demo domain: a deployment without tools is an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfigError, Loaded, PlannerConfig};
use crate::control::cedar::Policies;
use crate::control::{CedarControlPlane, ControlPlane, PolicyWatcher};
use crate::exec::catalog::{Catalog, ToolSpec};
use crate::exec::http_tool::{HttpTool, HttpToolError};
use crate::exec::mcp::{McpError, McpServer, McpTool, mapping};
use crate::exec::openai::{ModelError, OpenAiPlanner};
use crate::exec::profiles::ProfilePlanner;
use crate::exec::retrieval::index::{IndexError, IndexRetriever};
use crate::exec::retrieval::{NoRetriever, RetrievalKind, http::HttpRetriever};
use crate::exec::scripted::{ScriptedPlanner, read_workload};
use crate::exec::{ExecutionPlane, Planner, Retriever, Tool, Toolbox};
use crate::settle::Planes;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Http(#[from] HttpToolError),
    #[error("planner {profile}: {source}")]
    Model { profile: String, source: ModelError },
    #[error(
        "tool {0}: no \"http\" endpoint; a catalog tool is an HTTP endpoint, other tools come from [[mcp]] servers"
    )]
    NoImplementation(String),
    #[error(transparent)]
    Catalog(#[from] crate::exec::catalog::CatalogError),
    #[error(transparent)]
    Workload(#[from] crate::exec::scripted::WorkloadError),
    #[error(transparent)]
    Mcp(#[from] McpError),
    #[error("mcp server {server}: {message}")]
    McpTool { server: String, message: String },
    #[error("tool {0} is given twice (the catalog file and an MCP server, or two servers)")]
    Duplicate(String),
    #[error("[tools.{0}]: no such tool in the catalog or on any MCP server")]
    UnknownOverride(String),
    #[error("{}", .0.join("; "))]
    Spec(Vec<String>),
    #[error(
        "no tools: give `catalog` (HTTP tools) or [[mcp]] servers; the demo's tools are only for `ballast demo` and `ballast drill`"
    )]
    NoTools,
    #[error("{0}")]
    Retrieval(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Where a catalog tool comes from, as `ballast tools` prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    Http,
    Mcp(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Http => write!(f, "http"),
            Source::Mcp(s) => write!(f, "mcp:{s}"),
        }
    }
}

/// The tools a configuration gives, resolved.
pub struct ResolvedTools {
    pub catalog: Catalog,
    pub sources: BTreeMap<String, Source>,
    pub tools: Vec<Arc<dyn Tool>>,
    /// The MCP servers, connected (or to be, when one was down at start).
    pub servers: Vec<Arc<McpServer>>,
    /// Servers that could not be reached, whose tool list came from the data dir's copy.
    pub offline: Vec<String>,
}

impl Loaded {
    /// The catalog file's entries (HTTP tools), or none.
    pub fn file_catalog(&self) -> Result<Catalog, ConfigError> {
        Ok(match &self.config.catalog {
            Some(p) => Catalog::load(p).map_err(BuildError::from)?,
            None => Catalog::default(),
        })
    }

    /// Every tool: the catalog file's HTTP tools and each MCP server's, overrides applied.
    /// `keep_lists`: keep each server's tool list in the data dir, and use it when the server
    /// is down (a worker); otherwise a server that is down is an error (`ballast tools`).
    pub async fn tools(&self, keep_lists: bool) -> Result<ResolvedTools, ConfigError> {
        let c = &self.config;
        let env = |v: &str| std::env::var(v).ok();
        let client = reqwest::Client::new();
        let mut specs: BTreeMap<String, (ToolSpec, Source)> = BTreeMap::new();
        let mut remote_names: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for spec in self.file_catalog()?.iter() {
            if spec.http.is_none() {
                return Err(BuildError::NoImplementation(spec.name.clone()).into());
            }
            specs.insert(spec.name.clone(), (spec.clone(), Source::Http));
        }
        let cache = keep_lists.then(|| c.log.data_dir.join("mcp"));
        let mut servers = Vec::new();
        let mut offline = Vec::new();
        for (i, server_config) in c.mcp.iter().enumerate() {
            let server = McpServer::new(server_config.clone(), &env, cache.clone())
                .map_err(BuildError::from)?;
            let (listed, live) = server.tools().await.map_err(BuildError::from)?;
            if !live {
                offline.push(server_config.name.clone());
            }
            for tool in &listed {
                let spec = mapping::spec_for(server_config, tool).map_err(|message| {
                    BuildError::McpTool {
                        server: server_config.name.clone(),
                        message,
                    }
                })?;
                if specs.contains_key(&spec.name) {
                    return Err(BuildError::Duplicate(spec.name).into());
                }
                remote_names.insert(spec.name.clone(), (i, tool.name.to_string()));
                specs.insert(
                    spec.name.clone(),
                    (spec, Source::Mcp(server_config.name.clone())),
                );
            }
            servers.push(server);
        }
        for (name, o) in &c.tools {
            let (spec, _) = specs
                .get_mut(name)
                .ok_or_else(|| BuildError::UnknownOverride(name.clone()))?;
            o.apply(spec);
        }
        if specs.is_empty() {
            return Err(BuildError::NoTools.into());
        }
        let catalog = Catalog::new(specs.values().map(|(s, _)| s.clone()));
        let problems: Vec<String> = catalog
            .iter()
            .flat_map(|s| crate::exec::overrides::spec_problems(s, &catalog))
            .collect();
        if !problems.is_empty() {
            return Err(BuildError::Spec(problems).into());
        }
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, (spec, source)) in specs {
            match &source {
                Source::Http => tools.push(Arc::new(
                    HttpTool::new(spec, client.clone(), &env).map_err(BuildError::from)?,
                )),
                Source::Mcp(_) => {
                    let Some((i, remote)) = remote_names.get(&name) else {
                        continue;
                    };
                    let Some(server) = servers.get(*i) else {
                        continue;
                    };
                    tools.push(Arc::new(McpTool::new(
                        spec,
                        remote.clone(),
                        Arc::clone(server),
                    )));
                }
            }
            sources.insert(name, source);
        }
        Ok(ResolvedTools {
            catalog,
            sources,
            tools,
            servers,
            offline,
        })
    }

    /// The retriever `[retrieval]` describes.
    pub fn retriever(&self) -> Result<Arc<dyn Retriever>, ConfigError> {
        let r = &self.config.retrieval;
        let env = |v: &str| std::env::var(v).ok();
        Ok(match r.kind {
            RetrievalKind::None => Arc::new(NoRetriever),
            RetrievalKind::Http => {
                Arc::new(HttpRetriever::new(r, &env).map_err(BuildError::Retrieval)?)
            }
            RetrievalKind::Index => {
                let dir = r.index_dir.as_ref().ok_or_else(|| {
                    BuildError::Retrieval("retrieval.index_dir is not set".into())
                })?;
                Arc::new(IndexRetriever::open(dir, r.k).map_err(BuildError::from)?)
            }
        })
    }

    /// The execution and control planes this configuration describes.
    pub async fn planes(&self) -> Result<Planes, ConfigError> {
        let c = &self.config;
        let data_dir = &c.log.data_dir;
        let resolved = self.tools(true).await?;
        let catalog = resolved.catalog.clone();
        let control_config = self.control()?;
        let mut workload = Vec::new();
        let mut files: Vec<std::path::PathBuf> = c
            .planners
            .values()
            .filter_map(|p| match p {
                PlannerConfig::Scripted { workload } => workload.clone(),
                PlannerConfig::Openai(_) => None,
            })
            .collect();
        files.push(data_dir.join("workload.jsonl"));
        files.dedup();
        for path in files.iter().filter(|p| p.exists()) {
            workload.extend(read_workload(path).map_err(BuildError::from)?);
        }
        let scripted: Arc<dyn Planner> = ScriptedPlanner::new(&workload, Duration::ZERO);
        let mut planners: BTreeMap<String, Arc<dyn Planner>> = BTreeMap::new();
        for profile in control_config.profiles.keys() {
            let planner: Arc<dyn Planner> = match c.planners.get(profile) {
                Some(PlannerConfig::Openai(o)) => Arc::new(
                    OpenAiPlanner::new(o.clone(), catalog.clone()).map_err(|source| {
                        BuildError::Model {
                            profile: profile.clone(),
                            source,
                        }
                    })?,
                ),
                Some(PlannerConfig::Scripted { .. }) | None => Arc::clone(&scripted),
            };
            planners.insert(profile.clone(), planner);
        }
        let exec = ExecutionPlane {
            retriever: self.retriever()?,
            planner: Arc::new(ProfilePlanner::new(planners)),
            tools: Toolbox::new(resolved.tools),
        };

        let catalog = exec.tools.catalog().clone();
        let (control, watcher): (Arc<dyn ControlPlane>, _) = match &c.policies {
            Some(dir) => {
                let policies = Policies::load_dir(dir, &catalog)?;
                let plane = Arc::new(CedarControlPlane::new(
                    control_config,
                    catalog,
                    policies,
                    Some(dir.clone()),
                ));
                let watcher = PolicyWatcher::spawn(Arc::clone(&plane), Duration::from_secs(1));
                (plane, Some(watcher))
            }
            None => {
                let policies = Policies::from_sources(
                    &[(
                        "builtin.cedar".into(),
                        crate::control::cedar::BUILTIN_POLICIES.into(),
                    )],
                    &catalog,
                )?;
                (
                    Arc::new(CedarControlPlane::new(
                        control_config,
                        catalog,
                        policies,
                        None,
                    )),
                    None,
                )
            }
        };
        Ok(Planes {
            exec,
            control,
            watcher,
        })
    }
}
