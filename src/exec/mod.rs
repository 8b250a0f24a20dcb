//! The execution plane acts and never decides: retrieval, model steps, tools. Each is a trait
//! so a deployment plugs in real models and tools; the scripted planner and the demo domain
//! make runs reproducible. The types crossing the boundary are in [`types`].

pub mod body;
pub mod catalog;
pub mod http_tool;
pub mod mcp;
pub mod openai;
pub mod overrides;
pub mod profiles;
pub mod retrieval;
pub mod scripted;
pub mod synth;
pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::TurnId;
use catalog::{Catalog, ToolSpec};
pub use types::{
    CallExchange, Conversation, ExecFailure, Planned, Retrieval, StepExchange, ToolFailure,
    ToolInvocation, ToolSuccess,
};

#[async_trait]
pub trait Retriever: Send + Sync + 'static {
    /// Documents for `query`, searched on behalf of `tenant`.
    async fn retrieve(
        &self,
        turn: TurnId,
        tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure>;
}

/// What a model step is asked: the conversation so far, and how.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub turn_id: TurnId,
    /// The planner profile routing chose (e.g. `general`, `specialist`).
    pub profile: String,
    /// A constrained retry: fewer documents, deterministic tools only.
    pub constrained: bool,
    /// Proposals recorded before this one in the turn (0 for the first): the `plan_rev` the
    /// answer will get.
    pub attempt: i32,
    /// The step of the turn's loop (0, 1, …).
    pub step: i32,
    pub tenant: String,
    pub user_id: String,
    pub conversation: Conversation,
}

/// A model (or a stand-in for one) answering one step of a turn's loop.
#[async_trait]
pub trait Planner: Send + Sync + 'static {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure>;
}

/// An error a tool reports, classified where it is made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    pub message: String,
    /// True when the call certainly did not take effect and may succeed if tried again.
    pub retryable: bool,
    /// Error, Timeout, or OutcomeUnknown when the call may have acted and cannot be retried.
    pub kind: crate::event::ToolFailureKind,
}

impl ToolError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
            retryable: true,
            kind: crate::event::ToolFailureKind::Error,
        }
    }

    pub fn terminal(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
            retryable: false,
            kind: crate::event::ToolFailureKind::Error,
        }
    }
}

#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn spec(&self) -> &ToolSpec;
    /// Runs one attempt. A tool with side effects must honour `call.idempotency_key`.
    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError>;
}

/// The tools a worker can run, and their catalog.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: HashMap<String, Arc<dyn Tool>>,
    catalog: Catalog,
}

impl Toolbox {
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> Self {
        let catalog = Catalog::new(tools.iter().map(|t| t.spec().clone()));
        Toolbox {
            tools: tools
                .into_iter()
                .map(|t| (t.spec().name.clone(), t))
                .collect(),
            catalog,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// Everything the runtime needs to execute effects.
#[derive(Clone)]
pub struct ExecutionPlane {
    pub retriever: Arc<dyn Retriever>,
    pub planner: Arc<dyn Planner>,
    pub tools: Toolbox,
}
