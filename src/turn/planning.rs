//! Phases `Planning` and `Answering`: the turn asked the model for a step of its loop and
//! waits for the answer; an answer without tool calls is the reply.

use crate::event::{
    EscalationRung, GuardCheckpoint, GuardVerdict, ModelCallFailed, Payload, PlanProposed,
    ResponseSynthesized,
};
use crate::guard::Trip;

use super::decide::Builder;
use super::effect::Effect;
use super::guarding::At;
use super::input::{ExecFailure, Planned};

impl Builder<'_, '_> {
    /// `(Planning, Planned)`: the model's answer to the step asked for, or its failure (after
    /// the planner's own retries).
    pub(super) fn on_planned(&mut self, result: Result<Planned, ExecFailure>) {
        match result {
            Ok(p) => self.proposed(p),
            Err(f) => self.model_failed(f),
        }
    }

    fn model_failed(&mut self, f: ExecFailure) {
        self.release_model("model call failed");
        let step = self.state.next_model_step();
        let plan_rev = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
        let (error, _) = self.ctx.guards.redactor.redact(&f.message);
        self.emit(Payload::ModelCallFailed(ModelCallFailed {
            step,
            plan_rev,
            error: error.clone(),
            retryable: f.retryable,
            latency_ms: f.latency_ms,
        }));
        // The planner already retried what it could: the ladder decides what is next
        // (a re-ask with constraints, the specialist, a person).
        self.climb(format!("model step {step} failed: {error}"), None, None);
    }

    /// Asks the model for the loop's next step (or a re-ask of this one), sending it the
    /// conversation so far — unless the loop is at its step limit or spending faster than
    /// allowed, which the mid-plan guard stops.
    pub(super) fn plan(&mut self) {
        if self.ctx.draining {
            return;
        }
        let step = self.state.next_model_step();
        if let Some(t) = self.loop_limits(step) {
            // Asking the model again cannot help a loop at its limits: a person decides.
            let at = At::new(GuardCheckpoint::MidPlan);
            self.record_trip(&at, &t);
            self.climb_from(format!("{}: {}", t.rule, t.detail), None, None, false);
            return;
        }
        if !self.reserve_model() {
            return;
        }
        let escalated = |rung| self.state.escalations.contains(&rung);
        let constrained = self.state.constrained();
        let profile = if escalated(EscalationRung::Specialist) {
            self.ctx.guards.config.specialist_profile.clone()
        } else {
            self.state
                .route
                .as_ref()
                .map(|r| r.profile.clone())
                .unwrap_or_default()
        };
        // A constrained retry sees fewer documents (the best ranked) and deterministic tools only.
        let keep = if constrained {
            self.ctx.guards.config.constrained_documents
        } else {
            usize::MAX
        };
        let attempt = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
        let conversation = super::conversation::conversation(self.state, keep);
        self.effect(Effect::Plan {
            turn_id: self.state.turn_id,
            profile,
            constrained,
            attempt,
            step,
            tenant: self.state.tenant.clone(),
            user_id: self.state.user_id.clone(),
            conversation: Box::new(conversation),
        });
    }

    /// Records the model's answer to a step: its tool calls go to review, or — with none — its
    /// text is the reply.
    fn proposed(&mut self, p: crate::exec::types::Planned) {
        let plan_rev = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
        let step = self.state.next_model_step();
        let mut found = 0;
        let steps = p
            .steps
            .into_iter()
            .map(|mut step| {
                let (args, f) = self.ctx.guards.redactor.redact_json_text(&step.args_json);
                found += super::guarding::pii_kinds(f, &args).len();
                step.args_json = args;
                step
            })
            .collect();
        if found > 0 {
            self.pending_trips.push(Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!("{found} redaction(s) in the step's arguments"),
            ));
        }
        let (content, in_reply) = match p.content {
            Some(c) => {
                let (text, f) = self.ctx.guards.redactor.redact(&c);
                let n = super::guarding::pii_kinds(f, &text).len();
                (Some(text), n)
            }
            None => (None, 0),
        };
        self.emit(Payload::PlanProposed(PlanProposed {
            plan_rev,
            model: p.model,
            model_version: p.model_version,
            prompt_template_hash: p.prompt_template_hash,
            steps,
            confidence: p.confidence,
            input_tokens: p.input_tokens,
            output_tokens: p.output_tokens,
            latency_ms: p.latency_ms,
            step,
            content,
            finish_reason: p.finish_reason,
            system_fingerprint: p.system_fingerprint,
            messages_digest: p.messages_digest,
        }));
        self.flush_trips(At::new(GuardCheckpoint::MidPlan));
        self.commit_model();
        if self.state.plan.as_ref().is_some_and(|p| p.is_answer()) {
            self.answer(in_reply);
        } else {
            self.review_plan();
        }
    }

    /// The model answered without tool calls: its text (citation marks taken out) is the
    /// reply, checked at the pre-response checkpoint before it is sent.
    pub(super) fn answer(&mut self, redactions: usize) {
        let content = self
            .state
            .plan
            .as_ref()
            .and_then(|p| p.content.clone())
            .unwrap_or_default();
        if content.trim().is_empty() {
            let t = Trip::new(
                "model",
                "model.empty_answer",
                GuardVerdict::Escalate,
                "the model asked for no tool and wrote no answer".to_string(),
            );
            self.trip(At::new(GuardCheckpoint::PreResponse), t);
            return;
        }
        let (text, citations) = super::conversation::split_citations(&content);
        let stop =
            crate::guard::checks::citations(&citations, &self.state.documents).or_else(|| {
                crate::guard::checks::lint(&text, &self.ctx.guards.config.forbidden_phrases)
            });
        self.emit(Payload::ResponseSynthesized(ResponseSynthesized {
            text,
            citations,
            redactions: redactions as i32,
            latency_ms: 0,
        }));
        if redactions > 0 {
            let t = Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!("{redactions} redaction(s) in the reply"),
            );
            self.record_trip(&At::new(GuardCheckpoint::PreResponse), &t);
        }
        match stop {
            Some(t) => {
                self.trip(At::new(GuardCheckpoint::PreResponse), t);
            }
            None => self.review_response(),
        }
    }
}
