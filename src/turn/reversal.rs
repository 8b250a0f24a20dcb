//! After a turn has finished: its reversal and late labels.
//!
//! Reversing runs the compensations of the turn's completed calls, newest first, one at a time,
//! each as CompensationStarted (durable before it runs) and CompensationCompleted or
//! CompensationFailed, then TurnReversed. Calls whose tool declares no compensation are listed
//! as not reversible. Asking again once a reversal exists does nothing. After a crash, a started
//! compensation without a result is recorded as failed (interrupted) and run again with the same
//! idempotency key: compensations must be idempotent, like every retried call.
//!
//! A compensation's arguments come from the compensating tool's argument schema: each property
//! is taken from the original call's result, else from its arguments (`reverse_refund` gets the
//! `refund_id` that `issue_refund` returned).

use serde::{Deserialize, Serialize};

use crate::event::{
    CommandAction, CompensationCompleted, CompensationFailed, CompensationStarted, Outcome,
    OutcomeLabeled, Payload, ReversalRequested, TurnCommand, TurnReversed,
};

use super::decide::{Builder, backoff_ms};
use super::effect::{Effect, ToolInvocation};
use super::input::{ToolFailure, ToolSuccess};
use super::state::{CallStatus, TurnState};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReversalState {
    pub operator: String,
    pub reason: Option<String>,
    /// Call ids to compensate, in order (newest call first).
    pub compensable: Vec<String>,
    pub not_reversible: Vec<String>,
    pub compensations: Vec<CompensationState>,
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompensationState {
    pub call_id: String,
    pub tool: String,
    pub args_json: String,
    pub idempotency_key: String,
    pub attempt: i32,
    pub status: CompensationStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CompensationStatus {
    Running,
    Completed,
    Failed { retryable: bool },
}

/// The outcome reason of a reversed turn.
pub fn reversed_reason(compensated: usize, failed: usize, not_reversible: usize) -> String {
    format!("reversed: {compensated} compensated, {failed} failed, {not_reversible} not reversible")
}

/// The call id a compensation runs under (its results come back as `ToolDone` for it).
pub fn undo_id(call_id: &str) -> String {
    format!("{call_id}/undo")
}

impl TurnState {
    pub(super) fn apply_after_end(&mut self, payload: &Payload) {
        match payload {
            Payload::ReversalRequested(r) => {
                self.reversal = Some(Box::new(ReversalState {
                    operator: r.operator.clone(),
                    reason: r.reason.clone(),
                    compensable: r.compensable.clone(),
                    not_reversible: r.not_reversible.clone(),
                    compensations: Vec::new(),
                    done: false,
                }))
            }
            Payload::CompensationStarted(c) => match self.reversal.as_mut() {
                Some(r) => {
                    r.compensations.retain(|x| x.call_id != c.call_id);
                    r.compensations.push(CompensationState {
                        call_id: c.call_id.clone(),
                        tool: c.tool.clone(),
                        args_json: c.args_json.clone(),
                        idempotency_key: c.idempotency_key.clone(),
                        attempt: c.attempt,
                        status: CompensationStatus::Running,
                    });
                }
                None => self.anomalies += 1,
            },
            Payload::CompensationCompleted(c) => {
                self.set_compensation(&c.call_id, c.attempt, CompensationStatus::Completed)
            }
            Payload::CompensationFailed(c) => self.set_compensation(
                &c.call_id,
                c.attempt,
                CompensationStatus::Failed {
                    retryable: c.retryable,
                },
            ),
            Payload::TurnReversed(_) => match self.reversal.as_mut() {
                Some(r) => {
                    r.done = true;
                    self.outcome = Some(Outcome::Reversed);
                }
                None => self.anomalies += 1,
            },
            Payload::OutcomeLabeled(l) => {
                self.labels.push(l.label.clone());
                self.label_commands.push(l.command_id.clone());
            }
            _ => {}
        }
    }

    fn set_compensation(&mut self, call_id: &str, attempt: i32, status: CompensationStatus) {
        let found = self.reversal.as_mut().and_then(|r| {
            r.compensations.iter_mut().find(|c| {
                c.call_id == call_id
                    && c.attempt == attempt
                    && c.status == CompensationStatus::Running
            })
        });
        match found {
            Some(c) => c.status = status,
            None => self.anomalies += 1,
        }
    }

    /// The reason a reversed turn's outcome record gives (None until the reversal is done).
    pub fn reversal_reason(&self) -> Option<String> {
        let r = self.reversal.as_ref().filter(|r| r.done)?;
        let ok = r
            .compensations
            .iter()
            .filter(|c| c.status == CompensationStatus::Completed)
            .count();
        Some(reversed_reason(
            ok,
            r.compensations.len() - ok,
            r.not_reversible.len(),
        ))
    }

    fn compensation(&self, call_id: &str) -> Option<&CompensationState> {
        self.reversal
            .as_ref()?
            .compensations
            .iter()
            .find(|c| c.call_id == call_id)
    }
}

impl Builder<'_, '_> {
    /// `(Reversing, ToolDone)`: the result of a compensating call (`<call>/undo`); a result of
    /// one of the turn's own calls arriving this late changes nothing.
    pub(super) fn on_compensation_done(
        &mut self,
        call_id: String,
        attempt: i32,
        result: Result<ToolSuccess, ToolFailure>,
    ) {
        if let Some(original) = call_id.strip_suffix("/undo") {
            self.on_compensated(original.to_string(), attempt, result);
        }
    }

    /// `(Reversing, RetryDue)`: the next attempt of a compensating call that failed retryably.
    pub(super) fn on_compensation_due(&mut self, call_id: String, attempt: i32) {
        if let Some(original) = call_id.strip_suffix("/undo") {
            let waiting = self.state.compensation(original).is_some_and(|c| {
                c.attempt + 1 == attempt
                    && c.status == CompensationStatus::Failed { retryable: true }
            });
            if waiting {
                self.start_compensation(original.to_string(), attempt);
            }
        }
    }

    /// `(Ended | Reversing, Command)`: reverse or label a finished turn; other commands change
    /// nothing.
    pub(super) fn on_late_command(&mut self, command: TurnCommand) {
        match command.action {
            CommandAction::Reverse(r) => {
                if self.state.reversal.is_some() {
                    return; // reversing twice does nothing more
                }
                let (mut compensable, mut not_reversible) = (Vec::new(), Vec::new());
                // Every step of the loop, newest call first.
                let calls: Vec<_> = self.state.all_calls().cloned().collect();
                for call in calls.iter().rev() {
                    if !matches!(call.status, CallStatus::Completed { .. }) {
                        continue;
                    }
                    let undo = self
                        .ctx
                        .catalog
                        .get(&call.tool)
                        .and_then(|s| s.compensation.as_deref())
                        .filter(|c| self.ctx.catalog.get(c).is_some());
                    match undo {
                        Some(_) => compensable.push(call.call_id.clone()),
                        None => not_reversible.push(call.call_id.clone()),
                    }
                }
                self.emit(Payload::ReversalRequested(ReversalRequested {
                    operator: command.operator,
                    reason: r.reason,
                    command_id: command.command_id,
                    turn_first_offset: command.turn_offset.unwrap_or(-1),
                    compensable,
                    not_reversible,
                }));
                self.next_compensation();
            }
            CommandAction::Label(l) => {
                if self.state.label_commands.contains(&command.command_id) {
                    return; // the same command again
                }
                self.emit(Payload::OutcomeLabeled(OutcomeLabeled {
                    label: l.label,
                    note: l.note,
                    operator: command.operator,
                    command_id: command.command_id,
                }));
                if self.state.is_terminal() {
                    self.finished_again();
                }
            }
            _ => {}
        }
    }

    /// Starts the first compensation without a final result, or ends the reversal.
    fn next_compensation(&mut self) {
        if self.ctx.draining {
            return;
        }
        let Some(r) = self.state.reversal.as_ref() else {
            return;
        };
        if r.compensations
            .iter()
            .any(|c| c.status == CompensationStatus::Running)
        {
            return; // one at a time: its result comes first
        }
        let next = r
            .compensable
            .iter()
            .find(|id| r.compensations.iter().all(|c| &c.call_id != *id));
        match next.cloned() {
            Some(id) => self.start_compensation(id, 1),
            None => self.finish_reversal(),
        }
    }

    fn start_compensation(&mut self, call_id: String, attempt: i32) {
        if self.ctx.draining {
            return;
        }
        let Some(call) = self.state.all_calls().find(|c| c.call_id == call_id) else {
            return;
        };
        let result = match &call.status {
            CallStatus::Completed { result_json } => result_json.clone(),
            _ => return,
        };
        let Some(tool) = self
            .ctx
            .catalog
            .get(&call.tool)
            .and_then(|s| s.compensation.clone())
        else {
            return;
        };
        let schema = self.ctx.catalog.get(&tool).map(|s| s.args_schema.clone());
        let args_json = compensation_args(schema.as_ref(), &call.args_json, &result);
        let idempotency_key = format!("{}/undo", call.idempotency_key);
        self.emit(Payload::CompensationStarted(CompensationStarted {
            call_id: call_id.clone(),
            tool: tool.clone(),
            args_json: args_json.clone(),
            idempotency_key: idempotency_key.clone(),
            attempt,
        }));
        self.effect(Effect::CallTool {
            turn_id: self.state.turn_id,
            call: ToolInvocation {
                call_id: undo_id(&call_id),
                tool,
                args_json,
                idempotency_key,
                attempt,
                tenant: self.state.tenant.clone(),
                user_id: self.state.user_id.clone(),
            },
        });
    }

    fn on_compensated(
        &mut self,
        call_id: String,
        attempt: i32,
        result: Result<ToolSuccess, ToolFailure>,
    ) {
        let running = self
            .state
            .compensation(&call_id)
            .is_some_and(|c| c.attempt == attempt && c.status == CompensationStatus::Running);
        if !running {
            return; // late or duplicate
        }
        match result {
            Ok(ok) => {
                self.emit(Payload::CompensationCompleted(CompensationCompleted {
                    call_id,
                    attempt,
                    result_json: ok.result_json,
                    latency_ms: ok.latency_ms,
                }));
                self.next_compensation();
            }
            Err(f) => {
                let retry = f.retryable && attempt < self.ctx.limits.max_attempts;
                self.emit(Payload::CompensationFailed(CompensationFailed {
                    call_id: call_id.clone(),
                    attempt,
                    error: f.message,
                    retryable: retry,
                    latency_ms: f.latency_ms,
                }));
                if retry {
                    let id = undo_id(&call_id);
                    let at_ms = self.ctx.now_ms + backoff_ms(self.ctx.limits, &id, attempt + 1);
                    self.effect(Effect::Schedule {
                        turn_id: self.state.turn_id,
                        at_ms,
                        call_id: id,
                        attempt: attempt + 1,
                    });
                } else {
                    self.next_compensation();
                }
            }
        }
    }

    pub(super) fn resume_reversal(&mut self) {
        let pending = self.state.reversal.as_ref().and_then(|r| {
            r.compensations
                .iter()
                .find(|c| {
                    matches!(
                        c.status,
                        CompensationStatus::Running
                            | CompensationStatus::Failed { retryable: true }
                    )
                })
                .cloned()
        });
        match pending {
            // Started before the crash, result unknown: record it, run it again (same key).
            Some(c) if c.status == CompensationStatus::Running => {
                self.emit(Payload::CompensationFailed(CompensationFailed {
                    call_id: c.call_id.clone(),
                    attempt: c.attempt,
                    error: "interrupted: the worker stopped while it ran".into(),
                    retryable: true,
                    latency_ms: 0,
                }));
                self.start_compensation(c.call_id, c.attempt + 1);
            }
            // Its retry timer was lost with the process.
            Some(c) => self.start_compensation(c.call_id, c.attempt + 1),
            None => self.next_compensation(),
        }
    }

    fn finish_reversal(&mut self) {
        let Some(r) = self.state.reversal.as_ref() else {
            return;
        };
        let done = |ok: bool| -> Vec<String> {
            r.compensations
                .iter()
                .filter(|c| (c.status == CompensationStatus::Completed) == ok)
                .map(|c| c.call_id.clone())
                .collect()
        };
        let reversed = TurnReversed {
            compensated: done(true),
            failed: done(false),
            not_reversible: r.not_reversible.clone(),
        };
        self.emit(Payload::TurnReversed(reversed));
        self.finished_again();
    }

    /// Tells the runtime the turn is finished again (it forgets the in-memory state and
    /// publishes the updated outcome).
    fn finished_again(&mut self) {
        let latency_ms = self
            .state
            .completed_at_ms
            .map_or(0, |c| (c - self.state.requested_at_ms).max(0));
        self.effect(Effect::Finished {
            turn_id: self.state.turn_id,
            tenant: self.state.tenant.clone(),
            outcome: self.state.outcome.unwrap_or(Outcome::Failed),
            latency_ms,
        });
    }
}

/// The compensating tool's arguments: each property of its schema from the original result,
/// else from the original arguments.
pub fn compensation_args(
    schema: Option<&serde_json::Value>,
    args_json: &str,
    result_json: &str,
) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
    let (args, result) = (parse(args_json), parse(result_json));
    let mut out = serde_json::Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.as_object())
    {
        for name in props.keys() {
            if let Some(v) = result.get(name).or_else(|| args.get(name)) {
                out.insert(name.clone(), v.clone());
            }
        }
    }
    serde_json::Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensation_arguments_come_from_the_result_then_the_arguments() {
        let schema = serde_json::json!({"properties": {"refund_id": {}, "order_id": {}, "x": {}}});
        let args = compensation_args(
            Some(&schema),
            r#"{"order_id":"A1","amount_cents":500}"#,
            r#"{"refund_id":"rf-1","order_id":"A1-from-result"}"#,
        );
        let args: serde_json::Value = serde_json::from_str(&args).expect("json");
        assert_eq!(
            args,
            serde_json::json!({"order_id": "A1-from-result", "refund_id": "rf-1"})
        );
    }
}
