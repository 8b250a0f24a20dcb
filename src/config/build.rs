//! A checked configuration turned into the planes a worker runs: the tools (HTTP endpoints or
//! built-in implementations), a planner per profile, the retriever, and the control plane.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfigError, Loaded, PlannerConfig, RetrieverKind};
use crate::control::cedar::Policies;
use crate::control::{CedarControlPlane, ControlPlane, PolicyWatcher};
use crate::exec::catalog::Catalog;
use crate::exec::http_tool::{HttpTool, HttpToolError};
use crate::exec::openai::{ModelError, OpenAiPlanner};
use crate::exec::profiles::ProfilePlanner;
use crate::exec::scripted::{ScriptedPlanner, read_workload};
use crate::exec::{ExecutionPlane, Planner, Retriever, Tool, Toolbox};
use crate::ids::TurnId;
use crate::settle::Planes;
use crate::turn::{ExecFailure, Retrieval};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Http(#[from] HttpToolError),
    #[error("planner {profile}: {source}")]
    Model { profile: String, source: ModelError },
    #[error("tool {0}: no http endpoint and no built-in implementation")]
    NoImplementation(String),
    #[error(transparent)]
    Catalog(#[from] crate::exec::catalog::CatalogError),
    #[error(transparent)]
    Workload(#[from] crate::exec::scripted::WorkloadError),
    #[error("effects journal: {0}")]
    Journal(std::io::Error),
}

/// No retrieval: a deployment whose plans need the request only.
struct NoRetriever;

#[async_trait::async_trait]
impl Retriever for NoRetriever {
    async fn retrieve(&self, _turn: TurnId, query: &str) -> Result<Retrieval, ExecFailure> {
        Ok(Retrieval {
            query: query.to_string(),
            documents: Vec::new(),
            latency_ms: 0,
        })
    }
}

impl Loaded {
    pub fn catalog(&self) -> Result<Catalog, ConfigError> {
        Ok(match &self.config.catalog {
            Some(p) => Catalog::load(p).map_err(BuildError::from)?,
            None => crate::demo::tools::demo_catalog(),
        })
    }

    /// The execution and control planes this configuration describes.
    pub fn planes(&self) -> Result<Planes, ConfigError> {
        let c = &self.config;
        let data_dir = &c.log.data_dir;
        let catalog = self.catalog()?;
        let latency = c.execution.demo_latency_ms;
        let journal = crate::demo::tools::EffectsJournal::open(&data_dir.join("effects.jsonl"))
            .map_err(BuildError::Journal)?;
        let mut builtin: BTreeMap<String, Arc<dyn Tool>> =
            crate::demo::tools::demo_tools(journal, latency)
                .into_iter()
                .map(|t| (t.spec().name.clone(), t))
                .collect();
        let client = reqwest::Client::new();
        let env = |v: &str| std::env::var(v).ok();
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        for spec in catalog.iter() {
            if spec.http.is_some() {
                tools.push(Arc::new(
                    HttpTool::new(spec.clone(), client.clone(), &env).map_err(BuildError::from)?,
                ));
            } else {
                let tool = builtin
                    .remove(&spec.name)
                    .ok_or_else(|| BuildError::NoImplementation(spec.name.clone()))?;
                tools.push(tool);
            }
        }

        let control_config = self.control()?;
        let workload_path = data_dir.join("workload.jsonl");
        let workload = if workload_path.exists() {
            read_workload(&workload_path).map_err(BuildError::from)?
        } else {
            Vec::new()
        };
        let scripted: Arc<dyn Planner> =
            ScriptedPlanner::new(&workload, Duration::from_millis(latency / 2));
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
                Some(PlannerConfig::Scripted {}) | None => Arc::clone(&scripted),
            };
            planners.insert(profile.clone(), planner);
        }
        let retriever: Arc<dyn Retriever> = match c.execution.retriever {
            RetrieverKind::DemoKb => Arc::new(crate::demo::kb::KbRetriever::new(
                Duration::from_millis(latency.min(1)),
            )),
            RetrieverKind::None => Arc::new(NoRetriever),
        };
        let exec = ExecutionPlane {
            retriever,
            planner: Arc::new(ProfilePlanner::new(planners)),
            tools: Toolbox::new(tools),
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
