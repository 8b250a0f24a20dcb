//! The turn's transition table: for every phase a turn can be in and every kind of input that
//! can reach it, what happens — a named handler, or an explicit rejection with its reason.
//!
//! Read it top to bottom: [`PhaseKind`] (where the turn is), [`InputKind`] (what arrived),
//! [`Handler`] (what is done with it), then [`transition`], one `match` that names every
//! `(phase, input)` pair — no catch-all arm, so a new phase or a new input does not compile
//! until each of its pairs is decided here. [`rows`] lists the same table as data (the tests
//! hold one test per row, see `table_tests.rs`).
//!
//! # Accepted is not the same as changed
//!
//! A pair the table accepts may still change nothing: a `Resume` of a turn with nothing to
//! re-issue, a `RetryDue` while the worker drains, an approval's deadline that woke early (it
//! is armed again), a tool result for an older attempt of the running call. Those are decided by
//! the handler and are not rejections.
//!
//! # Rejected
//!
//! A pair the table does not accept is recorded as an `InputRejected` event on the turn (so
//! `ballast trace` shows it) and counted in `ballast_turn_inputs_rejected_total{phase, input}`;
//! it changes nothing else. Two deliberate choices:
//!
//! - **A turn not yet requested records nothing.** Its first event must be `TurnRequested`
//!   (`apply` takes the tenant and user from it, projections key on it): a rejection there is
//!   returned in [`Decision::rejected`](super::Decision) only. The runtime never delivers one
//!   — it decides only for turns it holds, and it creates a turn with its request.
//! - **A second request for the same turn is recorded**, not skipped: the runtime's intake
//!   already drops a request whose turn it holds or has seen (`intake.rs`), so one that still
//!   arrives here is rare and worth seeing.
//!
//! Terminal turns are part of the table: an ended turn takes late commands (reverse, label),
//! and one being reversed also takes its compensations' results and retry timers.

use super::input::Input;
use super::state::{Phase, TurnState};

/// Where a turn is, without the data [`Phase`] carries; a finished turn is `Ended` or, while an
/// operator's reversal runs, `Reversing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhaseKind {
    New,
    Routing,
    Retrieving,
    Planning,
    ReviewPlan,
    Answering,
    NextCall,
    AwaitingApproval,
    Approved,
    AwaitingTool,
    AwaitingRetry,
    AwaitingHandoff,
    Settle,
    Ended,
    Reversing,
}

/// What arrived, without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputKind {
    Request,
    SessionReady,
    Retrieved,
    Planned,
    ToolDone,
    RetryDue,
    Command,
    ApprovalDeadline,
    HandoffDeadline,
    Resume,
}

/// What the turn does with an input: each accepted row names the `Builder` method that runs
/// it (in the file named after its phase), each rejected row its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// `requested.rs` `on_request`: record the (redacted) request, route unless its session is busy.
    Request,
    /// `requested.rs` `on_session_ready`: the session's earlier turn finished; route.
    SessionReady,
    /// `retrieving.rs` `on_retrieved`: record the documents (or the failure), ask the model.
    Retrieved,
    /// `planning.rs` `on_planned`: record the model's answer, or its failure and climb the ladder.
    Planned,
    /// `calling.rs` `on_tool_done`: record the call's result; next call, retry, fail or hand off.
    ToolDone,
    /// `calling.rs` `on_retry_due`: start the next attempt of the failed call.
    RetryDue,
    /// `gate.rs` `on_command`: an operator grants or denies the pending approval.
    ApprovalCommand,
    /// `gate.rs` `on_deadline`: the approval expired (refused to the model, or handed off).
    ApprovalDeadline,
    /// `ladder.rs` `on_handoff_command`: an operator accepts or resolves the handoff.
    HandoffCommand,
    /// `ladder.rs` `on_handoff_deadline`: nobody resolved the handoff in time.
    HandoffDeadline,
    /// `resume.rs` `resume`: re-issue what the phase waits for, settle what a crash cut short.
    Resume,
    /// `reversal.rs` `on_late_command`: reverse or label a finished turn.
    LateCommand,
    /// `reversal.rs` `on_compensated`: a compensating call's result.
    CompensationDone,
    /// `reversal.rs` `on_compensation_due`: the next attempt of a compensating call.
    CompensationDue,
    /// `reversal.rs` `resume_reversal`: re-issue the reversal's running compensation.
    ResumeReversal,
    /// Accepted, and there is nothing to do (a resume of a finished turn).
    Nothing,
    /// Not accepted in this phase: recorded as `InputRejected` with this reason.
    Rejected(&'static str),
}

// The rejection reasons, one per class.
const DUPLICATE_REQUEST: &str = "request for a turn already requested";
const NOT_REQUESTED: &str = "input for a turn not yet requested";
const SESSION_NOT_WAITED: &str = "session wakeup for a turn not waiting for its session";
const LATE_RETRIEVAL: &str = "late retrieval result";
const LATE_MODEL: &str = "late model answer";
const LATE_TOOL: &str = "late tool result";
const STALE_RETRY: &str = "retry timer for a call not waiting for its retry";
const NOT_WAITING_PERSON: &str = "command for a turn not waiting for a person";
const STALE_APPROVAL_DEADLINE: &str = "approval deadline for a turn not waiting for an approval";
const STALE_HANDOFF_DEADLINE: &str = "handoff deadline for a turn not handed off";
const ENDED: &str = "input for a finished turn";

/// The table. Every `(phase, input)` pair is written out; grouped with `|` where the outcome is
/// the same.
pub const fn transition(phase: PhaseKind, input: InputKind) -> Handler {
    use Handler as H;
    use InputKind as I;
    use PhaseKind as P;
    match (phase, input) {
        // ── New: nothing recorded yet; only the request starts the turn.
        (P::New, I::Request) => H::Request,
        (P::New, I::Resume) => H::Resume,
        (
            P::New,
            I::SessionReady
            | I::Retrieved
            | I::Planned
            | I::ToolDone
            | I::RetryDue
            | I::Command
            | I::ApprovalDeadline
            | I::HandoffDeadline,
        ) => H::Rejected(NOT_REQUESTED),

        // ── Requests to a turn already requested, in every later phase.
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::Request,
        ) => H::Rejected(DUPLICATE_REQUEST),

        // ── Resume: every live phase re-derives what it waits for.
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::Resume,
        ) => H::Resume,

        // ── Routing: a session's follow-up waits for the turn before it.
        (P::Routing, I::SessionReady) => H::SessionReady,
        (
            P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::SessionReady,
        ) => H::Rejected(SESSION_NOT_WAITED),

        // ── Retrieving: the documents.
        (P::Retrieving, I::Retrieved) => H::Retrieved,
        (
            P::Routing
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::Retrieved,
        ) => H::Rejected(LATE_RETRIEVAL),

        // ── Planning: the model's answer to the step asked for.
        (P::Planning, I::Planned) => H::Planned,
        (
            P::Routing
            | P::Retrieving
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::Planned,
        ) => H::Rejected(LATE_MODEL),

        // ── AwaitingTool: the running call's result.
        (P::AwaitingTool, I::ToolDone) => H::ToolDone,
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::ToolDone,
        ) => H::Rejected(LATE_TOOL),

        // ── AwaitingRetry: the backoff timer.
        (P::AwaitingRetry, I::RetryDue) => H::RetryDue,
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingHandoff
            | P::Settle,
            I::RetryDue,
        ) => H::Rejected(STALE_RETRY),

        // ── AwaitingApproval and AwaitingHandoff: a person, or the deadline.
        (P::AwaitingApproval, I::Command) => H::ApprovalCommand,
        (P::AwaitingHandoff, I::Command) => H::HandoffCommand,
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::Settle,
            I::Command,
        ) => H::Rejected(NOT_WAITING_PERSON),
        (P::AwaitingApproval, I::ApprovalDeadline) => H::ApprovalDeadline,
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::AwaitingHandoff
            | P::Settle,
            I::ApprovalDeadline,
        ) => H::Rejected(STALE_APPROVAL_DEADLINE),
        (P::AwaitingHandoff, I::HandoffDeadline) => H::HandoffDeadline,
        (
            P::Routing
            | P::Retrieving
            | P::Planning
            | P::ReviewPlan
            | P::Answering
            | P::NextCall
            | P::AwaitingApproval
            | P::Approved
            | P::AwaitingTool
            | P::AwaitingRetry
            | P::Settle,
            I::HandoffDeadline,
        ) => H::Rejected(STALE_HANDOFF_DEADLINE),

        // ── Ended: only late commands (reverse, label); a resume has nothing to do.
        (P::Ended, I::Command) => H::LateCommand,
        (P::Ended, I::Resume) => H::Nothing,
        (
            P::Ended,
            I::Request
            | I::SessionReady
            | I::Retrieved
            | I::Planned
            | I::ToolDone
            | I::RetryDue
            | I::ApprovalDeadline
            | I::HandoffDeadline,
        ) => H::Rejected(ENDED),

        // ── Reversing: late commands, and the compensations' results and timers.
        (P::Reversing, I::Command) => H::LateCommand,
        (P::Reversing, I::ToolDone) => H::CompensationDone,
        (P::Reversing, I::RetryDue) => H::CompensationDue,
        (P::Reversing, I::Resume) => H::ResumeReversal,
        (
            P::Reversing,
            I::Request
            | I::SessionReady
            | I::Retrieved
            | I::Planned
            | I::ApprovalDeadline
            | I::HandoffDeadline,
        ) => H::Rejected(ENDED),
    }
}

impl PhaseKind {
    pub const ALL: [PhaseKind; 15] = [
        PhaseKind::New,
        PhaseKind::Routing,
        PhaseKind::Retrieving,
        PhaseKind::Planning,
        PhaseKind::ReviewPlan,
        PhaseKind::Answering,
        PhaseKind::NextCall,
        PhaseKind::AwaitingApproval,
        PhaseKind::Approved,
        PhaseKind::AwaitingTool,
        PhaseKind::AwaitingRetry,
        PhaseKind::AwaitingHandoff,
        PhaseKind::Settle,
        PhaseKind::Ended,
        PhaseKind::Reversing,
    ];

    /// The kind of `state`'s phase.
    pub fn of(state: &TurnState) -> PhaseKind {
        if state.outcome.is_some() {
            return if state.reversal.as_ref().is_some_and(|r| !r.done) {
                PhaseKind::Reversing
            } else {
                PhaseKind::Ended
            };
        }
        PhaseKind::of_phase(&state.phase())
    }

    pub fn of_phase(phase: &Phase) -> PhaseKind {
        match phase {
            Phase::New => PhaseKind::New,
            Phase::Routing => PhaseKind::Routing,
            Phase::Retrieving => PhaseKind::Retrieving,
            Phase::Planning => PhaseKind::Planning,
            Phase::ReviewPlan => PhaseKind::ReviewPlan,
            Phase::Answering => PhaseKind::Answering,
            Phase::NextCall => PhaseKind::NextCall,
            Phase::AwaitingApproval { .. } => PhaseKind::AwaitingApproval,
            Phase::Approved { .. } => PhaseKind::Approved,
            Phase::AwaitingTool { .. } => PhaseKind::AwaitingTool,
            Phase::AwaitingRetry { .. } => PhaseKind::AwaitingRetry,
            Phase::AwaitingHandoff => PhaseKind::AwaitingHandoff,
            Phase::Settle => PhaseKind::Settle,
            Phase::Done(_) => PhaseKind::Ended,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::New => "New",
            PhaseKind::Routing => "Routing",
            PhaseKind::Retrieving => "Retrieving",
            PhaseKind::Planning => "Planning",
            PhaseKind::ReviewPlan => "ReviewPlan",
            PhaseKind::Answering => "Answering",
            PhaseKind::NextCall => "NextCall",
            PhaseKind::AwaitingApproval => "AwaitingApproval",
            PhaseKind::Approved => "Approved",
            PhaseKind::AwaitingTool => "AwaitingTool",
            PhaseKind::AwaitingRetry => "AwaitingRetry",
            PhaseKind::AwaitingHandoff => "AwaitingHandoff",
            PhaseKind::Settle => "Settle",
            PhaseKind::Ended => "Ended",
            PhaseKind::Reversing => "Reversing",
        }
    }
}

impl InputKind {
    pub const ALL: [InputKind; 10] = [
        InputKind::Request,
        InputKind::SessionReady,
        InputKind::Retrieved,
        InputKind::Planned,
        InputKind::ToolDone,
        InputKind::RetryDue,
        InputKind::Command,
        InputKind::ApprovalDeadline,
        InputKind::HandoffDeadline,
        InputKind::Resume,
    ];

    pub fn of(input: &Input) -> InputKind {
        match input {
            Input::Request { .. } => InputKind::Request,
            Input::SessionReady(_) => InputKind::SessionReady,
            Input::Retrieved(_) => InputKind::Retrieved,
            Input::Planned(_) => InputKind::Planned,
            Input::ToolDone { .. } => InputKind::ToolDone,
            Input::RetryDue { .. } => InputKind::RetryDue,
            Input::Command(_) => InputKind::Command,
            Input::ApprovalDeadline { .. } => InputKind::ApprovalDeadline,
            Input::HandoffDeadline => InputKind::HandoffDeadline,
            Input::Resume => InputKind::Resume,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Request => "Request",
            InputKind::SessionReady => "SessionReady",
            InputKind::Retrieved => "Retrieved",
            InputKind::Planned => "Planned",
            InputKind::ToolDone => "ToolDone",
            InputKind::RetryDue => "RetryDue",
            InputKind::Command => "Command",
            InputKind::ApprovalDeadline => "ApprovalDeadline",
            InputKind::HandoffDeadline => "HandoffDeadline",
            InputKind::Resume => "Resume",
        }
    }
}

/// Every row of the table, phase by phase.
pub fn rows() -> impl Iterator<Item = (PhaseKind, InputKind, Handler)> {
    PhaseKind::ALL.into_iter().flat_map(|p| {
        InputKind::ALL
            .into_iter()
            .map(move |i| (p, i, transition(p, i)))
    })
}

/// An input the table did not accept, as `decide` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub phase: PhaseKind,
    pub input: InputKind,
    pub reason: &'static str,
}
