//! Provenance inside `decide`: the facts of the turn handed to `guard::provenance`, its rules
//! folded into the call's review (refusals: `refusal.rs`).

use crate::event::PolicyDecision;
use crate::guard::provenance::instruction::instruction;
use crate::guard::provenance::rules::{self, Finding, OnRefusal};
use crate::guard::provenance::{self, CallProvenance, Facts, ResultFact};

use crate::exec::catalog::Catalog;

use super::decide::Builder;
use super::state::{CallStatus, TurnState};

/// What a turn had seen when the model proposed a call: the facts provenance traces values to.
pub fn facts(state: &TurnState) -> Facts<'_> {
    let session = state.session.as_ref().map(|s| s.turns.as_slice());
    let mut user: Vec<&str> = vec![state.text.as_str()];
    user.extend(session.into_iter().flatten().map(|t| t.request.as_str()));
    // A result the user pointed at, which does not talk to the model, is vouched for.
    let designated = |args_json: &str, result_json: &str| {
        provenance::designated_by(args_json, &user) && instruction(result_json).is_none()
    };
    let chosen = |args_json: &str| provenance::chosen_by(args_json, &user);
    let results = state
        .all_calls()
        .filter_map(|c| match &c.status {
            CallStatus::Completed { result_json } => Some(ResultFact {
                tool: &c.tool,
                result_json,
                designated: designated(&c.args_json, result_json),
                chosen: chosen(&c.args_json),
            }),
            _ => None,
        })
        .chain(session.into_iter().flatten().flat_map(|t| {
            t.calls.iter().map(|c| ResultFact {
                tool: &c.tool,
                result_json: &c.result_json,
                designated: designated(&c.args_json, &c.result_json),
                chosen: chosen(&c.args_json),
            })
        }))
        .collect();
    Facts {
        request: &state.text,
        session: session
            .into_iter()
            .flatten()
            .map(|t| t.request.as_str())
            .collect(),
        results,
        documents: state
            .documents
            .iter()
            .map(|d| (d.id.as_str(), d.snippet.as_str()))
            .collect(),
    }
}

/// Where each value of a call proposed in `state` came from, trust as `catalog` says (per
/// field: a trusted tool's `untrusted_fields` are not).
pub fn call_provenance(state: &TurnState, catalog: &Catalog, args_json: &str) -> CallProvenance {
    let trusted = |t: &str, path: &[String]| catalog.get(t).is_some_and(|s| s.field_trusted(path));
    provenance::trace(args_json, &facts(state), &trusted)
}

impl Builder<'_, '_> {
    /// Where each value of a proposed call came from, and the rules that trip on it.
    pub(super) fn provenance_of(
        &self,
        tool: &str,
        args_json: &str,
    ) -> (CallProvenance, Vec<Finding>) {
        let catalog = self.ctx.catalog;
        let prov = call_provenance(self.state, catalog, args_json);
        let findings = match catalog.get(tool) {
            Some(spec) => {
                let sensitive = |t: &str| catalog.get(t).is_some_and(|s| s.sensitive_output);
                rules::check(spec, &prov, &sensitive, &self.ctx.guards.config.provenance)
            }
            None => Vec::new(),
        };
        (prov, findings)
    }

    /// Whether an approval these rules asked for, left to expire, goes back to the model:
    /// when provenance rules asked for it and each says `feedback`. (Other confirmations that
    /// nobody answered go to a person, as before.)
    pub(super) fn expiry_is_feedback(&self, rule_ids: &[String]) -> bool {
        let on = &self.ctx.guards.config.provenance.on_refusal;
        let provenance: Vec<OnRefusal> = rule_ids.iter().filter_map(|id| on.for_rule(id)).collect();
        !provenance.is_empty() && provenance.iter().all(|o| *o == OnRefusal::Feedback)
    }
}

/// The decision after the provenance rules: the more severe of the policy's and theirs, with
/// every rule that tripped among the policy ids and the deciding one's detail as the reason.
pub(super) fn fold(verdict: &mut crate::control::Verdict, findings: &[Finding]) {
    for f in findings {
        verdict.policy_ids.push(f.rule.to_string());
    }
    if let Some(f) = findings.first()
        && rules::severity(f.decision) > rules::severity(verdict.decision)
    {
        verdict.decision = f.decision;
        verdict.reason = format!("{}: {}", f.rule, f.detail);
    } else if let Some(f) = findings.first()
        && f.decision != PolicyDecision::Allow
    {
        verdict.reason = format!("{}; {}: {}", verdict.reason, f.rule, f.detail);
    }
}
