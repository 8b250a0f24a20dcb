//! The control plane decides and never acts. It reviews a plan before its first side effect and
//! each tool call at the pre-tool checkpoint. Reviews are pure functions of their inputs, so the
//! state machine can call them from `decide` and a backtest can re-run them on recorded turns.
//!
//! The core ships [`DefaultControlPlane`] (tool must exist, step limit, minimum confidence); the
//! Cedar policy engine with risk scores, budgets and approvals replaces it behind the same trait.

use crate::event::{PlanStep, PolicyDecision};
use crate::exec::catalog::{Catalog, ToolSpec};

/// What the control plane sees of a proposed plan.
pub struct PlanReview<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub steps: &'a [PlanStep],
    pub confidence: f64,
    pub catalog: &'a Catalog,
}

/// What the control plane sees of one tool call about to run.
pub struct CallReview<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub step: u32,
    pub tool: &'a str,
    pub args_json: &'a str,
    pub spec: Option<&'a ToolSpec>,
    pub confidence: f64,
    /// Tool calls of this turn that failed so far.
    pub earlier_failures: u32,
}

/// A decision with the rules that determined it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: PolicyDecision,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub risk_score: f64,
}

pub trait ControlPlane: Send + Sync + 'static {
    /// Identifies the policy set that made a decision (recorded in every PolicyEvaluated).
    fn version(&self) -> &str;
    fn review_plan(&self, plan: &PlanReview<'_>) -> Verdict;
    fn review_call(&self, call: &CallReview<'_>) -> Verdict;
}

/// The core's placeholder policy: every tool must exist, plans have a step limit, and a planner
/// that is unsure hands the turn to a human instead of acting.
#[derive(Clone, Debug)]
pub struct DefaultControlPlane {
    pub max_steps: usize,
    pub min_confidence: f64,
}

impl Default for DefaultControlPlane {
    fn default() -> Self {
        DefaultControlPlane {
            max_steps: 8,
            min_confidence: 0.5,
        }
    }
}

pub const POLICY_STEP_LIMIT: &str = "default.step_limit";
pub const POLICY_TOOL_EXISTS: &str = "default.tool_exists";
pub const POLICY_MIN_CONFIDENCE: &str = "default.min_confidence";

/// Documented risk: the highest impact among the tools involved, raised by a third for low
/// confidence and by 0.1 per earlier failure, capped at 1. Deterministic by construction.
pub fn default_risk(impacts: impl Iterator<Item = f64>, confidence: f64, failures: u32) -> f64 {
    let base = impacts.fold(0.0_f64, f64::max);
    let unsure = (1.0 - confidence.clamp(0.0, 1.0)) / 3.0;
    (base + unsure + 0.1 * f64::from(failures)).min(1.0)
}

impl ControlPlane for DefaultControlPlane {
    fn version(&self) -> &str {
        "default-1"
    }

    fn review_plan(&self, plan: &PlanReview<'_>) -> Verdict {
        let risk = default_risk(
            plan.steps
                .iter()
                .filter_map(|s| plan.catalog.get(&s.tool))
                .map(|t| t.impact.base_risk()),
            plan.confidence,
            0,
        );
        let verdict = |decision, id: &str, reason: String| Verdict {
            decision,
            policy_ids: vec![id.to_string()],
            reason,
            risk_score: risk,
        };
        if plan.steps.len() > self.max_steps {
            return verdict(
                PolicyDecision::Deny,
                POLICY_STEP_LIMIT,
                format!(
                    "plan has {} steps, limit is {}",
                    plan.steps.len(),
                    self.max_steps
                ),
            );
        }
        if let Some(unknown) = plan
            .steps
            .iter()
            .find(|s| plan.catalog.get(&s.tool).is_none())
        {
            return verdict(
                PolicyDecision::Deny,
                POLICY_TOOL_EXISTS,
                format!("tool {} is not in the catalog", unknown.tool),
            );
        }
        // A NaN confidence (a broken model signal) escalates too.
        if plan.confidence.is_nan() || plan.confidence < self.min_confidence {
            return verdict(
                PolicyDecision::Escalate,
                POLICY_MIN_CONFIDENCE,
                format!(
                    "planner confidence {:.2} is below {:.2}",
                    plan.confidence, self.min_confidence
                ),
            );
        }
        Verdict {
            decision: PolicyDecision::Allow,
            policy_ids: vec![
                POLICY_STEP_LIMIT.into(),
                POLICY_TOOL_EXISTS.into(),
                POLICY_MIN_CONFIDENCE.into(),
            ],
            reason: format!("{} steps, all tools known", plan.steps.len()),
            risk_score: risk,
        }
    }

    fn review_call(&self, call: &CallReview<'_>) -> Verdict {
        let risk = default_risk(
            call.spec.map(|s| s.impact.base_risk()).into_iter(),
            call.confidence,
            call.earlier_failures,
        );
        match call.spec {
            Some(_) => Verdict {
                decision: PolicyDecision::Allow,
                policy_ids: vec![POLICY_TOOL_EXISTS.into()],
                reason: format!("{} is in the catalog", call.tool),
                risk_score: risk,
            },
            None => Verdict {
                decision: PolicyDecision::Deny,
                policy_ids: vec![POLICY_TOOL_EXISTS.into()],
                reason: format!("tool {} is not in the catalog", call.tool),
                risk_score: risk,
            },
        }
    }
}
