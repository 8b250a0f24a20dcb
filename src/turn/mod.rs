//! The turn state machine: `decide(state, input) -> (events, effects)` and `apply(state, event)`.
//!
//! Rule: all business logic is in [`decide`]; [`TurnState::apply`] only records facts. Effects
//! are data; the runtime executes them after the events decided with them are durable.

pub(crate) mod budgeting;
pub mod conversation;
mod decide;
mod effect;
pub(crate) mod gate;
mod guarding;
mod input;
mod ladder;
mod resume;
mod reversal;
mod state;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

pub use decide::{DecideCtx, Decision, Limits, backoff_ms, decide, step};
pub use effect::{Effect, ToolInvocation};
pub use gate::prior_tools;
pub use input::{ExecFailure, Input, Planned, Retrieval, ToolFailure, ToolSuccess};
pub use reversal::{
    CompensationState, CompensationStatus, ReversalState, compensation_args, reversed_reason,
    undo_id,
};
pub use state::{
    Applied, ApplyError, ApprovalState, ApprovalStatus, CallState, CallStatus, HandoffState,
    OpenReservation, Phase, StepRecord, TripState, TurnBudget, TurnState,
};
