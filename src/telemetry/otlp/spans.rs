//! One finished turn's events as OpenTelemetry spans — pure, no I/O.
//!
//! The trace id is the turn id (a UUID is 16 bytes, as a trace id); each span id is derived from
//! the id of the event that opens it, so exporting a turn twice sends the same spans and a
//! receiver sees one trace, whatever happened in between. The turn is the root span
//! (`invoke_agent`); each model step a `chat {model}` child from the moment it was asked to its
//! answer; each tool call attempt an `execute_tool {tool}` child from `ToolCallStarted` to its
//! result. Policy decisions, guard trips, approvals, escalations, refusals and handoffs are span
//! events: on the tool call they concern when they name one, else on the turn. Attributes are
//! the GenAI semantic conventions' (`gen_ai.*`) plus `ballast.*`, taken from
//! `Event::otel_attributes` — the same as `trace --json` — after masking.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Event, Payload};

/// A span id from an event id (and a role, when one event opens two spans).
fn span_id(event: &Event, role: &str) -> SpanId {
    let digest: [u8; 32] =
        Sha256::digest([event.event_id.as_bytes().as_slice(), role.as_bytes()].concat()).into();
    let [a, b, c, d, e, f, g, h, ..] = digest;
    let mut id = [a, b, c, d, e, f, g, h];
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn otel_value(v: &Value) -> Option<OtelValue> {
    Some(match v {
        Value::Bool(b) => OtelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OtelValue::I64(i),
            None => OtelValue::F64(n.as_f64()?),
        },
        Value::String(s) => OtelValue::String(s.clone().into()),
        Value::Null => return None,
        other => OtelValue::String(other.to_string().into()),
    })
}

fn attributes(e: &Event) -> Vec<KeyValue> {
    e.otel_attributes()
        .iter()
        .filter_map(|(k, v)| otel_value(v).map(|v| KeyValue::new(k.clone(), v)))
        .collect()
}

/// The spans of one turn (its events in order, masked). Empty unless it has a request.
pub fn spans(events: &[Event], scope: &InstrumentationScope) -> Vec<SpanData> {
    let Some(first) = events.first() else {
        return Vec::new();
    };
    if !matches!(first.payload, Payload::TurnRequested(_)) {
        return Vec::new();
    }
    let trace_id = TraceId::from_bytes(*first.turn_id.0.as_bytes());
    let context =
        |id: SpanId| SpanContext::new(trace_id, id, TraceFlags::SAMPLED, false, TraceState::NONE);
    let root_id = span_id(first, "turn");
    let end_ms = events.last().map_or(first.at_ms, |e| e.at_ms);
    let span = |id: SpanId, parent: SpanId, name: String, start: i64, end: i64| SpanData {
        span_context: context(id),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(name),
        start_time: at(start),
        end_time: at(end.max(start)),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    };
    let mut root = span(
        root_id,
        SpanId::INVALID,
        "invoke_agent ballast".into(),
        first.at_ms,
        end_ms,
    );
    root.span_kind = SpanKind::Server;
    root.attributes = attributes(first);
    root.attributes
        .push(KeyValue::new("gen_ai.operation.name", "invoke_agent"));
    let mut children: Vec<SpanData> = Vec::new();
    // Open tool attempts: (call id, attempt) → index in `children`.
    let mut calls: HashMap<(String, i32), usize> = HashMap::new();
    let mut by_call: HashMap<String, usize> = HashMap::new();
    for e in events {
        match &e.payload {
            Payload::PlanProposed(p) => {
                let mut s = span(
                    span_id(e, "chat"),
                    root_id,
                    format!("chat {}", p.model),
                    e.at_ms - p.latency_ms.max(0),
                    e.at_ms,
                );
                s.span_kind = SpanKind::Client;
                s.attributes = attributes(e);
                s.attributes
                    .push(KeyValue::new("gen_ai.operation.name", "chat"));
                children.push(s);
            }
            Payload::ToolCallStarted(c) => {
                let mut s = span(
                    span_id(e, "tool"),
                    root_id,
                    format!("execute_tool {}", c.tool),
                    e.at_ms,
                    e.at_ms,
                );
                s.attributes = attributes(e);
                s.attributes
                    .push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                calls.insert((c.call_id.clone(), c.attempt), children.len());
                by_call.insert(c.call_id.clone(), children.len());
                children.push(s);
            }
            Payload::ToolCallCompleted(c) => {
                if let Some(child) = calls
                    .remove(&(c.call_id.clone(), c.attempt))
                    .and_then(|i| children.get_mut(i))
                {
                    child.end_time = at(e.at_ms);
                    child.status = Status::Ok;
                    child.attributes.extend(attributes(e));
                }
            }
            Payload::ToolCallFailed(f) => {
                if let Some(child) = calls
                    .remove(&(f.call_id.clone(), f.attempt))
                    .and_then(|i| children.get_mut(i))
                {
                    child.end_time = at(e.at_ms);
                    child.status = Status::error(f.error.chars().take(256).collect::<String>());
                    child.attributes.extend(attributes(e));
                }
            }
            Payload::TurnCompleted(_) => {
                root.attributes.extend(attributes(e));
            }
            Payload::PolicyEvaluated(_)
            | Payload::GuardrailTripped(_)
            | Payload::ApprovalRequested(_)
            | Payload::ApprovalGranted(_)
            | Payload::ApprovalDenied(_)
            | Payload::ApprovalExpired(_)
            | Payload::EscalationRaised(_)
            | Payload::CallRefused(_)
            | Payload::InputRejected(_)
            | Payload::HandoffAccepted(_)
            | Payload::HandoffResolved(_) => {
                let event =
                    opentelemetry::trace::Event::new(e.kind(), at(e.at_ms), attributes(e), 0);
                let call = e
                    .otel_attributes()
                    .get("gen_ai.tool.call.id")
                    .and_then(|v| v.as_str().map(str::to_owned));
                match call.and_then(|c| by_call.get(&c).and_then(|i| children.get_mut(*i))) {
                    Some(child) => child.events.events.push(event),
                    None => root.events.events.push(event),
                }
            }
            _ => {}
        }
    }
    // A tool attempt with no result (cut short by a crash): it ends with the turn.
    for i in calls.into_values() {
        if let Some(child) = children.get_mut(i) {
            child.end_time = at(end_ms);
            child.status = Status::error("no result recorded");
        }
    }
    // The turn's end, wherever it is: labels and rejected late inputs may follow it.
    let completed = events.iter().rev().find_map(|e| match &e.payload {
        Payload::TurnCompleted(t) => Some(t),
        _ => None,
    });
    if let Some(t) = completed {
        root.status = if t.outcome == crate::event::Outcome::Succeeded {
            Status::Ok
        } else {
            Status::error(t.outcome.as_str().to_string())
        };
    }
    let mut out = vec![root];
    out.extend(children);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TurnId;

    #[test]
    fn a_turn_is_a_root_with_chat_and_tool_children_and_ids_are_stable() {
        let turn = TurnId::from_parts(7, [3; 10]);
        let events = crate::event::fixtures::every_event(turn);
        let scope = InstrumentationScope::builder("ballast").build();
        let a = spans(&events, &scope);
        let b = spans(&events, &scope);
        assert!(!a.is_empty());
        let root = &a[0];
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(
            root.span_context.trace_id(),
            TraceId::from_bytes(*turn.0.as_bytes())
        );
        assert!(
            a[1..]
                .iter()
                .all(|s| s.parent_span_id == root.span_context.span_id())
        );
        assert!(a.iter().any(|s| s.name.starts_with("chat ")));
        assert!(a.iter().any(|s| s.name.starts_with("execute_tool ")));
        let ids: Vec<_> = a.iter().map(|s| s.span_context.span_id()).collect();
        let again: Vec<_> = b.iter().map(|s| s.span_context.span_id()).collect();
        assert_eq!(ids, again, "the same turn gives the same span ids");
        let mut unique = ids.clone();
        unique.sort_by_key(|s| s.to_bytes());
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        let events_total: usize = a.iter().map(|s| s.events.events.len()).sum();
        assert!(events_total > 0, "decisions and trips are span events");
        assert!(
            spans(&events[1..], &scope).is_empty(),
            "no request, no trace"
        );
    }
}
