//! Backtest: re-evaluates every recorded policy decision under another policy set, from the
//! recorded facts alone. Each turn is folded event by event; at each PolicyEvaluated, the review
//! the state machine made is rebuilt from the state just before it (principal, plan, step,
//! arguments, citations) and the review inputs the event recorded (confidence, failures,
//! anomalies, budget left), and handed to the other control plane. No planner, retriever or tool
//! is involved: this module never sees an execution plane.
//!
//! Budget refusals (`policy_version = "budgets"`) are not policy decisions and are skipped.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::control::{
    BudgetLeft, CallReview, ControlPlane, PlanReview, Principal, ResponseReview, Signals,
};
use crate::event::{Checkpoint, Event, Payload, PolicyDecision, PolicyEvaluated};
use crate::exec::catalog::Catalog;
use crate::ids::TurnId;
use crate::turn::TurnState;

/// Which recorded decisions to re-evaluate, by event time (ms since the epoch, inclusive).
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Window {
    fn contains(&self, at_ms: i64) -> bool {
        self.since_ms.is_none_or(|s| at_ms >= s) && self.until_ms.is_none_or(|u| at_ms <= u)
    }
}

/// One decision that would change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub turn_id: TurnId,
    pub tenant: String,
    pub at_ms: i64,
    pub checkpoint: &'static str,
    pub step: Option<i32>,
    pub tool: Option<String>,
    pub from: &'static str,
    pub to: &'static str,
    pub recorded_rules: Vec<String>,
    pub new_rules: Vec<String>,
    pub new_reason: String,
    pub risk_score: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub turns: u64,
    /// Policy decisions re-evaluated.
    pub evaluated: u64,
    pub unchanged: u64,
    /// Budget refusals and decisions outside the window.
    pub skipped: u64,
    /// Decisions recorded before review inputs were: re-run with the state's own signals and an
    /// unlimited budget.
    pub approximate: u64,
    /// "from→to" → count, for the decisions that change.
    pub transitions: BTreeMap<String, u64>,
    /// Tool → decisions on it that change.
    pub by_tool: BTreeMap<String, u64>,
    pub changes: Vec<Change>,
    /// The policy set the decisions were recorded under → count, and the one re-run.
    pub recorded_versions: BTreeMap<String, u64>,
    pub policy_version: String,
}

impl Report {
    /// The turns with at least one changed decision, in order.
    pub fn affected_turns(&self) -> Vec<TurnId> {
        let mut ids: Vec<TurnId> = self.changes.iter().map(|c| c.turn_id).collect();
        ids.dedup();
        ids
    }
}

/// Re-evaluates every recorded decision of `turns` (each a turn's events in order) under
/// `control`.
pub fn backtest(
    turns: impl IntoIterator<Item = Vec<Event>>,
    control: &dyn ControlPlane,
    catalog: &Catalog,
    window: Window,
) -> Report {
    let mut report = Report {
        policy_version: String::new(),
        ..Report::default()
    };
    for events in turns {
        let Some(first) = events.first() else {
            continue;
        };
        report.turns += 1;
        let mut state = TurnState::new(first.turn_id);
        for event in &events {
            if event.seq < state.next_seq {
                continue; // delivered twice
            }
            if let Payload::PolicyEvaluated(p) = &event.payload {
                if p.policy_version == crate::turn::budgeting::BUDGET_POLICY_VERSION
                    || !window.contains(event.at_ms)
                {
                    report.skipped += 1;
                } else if let Some(verdict) = rerun(&state, p, control, catalog, &mut report) {
                    report.evaluated += 1;
                    *report
                        .recorded_versions
                        .entry(p.policy_version.clone())
                        .or_insert(0) += 1;
                    report.policy_version = verdict.policy_version.clone();
                    if verdict.decision == p.decision {
                        report.unchanged += 1;
                    } else {
                        let change = Change {
                            turn_id: event.turn_id,
                            tenant: event.tenant.clone(),
                            at_ms: event.at_ms,
                            checkpoint: p.checkpoint.as_str(),
                            step: p.step,
                            tool: p.tool.clone(),
                            from: p.decision.as_str(),
                            to: verdict.decision.as_str(),
                            recorded_rules: p.policy_ids.clone(),
                            new_rules: verdict.policy_ids,
                            new_reason: verdict.reason,
                            risk_score: verdict.risk_score,
                        };
                        *report
                            .transitions
                            .entry(format!("{}→{}", change.from, change.to))
                            .or_insert(0) += 1;
                        if let Some(t) = &change.tool {
                            *report.by_tool.entry(t.clone()).or_insert(0) += 1;
                        }
                        report.changes.push(change);
                    }
                } else {
                    report.skipped += 1;
                }
            }
            // Counted, never fatal: a gap leaves the state as it was.
            let _ = state.apply(event);
        }
    }
    report
}

/// The recorded review, re-run: `None` when the state does not hold what it needs (a step
/// beyond the plan).
fn rerun(
    state: &TurnState,
    p: &PolicyEvaluated,
    control: &dyn ControlPlane,
    catalog: &Catalog,
    report: &mut Report,
) -> Option<crate::control::Verdict> {
    let principal = Principal {
        tenant: &state.tenant,
        user_id: &state.user_id,
        channel: &state.channel,
        attributes: &state.attributes,
    };
    let signals = recorded_signals(state, p, report);
    match p.checkpoint {
        Checkpoint::Plan => {
            let plan = state.plan.as_ref()?;
            Some(control.review_plan(&PlanReview {
                principal,
                steps: &plan.steps,
                catalog,
                signals: &signals,
            }))
        }
        Checkpoint::PreTool => {
            let index = p.step?;
            let planned = state
                .plan
                .as_ref()?
                .steps
                .get(usize::try_from(index).ok()?)?;
            // Provenance recomputed from the recorded facts: a new provenance policy is tried
            // on past turns as it would have seen them.
            let provenance = crate::turn::call_provenance(state, catalog, &planned.args_json);
            Some(control.review_call(&CallReview {
                principal,
                step: index as u32,
                tool: &planned.tool,
                args_json: &planned.args_json,
                spec: catalog.get(&planned.tool),
                signals: &signals,
                provenance: Some(&provenance),
            }))
        }
        Checkpoint::PreResponse => Some(control.review_response(&ResponseReview {
            principal,
            citations: state.citations.len(),
            tool_calls: state.all_calls().count(),
            signals: &signals,
        })),
        Checkpoint::PreModel => None,
    }
}

fn recorded_signals(state: &TurnState, p: &PolicyEvaluated, report: &mut Report) -> Signals {
    match (p.confidence, p.budget_cost_micros) {
        (Some(confidence), Some(cost)) => Signals {
            confidence,
            failures: p.failures.unwrap_or(0).max(0) as u32,
            anomalies: p.anomalies.clone(),
            budget: BudgetLeft {
                cost_micros: cost,
                tokens: p.budget_tokens.unwrap_or(i64::MAX),
                tool_calls: p.budget_tool_calls.unwrap_or(i64::MAX),
            },
            model_step: state.plan.as_ref().map_or(0, |pl| pl.step.max(0) as u32),
            prior_tools: crate::turn::prior_tools(state),
        },
        _ => {
            report.approximate += 1;
            Signals {
                confidence: state.plan.as_ref().map_or(1.0, |pl| pl.confidence),
                failures: state.failures,
                anomalies: Vec::new(),
                budget: BudgetLeft {
                    cost_micros: i64::MAX,
                    tokens: i64::MAX,
                    tool_calls: i64::MAX,
                },
                model_step: state.plan.as_ref().map_or(0, |pl| pl.step.max(0) as u32),
                prior_tools: crate::turn::prior_tools(state),
            }
        }
    }
}

impl Report {
    /// The report as text: totals, transitions, tools, then each changed decision.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} turns, {} policy decisions re-evaluated under {} ({} unchanged, {} would change); {} skipped{}\n",
            self.turns,
            self.evaluated,
            if self.policy_version.is_empty() {
                "the new set"
            } else {
                &self.policy_version
            },
            self.unchanged,
            self.changes.len(),
            self.skipped,
            if self.approximate > 0 {
                format!(
                    ", {} approximate (recorded without review inputs)",
                    self.approximate
                )
            } else {
                String::new()
            }
        );
        for (t, n) in &self.transitions {
            s.push_str(&format!("  {t:<32} {n}\n"));
        }
        if !self.by_tool.is_empty() {
            s.push_str("by tool:\n");
            for (t, n) in &self.by_tool {
                s.push_str(&format!("  {t:<32} {n}\n"));
            }
        }
        if !self.changes.is_empty() {
            s.push_str("changes:\n");
            for c in &self.changes {
                s.push_str(&format!(
                    "  {} {:<12} {:<14} {}→{} by [{}] (was [{}])\n",
                    c.turn_id,
                    c.checkpoint,
                    c.tool.as_deref().unwrap_or("-"),
                    c.from,
                    c.to,
                    c.new_rules.join(", "),
                    c.recorded_rules.join(", ")
                ));
            }
        }
        s
    }
}

/// Decisions as transition keys, for tests and callers that count them.
pub fn transition(from: PolicyDecision, to: PolicyDecision) -> String {
    format!("{}→{}", from.as_str(), to.as_str())
}
