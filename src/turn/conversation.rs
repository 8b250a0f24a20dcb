//! What the model is sent at each step, derived from the turn's recorded facts alone: the
//! session's earlier turns, the retrieved documents, the request, and every earlier step of
//! this turn with its tool calls and their results. Rebuilt the same after a restart, so a
//! resumed turn asks the model exactly what it would have asked.

use crate::event::{SessionCall, SessionTurn};
use crate::exec::types::{CallExchange, Conversation, StepExchange};

use super::state::{CallState, CallStatus, StepRecord, TurnState};

fn exchange(call: &CallState) -> CallExchange {
    CallExchange {
        call_id: call.call_id.clone(),
        tool: call.tool.clone(),
        args_json: call.args_json.clone(),
        result: match &call.status {
            CallStatus::Completed { result_json } => Ok(result_json.clone()),
            CallStatus::Failed { error, .. } => Err(error.clone()),
            CallStatus::Refused { reason } => Err(reason.clone()),
            CallStatus::Running => Err("no result".into()),
        },
    }
}

fn step(record: &StepRecord) -> StepExchange {
    StepExchange {
        content: record.plan.content.clone(),
        calls: record.calls.iter().map(exchange).collect(),
    }
}

/// The conversation for the step `state.next_model_step()`, with at most `documents` documents
/// (a constrained retry sees the best ranked only).
pub fn conversation(state: &TurnState, documents: usize) -> Conversation {
    let next = state.next_model_step();
    let mut steps: Vec<StepExchange> = state
        .history
        .iter()
        .filter(|r| r.plan.step < next)
        .map(step)
        .collect();
    if let Some(plan) = state.plan.as_ref().filter(|p| p.step < next) {
        steps.push(StepExchange {
            content: plan.content.clone(),
            calls: state.calls.iter().map(exchange).collect(),
        });
    }
    Conversation {
        session: state
            .session
            .as_ref()
            .map(|s| s.turns.clone())
            .unwrap_or_default(),
        documents: state.documents.iter().take(documents).cloned().collect(),
        request: state.text.clone(),
        steps,
    }
}

/// This turn as a session turn for the ones that continue it: request, reply, and the calls
/// that completed, with their results.
pub fn as_session_turn(state: &TurnState) -> SessionTurn {
    SessionTurn {
        turn_id: state.turn_id.to_string(),
        request: state.text.clone(),
        reply: state.outcome_record("").and_then(|o| o.reply),
        calls: state
            .all_calls()
            .filter_map(|c| match &c.status {
                CallStatus::Completed { result_json } => Some(SessionCall {
                    tool: c.tool.clone(),
                    args_json: c.args_json.clone(),
                    result_json: result_json.clone(),
                }),
                _ => None,
            })
            .collect(),
    }
}

/// Approximate tokens of a session turn as the model will see it.
pub fn session_turn_tokens(t: &SessionTurn) -> i64 {
    let tokens = |s: &str| (s.len() as i64 / 4).max(1);
    tokens(&t.request)
        + t.reply.as_deref().map_or(0, tokens)
        + t.calls
            .iter()
            .map(|c| tokens(&c.args_json) + tokens(&c.result_json))
            .sum::<i64>()
}

/// The newest session turns that fit `budget` tokens (kept oldest first), and the ids of those
/// left out, oldest first.
pub fn within_budget(turns: Vec<SessionTurn>, budget: i64) -> (Vec<SessionTurn>, Vec<String>, i64) {
    let mut kept: Vec<SessionTurn> = Vec::new();
    let mut used = 0;
    let mut dropped: Vec<String> = Vec::new();
    let mut full = false;
    for t in turns.into_iter().rev() {
        let cost = session_turn_tokens(&t);
        if full || used + cost > budget {
            // Oldest first out: once one does not fit, nothing older goes in either.
            full = true;
            dropped.push(t.turn_id);
            continue;
        }
        used += cost;
        kept.push(t);
    }
    kept.reverse();
    dropped.reverse();
    (kept, dropped, used)
}

/// Splits `[doc:ID]` citation marks out of a reply: the text without them, and the ids cited
/// (first mention order, no repeats).
pub fn split_citations(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut cited: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[doc:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        match after.find(']') {
            Some(end) if end <= 200 => {
                let id = after[..end].trim();
                if !id.is_empty() && !cited.iter().any(|c| c == id) {
                    cited.push(id.to_string());
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("[doc:");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let cleaned = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" .", ".")
        .replace(" ,", ",");
    (cleaned, cited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citation_marks_leave_the_text_and_become_ids() {
        let (text, ids) = split_citations(
            "Refunds take 5 days [doc:kb-refund]. See also [doc:kb-x] [doc:kb-refund].",
        );
        assert_eq!(text, "Refunds take 5 days. See also.");
        assert_eq!(ids, vec!["kb-refund", "kb-x"]);
        let (text, ids) = split_citations("no marks [doc: unterminated");
        assert_eq!(text, "no marks [doc: unterminated");
        assert!(ids.is_empty());
    }

    #[test]
    fn the_oldest_session_turns_drop_out_first() {
        let turn = |id: &str, n: usize| SessionTurn {
            turn_id: id.into(),
            request: "x".repeat(n),
            reply: None,
            calls: Vec::new(),
        };
        let (kept, dropped, used) =
            within_budget(vec![turn("a", 400), turn("b", 40), turn("c", 40)], 50);
        assert_eq!(
            kept.iter().map(|t| t.turn_id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(dropped, ["a"]);
        assert_eq!(used, 20);
    }
}
