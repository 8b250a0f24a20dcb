//! What the execution plane is asked and answers: the conversation a model step is sent, a
//! model's answer, a tool invocation and its result, retrieved context. These are the
//! boundary between the state machine (which decides) and the adapters (which act); they live
//! here so that `exec` depends on nothing of `turn`.

use crate::event::{PlanStep, RetrievedDocument, SessionTurn, ToolFailureKind};

/// What a retriever found.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    pub query: String,
    pub documents: Vec<RetrievedDocument>,
    pub latency_ms: i64,
}

/// A model's answer to one step of the loop: tool calls to make, or (with none) a final
/// answer in `content`.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub model: String,
    pub model_version: String,
    pub prompt_template_hash: String,
    /// The tool calls the model asks for, in its order (empty: `content` is the answer).
    pub steps: Vec<PlanStep>,
    pub confidence: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    /// The model's text; with no tool calls, the final answer.
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    pub system_fingerprint: Option<String>,
    /// sha256 of the messages sent (hex), as the adapter rendered them.
    pub messages_digest: Option<String>,
}

impl Planned {
    /// An answer with no tool calls and no text: what a test or a fault builds on.
    pub fn empty(model: &str) -> Self {
        Planned {
            model: model.to_string(),
            model_version: String::new(),
            prompt_template_hash: String::new(),
            steps: Vec::new(),
            confidence: 1.0,
            input_tokens: 0,
            output_tokens: 0,
            latency_ms: 0,
            content: None,
            finish_reason: None,
            system_fingerprint: None,
            messages_digest: None,
        }
    }
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
pub struct ExecFailure {
    pub message: String,
    pub retryable: bool,
    pub latency_ms: i64,
}

/// One attempt of one tool call, as the tool receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolInvocation {
    pub call_id: String,
    pub tool: String,
    pub args_json: String,
    pub idempotency_key: String,
    pub attempt: i32,
    pub tenant: String,
    pub user_id: String,
}

/// Everything a model step is sent, in structured form; each adapter renders it to its wire
/// format (the OpenAI-compatible one: system, user, assistant with tool calls, tool messages).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversation {
    /// The session's earlier turns, oldest first.
    pub session: Vec<SessionTurn>,
    pub documents: Vec<RetrievedDocument>,
    /// The user's request of this turn.
    pub request: String,
    /// This turn's earlier model steps, each with its tool calls and their results.
    pub steps: Vec<StepExchange>,
}

impl Conversation {
    /// Tool calls made so far in this turn, all steps.
    pub fn calls(&self) -> impl Iterator<Item = &CallExchange> {
        self.steps.iter().flat_map(|s| s.calls.iter())
    }
}

/// One earlier model step: what the model said and the calls it made, with their results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepExchange {
    pub content: Option<String>,
    pub calls: Vec<CallExchange>,
}

/// A tool call of an earlier step and what came back: the result JSON, or the error the model
/// is told about.
#[derive(Clone, Debug, PartialEq)]
pub struct CallExchange {
    pub call_id: String,
    pub tool: String,
    pub args_json: String,
    pub result: Result<String, String>,
}
