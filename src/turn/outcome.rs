//! What a finished turn reports (`TurnOutcome`, the contract of `ballast.outcomes`), from its
//! state alone: the workers publish it and the outcomes projection folds it from the log.

use crate::event::PolicyDecision;

use super::state::TurnState;

impl TurnState {
    /// The outcome record of a finished turn; `None` while it runs.
    pub fn outcome_record(&self, reason: &str) -> Option<crate::event::TurnOutcome> {
        let outcome = self.outcome?;
        let completed_at_ms = self.completed_at_ms.unwrap_or(self.requested_at_ms);
        Some(crate::event::TurnOutcome {
            turn_id: self.turn_id,
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            outcome,
            reason: self.reversal_reason().unwrap_or_else(|| reason.to_string()),
            requested_at_ms: self.requested_at_ms,
            completed_at_ms,
            latency_ms: (completed_at_ms - self.requested_at_ms).max(0),
            tool_calls: self.all_calls().count() as i32,
            tool_failures: self.failures as i32,
            escalations: self.escalations.len() as i32,
            model: self
                .plan
                .as_ref()
                .map(|p| format!("{}/{}", p.model, p.model_version)),
            events: self.next_seq,
            input_tokens: self.tokens.0,
            output_tokens: self.tokens.1,
            cost_micros: self.budget.cost_micros,
            escalation_rung: self
                .escalations
                .last()
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            policy_version: self.policy_version.clone(),
            hallucinations: self.hallucinations as i32,
            guard_trips: self.guard_trips as i32,
            labels: self.labels.clone(),
            reply: self
                .response
                .clone()
                .filter(|_| self.response_decision == Some(PolicyDecision::Allow)),
            steps: self.steps_taken(),
            session_id: self.session_id.clone(),
            refused_calls: self.refused_calls() as i32,
            held_calls: self.held_calls as i32,
            denied_calls: self.denied_calls() as i32,
        })
    }
}
