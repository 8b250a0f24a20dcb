//! Refusals inside `decide`: whatever refused a call — a Cedar policy, a guard, a provenance
//! rule, a person — the call is recorded as `CallRefused` and the model is told, as that call's
//! error, that it did not run and why, so it can go on with the rest of the user's task or ask
//! the user. Each rule can say `end_turn` instead; and once the model is not getting anywhere
//! (it asks again for a call already refused, or refusals pile up past `max_refusals`) the
//! older handling takes over: a denial ends the turn, an escalation climbs the ladder.

use crate::event::{CallRefused, Payload};
use crate::guard::OnRefusal;

use super::decide::Builder;

/// Why a call was refused, as the model is told it.
pub(super) enum Why<'a> {
    /// A provenance rule: values the user did not give.
    Provenance(&'a str),
    /// A policy (Cedar, risk, the control plane's own checks).
    Policy(&'a str),
    /// A pre-tool guard (grounding, schema, scopes, an unknown tool).
    Guard(&'a str),
    /// A person refused to confirm it, or nobody did in time.
    Person(&'a str),
}

impl Why<'_> {
    fn tell(&self) -> String {
        let next = "Do not ask for it again; go on with the rest of the user's request, or tell \
                    the user what could not be done.";
        match self {
            Why::Provenance(d) => format!(
                "refused, not run: {d}. Values for this call must come from the user or a \
                 trusted source; do not retry it with values from tool output — continue with \
                 the user's request or ask the user."
            ),
            Why::Policy(d) => format!("refused by policy, not run: {d}. {next}"),
            Why::Guard(d) => format!(
                "refused, not run: {d}. Use only values from the user's request or from tool \
                 results, or ask the user for what is missing."
            ),
            Why::Person(d) => format!("not run: {d}. {next}"),
        }
    }
}

impl Builder<'_, '_> {
    /// Whether a refusal by these rules goes back to the model: every rule that has a say
    /// (provenance rules, guards, Cedar policies through the control plane) says `feedback`.
    pub(super) fn rules_feedback(&self, rule_ids: &[String]) -> bool {
        let g = &self.ctx.guards.config;
        let each = rule_ids.iter().all(|id| {
            g.provenance
                .on_refusal
                .for_rule(id)
                .or_else(|| g.on_refusal.for_rule(id))
                .is_none_or(|o| o == OnRefusal::Feedback)
        });
        each && self.ctx.control.on_refusal(rule_ids) == OnRefusal::Feedback
    }

    /// Whether the model can still be told about a refusal of this call: it has not asked for
    /// this very call after a refusal already, and the turn's refusals are within the limit.
    pub(super) fn can_feed_back(&self, call_id: &str, tool: &str, args_json: &str) -> bool {
        (self.state.refusals_fed_back() as u32) < self.ctx.guards.config.max_refusals
            && !self.state.was_stopped(call_id, tool, args_json)
    }

    /// Records plan step `index`'s call as refused — never run — and goes on: the model sees
    /// the refusal as the call's error in its next step.
    pub(super) fn refuse(
        &mut self,
        index: usize,
        call_id: String,
        tool: String,
        rule_ids: Vec<String>,
        why: Why<'_>,
    ) {
        let rules: Vec<String> = rule_ids
            .into_iter()
            .filter(|r| !r.starts_with("builtin.permit"))
            .collect();
        self.emit(Payload::CallRefused(CallRefused {
            call_id,
            step: index as i32,
            tool,
            reason: why.tell(),
            rules,
        }));
        self.next_call();
    }
}
