//! Human and machine renderings of events, for `ballast trace`.

use serde_json::{Map, Value, json};

use super::{Event, Payload, PolicyDecision};

impl Event {
    /// One line saying what happened.
    pub fn describe(&self) -> String {
        match &self.payload {
            Payload::TurnRequested(r) => {
                format!("{} asks via {}: {:?}", r.user_id, r.channel, r.text)
            }
            Payload::ContextRetrieved(c) => {
                let docs: Vec<String> = c
                    .documents
                    .iter()
                    .map(|d| format!("{} ({:.2})", d.id, d.score))
                    .collect();
                match &c.error {
                    Some(e) => format!("retrieval failed, continuing without context: {e}"),
                    None if docs.is_empty() => "retrieved nothing".to_string(),
                    None => format!("retrieved {}", docs.join(", ")),
                }
            }
            Payload::PlanProposed(p) => {
                let what = if p.is_answer() {
                    let text = p.content.as_deref().unwrap_or_default();
                    let short: String = text.chars().take(80).collect();
                    format!(
                        "answers {short:?}{}",
                        if text.chars().count() > 80 { "…" } else { "" }
                    )
                } else {
                    let calls: Vec<&str> = p.steps.iter().map(|s| s.tool.as_str()).collect();
                    format!("calls [{}]", calls.join(", "))
                };
                format!(
                    "step {}: {} v{} {what} (confidence {:.2}, {}+{} tokens, template {})",
                    p.step,
                    p.model,
                    p.model_version,
                    p.confidence,
                    p.input_tokens,
                    p.output_tokens,
                    p.prompt_template_hash
                )
            }
            Payload::SessionLoaded(s) => {
                let dropped = if s.dropped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} older turn(s) left out for the token budget: {}",
                        s.dropped.len(),
                        s.dropped.join(", ")
                    )
                };
                format!(
                    "session {}: {} earlier turn(s), ~{} tokens{dropped}",
                    s.session_id,
                    s.turns.len(),
                    s.tokens
                )
            }
            Payload::CallRefused(r) => format!(
                "call {} step {} refused by [{}], reported to the model: {}",
                r.tool,
                r.step,
                r.rules.join(", "),
                r.reason
            ),
            Payload::InputRejected(r) => {
                format!(
                    "input {} rejected in phase {}: {}",
                    r.input, r.phase, r.reason
                )
            }
            Payload::ModelCallFailed(f) => format!(
                "model step {} failed{}: {}",
                f.step,
                if f.retryable { " (retryable)" } else { "" },
                f.error
            ),
            Payload::PolicyEvaluated(p) => {
                let at = match (&p.tool, p.step) {
                    (Some(t), Some(s)) => format!("{} step {s} {t}", p.checkpoint.as_str()),
                    _ => p.checkpoint.as_str().to_string(),
                };
                let decision = match p.decision {
                    PolicyDecision::Deny => "DENY",
                    d => d.as_str(),
                };
                format!(
                    "{at}: {decision} by [{}] risk {:.2} ({}) [{}]",
                    p.policy_ids.join(", "),
                    p.risk_score,
                    p.reason,
                    p.policy_version
                )
            }
            Payload::ToolCallStarted(s) => format!(
                "call {} attempt {} {} (key {}{})",
                s.tool,
                s.attempt,
                s.args_json,
                s.idempotency_key,
                if s.idempotent { "" } else { ", not idempotent" }
            ),
            Payload::ToolCallCompleted(c) => format!(
                "call {} attempt {} ok in {} ms: {}",
                c.call_id,
                c.attempt,
                c.latency_ms,
                summarize(&c.result_json)
            ),
            Payload::ToolCallFailed(f) => format!(
                "call {} attempt {} {:?}{}: {}",
                f.call_id,
                f.attempt,
                f.kind,
                if f.retryable { " (retryable)" } else { "" },
                f.error
            ),
            Payload::EscalationRaised(e) => format!(
                "escalated to {:?}{}: {}",
                e.rung,
                e.deadline_ms
                    .map(|d| format!(" (deadline {})", crate::clock::rfc3339(d)))
                    .unwrap_or_default(),
                e.reason
            ),
            Payload::ResponseSynthesized(r) => {
                format!("reply {:?} citing [{}]", r.text, r.citations.join(", "))
            }
            Payload::TurnCompleted(c) => format!(
                "{} after {} ms: {}",
                c.outcome.as_str().to_uppercase(),
                c.latency_ms,
                c.reason
            ),
            Payload::RouteSelected(r) => format!(
                "routed to profile {} (model {}) by rule {}",
                r.profile, r.model, r.rule
            ),
            Payload::BudgetReserved(b) => format!(
                "reserved {} for {:?}{}: {} tokens, {} µ¤ cost, {} tool call(s), {} retr(ies); user has {} µ¤ left, tenant {}",
                b.reservation_id,
                b.purpose,
                b.call_id
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
                b.tokens,
                b.cost_micros,
                b.tool_calls,
                b.retries,
                b.user_cost_left_micros,
                b.tenant_cost_left_micros
            ),
            Payload::BudgetCommitted(b) => format!(
                "committed {}: {} tokens, {} µ¤",
                b.reservation_id, b.tokens, b.cost_micros
            ),
            Payload::BudgetReleased(b) => format!("released {}: {}", b.reservation_id, b.reason),
            Payload::ApprovalRequested(a) => format!(
                "awaiting approval {} for {} {} (risk {:.2}, deadline {}): {}",
                a.approval_id,
                a.tool,
                a.args_json,
                a.risk_score,
                crate::clock::rfc3339(a.deadline_ms),
                a.reason
            ),
            Payload::ApprovalGranted(a) => format!(
                "approval {} GRANTED by {}{}",
                a.approval_id,
                a.operator,
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Payload::ApprovalDenied(a) => format!(
                "approval {} DENIED by {}{}",
                a.approval_id,
                a.operator,
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Payload::ApprovalExpired(a) => {
                format!(
                    "approval {} EXPIRED at {}",
                    a.approval_id,
                    crate::clock::rfc3339(a.deadline_ms)
                )
            }
            Payload::GuardrailTripped(g) => format!(
                "guard {} at {}{}: {} by {}{}: {}",
                g.guard,
                g.checkpoint.as_str(),
                g.tool
                    .as_deref()
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default(),
                g.verdict.as_str().to_uppercase(),
                g.rule,
                if g.hallucination {
                    " [hallucination with action]"
                } else {
                    ""
                },
                g.detail
            ),
            Payload::HandoffAccepted(h) => format!("handoff accepted by {}", h.operator),
            Payload::HandoffResolved(h) => {
                format!("handoff RESOLVED by {}: {}", h.operator, h.resolution)
            }
            Payload::ReversalRequested(r) => format!(
                "REVERSAL requested by {}{}: compensate [{}], not reversible [{}]",
                r.operator,
                r.reason
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default(),
                r.compensable.join(", "),
                r.not_reversible.join(", ")
            ),
            Payload::CompensationStarted(c) => format!(
                "compensate {} with {} attempt {} {} (key {})",
                c.call_id, c.tool, c.attempt, c.args_json, c.idempotency_key
            ),
            Payload::CompensationCompleted(c) => format!(
                "compensation of {} attempt {} ok in {} ms: {}",
                c.call_id,
                c.attempt,
                c.latency_ms,
                summarize(&c.result_json)
            ),
            Payload::CompensationFailed(c) => format!(
                "compensation of {} attempt {} FAILED{}: {}",
                c.call_id,
                c.attempt,
                if c.retryable { " (will retry)" } else { "" },
                c.error
            ),
            Payload::TurnReversed(r) => format!(
                "turn REVERSED: compensated [{}], failed [{}], not reversible [{}]",
                r.compensated.join(", "),
                r.failed.join(", "),
                r.not_reversible.join(", ")
            ),
            Payload::OutcomeLabeled(l) => format!(
                "labeled {} by {}{}",
                l.label,
                l.operator,
                l.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// The event as flat JSON: envelope fields, `event` (the payload kind), then the payload's
    /// fields. A payload field never replaces an envelope field.
    pub fn to_json(&self) -> Value {
        Value::Object(self.json_fields())
    }

    /// `to_json`'s fields.
    pub(super) fn json_fields(&self) -> Map<String, Value> {
        let mut obj = Map::from_iter([
            ("event_id".to_string(), json!(self.event_id.to_string())),
            ("turn_id".to_string(), json!(self.turn_id.to_string())),
            ("tenant".to_string(), json!(self.tenant)),
            ("seq".to_string(), json!(self.seq)),
            ("at_ms".to_string(), json!(self.at_ms)),
            ("event".to_string(), json!(self.kind())),
        ]);
        if let Ok(Value::Object(payload)) = serde_json::to_value(&self.payload) {
            for (_, fields) in payload {
                if let Value::Object(fields) = fields {
                    for (k, v) in fields {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
        obj
    }
}

pub(super) fn summarize(result_json: &str) -> String {
    serde_json::from_str::<Value>(result_json)
        .ok()
        .and_then(|v| v.get("summary").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| result_json.chars().take(80).collect())
}

/// A turn's events as a timeline of its loop: what happened before the first model step, then
/// each model step with what followed from it (reviews, calls, results, guard trips,
/// approvals), then the reply. Each line: time since the request, seq, log offset, kind, what.
pub fn timeline(events: &[(crate::ids::Offset, Event)]) -> String {
    let Some((_, first)) = events.first() else {
        return String::new();
    };
    let t0 = first.at_ms;
    let mut out = String::new();
    let mut current: Option<(i32, i32)> = None;
    let mut indent = "";
    for (offset, e) in events {
        match &e.payload {
            Payload::PlanProposed(p) => {
                let header = match current {
                    Some((step, _)) if step == p.step => format!("step {} (asked again)", p.step),
                    _ if p.is_answer() => format!("step {}: the answer", p.step),
                    _ => format!(
                        "step {}: {} tool call{}",
                        p.step,
                        p.steps.len(),
                        if p.steps.len() == 1 { "" } else { "s" }
                    ),
                };
                out.push_str(&format!("  ── {header} ──\n"));
                current = Some((p.step, p.plan_rev));
                indent = "  ";
            }
            Payload::TurnCompleted(_)
            | Payload::ReversalRequested(_)
            | Payload::OutcomeLabeled(_)
                if current.is_some() =>
            {
                out.push_str("  ── end ──\n");
                current = None;
                indent = "";
            }
            _ => {}
        }
        out.push_str(&format!(
            "{:>+7} ms  #{:<3} @{:<7} {indent}{:<20} {}\n",
            e.at_ms - t0,
            e.seq,
            offset.0,
            e.kind(),
            e.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::event::fixtures;
    use crate::ids::TurnId;

    #[test]
    fn every_event_renders_as_text_and_flat_json() {
        for e in fixtures::every_event(TurnId::from_parts(1, [1; 10])) {
            assert!(!e.describe().is_empty());
            let j = e.to_json();
            assert_eq!(j["event"], e.kind());
            assert_eq!(j["seq"], e.seq);
            assert!(
                j.as_object().is_some_and(|o| o.len() > 6),
                "{} has payload fields",
                e.kind()
            );
        }
    }
}
