//! Facts and commands after a turn has finished: its reversal by compensations, late labels.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReverseTurn {
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelTurn {
    pub label: String,
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReversalRequested {
    pub operator: String,
    pub reason: Option<String>,
    pub command_id: String,
    pub turn_first_offset: i64,
    pub compensable: Vec<String>,
    pub not_reversible: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompensationStarted {
    pub call_id: String,
    pub tool: String,
    pub args_json: String,
    pub idempotency_key: String,
    pub attempt: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompensationCompleted {
    pub call_id: String,
    pub attempt: i32,
    pub result_json: String,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompensationFailed {
    pub call_id: String,
    pub attempt: i32,
    pub error: String,
    pub retryable: bool,
    pub latency_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnReversed {
    pub compensated: Vec<String>,
    pub failed: Vec<String>,
    pub not_reversible: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeLabeled {
    pub label: String,
    pub note: Option<String>,
    pub operator: String,
    pub command_id: String,
}
