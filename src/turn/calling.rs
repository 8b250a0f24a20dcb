//! Phases `AwaitingTool` and `AwaitingRetry`: a call of the current model step runs, or waits
//! for its next attempt.

use crate::event::{
    GuardCheckpoint, Outcome, Payload, ToolCallCompleted, ToolCallFailed, ToolCallStarted,
    ToolFailureKind,
};

use super::decide::{Builder, backoff_ms};
use super::effect::{Effect, ToolInvocation};
use super::guarding::At;
use super::input::{ToolFailure, ToolSuccess};
use super::state::CallState;

impl Builder<'_, '_> {
    /// `(AwaitingTool, ToolDone)`: records the result of call `index` (a result for another
    /// call or an older attempt changes nothing); then the next call, a retry, a failure or a
    /// handoff.
    pub(super) fn on_tool_done(
        &mut self,
        index: usize,
        call_id: String,
        attempt: i32,
        result: Result<ToolSuccess, ToolFailure>,
    ) {
        let Some(tool) = self
            .current_call(index, &call_id, attempt)
            .map(|c| c.tool.clone())
        else {
            return;
        };
        match result {
            Ok(ok) => {
                let (result_json, stop) = self.guard_result(index, &tool, &call_id, ok.result_json);
                self.emit(Payload::ToolCallCompleted(ToolCallCompleted {
                    call_id: call_id.clone(),
                    attempt,
                    result_json,
                    latency_ms: ok.latency_ms,
                }));
                self.flush_trips(At {
                    checkpoint: GuardCheckpoint::PostTool,
                    step: Some(index),
                    tool: Some(tool),
                    call_id: Some(call_id.clone()),
                });
                self.commit_call(&call_id);
                match stop {
                    Some((at, t)) => {
                        // The call ran; its result cannot be trusted: nothing was
                        // pending to confirm, so the ladder re-plans or hands off.
                        let at = At { step: None, ..at };
                        self.trip(at, t);
                    }
                    None => self.next_call(),
                }
            }
            Err(f) => {
                let (error, _) = self.ctx.guards.redactor.redact(&f.message);
                self.emit(Payload::ToolCallFailed(ToolCallFailed {
                    call_id: call_id.clone(),
                    attempt,
                    kind: f.kind,
                    error,
                    retryable: f.retryable,
                    latency_ms: f.latency_ms,
                }));
                if f.kind == ToolFailureKind::OutcomeUnknown {
                    // It may have run: charge it.
                    self.commit_call(&call_id);
                } else {
                    self.release_call(&call_id, "call failed");
                }
                if f.retryable && attempt < self.ctx.limits.max_attempts {
                    self.schedule_retry(call_id, attempt + 1);
                } else if f.kind == ToolFailureKind::OutcomeUnknown {
                    // Not a failure we can report: something may have happened.
                    self.handoff(
                        format!("outcome unknown: {tool} attempt {attempt}: {}", f.message),
                        Some(call_id),
                    );
                } else {
                    let why = if f.retryable {
                        "retries exhausted"
                    } else {
                        "not retryable"
                    };
                    self.complete(
                        Outcome::Failed,
                        format!("{tool} failed on attempt {attempt} ({why}): {}", f.message),
                    );
                }
            }
        }
    }

    /// `(AwaitingRetry, RetryDue)`: starts the next attempt of call `index` (nothing while
    /// draining: the restart's `Resume` schedules it again).
    pub(super) fn on_retry_due(&mut self, index: usize, call_id: String, attempt: i32) {
        if self.ctx.draining {
            return;
        }
        if let Some(call) = self
            .state
            .calls
            .get(index)
            .filter(|c| c.call_id == call_id && c.attempt + 1 == attempt)
            .cloned()
            && self.guard_call(index, &call_id, attempt)
        {
            self.start_call(call, attempt);
        }
    }

    /// Call `index`, if `attempt` of `call_id` is its current attempt.
    pub(super) fn current_call(
        &self,
        index: usize,
        call_id: &str,
        attempt: i32,
    ) -> Option<&CallState> {
        self.state
            .calls
            .get(index)
            .filter(|c| c.call_id == call_id && c.attempt == attempt)
    }

    /// Reserves the call's budget, records the write-ahead intent, then asks for the call.
    pub(super) fn start_call(&mut self, call: CallState, attempt: i32) {
        if !self.reserve_call(&call, attempt) {
            return;
        }
        self.emit(Payload::ToolCallStarted(ToolCallStarted {
            call_id: call.call_id.clone(),
            step: call.step,
            tool: call.tool.clone(),
            args_json: call.args_json.clone(),
            idempotency_key: call.idempotency_key.clone(),
            attempt,
            idempotent: call.idempotent,
        }));
        self.effect(Effect::CallTool {
            turn_id: self.state.turn_id,
            call: ToolInvocation {
                call_id: call.call_id,
                tool: call.tool,
                args_json: call.args_json,
                idempotency_key: call.idempotency_key,
                attempt,
                tenant: self.state.tenant.clone(),
                user_id: self.state.user_id.clone(),
            },
        });
    }

    fn schedule_retry(&mut self, call_id: String, attempt: i32) {
        if self.ctx.draining {
            return;
        }
        let at_ms = self.ctx.now_ms + backoff_ms(self.ctx.limits, &call_id, attempt);
        self.effect(Effect::Schedule {
            turn_id: self.state.turn_id,
            at_ms,
            call_id,
            attempt,
        });
    }
}
