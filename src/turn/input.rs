//! Inputs to `decide`: a request, the result of an effect, a timer, or a restart.

use crate::event::{PlanStep, RetrievedDocument, ToolFailureKind, TurnCommand, TurnRequest};

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Start the turn. `source_offset` is the request's position in the request log.
    Request {
        request: TurnRequest,
        source_offset: Option<i64>,
    },
    Retrieved(Result<Retrieval, ExecFailure>),
    Planned(Result<Planned, ExecFailure>),
    ToolDone {
        call_id: String,
        attempt: i32,
        result: Result<ToolSuccess, ToolFailure>,
    },
    Synthesized(Result<Synthesis, ExecFailure>),
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
    /// The worker rebuilt this turn after a (re)start: re-issue what it was waiting for, and settle
    /// calls whose outcome the crash made unknown.
    Resume,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    pub query: String,
    pub documents: Vec<RetrievedDocument>,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub model: String,
    pub model_version: String,
    pub prompt_template_hash: String,
    pub steps: Vec<PlanStep>,
    pub confidence: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolSuccess {
    pub result_json: String,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolFailure {
    pub kind: ToolFailureKind,
    pub message: String,
    /// Decided where the error was made: may the same call succeed if tried again?
    pub retryable: bool,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Synthesis {
    pub text: String,
    pub citations: Vec<String>,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExecFailure {
    pub message: String,
    pub retryable: bool,
    pub latency_ms: i64,
}
