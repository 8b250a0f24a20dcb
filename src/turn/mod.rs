//! The turn state machine: `decide(state, input) -> (events, effects)` and `apply(state, event)`.
//!
//! Rule: all business logic is in [`decide`]; [`TurnState::apply`] only records facts. Effects
//! are data; the runtime executes them after the events decided with them are durable.
//!
//! # The loop, phase by phase
//!
//! A turn is a loop of model steps. Its [`Phase`] is derived from its facts
//! ([`TurnState::phase`]). Which input each phase accepts, and which handler runs it, is the
//! transition table in `table.rs` (every other pair is rejected and recorded as
//! `InputRejected`); in short:
//!
//! | phase | waiting for | on it | next |
//! |---|---|---|---|
//! | `New` | the request | TurnRequested (redacted); a session's follow-up waits for its predecessor | `Routing` |
//! | `Routing` | `SessionReady` (a session's turn) | RouteSelected, SessionLoaded (history within the profile's budget), ask retrieval | `Retrieving` |
//! | `Retrieving` | the documents | ContextRetrieved (stale dropped, contradictions escalate); loop guards; ask the model for step 0 | `Planning` |
//! | `Planning` | the model's answer to step k | PlanProposed (step k: tool calls or the answer); model failure → ModelCallFailed and the ladder | `ReviewPlan` / `Answering` |
//! | `ReviewPlan` | (derived) | the step's calls reviewed as a plan, with the turn's history | `NextCall` or an ending |
//! | `NextCall` | (derived) | pre-tool guards and review of the next call of step k | `AwaitingTool` / `AwaitingApproval` / the ladder |
//! | `AwaitingApproval` | an operator or the deadline | granted → the call; denied → denied; expired → handoff | `Approved` / an ending |
//! | `AwaitingTool` | the call's result | post-tool guards; ok → next call, or (all done) ask step k+1 with the results; failure → retry, fail or handoff | `NextCall` / `Planning` / `AwaitingRetry` |
//! | `AwaitingRetry` | the backoff timer | the next attempt (same idempotency key) | `AwaitingTool` |
//! | `Answering` | (derived) | ResponseSynthesized from the model's text; citations, lint; pre-response review | `Settle` → `Done` |
//! | `AwaitingHandoff` | an operator or the deadline | resolved → escalated; deadline → escalation_failed | `Done` |
//! | `Approved` | (derived) | the approved call starts | `AwaitingTool` |
//! | `Settle` | (derived) | an ending decided but not fully recorded is completed | `Done` |
//! | `Done` (`Ended`) | an operator | reverse (compensations), late labels | `Reversing` / `Done` |
//! | `Reversing` | the compensations' results and retry timers | CompensationStarted/Completed/Failed; all done → TurnReversed | `Ended` |
//!
//! "(derived)": a phase only a decision cut short by a crash leaves behind; `Resume` goes on
//! from it (`resume.rs`).
//!
//! The ladder (`ladder.rs`) applies per step: a constrained retry or the specialist re-asks the
//! model for the step that was stopped (only if that step did nothing irreversible); user
//! confirmation asks about the stopped call; a handoff waits for a person. A loop at its limits
//! (`max_steps`, spend growing faster than allowed) skips the re-asks.

pub(crate) mod budgeting;
mod calling;
pub mod conversation;
mod decide;
mod effect;
pub(crate) mod gate;
mod guarding;
mod handoff;
mod input;
mod ladder;
mod origins;
mod outcome;
mod planning;
mod refusal;
mod requested;
mod resume;
mod retrieving;
mod reversal;
mod state;
mod stops;
pub mod table;

#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

pub use decide::{DecideCtx, Decision, Limits, backoff_ms, decide, step};
pub use effect::{Effect, ToolInvocation};
pub use gate::prior_tools;
pub use handoff::{HANDOFF_TRACE_VERSION, handoff_trace};
pub use input::{Deadline, ExecFailure, Input, Planned, Retrieval, ToolFailure, ToolSuccess};
pub use origins::{call_provenance, facts as provenance_facts};
pub use reversal::{
    CompensationState, CompensationStatus, ReversalState, compensation_args, reversed_reason,
    undo_id,
};
pub use state::{
    Applied, ApplyError, ApprovalState, ApprovalStatus, CallState, CallStatus, HandoffState,
    OpenReservation, Phase, StepRecord, TripState, TurnBudget, TurnState,
};
pub use stops::StoppedCall;
