//! The calls of a turn that something stopped — a policy, a guard, a provenance rule, a person
//! — and that have not run since: what makes a turn that answered `completed_with_refusals`
//! rather than `succeeded`, and the counts its outcome record carries. Facts only: `apply`
//! records them; `decide` reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::TurnState;

/// A call stopped before it ran (or whose result a guard refused), until the same call — the
/// same tool with the same arguments — runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoppedCall {
    pub call_id: String,
    pub tool: String,
    pub args_json: String,
    /// A person refused to confirm it, or let the confirmation expire; else a rule stopped it.
    #[serde(default)]
    pub by_person: bool,
}

/// Two argument texts say the same (as JSON when both parse, else byte for byte).
pub(super) fn same_args(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl TurnState {
    /// The tool and arguments of call `call_id`: a call of this step, or plan step `step`.
    pub(super) fn call_of(&self, call_id: &str, step: Option<i32>) -> Option<(String, String)> {
        if let Some(c) = self.all_calls().find(|c| c.call_id == call_id) {
            return Some((c.tool.clone(), c.args_json.clone()));
        }
        let plan = self.plan.as_ref()?;
        let s = plan.steps.get(usize::try_from(step?).ok()?)?;
        Some((s.tool.clone(), s.args_json.clone()))
    }

    /// Records that a call was stopped (once per tool and arguments; a person's refusal wins).
    pub(super) fn stop(&mut self, call_id: &str, step: Option<i32>, by_person: bool) {
        let Some((tool, args_json)) = self.call_of(call_id, step) else {
            return;
        };
        if let Some(s) = self
            .stopped
            .iter_mut()
            .find(|s| s.tool == tool && same_args(&s.args_json, &args_json))
        {
            s.by_person |= by_person;
            return;
        }
        self.stopped.push(StoppedCall {
            call_id: call_id.to_string(),
            tool,
            args_json,
            by_person,
        });
    }

    /// Every call of the current plan stopped at once (a plan-checkpoint denial or escalation).
    pub(super) fn stop_plan(&mut self) {
        let Some(plan) = self.plan.as_ref() else {
            return;
        };
        let rev = plan.plan_rev.max(0) as u32;
        let ids: Vec<(String, i32)> = (0..plan.steps.len())
            .map(|i| (crate::ids::call_id(self.turn_id, rev, i as u32), i as i32))
            .collect();
        for (id, step) in ids {
            self.stop(&id, Some(step), false);
        }
    }

    /// The same call ran after all: it no longer counts as stopped.
    pub(super) fn ran(&mut self, tool: &str, args_json: &str) {
        self.stopped
            .retain(|s| !(s.tool == tool && same_args(&s.args_json, args_json)));
    }

    /// Calls a rule stopped that never ran.
    pub fn refused_calls(&self) -> usize {
        self.stopped.iter().filter(|s| !s.by_person).count()
    }

    /// Calls a person refused (or did not confirm in time) that never ran.
    pub fn denied_calls(&self) -> usize {
        self.stopped.iter().filter(|s| s.by_person).count()
    }

    /// Whether this exact call (tool and arguments) was stopped before in this turn, as
    /// another call than `call_id` (the model asked again for what was refused).
    pub fn was_stopped(&self, call_id: &str, tool: &str, args_json: &str) -> bool {
        self.stopped
            .iter()
            .any(|s| s.call_id != call_id && s.tool == tool && same_args(&s.args_json, args_json))
    }

    /// Refusals reported to the model so far in this turn.
    pub fn refusals_fed_back(&self) -> usize {
        self.all_calls()
            .filter(|c| matches!(c.status, super::state::CallStatus::Refused { .. }))
            .count()
    }
}
