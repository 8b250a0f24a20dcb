//! What a person taking a handoff is given: the turn up to the handoff in a published, versioned
//! shape (`Handoff.trace_json` with `trace_version` 2 on the escalations topic) — request,
//! route, context, each model step with its calls and results, approvals, the ladder, the last
//! guard trip and decision. Built from the state, never the state itself: `TurnState` is internal
//! and changes with the engine; this shape changes only with its version.

use serde::Serialize;

use super::state::{CallState, CallStatus, TurnState};

/// The `trace_version` of what [`handoff_trace`] builds (1 was the internal state, unversioned).
pub const HANDOFF_TRACE_VERSION: i32 = 2;

#[derive(Serialize)]
struct Trace<'a> {
    version: i32,
    request: Request<'a>,
    route: Option<Route<'a>>,
    documents: Vec<Document<'a>>,
    steps: Vec<Step<'a>>,
    approvals: Vec<Approval<'a>>,
    escalations: Vec<String>,
    guard_trip: Option<Trip<'a>>,
    last_decision: Option<String>,
    policy_version: Option<&'a str>,
}

#[derive(Serialize)]
struct Request<'a> {
    text: &'a str,
    channel: &'a str,
    session_id: Option<&'a str>,
    requested_at_ms: i64,
}

#[derive(Serialize)]
struct Route<'a> {
    profile: &'a str,
    model: &'a str,
    rule: &'a str,
}

#[derive(Serialize)]
struct Document<'a> {
    id: &'a str,
    title: &'a str,
    version: i64,
    updated_at_ms: i64,
}

#[derive(Serialize)]
struct Step<'a> {
    step: i32,
    model: &'a str,
    confidence: f64,
    content: Option<&'a str>,
    calls: Vec<Call<'a>>,
}

#[derive(Serialize)]
struct Call<'a> {
    call_id: &'a str,
    tool: &'a str,
    args_json: &'a str,
    attempt: i32,
    status: &'static str,
    result_json: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct Approval<'a> {
    approval_id: &'a str,
    call_id: &'a str,
    status: String,
    deadline_ms: i64,
    rules: &'a [String],
}

#[derive(Serialize)]
struct Trip<'a> {
    guard: &'a str,
    rule: &'a str,
    detail: &'a str,
}

fn call(c: &CallState) -> Call<'_> {
    let (status, result_json, error) = match &c.status {
        CallStatus::Running => ("running", None, None),
        CallStatus::Completed { result_json } => ("completed", Some(result_json.as_str()), None),
        CallStatus::Failed { error, .. } => ("failed", None, Some(error.as_str())),
        CallStatus::Refused { reason } => ("refused", None, Some(reason.as_str())),
    };
    Call {
        call_id: &c.call_id,
        tool: &c.tool,
        args_json: &c.args_json,
        attempt: c.attempt,
        status,
        result_json,
        error,
    }
}

/// Lower-case name of a serde-serialized unit enum value (`"HumanHandoff"` → as serialized).
fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The turn as a person taking its handoff sees it (JSON, not yet redacted: the caller masks).
pub fn handoff_trace(state: &TurnState) -> Result<String, serde_json::Error> {
    let mut steps: Vec<Step<'_>> = state
        .history
        .iter()
        .map(|h| Step {
            step: h.plan.step,
            model: &h.plan.model,
            confidence: h.plan.confidence,
            content: h.plan.content.as_deref(),
            calls: h.calls.iter().map(call).collect(),
        })
        .collect();
    if let Some(plan) = &state.plan {
        steps.push(Step {
            step: plan.step,
            model: &plan.model,
            confidence: plan.confidence,
            content: plan.content.as_deref(),
            calls: state.calls.iter().map(call).collect(),
        });
    }
    let trace = Trace {
        version: HANDOFF_TRACE_VERSION,
        request: Request {
            text: &state.text,
            channel: &state.channel,
            session_id: state.session_id.as_deref(),
            requested_at_ms: state.requested_at_ms,
        },
        route: state.route.as_ref().map(|r| Route {
            profile: &r.profile,
            model: &r.model,
            rule: &r.rule,
        }),
        documents: state
            .documents
            .iter()
            .map(|d| Document {
                id: &d.id,
                title: &d.title,
                version: d.version,
                updated_at_ms: d.updated_at_ms,
            })
            .collect(),
        steps,
        approvals: state
            .approvals
            .iter()
            .map(|a| Approval {
                approval_id: &a.approval_id,
                call_id: &a.call_id,
                status: name(&a.status),
                deadline_ms: a.deadline_ms,
                rules: &a.rules,
            })
            .collect(),
        escalations: state.escalations.iter().map(name).collect(),
        guard_trip: state.trip.as_ref().map(|t| Trip {
            guard: &t.guard,
            rule: &t.rule,
            detail: &t.detail,
        }),
        last_decision: state.last_decision.as_ref().map(name),
        policy_version: state.policy_version.as_deref(),
    };
    serde_json::to_string(&trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_versioned_and_not_the_internal_state() {
        let mut state = TurnState::new(crate::ids::TurnId::new_v7());
        state.text = "refund A1001".into();
        let v: serde_json::Value =
            serde_json::from_str(&handoff_trace(&state).expect("json")).expect("parse");
        assert_eq!(v["version"], HANDOFF_TRACE_VERSION);
        assert_eq!(v["request"]["text"], "refund A1001");
        assert!(v["steps"].as_array().is_some_and(|s| s.is_empty()));
        // Internal bookkeeping stays internal.
        assert!(v.get("next_seq").is_none() && v.get("budget").is_none());
    }
}
