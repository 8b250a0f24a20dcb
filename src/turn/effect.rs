//! Effects: what `decide` asks the runtime to do, as data. The runtime executes an effect only
//! after the events decided with it are durable, and feeds the result back as an [`Input`].
//!
//! [`Input`]: super::Input

use crate::event::Outcome;
use crate::exec::types::Conversation;
pub use crate::exec::types::ToolInvocation;
use crate::ids::TurnId;

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Retrieve {
        turn_id: TurnId,
        query: String,
        /// Whose turn: the vault tokenizes what comes back under this user.
        tenant: String,
        user_id: String,
    },
    /// Ask the model for the next step of the loop, sending it the conversation so far.
    Plan {
        turn_id: TurnId,
        /// The planner profile routing (or the ladder's specialist rung) chose.
        profile: String,
        /// A constrained retry: fewer documents, deterministic tools only.
        constrained: bool,
        /// Proposals recorded before this one in the turn (the answer's `plan_rev`).
        attempt: i32,
        /// The loop step asked for.
        step: i32,
        tenant: String,
        user_id: String,
        conversation: Box<Conversation>,
    },
    CallTool {
        turn_id: TurnId,
        call: ToolInvocation,
    },
    /// Wake the turn with `RetryDue` at `at_ms`.
    Schedule {
        turn_id: TurnId,
        at_ms: i64,
        call_id: String,
        attempt: i32,
    },
    /// Wake the turn with `ApprovalDeadline` at `at_ms`.
    ScheduleDeadline {
        turn_id: TurnId,
        at_ms: i64,
        approval_id: String,
    },
    /// Wake the turn with `HandoffDeadline` at `at_ms`.
    ScheduleHandoffDeadline { turn_id: TurnId, at_ms: i64 },
    /// The turn reached its outcome: publish it and forget the in-memory state.
    Finished {
        turn_id: TurnId,
        tenant: String,
        outcome: Outcome,
        latency_ms: i64,
    },
}

impl Effect {
    pub fn turn_id(&self) -> TurnId {
        match self {
            Effect::Retrieve { turn_id, .. }
            | Effect::Plan { turn_id, .. }
            | Effect::CallTool { turn_id, .. }
            | Effect::Schedule { turn_id, .. }
            | Effect::ScheduleDeadline { turn_id, .. }
            | Effect::ScheduleHandoffDeadline { turn_id, .. }
            | Effect::Finished { turn_id, .. } => *turn_id,
        }
    }
}
