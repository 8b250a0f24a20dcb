//! The guard checkpoints inside `decide`: each trip is recorded as GuardrailTripped, then acted
//! on — modify goes on with the redacted content, deny ends the turn, escalate climbs the ladder.

use crate::event::{
    EscalationRung, GuardCheckpoint, GuardVerdict, GuardrailTripped, Outcome, Payload,
    RetrievedDocument,
};
use crate::exec::catalog::Impact;
use crate::guard::{OnRefusal, Trip, checks, grounding};

use super::decide::Builder;

/// Where a trip happened.
pub(super) struct At {
    pub checkpoint: GuardCheckpoint,
    pub step: Option<usize>,
    pub tool: Option<String>,
    pub call_id: Option<String>,
}

impl At {
    pub fn new(checkpoint: GuardCheckpoint) -> Self {
        At {
            checkpoint,
            step: None,
            tool: None,
            call_id: None,
        }
    }
}

/// Where a tool's result addresses the model, field by field: `"{tool} output addresses the
/// model at /messages/2/body: \"…\""`, or `None`.
fn instructions_in(tool: &str, result_json: &str) -> Option<String> {
    use crate::guard::provenance::{fields, instruction::instruction};
    let value = serde_json::from_str::<serde_json::Value>(result_json)
        .unwrap_or_else(|_| serde_json::Value::String(result_json.to_string()));
    let mut found: Vec<(String, String)> = Vec::new();
    let mut path = Vec::new();
    leaves(&value, &mut path, &mut |p, text| {
        if found.len() < 4
            && let Some(passage) = instruction(text)
        {
            found.push((fields::pointer(p), passage));
        }
    });
    let (_, passage) = found.first()?;
    let at: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    Some(format!(
        "{tool} output addresses the model at {}: \"{passage}\"",
        at.join(", ")
    ))
}

fn leaves(v: &serde_json::Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &str)) {
    match v {
        serde_json::Value::String(s) => f(path, s),
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(i.to_string());
                leaves(v, path, f);
                path.pop();
            }
        }
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                path.push(k.clone());
                leaves(v, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The kinds of personal data in `text` after the edge and the guards handled it: the values
/// redacted here (`found`) and those the vault tokenized on the way in.
pub(super) fn pii_kinds(mut found: Vec<String>, text: &str) -> Vec<String> {
    found.extend(crate::vault::token::find(text).into_iter().map(|t| t.kind));
    found
}

impl Builder<'_, '_> {
    pub(super) fn record_trip(&mut self, at: &At, t: &Trip) {
        self.emit(Payload::GuardrailTripped(GuardrailTripped {
            checkpoint: at.checkpoint,
            guard: t.guard.to_string(),
            rule: t.rule.clone(),
            verdict: t.verdict,
            step: at.step.map(|s| s as i32),
            tool: at.tool.clone(),
            call_id: at.call_id.clone(),
            detail: t.detail.clone(),
            hallucination: t.hallucination,
        }));
    }

    /// Records a trip and acts on it; returns whether the turn may go on as it was.
    pub(super) fn trip(&mut self, at: At, t: Trip) -> bool {
        self.record_trip(&at, &t);
        match t.verdict {
            GuardVerdict::Allow | GuardVerdict::Modify => true,
            GuardVerdict::Deny => {
                // A dependency that is down fails the turn; a refused action denies it.
                let outcome = if matches!(t.guard, "breaker" | "retries") {
                    Outcome::Failed
                } else {
                    Outcome::Denied
                };
                self.complete(outcome, format!("{} ({}): {}", t.rule, t.guard, t.detail));
                false
            }
            GuardVerdict::Escalate => {
                self.climb(format!("{}: {}", t.rule, t.detail), at.call_id, at.step);
                false
            }
        }
    }

    /// A pre-tool guard's refusal of plan step `index`'s call: reported to the model as the
    /// call's error when the guard's `on_refusal` says `feedback` (and the model is still
    /// getting somewhere), else acted on as any trip. The call does not go on either way.
    fn refuse_call(&mut self, index: usize, at: At, t: Trip) -> bool {
        let step = self
            .state
            .plan
            .as_ref()
            .and_then(|p| p.steps.get(index))
            .cloned();
        let feedback = matches!(t.verdict, GuardVerdict::Deny | GuardVerdict::Escalate)
            && self.ctx.guards.config.on_refusal.for_rule(&t.rule) == Some(OnRefusal::Feedback);
        // A value found nowhere in a call that matters (a payment, a message): a person may
        // know where it comes from (a sum the model worked out) — asked at once, without
        // re-planning; refused, the model is told.
        let confirm = t.hallucination
            && self
                .ctx
                .guards
                .config
                .ladder
                .contains(&EscalationRung::UserConfirmation)
            && step
                .as_ref()
                .and_then(|s| self.ctx.catalog.get(&s.tool))
                .is_some_and(|s| s.impact >= Impact::Medium);
        match (step, at.call_id.clone()) {
            (Some(step), Some(call_id))
                if feedback
                    && confirm
                    && self.can_feed_back(&call_id, &step.tool, &step.args_json) =>
            {
                self.record_trip(&at, &t);
                let reason = format!("{}: {}", t.rule, t.detail);
                self.confirm(&reason, Some(call_id), Some(index));
                false
            }
            (Some(step), Some(call_id))
                if feedback && self.can_feed_back(&call_id, &step.tool, &step.args_json) =>
            {
                self.record_trip(&at, &t);
                let why = super::refusal::Why::Guard(&t.detail);
                self.refuse(index, call_id, step.tool, vec![t.rule.clone()], why);
                false
            }
            _ => self.trip(at, t),
        }
    }

    /// Post-retrieval: redacts snippets and drops stale documents (modify); returns the
    /// documents the turn may use and a contradiction, if any.
    pub(super) fn guard_context(
        &mut self,
        docs: Vec<RetrievedDocument>,
    ) -> (Vec<RetrievedDocument>, Option<Trip>) {
        let g = &self.ctx.guards.config;
        let stale = checks::stale(&docs, self.ctx.now_ms, g.max_doc_age_ms);
        let mut kept = Vec::with_capacity(docs.len());
        let mut found = 0;
        for mut d in docs {
            if stale.contains(&d.id) {
                continue;
            }
            let (snippet, f) = self.ctx.guards.redactor.redact(&d.snippet);
            found += pii_kinds(f, &snippet).len();
            d.snippet = snippet;
            kept.push(d);
        }
        let contradiction = checks::contradictions(&kept);
        let instructed: Vec<&str> = if self.ctx.guards.config.provenance.untrusted_instruction
            && !self.ctx.guards.config.provenance.trust_documents
        {
            kept.iter()
                .filter(|d| crate::guard::provenance::rules::instruction(&d.snippet).is_some())
                .map(|d| d.id.as_str())
                .collect()
        } else {
            Vec::new()
        };
        let mut trips = Vec::new();
        if !stale.is_empty() {
            trips.push(Trip::new(
                "context",
                "context.stale",
                GuardVerdict::Modify,
                format!(
                    "dropped documents older than {} ms: {}",
                    g.max_doc_age_ms,
                    stale.join(", ")
                ),
            ));
        }
        if found > 0 {
            trips.push(Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!("{found} redaction(s) in retrieved snippets"),
            ));
        }
        if !instructed.is_empty() {
            trips.push(Trip::new(
                "provenance",
                crate::guard::provenance::rules::UNTRUSTED_INSTRUCTION,
                GuardVerdict::Allow,
                format!(
                    "retrieved documents address the model: {}",
                    instructed.join(", ")
                ),
            ));
        }
        self.pending_trips = trips;
        (kept, contradiction)
    }

    /// Pre-tool and mid-plan guards for plan step `index`; `None` when the call may go on to
    /// the control plane's review. Breaker and retry checks also run before every retry.
    pub(super) fn guard_call(&mut self, index: usize, call_id: &str, attempt: i32) -> bool {
        let Some(step) = self
            .state
            .plan
            .as_ref()
            .and_then(|p| p.steps.get(index))
            .cloned()
        else {
            return true;
        };
        let at = || At {
            checkpoint: GuardCheckpoint::PreTool,
            step: Some(index),
            tool: Some(step.tool.clone()),
            call_id: Some(call_id.to_string()),
        };
        let mid = || At {
            checkpoint: GuardCheckpoint::MidPlan,
            ..at()
        };
        let g = &self.ctx.guards;
        let Some(spec) = self.ctx.catalog.get(&step.tool) else {
            let t = Trip::new(
                "tool",
                "tool.exists",
                GuardVerdict::Deny,
                format!("{} is not in the catalog", step.tool),
            );
            return self.refuse_call(index, at(), t);
        };
        if let Some(t) = self.ctx.breakers.check(&step.tool, self.ctx.now_ms) {
            return self.trip(mid(), t);
        }
        let attempts: i32 = self
            .state
            .calls
            .iter()
            .filter(|c| c.tool == step.tool)
            .map(|c| c.attempt)
            .sum::<i32>()
            + i32::from(attempt > 1)
            + i32::from(attempt == 1);
        if let Some(t) = checks::retries(&step.tool, attempts, g.config.retries_per_tool) {
            return self.trip(mid(), t);
        }
        if attempt > 1 {
            return true;
        }
        // Across the whole loop: the model asking again for what it already got is a loop.
        let earlier = self
            .state
            .all_calls()
            .map(|c| (c.tool.as_str(), c.args_json.as_str()));
        if let Some(t) =
            checks::repeated(earlier, &step.tool, &step.args_json, g.config.repeat_limit)
        {
            return self.trip(mid(), t);
        }
        if let Some(t) = g.schemas.check_args(&step.tool, &step.args_json) {
            return self.refuse_call(index, at(), t);
        }
        let held = crate::control::list_attribute(&self.state.attributes, "scopes");
        if !spec.auth_scopes.is_empty()
            && let Some(t) = checks::scopes(spec, &held)
        {
            return self.refuse_call(index, at(), t);
        }
        if self.state.constrained() && !spec.deterministic {
            let t = Trip::new(
                "constrained",
                "constrained.deterministic_only",
                GuardVerdict::Escalate,
                format!(
                    "a constrained retry runs deterministic tools only; {} is not",
                    step.tool
                ),
            );
            return self.trip(at(), t);
        }
        if g.config.grounding {
            // What the turn knows: the request, the documents, the session's earlier turns, and
            // every result so far.
            let session = self.state.session.as_ref().map(|s| s.turns.as_slice());
            let texts: Vec<&str> =
                std::iter::once(self.state.text.as_str())
                    .chain(self.state.documents.iter().map(|d| d.snippet.as_str()))
                    .chain(session.into_iter().flatten().flat_map(|t| {
                        std::iter::once(t.request.as_str()).chain(t.reply.as_deref())
                    }))
                    .collect();
            let results: Vec<&str> = self
                .state
                .all_calls()
                .filter_map(|c| match &c.status {
                    super::state::CallStatus::Completed { result_json } => {
                        Some(result_json.as_str())
                    }
                    _ => None,
                })
                .chain(
                    session
                        .into_iter()
                        .flatten()
                        .flat_map(|t| t.calls.iter().map(|c| c.result_json.as_str())),
                )
                .collect();
            let sources = grounding::Sources { texts, results };
            if let Some(t) = grounding::check(spec, &step.args_json, &sources) {
                // The model is told where the value should have come from; with `end_turn`,
                // a person may vouch for it (the user-confirmation rung asks about this call).
                return self.refuse_call(index, at(), t);
            }
        }
        true
    }

    /// Post-tool: redacts the result (modify), then checks it against its schema and anomaly
    /// rules. Returns the result to record and a trip that stops the turn, if any.
    pub(super) fn guard_result(
        &mut self,
        index: usize,
        tool: &str,
        call_id: &str,
        result_json: String,
    ) -> (String, Option<(At, Trip)>) {
        let at = || At {
            checkpoint: GuardCheckpoint::PostTool,
            step: Some(index),
            tool: Some(tool.to_string()),
            call_id: Some(call_id.to_string()),
        };
        let (redacted, found) = self.ctx.guards.redactor.redact_json_text(&result_json);
        let found = pii_kinds(found, &redacted);
        if !found.is_empty() {
            let mut kinds = found.clone();
            kinds.sort();
            kinds.dedup();
            self.pending_trips.push(Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!(
                    "{} redaction(s) in the result: {}",
                    found.len(),
                    kinds.join(", ")
                ),
            ));
        }
        // Output talking to the model, in any field of any tool, trusted or not: recorded
        // (measured); provenance treats the field as untrusted and its values as the
        // attacker's, but the trip decides nothing alone.
        if self.ctx.guards.config.provenance.untrusted_instruction
            && let Some(detail) = instructions_in(tool, &redacted)
        {
            self.pending_trips.push(Trip::new(
                "provenance",
                crate::guard::provenance::rules::UNTRUSTED_INSTRUCTION,
                GuardVerdict::Allow,
                detail,
            ));
        }
        // Checked redacted: a check's message may quote the result, and it is recorded.
        let value =
            serde_json::from_str::<serde_json::Value>(&redacted).unwrap_or(serde_json::Value::Null);
        if let Some(t) = self.ctx.guards.schemas.check_result(tool, &value) {
            return (redacted, Some((at(), t)));
        }
        if let Some(spec) = self.ctx.catalog.get(tool)
            && let Some(t) = checks::anomalies(tool, &spec.result_checks, &redacted)
        {
            return (redacted, Some((at(), t)));
        }
        // The same call answered the same again and again: the model is going round in
        // circles. Keyed by the call, not only its result: writes to different people that each
        // return the same acknowledgement are normal.
        let args = self
            .state
            .calls
            .get(index)
            .filter(|c| c.call_id == call_id)
            .map(|c| c.args_json.clone())
            .unwrap_or_default();
        let seen = self
            .state
            .all_calls()
            .filter(|c| c.tool == tool && c.call_id != call_id)
            .filter(|c| super::stops::same_args(&c.args_json, &args))
            .filter(|c| {
                matches!(&c.status, super::state::CallStatus::Completed { result_json } if *result_json == redacted)
            })
            .count();
        let limit = self.ctx.guards.config.repeat_limit;
        if limit > 0 && seen + 1 >= limit {
            let t = Trip::new(
                "loop",
                "loop.same_result",
                GuardVerdict::Escalate,
                format!(
                    "{tool} with the same arguments returned the same result {} times in this turn",
                    seen + 1
                ),
            );
            let at = At {
                checkpoint: GuardCheckpoint::MidPlan,
                ..at()
            };
            return (redacted, Some((at, t)));
        }
        (redacted, None)
    }

    /// The loop's own limits before asking the model for `step`: at most `max_steps` steps, and
    /// model spend growing no faster than `step_cost_micros` per step.
    pub(super) fn loop_limits(&self, step: i32) -> Option<Trip> {
        let max = self.ctx.control.config().max_steps;
        if step as usize >= max {
            return Some(Trip::new(
                "loop",
                "loop.max_steps",
                GuardVerdict::Escalate,
                format!("the loop has taken {step} model steps, limit {max}"),
            ));
        }
        let allowance = self.ctx.guards.config.step_cost_micros;
        let spent = self.model_spend();
        if allowance > 0 && step > 0 && spent > allowance * i64::from(step) {
            return Some(Trip::new(
                "loop",
                "loop.cost_growth",
                GuardVerdict::Escalate,
                format!(
                    "{spent} µ¤ of model spend after {step} steps is more than {allowance} per step"
                ),
            ));
        }
        None
    }

    /// Records the trips a guard collected before the event they qualify was emitted.
    pub(super) fn flush_trips(&mut self, at: At) {
        for t in std::mem::take(&mut self.pending_trips) {
            self.record_trip(&at, &t);
        }
    }
}
