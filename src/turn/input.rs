//! Inputs to `decide`: a request, the result of an effect, a timer, or a restart. The result
//! types belong to the execution plane (`exec::types`) and are re-exported here.

use crate::event::{SessionTurn, TurnCommand, TurnRequest};
pub use crate::exec::types::{ExecFailure, Planned, Retrieval, ToolFailure, ToolSuccess};

/// The deadline of a turn waiting for a person: each kind wakes the turn with its own input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deadline {
    Approval { approval_id: String },
    Handoff,
}

impl From<Deadline> for Input {
    fn from(d: Deadline) -> Input {
        match d {
            Deadline::Approval { approval_id } => Input::ApprovalDeadline { approval_id },
            Deadline::Handoff => Input::HandoffDeadline,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Start the turn. `source_offset` is the request's position in the request log; `session`
    /// the earlier turns of its session the worker holds (oldest first), which the turn trims
    /// to its profile's budget and records — or `None` while another turn of the session still
    /// runs: the turn is recorded and waits for [`Input::SessionReady`].
    Request {
        request: TurnRequest,
        source_offset: Option<i64>,
        session: Option<Vec<SessionTurn>>,
    },
    /// The turn before this one in its session has finished: its history, this turn may go on.
    SessionReady(Vec<SessionTurn>),
    Retrieved(Result<Retrieval, ExecFailure>),
    /// The model's answer to the step the turn asked for.
    Planned(Result<Planned, ExecFailure>),
    ToolDone {
        call_id: String,
        attempt: i32,
        result: Result<ToolSuccess, ToolFailure>,
    },
    /// The backoff before `attempt` of `call_id` has elapsed.
    RetryDue {
        call_id: String,
        attempt: i32,
    },
    /// An operator's command (approve, deny) for this turn.
    Command(TurnCommand),
    /// The deadline of an approval has come.
    ApprovalDeadline {
        approval_id: String,
    },
    /// The deadline of the turn's handoff to a person has come.
    HandoffDeadline,
    /// The worker rebuilt this turn after a (re)start: re-issue what it was waiting for, resolve
    /// calls whose outcome the crash made unknown, and settle an ending it had decided.
    Resume,
}
