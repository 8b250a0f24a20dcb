//! OpenTelemetry GenAI attribute names for events, where the conventions have one
//! (`gen_ai.request.model`, `gen_ai.usage.input_tokens`, `gen_ai.tool.name`,
//! `gen_ai.tool.call.id`, `gen_ai.retrieval.documents`, `gen_ai.security.decision.type`), and
//! `ballast.*` for what they lack (template hash, risk score, checkpoint, rule ids, outcome).

use serde_json::{Map, Value, json};

use super::{Event, Payload};

impl Event {
    /// The event's attributes, for traces.
    pub fn otel_attributes(&self) -> Map<String, Value> {
        let mut a = Map::new();
        let mut set = |k: &str, v: Value| {
            a.insert(k.to_string(), v);
        };
        set("ballast.turn.id", json!(self.turn_id.to_string()));
        set("ballast.tenant", json!(self.tenant));
        set("ballast.event", json!(self.kind()));
        match &self.payload {
            Payload::TurnRequested(r) => {
                set("ballast.user.id", json!(r.user_id));
                set("ballast.channel", json!(r.channel));
                if let Some(s) = &r.session_id {
                    set("gen_ai.conversation.id", json!(s));
                }
            }
            Payload::SessionLoaded(s) => {
                set("gen_ai.conversation.id", json!(s.session_id));
                set("ballast.session.turns", json!(s.turns.len()));
                set("ballast.session.dropped", json!(s.dropped));
                set("ballast.session.tokens", json!(s.tokens));
            }
            Payload::CallRefused(r) => {
                set("gen_ai.operation.name", json!("execute_tool"));
                set("gen_ai.tool.name", json!(r.tool));
                set("error.type", json!("refused"));
                set("ballast.rules", json!(r.rules));
            }
            Payload::InputRejected(r) => {
                set("error.type", json!("input_rejected"));
                set("ballast.input", json!(r.input));
                set("ballast.phase", json!(r.phase));
            }
            Payload::ModelCallFailed(f) => {
                set("gen_ai.operation.name", json!("chat"));
                set("error.type", json!("model_call_failed"));
                set("ballast.step", json!(f.step));
                set("ballast.latency_ms", json!(f.latency_ms));
            }
            Payload::RouteSelected(r) => {
                set("gen_ai.request.model", json!(r.model));
                set("ballast.planner.profile", json!(r.profile));
                set("ballast.routing.rule", json!(r.rule));
            }
            Payload::ContextRetrieved(c) => {
                let docs: Vec<Value> = c
                    .documents
                    .iter()
                    .map(|d| json!({"id": d.id, "score": d.score}))
                    .collect();
                set("gen_ai.retrieval.documents", Value::Array(docs));
                set("ballast.latency_ms", json!(c.latency_ms));
                if let Some(e) = &c.error {
                    set("error.type", json!("retrieval_failed"));
                    set("ballast.retrieval.error", json!(e));
                }
            }
            Payload::PlanProposed(p) => {
                // One model exchange: a GenAI `chat` operation.
                set("gen_ai.operation.name", json!("chat"));
                set("gen_ai.request.model", json!(p.model));
                set("gen_ai.response.model", json!(p.model_version));
                let reason = p.finish_reason.clone().unwrap_or_else(|| {
                    if p.is_answer() { "stop" } else { "tool_calls" }.to_string()
                });
                set("gen_ai.response.finish_reasons", json!([reason]));
                if let Some(f) = &p.system_fingerprint {
                    set("gen_ai.openai.response.system_fingerprint", json!(f));
                }
                if let Some(d) = &p.messages_digest {
                    set("ballast.messages.digest", json!(d));
                }
                set("ballast.step", json!(p.step));
                set("gen_ai.usage.input_tokens", json!(p.input_tokens));
                set("gen_ai.usage.output_tokens", json!(p.output_tokens));
                set(
                    "ballast.prompt.template_hash",
                    json!(p.prompt_template_hash),
                );
                set("ballast.plan.revision", json!(p.plan_rev));
                set("ballast.plan.confidence", json!(p.confidence));
                set(
                    "ballast.plan.steps",
                    json!(p.steps.iter().map(|s| s.tool.clone()).collect::<Vec<_>>()),
                );
                set("ballast.latency_ms", json!(p.latency_ms));
            }
            Payload::PolicyEvaluated(p) => {
                set("gen_ai.security.decision.type", json!(p.decision.as_str()));
                set("ballast.checkpoint", json!(p.checkpoint.as_str()));
                set("ballast.policy.ids", json!(p.policy_ids));
                set("ballast.policy.version", json!(p.policy_version));
                set("ballast.risk_score", json!(p.risk_score));
                if let Some(t) = &p.tool {
                    set("gen_ai.tool.name", json!(t));
                }
            }
            Payload::ToolCallStarted(s) => {
                set("gen_ai.operation.name", json!("execute_tool"));
                set("gen_ai.tool.name", json!(s.tool));
                set("gen_ai.tool.call.id", json!(s.call_id));
                set("gen_ai.tool.call.arguments", json!(s.args_json));
                set("ballast.tool.attempt", json!(s.attempt));
                set("ballast.tool.idempotency_key", json!(s.idempotency_key));
            }
            Payload::ToolCallCompleted(c) => {
                set("gen_ai.operation.name", json!("execute_tool"));
                set("gen_ai.tool.call.id", json!(c.call_id));
                set(
                    "gen_ai.tool.call.result",
                    json!(super::display::summarize(&c.result_json)),
                );
                set("ballast.latency_ms", json!(c.latency_ms));
            }
            Payload::ToolCallFailed(f) => {
                set("gen_ai.operation.name", json!("execute_tool"));
                set("gen_ai.tool.call.id", json!(f.call_id));
                set("error.type", json!(format!("{:?}", f.kind).to_lowercase()));
                set("ballast.tool.retryable", json!(f.retryable));
                set("ballast.latency_ms", json!(f.latency_ms));
            }
            Payload::GuardrailTripped(g) => {
                set("gen_ai.security.decision.type", json!(g.verdict.as_str()));
                set("ballast.checkpoint", json!(g.checkpoint.as_str()));
                set("ballast.guard", json!(g.guard));
                set("ballast.guard.rule", json!(g.rule));
                set("ballast.hallucination_with_action", json!(g.hallucination));
                if let Some(t) = &g.tool {
                    set("gen_ai.tool.name", json!(t));
                }
            }
            Payload::EscalationRaised(e) => {
                set(
                    "ballast.escalation.rung",
                    serde_json::to_value(e.rung).unwrap_or(Value::Null),
                );
            }
            Payload::ResponseSynthesized(r) => {
                set("ballast.response.citations", json!(r.citations));
                set("ballast.response.redactions", json!(r.redactions));
                set("ballast.latency_ms", json!(r.latency_ms));
            }
            Payload::TurnCompleted(c) => {
                set("ballast.outcome", json!(c.outcome.as_str()));
                set("ballast.latency_ms", json!(c.latency_ms));
            }
            Payload::BudgetReserved(b) => {
                set("ballast.budget.tokens", json!(b.tokens));
                set("ballast.budget.cost_micros", json!(b.cost_micros));
            }
            Payload::BudgetCommitted(b) => {
                set("ballast.budget.tokens", json!(b.tokens));
                set("ballast.budget.cost_micros", json!(b.cost_micros));
            }
            Payload::ApprovalRequested(r) => {
                set("gen_ai.tool.name", json!(r.tool));
                set("ballast.risk_score", json!(r.risk_score));
            }
            Payload::ApprovalGranted(r) | Payload::ApprovalDenied(r) => {
                set("ballast.operator", json!(r.operator));
            }
            Payload::HandoffAccepted(h) => set("ballast.operator", json!(h.operator)),
            Payload::HandoffResolved(h) => set("ballast.operator", json!(h.operator)),
            Payload::ReversalRequested(r) => set("ballast.operator", json!(r.operator)),
            Payload::CompensationStarted(c) => {
                set("gen_ai.tool.name", json!(c.tool));
                set("gen_ai.tool.call.id", json!(c.call_id));
                set("ballast.compensation.attempt", json!(c.attempt));
            }
            Payload::CompensationCompleted(c) => {
                set("gen_ai.tool.call.id", json!(c.call_id));
                set("ballast.latency_ms", json!(c.latency_ms));
            }
            Payload::CompensationFailed(c) => {
                set("gen_ai.tool.call.id", json!(c.call_id));
                set("error.type", json!(c.error));
            }
            Payload::TurnReversed(_) => set("ballast.outcome", json!("reversed")),
            Payload::OutcomeLabeled(l) => {
                set("ballast.outcome.label", json!(l.label));
                set("ballast.operator", json!(l.operator));
            }
            Payload::BudgetReleased(_) | Payload::ApprovalExpired(_) => {}
        }
        a
    }
}

impl Event {
    /// The event as a trace entry: flat JSON (`to_json`), its log position, and its
    /// OpenTelemetry attributes under `otel`.
    pub fn trace_entry(&self, partition: u32, offset: u64) -> Value {
        let mut j = self.json_fields();
        j.insert("ballast.log.partition".into(), partition.into());
        j.insert("ballast.log.offset".into(), offset.into());
        j.insert("description".into(), self.describe().into());
        let mut attributes = self.otel_attributes();
        attributes.insert("ballast.log.partition".into(), partition.into());
        attributes.insert("ballast.log.offset".into(), offset.into());
        // Not "attributes": TurnRequested has a payload field of that name.
        j.insert("otel".into(), Value::Object(attributes));
        Value::Object(j)
    }
}

#[cfg(test)]
mod tests {
    use crate::event::fixtures;
    use crate::ids::TurnId;

    #[test]
    fn every_event_has_attributes_with_genai_names_where_they_exist() {
        let events = fixtures::every_event(TurnId::from_parts(1, [2; 10]));
        let all: Vec<_> = events.iter().map(|e| e.otel_attributes()).collect();
        for key in [
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.tool.name",
            "gen_ai.tool.call.id",
            "gen_ai.retrieval.documents",
            "gen_ai.security.decision.type",
            "ballast.risk_score",
            "ballast.prompt.template_hash",
            "ballast.outcome",
        ] {
            assert!(
                all.iter().any(|a| a.contains_key(key)),
                "{key} is set somewhere"
            );
        }
        assert!(all.iter().all(|a| a.contains_key("ballast.turn.id")));
    }
}
