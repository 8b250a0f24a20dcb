//! Turn events: the only source of truth. The Rust types mirror `schemas/turn_event.avsc`
//! field for field; the variant order of [`Payload`] is the order of the schema's payload union.

pub mod codec;
mod display;
pub use display::timeline;
pub mod fixtures;
mod reversal;
pub use reversal::*;
mod nan;
mod otel;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::TurnId;

/// An event with its envelope: which turn, which tenant, where in the turn's sequence, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Uuid,
    pub turn_id: TurnId,
    pub tenant: String,
    /// Dense per-turn sequence number starting at 0.
    pub seq: i64,
    pub at_ms: i64,
    pub payload: Payload,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        self.payload.kind()
    }
}

/// The facts a turn can record. Adding a variant means appending a record to the schema's union.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    TurnRequested(TurnRequested),
    ContextRetrieved(ContextRetrieved),
    PlanProposed(PlanProposed),
    PolicyEvaluated(PolicyEvaluated),
    ToolCallStarted(ToolCallStarted),
    ToolCallCompleted(ToolCallCompleted),
    ToolCallFailed(ToolCallFailed),
    EscalationRaised(EscalationRaised),
    ResponseSynthesized(ResponseSynthesized),
    TurnCompleted(TurnCompleted),
    RouteSelected(RouteSelected),
    BudgetReserved(BudgetReserved),
    BudgetCommitted(BudgetCommitted),
    BudgetReleased(BudgetReleased),
    ApprovalRequested(ApprovalRequested),
    ApprovalGranted(ApprovalResolved),
    ApprovalDenied(ApprovalResolved),
    ApprovalExpired(ApprovalExpired),
    GuardrailTripped(GuardrailTripped),
    HandoffAccepted(HandoffAccepted),
    HandoffResolved(HandoffResolved),
    ReversalRequested(ReversalRequested),
    CompensationStarted(CompensationStarted),
    CompensationCompleted(CompensationCompleted),
    CompensationFailed(CompensationFailed),
    TurnReversed(TurnReversed),
    OutcomeLabeled(OutcomeLabeled),
    SessionLoaded(SessionLoaded),
    ModelCallFailed(ModelCallFailed),
    CallRefused(CallRefused),
    InputRejected(InputRejected),
}

impl Payload {
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::TurnRequested(_) => "TurnRequested",
            Payload::ContextRetrieved(_) => "ContextRetrieved",
            Payload::PlanProposed(_) => "PlanProposed",
            Payload::PolicyEvaluated(_) => "PolicyEvaluated",
            Payload::ToolCallStarted(_) => "ToolCallStarted",
            Payload::ToolCallCompleted(_) => "ToolCallCompleted",
            Payload::ToolCallFailed(_) => "ToolCallFailed",
            Payload::EscalationRaised(_) => "EscalationRaised",
            Payload::ResponseSynthesized(_) => "ResponseSynthesized",
            Payload::TurnCompleted(_) => "TurnCompleted",
            Payload::RouteSelected(_) => "RouteSelected",
            Payload::BudgetReserved(_) => "BudgetReserved",
            Payload::BudgetCommitted(_) => "BudgetCommitted",
            Payload::BudgetReleased(_) => "BudgetReleased",
            Payload::ApprovalRequested(_) => "ApprovalRequested",
            Payload::ApprovalGranted(_) => "ApprovalGranted",
            Payload::ApprovalDenied(_) => "ApprovalDenied",
            Payload::ApprovalExpired(_) => "ApprovalExpired",
            Payload::GuardrailTripped(_) => "GuardrailTripped",
            Payload::HandoffAccepted(_) => "HandoffAccepted",
            Payload::HandoffResolved(_) => "HandoffResolved",
            Payload::ReversalRequested(_) => "ReversalRequested",
            Payload::CompensationStarted(_) => "CompensationStarted",
            Payload::CompensationCompleted(_) => "CompensationCompleted",
            Payload::CompensationFailed(_) => "CompensationFailed",
            Payload::TurnReversed(_) => "TurnReversed",
            Payload::OutcomeLabeled(_) => "OutcomeLabeled",
            Payload::SessionLoaded(_) => "SessionLoaded",
            Payload::ModelCallFailed(_) => "ModelCallFailed",
            Payload::CallRefused(_) => "CallRefused",
            Payload::InputRejected(_) => "InputRejected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRequested {
    pub user_id: String,
    pub text: String,
    pub channel: String,
    pub attributes: BTreeMap<String, String>,
    pub submitted_at_ms: i64,
    pub source_offset: Option<i64>,
    /// The conversation this turn continues (its earlier turns: `SessionLoaded`).
    #[serde(default)]
    pub session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextRetrieved {
    pub query: String,
    pub documents: Vec<RetrievedDocument>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievedDocument {
    pub id: String,
    pub title: String,
    #[serde(deserialize_with = "nan::f64_or_nan")]
    pub score: f64,
    pub version: i64,
    pub updated_at_ms: i64,
    pub snippet: String,
    /// Facts the document states, by name (e.g. `refund_days` → `5`): two documents that state
    /// different values for one fact contradict each other.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanProposed {
    pub plan_rev: i32,
    pub model: String,
    pub model_version: String,
    pub prompt_template_hash: String,
    pub steps: Vec<PlanStep>,
    /// NaN when the model reported none (JSON, e.g. a snapshot, writes it as null).
    #[serde(deserialize_with = "nan::f64_or_nan")]
    pub confidence: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    /// The model step of the turn's loop this answers; a re-ask by the ladder keeps the step.
    #[serde(default)]
    pub step: i32,
    /// The model's text: with no tool calls (`steps` empty), the final answer.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    /// sha256 of the messages sent for this step.
    #[serde(default)]
    pub messages_digest: Option<String>,
}

impl PlanProposed {
    /// A final answer: the model asked for no tool call.
    pub fn is_answer(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The earlier turns of a session, as recorded at the start of a turn that continues it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionLoaded {
    pub session_id: String,
    pub turns: Vec<SessionTurn>,
    /// Turn ids left out to stay within the token budget, oldest first.
    #[serde(default)]
    pub dropped: Vec<String>,
    #[serde(default)]
    pub tokens: i64,
}

/// One earlier turn of a session: what the user asked, what they were answered, and the tool
/// calls in between with their results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionTurn {
    pub turn_id: String,
    pub request: String,
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub calls: Vec<SessionCall>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionCall {
    pub tool: String,
    pub args_json: String,
    pub result_json: String,
}

/// The model could not answer a step (after the planner's own retries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCallFailed {
    pub step: i32,
    pub plan_rev: i32,
    pub error: String,
    pub retryable: bool,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub tool: String,
    pub args_json: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    Plan,
    PreTool,
    /// Before a model call: budgets only.
    PreModel,
    /// Before the reply is sent.
    PreResponse,
}

impl Checkpoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            Checkpoint::Plan => "plan",
            Checkpoint::PreTool => "pre_tool",
            Checkpoint::PreModel => "pre_model",
            Checkpoint::PreResponse => "pre_response",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecision {
    Allow,
    RequireConfirmation,
    Escalate,
    Deny,
}

impl PolicyDecision {
    pub const ALL: [PolicyDecision; 4] = [
        PolicyDecision::Allow,
        PolicyDecision::RequireConfirmation,
        PolicyDecision::Escalate,
        PolicyDecision::Deny,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyDecision::Allow => "allow",
            PolicyDecision::RequireConfirmation => "require_confirmation",
            PolicyDecision::Escalate => "escalate",
            PolicyDecision::Deny => "deny",
        }
    }

    /// Orders decisions by how much they restrict: allow < confirm < escalate < deny.
    pub fn severity(&self) -> u8 {
        match self {
            PolicyDecision::Allow => 0,
            PolicyDecision::RequireConfirmation => 1,
            PolicyDecision::Escalate => 2,
            PolicyDecision::Deny => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvaluated {
    pub checkpoint: Checkpoint,
    pub step: Option<i32>,
    pub tool: Option<String>,
    pub decision: PolicyDecision,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub risk_score: f64,
    pub policy_version: String,
    /// The review's inputs, recorded so a backtest re-runs it from the log alone (absent on
    /// budget refusals, which no policy decides).
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub failures: Option<i32>,
    #[serde(default)]
    pub anomalies: Vec<String>,
    #[serde(default)]
    pub budget_cost_micros: Option<i64>,
    #[serde(default)]
    pub budget_tokens: Option<i64>,
    #[serde(default)]
    pub budget_tool_calls: Option<i64>,
    /// Pre-tool: where each argument value came from (`provenance::CallProvenance` as JSON).
    #[serde(default)]
    pub provenance_json: Option<String>,
    /// A refusal by this decision goes back to the model as the call's error and the turn
    /// goes on (`on_refusal = "feedback"`); at the plan checkpoint, a deny with feedback leaves
    /// each call to its own review instead of ending the turn.
    #[serde(default)]
    pub feedback: bool,
}

/// A proposed call refused and reported back to the model as its error: the loop goes on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRefused {
    pub call_id: String,
    pub step: i32,
    pub tool: String,
    pub rules: Vec<String>,
    pub reason: String,
}

/// An input the turn's phase does not accept (see `turn::table`): recorded rather than dropped,
/// so a trace shows it. It changes nothing else in the turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRejected {
    /// The input's kind, e.g. `ToolDone`.
    pub input: String,
    /// The turn's phase kind when it arrived, e.g. `Planning`.
    pub phase: String,
    pub reason: String,
}

impl Default for PolicyEvaluated {
    fn default() -> Self {
        PolicyEvaluated {
            checkpoint: Checkpoint::Plan,
            step: None,
            tool: None,
            decision: PolicyDecision::Deny,
            policy_ids: Vec::new(),
            reason: String::new(),
            risk_score: 0.0,
            policy_version: String::new(),
            confidence: None,
            failures: None,
            anomalies: Vec::new(),
            budget_cost_micros: None,
            budget_tokens: None,
            budget_tool_calls: None,
            provenance_json: None,
            feedback: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallStarted {
    pub call_id: String,
    pub step: i32,
    pub tool: String,
    pub args_json: String,
    pub idempotency_key: String,
    pub attempt: i32,
    pub idempotent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallCompleted {
    pub call_id: String,
    pub attempt: i32,
    pub result_json: String,
    pub latency_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFailureKind {
    /// The tool answered with an error.
    Error,
    /// No answer within the tool's timeout.
    Timeout,
    /// The process stopped while a non-replayable call was in flight: it may or may not have run.
    OutcomeUnknown,
    /// The process stopped while a replayable (idempotent) call was in flight; it is retried.
    Interrupted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFailed {
    pub call_id: String,
    pub attempt: i32,
    pub kind: ToolFailureKind,
    pub error: String,
    pub retryable: bool,
    pub latency_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationRung {
    ConstrainedRetry,
    Specialist,
    UserConfirmation,
    HumanHandoff,
}

impl EscalationRung {
    pub fn as_str(&self) -> &'static str {
        match self {
            EscalationRung::ConstrainedRetry => "constrained_retry",
            EscalationRung::Specialist => "specialist",
            EscalationRung::UserConfirmation => "user_confirmation",
            EscalationRung::HumanHandoff => "human_handoff",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EscalationRaised {
    pub rung: EscalationRung,
    pub reason: String,
    pub call_id: Option<String>,
    /// For a human handoff: when it must be resolved, or the turn ends as escalation_failed.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseSynthesized {
    pub text: String,
    pub citations: Vec<String>,
    pub redactions: i32,
    pub latency_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Denied,
    /// Handed to a person, who resolved it.
    Escalated,
    Reversed,
    /// Handed to a person, who did not resolve it by the deadline.
    EscalationFailed,
    /// The model answered, but calls of the turn were refused, denied or stopped and never
    /// ran: the user's task may be unfinished. Not a success (`task_success` counts only
    /// `Succeeded`).
    CompletedWithRefusals,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Denied,
        Outcome::Escalated,
        Outcome::Reversed,
        Outcome::EscalationFailed,
        Outcome::CompletedWithRefusals,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
            Outcome::Escalated => "escalated",
            Outcome::Reversed => "reversed",
            Outcome::EscalationFailed => "escalation_failed",
            Outcome::CompletedWithRefusals => "completed_with_refusals",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnCompleted {
    pub outcome: Outcome,
    pub reason: String,
    pub latency_ms: i64,
}

/// The planner profile chosen for a turn, and the routing rule that chose it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteSelected {
    pub profile: String,
    pub rule: String,
    pub model: String,
    /// Tokens reserved before each call of this profile's model.
    pub reserve_tokens: i64,
    /// Price of this profile's model, in micro-units of currency per 1000 tokens.
    pub micros_per_1k_tokens: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPurpose {
    Model,
    Tool,
}

/// Budget set aside before a model or tool call, against the turn, the user and the tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetReserved {
    pub reservation_id: String,
    pub purpose: BudgetPurpose,
    pub user_id: String,
    pub call_id: Option<String>,
    pub tokens: i64,
    pub cost_micros: i64,
    pub tool_calls: i32,
    pub retries: i32,
    /// The user's window budget left after this reservation (cost).
    pub user_cost_left_micros: i64,
    /// The tenant's window budget (this partition's share) left after this reservation (cost).
    pub tenant_cost_left_micros: i64,
}

/// What a reservation actually used; the rest returns to the budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetCommitted {
    pub reservation_id: String,
    pub tokens: i64,
    pub cost_micros: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetReleased {
    pub reservation_id: String,
    pub reason: String,
}

/// A tool call waits for a person to confirm it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    pub call_id: String,
    pub step: i32,
    pub tool: String,
    pub args_json: String,
    pub reason: String,
    pub risk_score: f64,
    pub deadline_ms: i64,
}

/// ApprovalGranted and ApprovalDenied: who answered, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalResolved {
    pub approval_id: String,
    pub operator: String,
    pub reason: Option<String>,
    pub command_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalExpired {
    pub approval_id: String,
    pub deadline_ms: i64,
}

/// Where a guard ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardCheckpoint {
    /// What enters the turn: the request text is redacted before it is recorded.
    Intake,
    PreTool,
    MidPlan,
    PostTool,
    PreResponse,
}

impl GuardCheckpoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            GuardCheckpoint::Intake => "intake",
            GuardCheckpoint::PreTool => "pre_tool",
            GuardCheckpoint::MidPlan => "mid_plan",
            GuardCheckpoint::PostTool => "post_tool",
            GuardCheckpoint::PreResponse => "pre_response",
        }
    }
}

/// What a guard did: let it through changed (redacted), stop it, or hand it up the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardVerdict {
    Allow,
    Modify,
    Deny,
    Escalate,
}

impl GuardVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            GuardVerdict::Allow => "allow",
            GuardVerdict::Modify => "modify",
            GuardVerdict::Deny => "deny",
            GuardVerdict::Escalate => "escalate",
        }
    }
}

/// A guard fired at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardrailTripped {
    pub checkpoint: GuardCheckpoint,
    pub guard: String,
    pub rule: String,
    pub verdict: GuardVerdict,
    pub step: Option<i32>,
    pub tool: Option<String>,
    pub call_id: Option<String>,
    pub detail: String,
    /// An action whose key arguments nothing in the turn supports (the SLO counts these).
    pub hallucination: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffAccepted {
    pub operator: String,
    pub command_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffResolved {
    pub operator: String,
    pub resolution: String,
    pub command_id: String,
}

/// What an operator sends to a running turn (`schemas/turn_command.avsc`). It travels on the
/// request log, to the partition of the turn it is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnCommand {
    pub command_id: String,
    pub turn_id: TurnId,
    pub tenant: String,
    pub operator: String,
    pub issued_at_ms: i64,
    pub action: CommandAction,
    /// Where the turn's first event is in its partition (Reverse and Label reload finished
    /// turns from there).
    #[serde(default)]
    pub turn_offset: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandAction {
    ApprovalDecision(ApprovalDecision),
    /// An operator takes a handed-off turn.
    HandoffAccept(HandoffAcceptance),
    /// An operator closes a handed-off turn, saying what was done.
    HandoffResolve(HandoffResolution),
    /// Undo a finished turn's completed calls by their compensations.
    Reverse(ReverseTurn),
    /// A late label on a finished turn.
    Label(LabelTurn),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffAcceptance {
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffResolution {
    pub resolution: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub approval_id: String,
    pub granted: bool,
    pub reason: Option<String>,
}

/// A turn handed to a person (`schemas/handoff.avsc`), published to the escalations topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub reason: String,
    pub call_id: Option<String>,
    pub raised_at_ms: i64,
    pub deadline_ms: i64,
    pub rungs: Vec<String>,
    /// The turn up to the handoff, redacted, in the shape `trace_version` names (2:
    /// `turn::handoff_trace`; 1, older records: undocumented internal state).
    pub trace_json: String,
    #[serde(default = "trace_version_1")]
    pub trace_version: i32,
}

fn trace_version_1() -> i32 {
    1
}

/// What a producer submits to start a turn (`schemas/turn_request.avsc`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRequest {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub text: String,
    pub channel: String,
    pub attributes: BTreeMap<String, String>,
    pub submitted_at_ms: i64,
    /// The conversation this turn continues; one user's, so its turns share a partition.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// What analytics consumers receive per finished turn (`schemas/turn_outcome.avsc`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnOutcome {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub outcome: Outcome,
    pub reason: String,
    pub requested_at_ms: i64,
    pub completed_at_ms: i64,
    pub latency_ms: i64,
    pub tool_calls: i32,
    pub tool_failures: i32,
    pub escalations: i32,
    pub model: Option<String>,
    pub events: i64,
    /// Model tokens the turn used (all its plans).
    #[serde(default)]
    pub input_tokens: i64,
    #[serde(default)]
    pub output_tokens: i64,
    /// What the turn spent, committed against its budgets, in micro-units of currency.
    #[serde(default)]
    pub cost_micros: i64,
    /// The last rung of the escalation ladder the turn reached, if any.
    #[serde(default)]
    pub escalation_rung: Option<String>,
    /// The policy set that made the turn's last decision.
    #[serde(default)]
    pub policy_version: Option<String>,
    /// Calls blocked as hallucinations with action.
    #[serde(default)]
    pub hallucinations: i32,
    /// Guard trips (modify, deny, escalate).
    #[serde(default)]
    pub guard_trips: i32,
    /// Late labels from reviewers (`ballast label`), oldest first.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The reply the user got (the model's final answer), redacted.
    #[serde(default)]
    pub reply: Option<String>,
    /// Model steps the turn took.
    #[serde(default)]
    pub steps: i32,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Calls a policy, guard or provenance rule stopped that never ran.
    #[serde(default)]
    pub refused_calls: i32,
    /// Calls held for a person's confirmation.
    #[serde(default)]
    pub held_calls: i32,
    /// Calls a person refused to confirm, or left unconfirmed, that never ran.
    #[serde(default)]
    pub denied_calls: i32,
}
