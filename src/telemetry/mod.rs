//! Prometheus metrics: every name is a constant here, described once in [`describe`]. Base units
//! (seconds, micro-units of currency), `_total` on counters, and labels with a bounded set of
//! values only (outcome, checkpoint, decision, guard, tool from the catalog, rung, SLI, window,
//! partition) — never a turn, user or tenant id.
//!
//! Counters are recorded by the runtime after a round is durable (`record`), so a scrape never
//! counts a fact the log does not hold; SLO gauges are set from the outcome projection (`slo`).

pub mod exporter;
pub mod otlp;
pub mod record;
pub mod rules;
pub mod server;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const EVENTS_APPENDED: &str = "ballast_events_appended_total";
pub const ROUNDS_COMMITTED: &str = "ballast_rounds_committed_total";
pub const DEAD_LETTERS: &str = "ballast_dead_letters_total";
pub const TURNS_STARTED: &str = "ballast_turns_started_total";
pub const TURNS_COMPLETED: &str = "ballast_turns_completed_total";
pub const TURN_DURATION: &str = "ballast_turn_duration_seconds";
pub const TOOL_CALLS: &str = "ballast_tool_calls_total";
pub const TOOL_CALL_DURATION: &str = "ballast_tool_call_duration_seconds";
pub const POLICY_DECISIONS: &str = "ballast_policy_decisions_total";
pub const GUARDRAIL_TRIPS: &str = "ballast_guardrail_trips_total";
pub const HALLUCINATIONS_BLOCKED: &str = "ballast_hallucinations_blocked_total";
pub const ESCALATIONS: &str = "ballast_escalations_total";
pub const INPUTS_REJECTED: &str = "ballast_turn_inputs_rejected_total";
pub const MODEL_TOKENS: &str = "ballast_model_tokens_total";
pub const COST: &str = "ballast_cost_micros_total";
pub const SLI_EVENTS: &str = "ballast_sli_events_total";
pub const SLI_BAD_EVENTS: &str = "ballast_sli_bad_events_total";
pub const SLO_OBJECTIVE: &str = "ballast_slo_objective_ratio";
pub const SLI_RATIO: &str = "ballast_sli_ratio";
pub const SLO_BUDGET_REMAINING: &str = "ballast_slo_error_budget_remaining_ratio";
pub const SLO_BURN_RATE: &str = "ballast_slo_burn_rate";
pub const PROJECTION_EVENTS: &str = "ballast_projection_events_applied_total";
pub const PROJECTION_LAG: &str = "ballast_projection_lag_events";
pub const WORKER_BACKLOG: &str = "ballast_worker_backlog_requests";
pub const API_AUTH_REFUSED: &str = "ballast_api_auth_refused_total";
pub const API_PANICS: &str = "ballast_api_handler_panics_total";
pub const API_REJECTED: &str = "ballast_api_requests_rejected_total";
pub const HTTP_CONNECTIONS: &str = "ballast_http_connections";
pub const HTTP_CONNECTIONS_MAX: &str = "ballast_http_connections_max";
pub const HTTP_CONNECTIONS_CLOSED: &str = "ballast_http_connections_closed_total";

/// Turn and tool-call latency buckets, in seconds; 4.5 s (the latency SLO) is a boundary.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5, 10.0, 30.0,
];

/// Describes every metric (HELP and unit lines). Call once after installing a recorder.
pub fn describe() {
    describe_counter!(
        otlp::SPANS_EXPORTED,
        "Spans exported to the OTLP endpoint (each finished turn once; re-sent after a crash with the same ids)."
    );
    describe_counter!(
        otlp::EXPORT_FAILURES,
        "OTLP exports that failed (retried from the checkpoint with backoff)."
    );
    metrics::describe_gauge!(
        otlp::EXPORT_LAG,
        "Seconds from a turn's completion to its spans being accepted by the OTLP endpoint (last export)."
    );
    describe_counter!(EVENTS_APPENDED, "Turn events made durable, by event kind.");
    describe_counter!(
        ROUNDS_COMMITTED,
        "Rounds committed by partition actors (one durable append or Kafka transaction each)."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Request records set aside as undecodable or misrouted."
    );
    describe_counter!(TURNS_STARTED, "Turns accepted from the request log.");
    describe_counter!(
        TURNS_COMPLETED,
        "Turns that reached an outcome, by outcome."
    );
    describe_histogram!(
        TURN_DURATION,
        Unit::Seconds,
        "Turn latency from TurnRequested to TurnCompleted, by outcome."
    );
    describe_counter!(
        TOOL_CALLS,
        "Tool call attempts that ended, by catalog tool and result (ok, error, timeout, unknown)."
    );
    describe_histogram!(
        TOOL_CALL_DURATION,
        Unit::Seconds,
        "Tool call attempt latency, by catalog tool."
    );
    describe_counter!(
        POLICY_DECISIONS,
        "Control-plane reviews, by checkpoint and decision."
    );
    describe_counter!(
        GUARDRAIL_TRIPS,
        "Guard trips, by checkpoint, guard and verdict."
    );
    describe_counter!(
        HALLUCINATIONS_BLOCKED,
        "Tool calls blocked before running because their key arguments appear nowhere in the turn."
    );
    describe_counter!(ESCALATIONS, "Escalations, by ladder rung.");
    describe_counter!(
        INPUTS_REJECTED,
        "Inputs a turn's phase does not accept (InputRejected events), by phase and input kind."
    );
    describe_counter!(
        MODEL_TOKENS,
        "Model tokens used by plans, by type (input, output)."
    );
    describe_counter!(
        COST,
        "Spend committed against budgets, in micro-units of currency."
    );
    describe_counter!(
        SLI_EVENTS,
        "Finished turns counted by each SLI (the denominator of its error ratio)."
    );
    describe_counter!(
        SLI_BAD_EVENTS,
        "Finished turns that each SLI counts as bad (the numerator of its error ratio)."
    );
    describe_gauge!(
        SLO_OBJECTIVE,
        "Each SLI's target share of good events, from the SLO configuration."
    );
    describe_gauge!(
        SLI_RATIO,
        "Each SLI's share of good events over the SLO period, from the log."
    );
    describe_gauge!(
        SLO_BUDGET_REMAINING,
        "Share of each SLO's error budget left over its period (negative once overspent)."
    );
    describe_gauge!(
        SLO_BURN_RATE,
        "Error-budget burn rate of each SLI over each alerting window, from the log."
    );
    describe_counter!(
        PROJECTION_EVENTS,
        "Turn-log records read by the projections."
    );
    describe_gauge!(
        PROJECTION_LAG,
        "Turn-log records the projections have not applied yet."
    );
    describe_gauge!(
        WORKER_BACKLOG,
        "Requests produced but not yet taken by the worker group (serve on Kafka), all partitions."
    );
    describe_counter!(
        API_AUTH_REFUSED,
        "API requests refused before authentication succeeded, by reason (unauthenticated, locked_out)."
    );
    describe_counter!(
        API_PANICS,
        "API handler panics caught and answered with a 500 problem."
    );
    describe_counter!(
        API_REJECTED,
        "API requests refused after authentication, by reason (claims, limits, conflict)."
    );
    describe_gauge!(HTTP_CONNECTIONS, "Open HTTP connections.");
    describe_gauge!(
        HTTP_CONNECTIONS_MAX,
        "The bound on open HTTP connections (configured, or from the file limit less a reserve)."
    );
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED,
        "HTTP connections closed by the server, by reason (evicted: gave way to a newer one at the bound; refused: the bound held only authenticated callers with requests in flight; header_timeout: no complete request head in time before authenticating; idle_timeout: keep-alive without a next request)."
    );
}
