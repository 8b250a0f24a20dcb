//! Resuming a turn after a restart, and settling one whose decision was cut short: what the
//! turn was waiting for is derived from its recorded facts and asked for again.

use crate::event::{
    GuardVerdict, Outcome, Payload, PolicyDecision, ToolCallFailed, ToolFailureKind,
};

use super::decide::{Builder, backoff_ms};
use super::effect::Effect;
use super::input::Deadline;
use super::state::{ApprovalStatus, CallStatus, Phase};

impl super::TurnState {
    /// For a turn that waits only for a person (an approval or a handoff), when it must wake
    /// if nobody answers and for which deadline; `None` for any other phase. A worker
    /// may keep such a turn out of memory and arm this deadline instead of resuming it: a
    /// resume of it does exactly that and nothing else (a property test holds the two equal).
    pub fn parked_deadline(&self) -> Option<(i64, Deadline)> {
        match self.phase() {
            Phase::AwaitingApproval { index } => self.approval_for(index).map(|a| {
                let approval_id = a.approval_id.clone();
                (a.deadline_ms, Deadline::Approval { approval_id })
            }),
            Phase::AwaitingHandoff => self
                .handoff
                .as_ref()
                .map(|h| (h.deadline_ms, Deadline::Handoff)),
            _ => None,
        }
    }
}

impl Builder<'_, '_> {
    pub(super) fn resume(&mut self, phase: Phase) {
        match phase {
            Phase::New | Phase::Done(_) => {}
            // A turn of a session waits for the worker to say the session is free.
            Phase::Routing if self.state.session_id.is_some() => {}
            Phase::Routing => self.route(),
            Phase::Retrieving => self.retrieve(),
            Phase::AwaitingApproval { index } => self.schedule_deadline(index),
            Phase::AwaitingHandoff => self.schedule_handoff(),
            Phase::Approved { index } => self.start_approved(index),
            Phase::Planning => self.plan(),
            Phase::NextCall => self.next_call(),
            Phase::Answering => self.answer(0),
            Phase::ReviewPlan => self.review_plan(),
            Phase::Settle => self.settle(),
            Phase::AwaitingRetry { index } => {
                let Some(call) = self.state.calls.get(index) else {
                    return;
                };
                if call.attempt >= self.ctx.limits.max_attempts {
                    let why = format!(
                        "{} failed on its last attempt ({})",
                        call.tool, call.attempt
                    );
                    self.complete(Outcome::Failed, why);
                    return;
                }
                let failed_at = match call.status {
                    CallStatus::Failed { at_ms, .. } => at_ms,
                    _ => self.ctx.now_ms,
                };
                let (call_id, next) = (call.call_id.clone(), call.attempt + 1);
                let at_ms = failed_at + backoff_ms(self.ctx.limits, &call_id, next);
                self.effect(Effect::Schedule {
                    turn_id: self.state.turn_id,
                    at_ms,
                    call_id,
                    attempt: next,
                });
            }
            // The intent is durable and the result is not: the call may or may not have run.
            Phase::AwaitingTool { index } => {
                let Some(call) = self.state.calls.get(index).cloned() else {
                    return;
                };
                if call.idempotent {
                    self.emit(Payload::ToolCallFailed(ToolCallFailed {
                        call_id: call.call_id.clone(),
                        attempt: call.attempt,
                        kind: ToolFailureKind::Interrupted,
                        error:
                            "worker stopped during the call; retrying with the same idempotency key"
                                .into(),
                        retryable: true,
                        latency_ms: 0,
                    }));
                    self.release_call(
                        &call.call_id,
                        "interrupted; retried under a new reservation",
                    );
                    if self.ctx.draining {
                        // Recorded; the retry is scheduled by the Resume after the restart.
                    } else if call.attempt < self.ctx.limits.max_attempts {
                        let attempt = call.attempt + 1;
                        self.start_call(call, attempt);
                    } else {
                        self.handoff(
                            format!(
                                "{} interrupted on its last attempt; outcome unknown",
                                call.tool
                            ),
                            Some(call.call_id),
                        );
                    }
                } else {
                    self.emit(Payload::ToolCallFailed(ToolCallFailed {
                        call_id: call.call_id.clone(),
                        attempt: call.attempt,
                        kind: ToolFailureKind::OutcomeUnknown,
                        error: "worker stopped during a non-idempotent call; not run again".into(),
                        retryable: false,
                        latency_ms: 0,
                    }));
                    self.commit_call(&call.call_id);
                    self.handoff(
                        format!(
                            "outcome unknown: {} (not idempotent) may or may not have run",
                            call.tool
                        ),
                        Some(call.call_id),
                    );
                }
            }
        }
    }

    /// Completes a turn whose ending was decided but not recorded in full (the decision was
    /// cut short): the same ending, derived from the recorded facts.
    pub(super) fn settle(&mut self) {
        let s = &self.state;
        let last_approval = s
            .approvals
            .last()
            .map(|a| (a.status, a.approval_id.clone()));
        if let Some(h) = s.handoff.as_ref().filter(|h| h.resolved_by.is_some()) {
            let why = format!(
                "resolved by {}: {}",
                h.resolved_by.clone().unwrap_or_default(),
                h.resolution.clone().unwrap_or_default()
            );
            self.complete(Outcome::Escalated, why);
        } else if let Some(t) = s.trip.clone() {
            // A guard stopped the turn; what it decided was not recorded in full.
            let why = format!("{} ({}): {}", t.rule, t.guard, t.detail);
            match t.verdict {
                GuardVerdict::Escalate => self.climb(why, None, None),
                _ if matches!(t.guard.as_str(), "breaker" | "retries") => {
                    self.complete(Outcome::Failed, why)
                }
                _ => self.complete(Outcome::Denied, why),
            }
        } else if s.response.is_some() {
            match s.response_decision {
                None => self.review_response(),
                Some(d) => {
                    self.follow_response(d, "response decision recorded before a restart".into())
                }
            }
        } else if let Some(decision) = s.plan_decision.filter(|d| match d {
            PolicyDecision::Allow | PolicyDecision::RequireConfirmation => false,
            // Fed back: each call went to its own review.
            PolicyDecision::Deny => !s.plan_feedback,
            PolicyDecision::Escalate => true,
        }) {
            self.follow(
                decision,
                "plan decision recorded before a restart".into(),
                None,
            );
        } else if let Some(call) = s.calls.last() {
            let (tool, call_id) = (call.tool.clone(), call.call_id.clone());
            match &call.status {
                CallStatus::Failed {
                    kind: ToolFailureKind::OutcomeUnknown,
                    error,
                    ..
                } => {
                    let why = format!("outcome unknown: {tool}: {error}");
                    self.handoff(why, Some(call_id));
                }
                CallStatus::Failed { error, .. } => {
                    let why = format!("{tool} failed: {error}");
                    self.complete(Outcome::Failed, why);
                }
                _ => self.settle_approval(last_approval),
            }
        } else {
            self.settle_approval(last_approval);
        }
    }

    fn settle_approval(&mut self, last: Option<(ApprovalStatus, String)>) {
        match last {
            Some((ApprovalStatus::Denied, id)) => {
                self.complete(Outcome::Denied, format!("approval {id} was denied"));
            }
            Some((ApprovalStatus::Expired, id)) => {
                let why = format!("approval {id} expired");
                self.handoff(why, Some(id));
            }
            _ => {}
        }
    }
}
