//! The control plane decides and never acts. It routes a turn to a planner profile, reviews a plan
//! before its first side effect, each tool call at the pre-tool checkpoint with its real
//! arguments, and the reply before it is sent. Reviews are pure functions of their inputs and the
//! loaded policy set, so the state machine calls them from `decide` and a backtest can re-run
//! them on recorded turns.
//!
//! [`CedarControlPlane`] combines Cedar policies ([`cedar`]), the risk score ([`risk`]) and
//! routing ([`config`]); budgets ([`budget`]) and approvals are enforced by the state machine
//! with limits taken from the same configuration.

pub mod budget;
pub mod cedar;
pub mod claims;
pub mod config;
mod entities;
pub mod memo;
#[cfg(test)]
mod memo_tests;
mod plane;
pub mod risk;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::event::{PlanStep, PolicyDecision, RouteSelected};
use crate::exec::catalog::{Catalog, ToolSpec};

pub use config::ControlConfig;
pub use plane::{CONFIG_FILE, CedarControlPlane, PolicyWatcher};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{}{}: {message}", path, line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        path: String,
        line: Option<usize>,
        message: String,
    },
    /// A policy file that does not parse or validate: refused at load, never met at runtime.
    #[error("policy set rejected:\n{0}")]
    Policy(String),
}

impl ControlError {
    /// Configuration errors are fixed by people, not by retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ControlError::Io { .. })
    }
}

/// Who a turn acts for. Roles and scopes come from the request's `roles` and `scopes`
/// attributes (comma-separated), set by the backend that authenticated the user.
#[derive(Clone, Copy)]
pub struct Principal<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub channel: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
}

/// What is left of the budgets when a review runs (the smallest of turn, user and tenant).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BudgetLeft {
    pub cost_micros: i64,
    pub tokens: i64,
    pub tool_calls: i64,
}

/// Signals about the turn so far that raise risk.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    pub confidence: f64,
    /// Tool calls of this turn that failed so far.
    pub failures: u32,
    /// Anomaly flags (e.g. `retrieval_failed`, `no_context`, `confidence_missing`).
    pub anomalies: Vec<String>,
    pub budget: BudgetLeft,
    /// The step of the turn's model loop the review is for (0 for the first answer).
    pub model_step: u32,
    /// Tools the turn has called in earlier steps (each once).
    pub prior_tools: Vec<String>,
}

/// What the control plane sees of a proposed plan.
pub struct PlanReview<'a> {
    pub principal: Principal<'a>,
    pub steps: &'a [PlanStep],
    pub catalog: &'a Catalog,
    pub signals: &'a Signals,
}

/// What the control plane sees of one tool call about to run.
pub struct CallReview<'a> {
    pub principal: Principal<'a>,
    pub step: u32,
    pub tool: &'a str,
    pub args_json: &'a str,
    pub spec: Option<&'a ToolSpec>,
    pub signals: &'a Signals,
    /// Where each argument value came from (pre-tool; none at the plan checkpoint).
    pub provenance: Option<&'a crate::guard::provenance::CallProvenance>,
}

/// What the control plane sees of a reply about to be sent.
pub struct ResponseReview<'a> {
    pub principal: Principal<'a>,
    pub citations: usize,
    pub tool_calls: usize,
    pub signals: &'a Signals,
}

/// A decision with the rules that determined it and the policy set that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: PolicyDecision,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub risk_score: f64,
    pub policy_version: String,
}

pub trait ControlPlane: Send + Sync + 'static {
    /// Picks the planner profile for a new turn.
    fn route(&self, tenant: &str, attributes: &BTreeMap<String, String>) -> RouteSelected;
    fn review_plan(&self, plan: &PlanReview<'_>) -> Verdict;
    fn review_call(&self, call: &CallReview<'_>) -> Verdict;
    fn review_response(&self, response: &ResponseReview<'_>) -> Verdict;
    /// What a refusal by these rules does: `end_turn` when one of them says so (a Cedar
    /// policy's `@on_refusal("end_turn")`, a limit on the whole plan, a policy set that cannot
    /// be evaluated); feedback to the model otherwise.
    fn on_refusal(&self, _policy_ids: &[String]) -> crate::guard::OnRefusal {
        crate::guard::OnRefusal::Feedback
    }
    /// The configuration the state machine enforces itself (budgets, approval deadline). A
    /// reload swaps it: callers hold the `Arc` for one decision, never across rounds.
    fn config(&self) -> std::sync::Arc<ControlConfig>;
}

/// Splits a comma-separated attribute into trimmed, non-empty items.
pub fn list_attribute(attributes: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    attributes
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The built-in policy set over `catalog`; if it cannot load (it is validated by the tests, so
/// this would be a bug), a control plane that denies everything and says why.
pub fn builtin_or_fail_closed(catalog: Catalog) -> std::sync::Arc<dyn ControlPlane> {
    match CedarControlPlane::builtin(catalog) {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            tracing::error!(error = %e, "built-in policy set does not load; denying every action");
            std::sync::Arc::new(plane::FailClosed {
                reason: e.to_string(),
                config: std::sync::Arc::new(ControlConfig::default()),
            })
        }
    }
}
