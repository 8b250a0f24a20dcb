//! Turning durable facts into metric updates. Without an installed recorder every call here is
//! a no-op, so tests and the benchmark pay almost nothing.

use metrics::{counter, gauge, histogram};

use super::*;
use crate::event::{Event, Payload};
use crate::projection::slo::{Sli, SloConfig, classify};
use crate::turn::TurnState;

/// A round's events just became durable. `state` finds a turn's state (tool names of calls,
/// outcome records of finished turns).
pub fn round_committed<'a>(
    events: &[Event],
    dead_letters: u64,
    state: impl Fn(&Event) -> Option<&'a TurnState>,
    slo: &SloConfig,
) {
    counter!(ROUNDS_COMMITTED).increment(1);
    if dead_letters > 0 {
        counter!(DEAD_LETTERS).increment(dead_letters);
    }
    for e in events {
        counter!(EVENTS_APPENDED, "event" => e.payload.kind()).increment(1);
        match &e.payload {
            Payload::TurnRequested(_) => counter!(TURNS_STARTED).increment(1),
            Payload::PlanProposed(p) => {
                counter!(MODEL_TOKENS, "type" => "input").increment(p.input_tokens.max(0) as u64);
                counter!(MODEL_TOKENS, "type" => "output").increment(p.output_tokens.max(0) as u64);
            }
            Payload::PolicyEvaluated(p) => counter!(
                POLICY_DECISIONS,
                "checkpoint" => p.checkpoint.as_str(),
                "decision" => p.decision.as_str()
            )
            .increment(1),
            Payload::GuardrailTripped(g) => {
                counter!(
                    GUARDRAIL_TRIPS,
                    "checkpoint" => g.checkpoint.as_str(),
                    "guard" => g.guard.clone(),
                    "verdict" => g.verdict.as_str()
                )
                .increment(1);
                if g.hallucination {
                    counter!(HALLUCINATIONS_BLOCKED).increment(1);
                }
            }
            Payload::EscalationRaised(r) => {
                counter!(ESCALATIONS, "rung" => r.rung.as_str()).increment(1)
            }
            Payload::InputRejected(r) => counter!(
                INPUTS_REJECTED,
                "phase" => r.phase.clone(),
                "input" => r.input.clone()
            )
            .increment(1),
            Payload::BudgetCommitted(b) => counter!(COST).increment(b.cost_micros.max(0) as u64),
            Payload::ToolCallCompleted(c) => {
                tool_call(tool_of(state(e), &c.call_id), "ok", c.latency_ms)
            }
            Payload::ToolCallFailed(f) => {
                let result = match f.kind {
                    crate::event::ToolFailureKind::Timeout => "timeout",
                    crate::event::ToolFailureKind::OutcomeUnknown
                    | crate::event::ToolFailureKind::Interrupted => "unknown",
                    _ => "error",
                };
                tool_call(tool_of(state(e), &f.call_id), result, f.latency_ms)
            }
            Payload::TurnCompleted(c) => {
                counter!(TURNS_COMPLETED, "outcome" => c.outcome.as_str()).increment(1);
                histogram!(TURN_DURATION, "outcome" => c.outcome.as_str())
                    .record(c.latency_ms.max(0) as f64 / 1000.0);
                if let Some(o) = state(e).and_then(|s| s.outcome_record(&c.reason)) {
                    for (sli, good) in classify(&o, slo) {
                        if let Some(good) = good {
                            counter!(SLI_EVENTS, "sli" => sli).increment(1);
                            // Touched even when good, so the series exists from the start and
                            // error ratios are 0 rather than absent.
                            counter!(SLI_BAD_EVENTS, "sli" => sli).increment(u64::from(!good));
                        }
                    }
                }
            }
            // A late label that says a turn went wrong moves its SLIs once.
            Payload::OutcomeLabeled(l) => {
                if let Some(s) = state(e) {
                    let bad = |label: &str| crate::projection::slo::BAD_LABELS.contains(&label);
                    let first_bad =
                        bad(&l.label) && s.labels.iter().filter(|x| bad(x)).count() == 1;
                    if first_bad && s.outcome == Some(crate::event::Outcome::Succeeded) {
                        counter!(SLI_BAD_EVENTS, "sli" => "task_success").increment(1);
                    }
                    let first_hallucination = l.label
                        == crate::projection::slo::HALLUCINATION_LABEL
                        && s.labels.iter().filter(|x| *x == &l.label).count() == 1;
                    if first_hallucination && s.hallucinations == 0 {
                        counter!(SLI_BAD_EVENTS, "sli" => "hallucination_with_action").increment(1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The catalog name of a call's tool ("unknown" if the state does not hold the call: the label
/// must stay within the catalog).
fn tool_of(state: Option<&TurnState>, call_id: &str) -> String {
    state
        .and_then(|s| s.all_calls().find(|c| c.call_id == call_id))
        .map_or_else(|| "unknown".to_string(), |c| c.tool.clone())
}

fn tool_call(tool: String, result: &'static str, latency_ms: i64) {
    histogram!(TOOL_CALL_DURATION, "tool" => tool.clone())
        .record(latency_ms.max(0) as f64 / 1000.0);
    counter!(TOOL_CALLS, "tool" => tool, "result" => result).increment(1);
}

/// The SLO table, as gauges.
pub fn slo(slis: &[Sli]) {
    for s in slis {
        gauge!(SLO_OBJECTIVE, "sli" => s.name).set(s.target);
        gauge!(SLI_RATIO, "sli" => s.name).set(s.value);
        gauge!(SLO_BUDGET_REMAINING, "sli" => s.name).set(s.budget_left);
        for (window, rate) in &s.burn {
            gauge!(SLO_BURN_RATE, "sli" => s.name, "window" => *window).set(*rate);
        }
    }
}

/// A projection catch-up read `read` records and is `lag` records behind the log's end.
pub fn projections(read: u64, lag: u64) {
    counter!(PROJECTION_EVENTS).increment(read);
    gauge!(PROJECTION_LAG).set(lag as f64);
}

/// An API request refused before its caller was known.
pub fn api_auth_refused(reason: &'static str) {
    counter!(API_AUTH_REFUSED, "reason" => reason).increment(1);
}

/// An API handler panicked; the caller got a 500 problem.
pub fn api_panic() {
    counter!(API_PANICS).increment(1);
}

/// Open HTTP connections now.
pub fn http_connections(open: usize) {
    gauge!(HTTP_CONNECTIONS).set(open as f64);
}

/// The bound on open HTTP connections in force.
pub fn http_connection_bound(max: usize) {
    gauge!(HTTP_CONNECTIONS_MAX).set(max as f64);
}

/// The server closed (or refused) a connection, by reason.
pub fn http_connection_closed(reason: &'static str) {
    counter!(HTTP_CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// An authenticated API request refused, by reason.
pub fn api_rejected(reason: &'static str) {
    counter!(API_REJECTED, "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::InputRejected;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn a_rejected_input_is_counted_by_phase_and_input() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let turn = crate::ids::TurnId::from_parts(1_700_000_000_000, [3; 10]);
        let mut event = crate::event::fixtures::every_event(turn).remove(0);
        event.payload = Payload::InputRejected(InputRejected {
            input: "ToolDone".into(),
            phase: "Planning".into(),
            reason: "late tool result".into(),
        });
        metrics::with_local_recorder(&recorder, || {
            let events = [event.clone(), event];
            round_committed(&events, 0, |_| None, &SloConfig::default());
        });
        let text = handle.render();
        assert!(
            text.contains(
                r#"ballast_turn_inputs_rejected_total{phase="Planning",input="ToolDone"} 2"#
            ),
            "{text}"
        );
    }
}
