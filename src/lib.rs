//! # Ballast
//!
//! An event-sourced workflow engine for production AI agents. Each agent turn is a durable state
//! machine whose request, plan, policy decisions, tool calls, escalations and outcome are appended
//! as events to a partitioned log, so turns survive crashes without running a side effect twice,
//! and every action can be explained from the record.
//!
//! # Layout
//! - [`event`]: event types and the Avro codec (`schemas/*.avsc` are the wire contract).
//! - [`log`]: the [`log::EventLog`] contract, the memory, sled and Kafka backends, the
//!   conformance suite.
//! - [`turn`]: the pure state machine: `decide`/`step` and `TurnState::apply`.
//! - [`control`]: the control plane (decides, never acts); [`guard`]: guardrails and provenance.
//! - [`exec`]: the execution plane (acts, never decides): retrievers, model steps, HTTP and MCP
//!   tools, the catalog and its overrides.
//! - [`runtime`]: workers: partition actors, effect execution at the vault's edge, snapshots,
//!   graceful shutdown; [`kafka`]: the Kafka deployment; [`embedded`]: the single-node one on
//!   sled; [`serve`]: `ballast serve`; [`submit`]: producing requests.
//! - [`vault`]: personal data sealed, revealed on record, forgotten.
//! - [`projection`]: read models rebuilt from the log; [`telemetry`]: Prometheus metrics, alert
//!   rules and the OTLP span export; [`api`]: the HTTP API and dashboard.
//! - [`audit`]: why an action happened, backtests; [`operator`]: answering approvals and
//!   handoffs; [`settle`]: running a partition until a turn settles.
//! - [`config`]: `ballast.toml`, checked and built into planes.
//! - [`demo`], [`drill`], [`faults`], [`injection`], [`bench`](mod@bench): the demo workload, chaos drills
//!   and their fault layer, the prompt-injection suite, the benchmark.
//! - [`clock`], [`ids`], [`toml_lines`], [`local_socket`]: time, identifiers, TOML positions,
//!   the served data dir's command socket.
//!
//! `ARCHITECTURE.md` at the repository root has the module map and a glossary.

// Input can reach almost any path: no unwrap, expect, panic, or indexing or slicing that can
// panic, outside tests (the code keeps this; the compiler makes sure it stays kept).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admission;
pub mod api;
pub mod audit;
pub mod bench;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod drill;
pub mod embedded;
pub mod event;
pub mod exec;
pub mod faults;
pub mod guard;
pub mod ids;
pub mod injection;
pub mod kafka;
pub mod local_socket;
pub mod log;
pub mod operator;
pub mod projection;
pub mod runtime;
pub mod serve;
pub mod settle;
pub mod submit;
pub mod telemetry;
pub mod toml_lines;
pub mod turn;
pub mod vault;
