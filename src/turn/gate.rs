//! The control-plane side of `decide`: routing, plan and call reviews, approvals, the reply's
//! review. The control plane answers; this records its answer and follows it.

use crate::control::{CallReview, PlanReview, Principal, ResponseReview, Signals, Verdict};
use crate::event::{
    ApprovalExpired, ApprovalRequested, ApprovalResolved, Checkpoint, CommandAction, Outcome,
    Payload, PolicyDecision, PolicyEvaluated, TurnCommand,
};
use crate::ids::call_id;

use super::decide::Builder;
use super::effect::Effect;
use super::refusal::Why;
use super::state::{CallState, CallStatus};

/// Tools the turn called in earlier model steps, each once, in first-call order.
pub fn prior_tools(state: &super::state::TurnState) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in state.history.iter().flat_map(|s| s.calls.iter()) {
        if !out.contains(&c.tool) {
            out.push(c.tool.clone());
        }
    }
    out
}

impl Builder<'_, '_> {
    fn principal(&self) -> Principal<'_> {
        Principal {
            tenant: &self.state.tenant,
            user_id: &self.state.user_id,
            channel: &self.state.channel,
            attributes: &self.state.attributes,
        }
    }

    /// What the turn so far says about risk, for the control plane.
    fn signals(&self) -> Signals {
        let confidence = self.state.plan.as_ref().map_or(1.0, |p| p.confidence);
        let mut anomalies = Vec::new();
        if self.state.retrieval_failed {
            anomalies.push("retrieval_failed".to_string());
        } else if self.state.retrieved && self.state.documents.is_empty() {
            anomalies.push("no_context".to_string());
        }
        if confidence.is_nan() {
            anomalies.push("confidence_missing".to_string());
        }
        Signals {
            confidence,
            failures: self.state.failures,
            anomalies,
            budget: self.budget_left(),
            model_step: self.state.plan.as_ref().map_or(0, |p| p.step.max(0) as u32),
            prior_tools: prior_tools(self.state),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        checkpoint: Checkpoint,
        step: Option<i32>,
        tool: Option<String>,
        v: &Verdict,
        signals: &Signals,
        provenance_json: Option<String>,
        feedback: bool,
    ) {
        self.emit(Payload::PolicyEvaluated(PolicyEvaluated {
            checkpoint,
            step,
            tool,
            decision: v.decision,
            policy_ids: v.policy_ids.clone(),
            reason: v.reason.clone(),
            risk_score: v.risk_score,
            policy_version: v.policy_version.clone(),
            confidence: Some(signals.confidence),
            failures: Some(signals.failures as i32),
            anomalies: signals.anomalies.clone(),
            budget_cost_micros: Some(signals.budget.cost_micros),
            budget_tokens: Some(signals.budget.tokens),
            budget_tool_calls: Some(signals.budget.tool_calls),
            provenance_json,
            feedback,
        }));
    }

    pub(super) fn route(&mut self) {
        let route = self
            .ctx
            .control
            .route(&self.state.tenant, &self.state.attributes);
        let budget = self
            .ctx
            .control
            .config()
            .profiles
            .get(&route.profile)
            .map_or(0, |p| p.session_tokens);
        self.emit(Payload::RouteSelected(route));
        // The session's earlier turns are recorded with the turn, within the profile's token
        // budget, so every step (and a replay) sees the same history.
        if let Some(session_id) = self.state.session_id.clone() {
            let turns = std::mem::take(&mut self.session);
            let (turns, dropped, tokens) = super::conversation::within_budget(turns, budget);
            self.emit(Payload::SessionLoaded(crate::event::SessionLoaded {
                session_id,
                turns,
                dropped,
                tokens,
            }));
        }
        self.retrieve();
    }

    pub(super) fn review_plan(&mut self) {
        // A plan recorded before a restart may still hold its model reservation.
        self.commit_model();
        let Some(plan) = self.state.plan.as_ref() else {
            return;
        };
        let signals = self.signals();
        let verdict = self.ctx.control.review_plan(&PlanReview {
            principal: self.principal(),
            steps: &plan.steps,
            catalog: self.ctx.catalog,
            signals: &signals,
        });
        // A denial the model can be told about: each call goes to its own review, which
        // refuses the denied ones and lets the rest of the step run.
        let feedback =
            verdict.decision == PolicyDecision::Deny && self.rules_feedback(&verdict.policy_ids);
        self.record(
            Checkpoint::Plan,
            None,
            None,
            &verdict,
            &signals,
            None,
            feedback,
        );
        match verdict.decision {
            // Confirmation is asked call by call, with the real arguments, before each runs.
            PolicyDecision::Allow | PolicyDecision::RequireConfirmation => self.next_call(),
            PolicyDecision::Deny if feedback => self.next_call(),
            d => self.follow(d, verdict.reason, None),
        }
    }

    /// Acts on a non-allow decision that ends the turn.
    pub(super) fn follow(
        &mut self,
        decision: PolicyDecision,
        reason: String,
        call_id: Option<String>,
    ) {
        match decision {
            PolicyDecision::Allow => self.next_call(),
            PolicyDecision::Deny => {
                self.complete(Outcome::Denied, format!("denied by policy: {reason}"));
            }
            PolicyDecision::Escalate => self.climb(reason, call_id, None),
            // Only reached when settling a plan-level decision; calls ask for approval instead.
            PolicyDecision::RequireConfirmation => self.next_call(),
        }
    }

    pub(super) fn next_call(&mut self) {
        if self.ctx.draining {
            return;
        }
        let Some(plan) = self.state.plan.as_ref() else {
            return;
        };
        let index = self.state.calls.len();
        let Some(planned) = plan.steps.get(index).cloned() else {
            // Every call of this step has its result: the model sees them and goes on.
            self.plan();
            return;
        };
        let plan_rev = plan.plan_rev;
        let id = call_id(self.state.turn_id, plan_rev as u32, index as u32);
        if !self.guard_call(index, &id, 1) {
            return;
        }
        let spec = self.ctx.catalog.get(&planned.tool);
        let signals = self.signals();
        let (provenance, findings) = self.provenance_of(&planned.tool, &planned.args_json);
        let mut verdict = self.ctx.control.review_call(&CallReview {
            principal: self.principal(),
            step: index as u32,
            tool: &planned.tool,
            args_json: &planned.args_json,
            spec,
            signals: &signals,
            provenance: Some(&provenance),
        });
        super::origins::fold(&mut verdict, &findings);
        let provenance = (!provenance.args.is_empty())
            .then(|| serde_json::to_string(&provenance).ok())
            .flatten();
        // A refused call goes back to the model (decided before it is recorded: the record
        // marks the call as stopped).
        let feedback = verdict.decision == PolicyDecision::Deny
            && self.rules_feedback(&verdict.policy_ids)
            && self.can_feed_back(&id, &planned.tool, &planned.args_json);
        self.record(
            Checkpoint::PreTool,
            Some(index as i32),
            Some(planned.tool.clone()),
            &verdict,
            &signals,
            provenance,
            feedback,
        );
        if feedback {
            let by_provenance = findings
                .first()
                .is_some_and(|f| f.decision == verdict.decision);
            let reason = verdict.reason.clone();
            let why = if by_provenance {
                Why::Provenance(&reason)
            } else {
                Why::Policy(&reason)
            };
            self.refuse(index, id, planned.tool, verdict.policy_ids, why);
            return;
        }
        match verdict.decision {
            PolicyDecision::Allow => self.start_call(self.new_call(index), 1),
            PolicyDecision::RequireConfirmation => {
                let deadline_ms = self.ctx.now_ms + self.ctx.control.config().approval_ttl_ms;
                self.emit(Payload::ApprovalRequested(ApprovalRequested {
                    approval_id: id.clone(),
                    call_id: id,
                    step: index as i32,
                    tool: planned.tool,
                    args_json: planned.args_json,
                    reason: verdict.reason,
                    risk_score: verdict.risk_score,
                    deadline_ms,
                }));
                self.schedule_deadline(index);
            }
            PolicyDecision::Escalate => self.climb(verdict.reason, Some(id), Some(index)),
            d => self.follow(d, verdict.reason, Some(id)),
        }
    }

    /// The call for plan step `index`, not started yet.
    fn new_call(&self, index: usize) -> CallState {
        let plan = self.state.plan.as_ref();
        let planned = plan.and_then(|p| p.steps.get(index));
        let tool = planned.map(|p| p.tool.clone()).unwrap_or_default();
        let id = call_id(
            self.state.turn_id,
            plan.map_or(0, |p| p.plan_rev) as u32,
            index as u32,
        );
        CallState {
            call_id: id.clone(),
            step: index as i32,
            idempotent: self.ctx.catalog.get(&tool).is_some_and(|s| s.idempotent),
            tool,
            args_json: planned.map(|p| p.args_json.clone()).unwrap_or_default(),
            idempotency_key: id,
            attempt: 0,
            status: CallStatus::Running,
        }
    }

    pub(super) fn schedule_deadline(&mut self, index: usize) {
        let Some(a) = self.state.approval_for(index) else {
            return;
        };
        let (approval_id, at_ms) = (a.approval_id.clone(), a.deadline_ms);
        self.effect(Effect::ScheduleDeadline {
            turn_id: self.state.turn_id,
            at_ms,
            approval_id,
        });
    }

    pub(super) fn start_approved(&mut self, index: usize) {
        if self.ctx.draining {
            return;
        }
        self.start_call(self.new_call(index), 1);
    }

    pub(super) fn on_command(&mut self, command: TurnCommand, index: usize) {
        let Some(pending) = self.state.approval_for(index) else {
            return;
        };
        let pending_id = pending.approval_id.clone();
        match command.action {
            CommandAction::ApprovalDecision(d) if d.approval_id == pending_id => {
                let resolved = ApprovalResolved {
                    approval_id: d.approval_id,
                    operator: command.operator.clone(),
                    reason: d.reason.clone(),
                    command_id: command.command_id,
                };
                if d.granted {
                    self.emit(Payload::ApprovalGranted(resolved));
                    self.start_approved(index);
                } else {
                    // Decided before the denial is recorded (it marks the call as stopped).
                    let feedback = self.feedback_for(index, false);
                    self.emit(Payload::ApprovalDenied(resolved));
                    let why = d.reason.map(|r| format!(": {r}")).unwrap_or_default();
                    if let Some((call_id, tool, rules)) = feedback {
                        let reason =
                            format!("the operator {} did not confirm it{why}", command.operator);
                        let why = if rules.iter().any(|r| r.starts_with("provenance.")) {
                            Why::Provenance(&reason)
                        } else {
                            Why::Person(&reason)
                        };
                        self.refuse(index, call_id, tool, rules, why);
                        return;
                    }
                    self.complete(
                        Outcome::Denied,
                        format!("approval {pending_id} denied by {}{why}", command.operator),
                    );
                }
            }
            // A decision about another (older) approval, or a handoff command while nothing is
            // handed off, changes nothing.
            // Reverse and label apply to finished turns only.
            CommandAction::ApprovalDecision(_)
            | CommandAction::HandoffAccept(_)
            | CommandAction::HandoffResolve(_)
            | CommandAction::Reverse(_)
            | CommandAction::Label(_) => {}
        }
    }

    pub(super) fn on_deadline(&mut self, approval_id: &str, index: usize) {
        let Some(pending) = self.state.approval_for(index) else {
            return;
        };
        if pending.approval_id != approval_id {
            return;
        }
        if self.ctx.now_ms < pending.deadline_ms {
            // Woken early (a clock that moved back): wait again.
            self.schedule_deadline(index);
            return;
        }
        let deadline_ms = pending.deadline_ms;
        let feedback = self.feedback_for(index, true);
        self.emit(Payload::ApprovalExpired(ApprovalExpired {
            approval_id: approval_id.to_string(),
            deadline_ms,
        }));
        if let Some((call_id, tool, rules)) = feedback {
            let why = Why::Provenance("nobody confirmed it in time");
            self.refuse(index, call_id, tool, rules, why);
            return;
        }
        self.handoff(
            format!("approval {approval_id} expired without an answer"),
            Some(approval_id.to_string()),
        );
    }

    /// For an approval refused (or, `expired`, left unanswered) whose refusal goes back to the
    /// model: the call, its tool and the rules that asked for it.
    fn feedback_for(&self, index: usize, expired: bool) -> Option<(String, String, Vec<String>)> {
        let a = self.state.approval_for(index)?;
        let feedback = if expired {
            self.expiry_is_feedback(&a.rules)
        } else {
            self.rules_feedback(&a.rules)
        };
        let step = self.state.plan.as_ref().and_then(|p| p.steps.get(index))?;
        if !feedback || !self.can_feed_back(&a.call_id, &step.tool, &step.args_json) {
            return None;
        }
        Some((a.call_id.clone(), step.tool.clone(), a.rules.clone()))
    }

    pub(super) fn review_response(&mut self) {
        let signals = self.signals();
        let verdict = self.ctx.control.review_response(&ResponseReview {
            principal: self.principal(),
            citations: self.state.citations.len(),
            tool_calls: self.state.all_calls().count(),
            signals: &signals,
        });
        self.record(
            Checkpoint::PreResponse,
            None,
            None,
            &verdict,
            &signals,
            None,
            false,
        );
        self.follow_response(verdict.decision, verdict.reason);
    }

    pub(super) fn follow_response(&mut self, decision: PolicyDecision, reason: String) {
        match decision {
            PolicyDecision::Allow => self.complete(Outcome::Succeeded, "answered".into()),
            PolicyDecision::Deny => {
                self.complete(
                    Outcome::Denied,
                    format!("reply withheld by policy: {reason}"),
                );
            }
            PolicyDecision::Escalate | PolicyDecision::RequireConfirmation => {
                self.climb(reason, None, None);
            }
        }
    }
}
