//! `decide`: every business rule of a turn, as a pure function of state, input and context.
//!
//! It returns the events to append and the effects to run once they are durable. It never does
//! I/O, never reads a clock (time arrives in [`DecideCtx::now_ms`]) and never draws randomness
//! (ids are derived), so replaying recorded inputs reproduces recorded events exactly.
//!
//! What each phase does with each input is the transition table (`table.rs`); the handlers
//! live in the files named after their phase (`requested.rs`, `retrieving.rs`, `planning.rs`,
//! `calling.rs`, `gate.rs` for approvals, `ladder.rs` for handoffs, `reversal.rs` once ended,
//! `resume.rs` after a restart). This file is the plumbing: the builder and the dispatch.

use crate::control::ControlPlane;
use crate::control::budget::{BudgetLimits, Ledger};
use crate::event::{Event, InputRejected, Outcome, Payload, SessionTurn, TurnCompleted};
use crate::exec::catalog::Catalog;
use crate::guard::{Breakers, Guards, Trip};

use super::effect::Effect;
use super::input::Input;
use super::state::TurnState;
use super::table::{Handler, InputKind, PhaseKind, Rejection, transition};

/// Limits the state machine enforces itself (the control plane enforces the rest).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Attempts per tool call, the first included.
    pub max_attempts: i32,
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attempts: 3,
            retry_base_ms: 20,
            retry_max_ms: 2_000,
        }
    }
}

/// Everything `decide` may consult besides the turn itself.
pub struct DecideCtx<'a> {
    pub now_ms: i64,
    pub catalog: &'a Catalog,
    pub control: &'a dyn ControlPlane,
    pub limits: &'a Limits,
    /// Budget limits as this partition enforces them (see `BudgetLimits::for_partitions`).
    pub budgets: &'a BudgetLimits,
    /// The partition's window accounts, as of every event decided before this step.
    pub ledger: &'a Ledger,
    /// Compiled guards (schemas, redaction patterns, ladder).
    pub guards: &'a Guards,
    /// The partition's per-tool circuit breakers, as of every event decided before this step.
    pub breakers: &'a Breakers,
    /// The worker is shutting down: record results, start nothing new. What was not started is
    /// derived again from the state by `Resume` after the restart.
    pub draining: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
    /// The input, when the transition table does not accept it in the turn's phase (recorded
    /// in `events` as `InputRejected`, except for a turn not yet requested: see `table.rs`).
    pub rejected: Option<Rejection>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }
}

/// Decides without changing `state`. Equivalent to [`step`] on a copy.
pub fn decide(state: &TurnState, input: Input, ctx: &DecideCtx<'_>) -> Decision {
    let mut scratch = state.clone();
    step(&mut scratch, input, ctx)
}

/// Decides and applies the decided events to `state` (the runtime's form: no copy). On return,
/// `state` equals `state` replayed with `Decision::events`.
pub fn step(state: &mut TurnState, input: Input, ctx: &DecideCtx<'_>) -> Decision {
    let mut b = Builder {
        state,
        ctx,
        out: Decision::default(),
        pending_trips: Vec::new(),
        session: Vec::new(),
    };
    b.handle(input);
    b.out
}

/// Backoff before `attempt` (2, 3, …): exponential, capped, with a deterministic jitter so that
/// retries of many turns do not fire in lockstep.
pub fn backoff_ms(limits: &Limits, call_id: &str, attempt: i32) -> i64 {
    let exp = (attempt - 2).clamp(0, 20) as u32;
    let base = limits
        .retry_base_ms
        .saturating_mul(1 << exp)
        .min(limits.retry_max_ms);
    let jitter = call_id
        .bytes()
        .fold(attempt as i64, |h, b| (h * 31 + b as i64) % 1_000_003);
    base + jitter % (base / 4 + 1)
}

pub(super) struct Builder<'s, 'c> {
    pub(super) state: &'s mut TurnState,
    pub(super) ctx: &'c DecideCtx<'c>,
    pub(super) out: Decision,
    /// Modify trips found before the event they qualify, recorded right after it.
    pub(super) pending_trips: Vec<Trip>,
    /// The session turns a new request arrived with, until routing picks the budget for them.
    pub(super) session: Vec<SessionTurn>,
}

impl Builder<'_, '_> {
    pub(super) fn emit(&mut self, payload: Payload) {
        let seq = self.state.next_seq;
        let event = Event {
            event_id: self.state.turn_id.event_id(seq as u64),
            turn_id: self.state.turn_id,
            tenant: self.state.tenant.clone(),
            seq,
            at_ms: self.ctx.now_ms,
            payload,
        };
        // Infallible here: the event is built for this turn at exactly next_seq.
        let _ = self.state.apply(&event);
        self.out.events.push(event);
    }

    pub(super) fn effect(&mut self, effect: Effect) {
        self.out.effects.push(effect);
    }

    /// Dispatches `input` through the transition table.
    fn handle(&mut self, input: Input) {
        let phase = self.state.phase();
        let (kind, input_kind) = (PhaseKind::of(self.state), InputKind::of(&input));
        let index = phase.index();
        match (transition(kind, input_kind), input, index) {
            (
                Handler::Request,
                Input::Request {
                    request,
                    source_offset,
                    session,
                },
                _,
            ) => {
                if request.turn_id != self.state.turn_id {
                    self.reject(kind, input_kind, "request for another turn");
                    return;
                }
                self.on_request(request, source_offset, session);
            }
            (Handler::SessionReady, Input::SessionReady(turns), _) => self.on_session_ready(turns),
            (Handler::Retrieved, Input::Retrieved(result), _) => self.on_retrieved(result),
            (Handler::Planned, Input::Planned(result), _) => self.on_planned(result),
            (
                Handler::ToolDone,
                Input::ToolDone {
                    call_id,
                    attempt,
                    result,
                },
                Some(index),
            ) => self.on_tool_done(index, call_id, attempt, result),
            (Handler::RetryDue, Input::RetryDue { call_id, attempt }, Some(index)) => {
                self.on_retry_due(index, call_id, attempt)
            }
            (Handler::ApprovalCommand, Input::Command(command), Some(index)) => {
                self.on_command(command, index)
            }
            (Handler::ApprovalDeadline, Input::ApprovalDeadline { approval_id }, Some(index)) => {
                self.on_deadline(&approval_id, index)
            }
            (Handler::HandoffCommand, Input::Command(command), _) => {
                self.on_handoff_command(command)
            }
            (Handler::HandoffDeadline, Input::HandoffDeadline, _) => self.on_handoff_deadline(),
            (Handler::Resume, Input::Resume, _) => self.resume(phase),
            (Handler::LateCommand, Input::Command(command), _) => self.on_late_command(command),
            (
                Handler::CompensationDone,
                Input::ToolDone {
                    call_id,
                    attempt,
                    result,
                },
                _,
            ) => self.on_compensation_done(call_id, attempt, result),
            (Handler::CompensationDue, Input::RetryDue { call_id, attempt }, _) => {
                self.on_compensation_due(call_id, attempt)
            }
            (Handler::ResumeReversal, Input::Resume, _) => self.resume_reversal(),
            (Handler::Nothing, _, _) => {}
            (Handler::Rejected(reason), _, _) => self.reject(kind, input_kind, reason),
            // The table names, per pair, a handler of that input kind (and a phase with an
            // index where the handler needs one; a test holds every row to it): this is not
            // reached. Should it be, the input is rejected visibly, never dropped.
            (_, _, _) => self.reject(kind, input_kind, "no handler for this input"),
        }
    }

    /// Records that the table did not accept `input` in `phase`: an `InputRejected` event (not
    /// for a turn not yet requested: see `table.rs`) and `Decision::rejected`.
    fn reject(&mut self, phase: PhaseKind, input: InputKind, reason: &'static str) {
        self.out.rejected = Some(Rejection {
            phase,
            input,
            reason,
        });
        if !self.state.requested {
            return;
        }
        self.emit(Payload::InputRejected(InputRejected {
            input: input.as_str().to_string(),
            phase: phase.as_str().to_string(),
            reason: reason.to_string(),
        }));
    }

    pub(super) fn complete(&mut self, outcome: Outcome, reason: String) {
        self.release_all("turn ended");
        // An answer after calls were refused, denied or stopped (and not run since) is not a
        // success: the task may be unfinished, whatever the model says.
        let (refused, denied) = (self.state.refused_calls(), self.state.denied_calls());
        let (outcome, reason) = if outcome == Outcome::Succeeded && refused + denied > 0 {
            let reason =
                format!("{reason}; {refused} call(s) refused, {denied} not confirmed, never run");
            (Outcome::CompletedWithRefusals, reason)
        } else {
            (outcome, reason)
        };
        let latency_ms = (self.ctx.now_ms - self.state.requested_at_ms).max(0);
        self.emit(Payload::TurnCompleted(TurnCompleted {
            outcome,
            reason,
            latency_ms,
        }));
        self.effect(Effect::Finished {
            turn_id: self.state.turn_id,
            tenant: self.state.tenant.clone(),
            outcome,
            latency_ms,
        });
    }
}
