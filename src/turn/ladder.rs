//! The escalation ladder: when a review or a guard escalates, the turn climbs to the next
//! configured rung it has not tried: (1) re-plan with constrained context, (2) re-plan with a
//! narrower specialist profile, (3) ask the user to confirm the high-impact call, (4) hand off to
//! a human operator and wait, with a deadline.

use crate::event::{
    ApprovalRequested, CommandAction, EscalationRaised, EscalationRung, HandoffAccepted,
    HandoffResolved, Outcome, Payload, TurnCommand,
};
use crate::exec::catalog::Impact;

use super::decide::Builder;
use super::effect::Effect;
use super::state::CallStatus;

impl Builder<'_, '_> {
    /// A re-ask of a step is safe only if nothing that step did has side effects. After a
    /// failed model call the step asked for has done nothing yet.
    fn replannable(&self) -> bool {
        if self.state.failed_step.is_some() {
            return true;
        }
        !self.state.calls.iter().any(|c| {
            matches!(
                c.status,
                CallStatus::Completed { .. } | CallStatus::Failed { .. }
            ) && !self
                .ctx
                .catalog
                .get(&c.tool)
                .is_some_and(|s| s.deterministic)
        })
    }

    /// Climbs to the next applicable rung. `pending` is the plan step whose call was stopped
    /// (the only thing a user could be asked to confirm).
    pub(super) fn climb(
        &mut self,
        reason: String,
        call_id: Option<String>,
        pending: Option<usize>,
    ) {
        self.climb_from(reason, call_id, pending, true);
    }

    /// Climbs, skipping the re-plan rungs when `replan` is false (a loop at its limits: asking
    /// the model again cannot help).
    pub(super) fn climb_from(
        &mut self,
        reason: String,
        call_id: Option<String>,
        pending: Option<usize>,
        replan: bool,
    ) {
        let ladder = self.ctx.guards.config.ladder.clone();
        for rung in ladder {
            if self.state.escalations.contains(&rung) {
                continue;
            }
            match rung {
                EscalationRung::ConstrainedRetry | EscalationRung::Specialist => {
                    if !replan || !self.replannable() || self.ctx.draining {
                        continue;
                    }
                    self.emit(Payload::EscalationRaised(EscalationRaised {
                        rung,
                        reason,
                        call_id,
                        deadline_ms: None,
                    }));
                    self.plan();
                    return;
                }
                EscalationRung::UserConfirmation => {
                    if self.confirm(&reason, call_id.clone(), pending) {
                        return;
                    }
                }
                EscalationRung::HumanHandoff => {
                    self.handoff(reason, call_id);
                    return;
                }
            }
        }
        // No rung left (or none configured): escalated without anyone waiting on it.
        self.complete(Outcome::Escalated, reason);
    }

    /// Asks the user to confirm plan step `pending`'s call, if it is one that matters (impact
    /// medium or more); returns whether it asked.
    pub(super) fn confirm(
        &mut self,
        reason: &str,
        call_id: Option<String>,
        pending: Option<usize>,
    ) -> bool {
        let Some(index) = pending else { return false };
        let Some(step) = self
            .state
            .plan
            .as_ref()
            .and_then(|p| p.steps.get(index))
            .cloned()
        else {
            return false;
        };
        let high = self
            .ctx
            .catalog
            .get(&step.tool)
            .is_some_and(|s| s.impact >= Impact::Medium);
        if !high {
            return false;
        }
        let call = call_id.clone().unwrap_or_default();
        self.emit(Payload::EscalationRaised(EscalationRaised {
            rung: EscalationRung::UserConfirmation,
            reason: reason.to_string(),
            call_id,
            deadline_ms: None,
        }));
        let deadline_ms = self.ctx.now_ms + self.ctx.control.config().approval_ttl_ms;
        self.emit(Payload::ApprovalRequested(ApprovalRequested {
            approval_id: format!("{call}/confirm"),
            call_id: call,
            step: index as i32,
            tool: step.tool,
            args_json: step.args_json,
            reason: format!("please confirm: {reason}"),
            risk_score: 0.0,
            deadline_ms,
        }));
        self.schedule_deadline(index);
        true
    }

    /// Hands the turn to a person and waits, durably, until they resolve it or the deadline.
    pub(super) fn handoff(&mut self, reason: String, call_id: Option<String>) {
        if self.state.handoff.is_some() {
            return;
        }
        let deadline_ms = self.ctx.now_ms + self.ctx.guards.config.handoff_ttl_ms;
        self.emit(Payload::EscalationRaised(EscalationRaised {
            rung: EscalationRung::HumanHandoff,
            reason,
            call_id,
            deadline_ms: Some(deadline_ms),
        }));
        self.schedule_handoff();
    }

    pub(super) fn schedule_handoff(&mut self) {
        if let Some(h) = &self.state.handoff {
            let at_ms = h.deadline_ms;
            self.effect(Effect::ScheduleHandoffDeadline {
                turn_id: self.state.turn_id,
                at_ms,
            });
        }
    }

    pub(super) fn on_handoff_command(&mut self, command: TurnCommand) {
        let Some(h) = &self.state.handoff else {
            return;
        };
        match command.action {
            CommandAction::HandoffAccept(_) if h.accepted_by.is_none() => {
                self.emit(Payload::HandoffAccepted(HandoffAccepted {
                    operator: command.operator,
                    command_id: command.command_id,
                }));
            }
            CommandAction::HandoffResolve(r) => {
                let why = format!("resolved by {}: {}", command.operator, r.resolution);
                self.emit(Payload::HandoffResolved(HandoffResolved {
                    operator: command.operator,
                    resolution: r.resolution,
                    command_id: command.command_id,
                }));
                self.complete(Outcome::Escalated, why);
            }
            _ => {}
        }
    }

    pub(super) fn on_handoff_deadline(&mut self) {
        let Some(h) = &self.state.handoff else {
            return;
        };
        if self.ctx.now_ms < h.deadline_ms {
            self.schedule_handoff();
            return;
        }
        let who = h
            .accepted_by
            .as_ref()
            .map(|o| format!(" (accepted by {o})"))
            .unwrap_or_default();
        self.complete(
            Outcome::EscalationFailed,
            format!("handoff not resolved by its deadline{who}"),
        );
    }
}
