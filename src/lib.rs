//! # Ballast
//!
//! An event-sourced workflow engine for production AI agents. Each agent turn is a durable state
//! machine whose request, plan, policy decisions, tool calls, escalations and outcome are appended
//! as events to a partitioned log, so turns survive crashes without running a side effect twice,
//! and every action can be explained from the record.
//!
//! # Layout
//! - [`event`]: event types and the Avro codec (`schemas/*.avsc` are the wire contract).
//! - [`log`]: the [`log::EventLog`] contract, memory and sled backends, the conformance suite.
//! - [`turn`]: the pure state machine: `decide`/`step` and `TurnState::apply`.
//! - [`control`]: the control plane (decides, never acts).
//! - [`exec`]: the execution plane (acts, never decides): retriever, model steps, tools.
//! - [`runtime`]: workers: partition actors, effect execution, snapshots, graceful shutdown.
//! - [`embedded`]: the single-node deployment on sled; [`submit`]: producing requests.
//! - [`projection`]: read models rebuilt from the log.
//! - [`demo`], [`bench`]: the customer-support demo workload and the benchmark.
//!
//! `ARCHITECTURE.md` at the repository root has the module map and a glossary.

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
