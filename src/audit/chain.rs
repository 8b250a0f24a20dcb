//! "Why did this action happen?": for each side effect of a turn (each tool call that started),
//! the chain of recorded facts that caused it — the request, the documents retrieved before its
//! plan, the plan step, the policy decisions on it (rules, risk), the approval (who, when), the
//! call's attempts and results, the guard verdicts on it, and its compensation if it was undone.
//! A pure function of the turn's events.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::{Event, Payload};
use crate::ids::TurnId;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Audit {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub request: String,
    pub attributes: BTreeMap<String, String>,
    pub requested_at_ms: i64,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub actions: Vec<Action>,
    pub labels: Vec<Label>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Action {
    pub call_id: String,
    pub tool: String,
    pub step: i32,
    pub args_json: String,
    pub documents: Vec<Document>,
    pub plan: Plan,
    pub decisions: Vec<Decision>,
    pub approval: Option<Approval>,
    pub attempts: Vec<Attempt>,
    pub guards: Vec<Guard>,
    pub compensation: Option<Compensation>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    pub id: String,
    pub score: f64,
    pub version: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub plan_rev: i32,
    pub model: String,
    pub model_version: String,
    pub prompt_template_hash: String,
    pub confidence: f64,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub checkpoint: &'static str,
    pub decision: &'static str,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub risk_score: f64,
    pub policy_version: String,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approval {
    pub status: &'static str,
    pub requested_at_ms: i64,
    pub operator: Option<String>,
    pub answered_at_ms: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    pub attempt: i32,
    pub idempotency_key: String,
    pub started_at_ms: i64,
    /// ok, error, timeout, outcome_unknown, interrupted; None while running.
    pub result: Option<String>,
    pub detail: Option<String>,
    pub latency_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Guard {
    pub checkpoint: &'static str,
    pub guard: String,
    pub rule: String,
    pub verdict: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compensation {
    pub tool: String,
    pub requested_by: String,
    pub attempts: i32,
    pub completed: bool,
    pub result: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Label {
    pub label: String,
    pub operator: String,
    pub note: Option<String>,
    pub at_ms: i64,
}

fn summary(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("summary").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| json.chars().take(160).collect())
}

/// The audit of one turn from its events (in seq order).
pub fn audit(events: &[Event]) -> Option<Audit> {
    let first = events.first()?;
    let mut a = Audit {
        turn_id: first.turn_id,
        tenant: first.tenant.clone(),
        user_id: String::new(),
        request: String::new(),
        attributes: BTreeMap::new(),
        requested_at_ms: first.at_ms,
        outcome: None,
        reason: None,
        actions: Vec::new(),
        labels: Vec::new(),
    };
    // What the turn knew at each point: the latest context, plan and the decisions since it.
    let mut documents: Vec<Document> = Vec::new();
    let mut plan = Plan::default();
    let mut plan_decisions: Vec<Decision> = Vec::new();
    let mut step_decisions: BTreeMap<i32, Vec<Decision>> = BTreeMap::new();
    // approval id → (the call it gates, the approval).
    let mut approvals: BTreeMap<String, (String, Approval)> = BTreeMap::new();
    let mut reverser = String::new();
    let mut seen = std::collections::HashSet::new();
    for e in events {
        if !seen.insert(e.seq) {
            continue;
        }
        match &e.payload {
            Payload::TurnRequested(r) => {
                a.user_id = r.user_id.clone();
                a.request = r.text.clone();
                a.attributes = r.attributes.clone();
                a.requested_at_ms = e.at_ms;
            }
            Payload::ContextRetrieved(c) => {
                documents = c
                    .documents
                    .iter()
                    .map(|d| Document {
                        id: d.id.clone(),
                        score: d.score,
                        version: d.version,
                    })
                    .collect();
            }
            Payload::PlanProposed(p) => {
                plan = Plan {
                    plan_rev: p.plan_rev,
                    model: p.model.clone(),
                    model_version: p.model_version.clone(),
                    prompt_template_hash: p.prompt_template_hash.clone(),
                    confidence: p.confidence,
                    at_ms: e.at_ms,
                };
                plan_decisions.clear();
                step_decisions.clear();
            }
            Payload::PolicyEvaluated(p) => {
                let d = Decision {
                    checkpoint: p.checkpoint.as_str(),
                    decision: p.decision.as_str(),
                    policy_ids: p.policy_ids.clone(),
                    reason: p.reason.clone(),
                    risk_score: p.risk_score,
                    policy_version: p.policy_version.clone(),
                    at_ms: e.at_ms,
                };
                match p.step {
                    Some(step) => step_decisions.entry(step).or_default().push(d),
                    None => plan_decisions.push(d),
                }
            }
            Payload::ApprovalRequested(r) => {
                approvals.insert(
                    r.approval_id.clone(),
                    (
                        r.call_id.clone(),
                        Approval {
                            status: "pending",
                            requested_at_ms: e.at_ms,
                            operator: None,
                            answered_at_ms: None,
                            reason: Some(r.reason.clone()),
                        },
                    ),
                );
            }
            Payload::ApprovalGranted(r) | Payload::ApprovalDenied(r) => {
                let status = if matches!(e.payload, Payload::ApprovalGranted(_)) {
                    "granted"
                } else {
                    "denied"
                };
                if let Some((_, ap)) = approvals.get_mut(&r.approval_id) {
                    ap.status = status;
                    ap.operator = Some(r.operator.clone());
                    ap.answered_at_ms = Some(e.at_ms);
                    if r.reason.is_some() {
                        ap.reason = r.reason.clone();
                    }
                }
            }
            Payload::ApprovalExpired(r) => {
                if let Some((_, ap)) = approvals.get_mut(&r.approval_id) {
                    ap.status = "expired";
                    ap.answered_at_ms = Some(e.at_ms);
                }
            }
            Payload::ToolCallStarted(s) => {
                if !a.actions.iter().any(|x| x.call_id == s.call_id) {
                    let mut decisions = plan_decisions.clone();
                    decisions.extend(step_decisions.get(&s.step).cloned().unwrap_or_default());
                    a.actions.push(Action {
                        call_id: s.call_id.clone(),
                        tool: s.tool.clone(),
                        step: s.step,
                        args_json: s.args_json.clone(),
                        documents: documents.clone(),
                        plan: plan.clone(),
                        decisions,
                        approval: approvals
                            .values()
                            .rev()
                            .find(|(call, _)| call == &s.call_id)
                            .map(|(_, ap)| ap.clone()),
                        attempts: Vec::new(),
                        guards: Vec::new(),
                        compensation: None,
                    });
                }
                if let Some(x) = a.actions.iter_mut().rev().find(|x| x.call_id == s.call_id) {
                    x.attempts.push(Attempt {
                        attempt: s.attempt,
                        idempotency_key: s.idempotency_key.clone(),
                        started_at_ms: e.at_ms,
                        result: None,
                        detail: None,
                        latency_ms: None,
                    });
                }
            }
            Payload::ToolCallCompleted(c) => {
                if let Some(t) = attempt_of(&mut a, &c.call_id, c.attempt) {
                    t.result = Some("ok".into());
                    t.detail = Some(summary(&c.result_json));
                    t.latency_ms = Some(c.latency_ms);
                }
            }
            Payload::ToolCallFailed(f) => {
                if let Some(t) = attempt_of(&mut a, &f.call_id, f.attempt) {
                    let kind = serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "error".into());
                    t.result = Some(kind);
                    t.detail = Some(f.error.clone());
                    t.latency_ms = Some(f.latency_ms);
                }
            }
            Payload::GuardrailTripped(g) => {
                let guard = Guard {
                    checkpoint: g.checkpoint.as_str(),
                    guard: g.guard.clone(),
                    rule: g.rule.clone(),
                    verdict: g.verdict.as_str(),
                    detail: g.detail.clone(),
                };
                if let Some(x) = g
                    .call_id
                    .as_deref()
                    .and_then(|c| a.actions.iter_mut().rev().find(|x| x.call_id == c))
                {
                    x.guards.push(guard);
                }
            }
            Payload::ReversalRequested(r) => reverser = r.operator.clone(),
            Payload::CompensationStarted(c) => {
                if let Some(x) = a.actions.iter_mut().rev().find(|x| x.call_id == c.call_id) {
                    let comp = x.compensation.get_or_insert(Compensation {
                        tool: c.tool.clone(),
                        requested_by: reverser.clone(),
                        attempts: 0,
                        completed: false,
                        result: None,
                    });
                    comp.attempts = c.attempt;
                }
            }
            Payload::CompensationCompleted(c) => {
                if let Some(comp) = a
                    .actions
                    .iter_mut()
                    .rev()
                    .find(|x| x.call_id == c.call_id)
                    .and_then(|x| x.compensation.as_mut())
                {
                    comp.completed = true;
                    comp.result = Some(summary(&c.result_json));
                }
            }
            Payload::CompensationFailed(c) => {
                if let Some(comp) = a
                    .actions
                    .iter_mut()
                    .rev()
                    .find(|x| x.call_id == c.call_id)
                    .and_then(|x| x.compensation.as_mut())
                {
                    comp.result = Some(c.error.clone());
                }
            }
            Payload::TurnCompleted(c) => {
                a.outcome = Some(c.outcome.as_str().to_string());
                a.reason = Some(c.reason.clone());
            }
            Payload::TurnReversed(_) => a.outcome = Some("reversed".into()),
            Payload::OutcomeLabeled(l) => a.labels.push(Label {
                label: l.label.clone(),
                operator: l.operator.clone(),
                note: l.note.clone(),
                at_ms: e.at_ms,
            }),
            _ => {}
        }
    }
    Some(a)
}

fn attempt_of<'a>(a: &'a mut Audit, call_id: &str, attempt: i32) -> Option<&'a mut Attempt> {
    a.actions
        .iter_mut()
        .rev()
        .find(|x| x.call_id == call_id)?
        .attempts
        .iter_mut()
        .rev()
        .find(|t| t.attempt == attempt)
}
