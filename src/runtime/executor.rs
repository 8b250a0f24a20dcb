//! Runs one effect against the execution plane and turns its result into an [`Input`].

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::event::{SessionTurn, ToolFailureKind};
use crate::exec::{ExecutionPlane, PlanRequest};
use crate::ids::TurnId;
use crate::turn::{Effect, ExecFailure, Input, ToolFailure, ToolSuccess};
use crate::vault::{Vault, VaultRecord};

// Most messages are effect results; boxing them to match the small session wake-up would cost
// an allocation per effect for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    /// An effect finished (one per dispatched effect, panics included), with the vault records
    /// its tokens need (committed in the round that records the input).
    Effect(TurnId, Input, Vec<VaultRecord>),
    /// The turn before this one in its session finished: this one may go on, with the
    /// session's history.
    SessionReady(TurnId, Vec<SessionTurn>),
}

/// Sends the effect's input back exactly once: the real result, or — if the effect's future
/// panicked or was dropped — a failure, so the turn never waits forever on a lost effect.
pub(crate) struct Completion {
    tx: mpsc::UnboundedSender<Msg>,
    turn: TurnId,
    fallback: Option<Input>,
}

impl Completion {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Msg>, effect: &Effect) -> Self {
        Completion {
            tx,
            turn: effect.turn_id(),
            fallback: fallback_for(effect),
        }
    }

    pub(crate) fn send(mut self, input: Input, records: Vec<VaultRecord>) {
        self.fallback = None;
        let _ = self.tx.send(Msg::Effect(self.turn, input, records));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(input) = self.fallback.take() {
            let _ = self.tx.send(Msg::Effect(self.turn, input, Vec::new()));
        }
    }
}

fn lost(what: &str) -> ExecFailure {
    ExecFailure {
        message: format!("{what} stopped without a result"),
        retryable: false,
        latency_ms: 0,
    }
}

fn fallback_for(effect: &Effect) -> Option<Input> {
    Some(match effect {
        Effect::Retrieve { .. } => Input::Retrieved(Err(lost("retriever"))),
        Effect::Plan { .. } => Input::Planned(Err(lost("planner"))),
        // The tool may have acted before it panicked: its outcome is unknown.
        Effect::CallTool { call, .. } => Input::ToolDone {
            call_id: call.call_id.clone(),
            attempt: call.attempt,
            result: Err(ToolFailure {
                kind: ToolFailureKind::OutcomeUnknown,
                message: format!("{} stopped without a result", call.tool),
                retryable: false,
                latency_ms: 0,
            }),
        },
        Effect::Schedule { .. }
        | Effect::ScheduleDeadline { .. }
        | Effect::ScheduleHandoffDeadline { .. }
        | Effect::Finished { .. } => {
            return None;
        }
    })
}

/// Retrieval, planning and synthesis get this long; tools have their own catalog timeout.
pub(crate) const PLANE_TIMEOUT: Duration = Duration::from_secs(60);

/// `call` bounded by [`PLANE_TIMEOUT`]: running out of time is a retryable failure naming `what`.
async fn within<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, ExecFailure>>,
) -> Result<T, ExecFailure> {
    tokio::time::timeout(PLANE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ExecFailure {
                message: format!("{what} gave no answer within {} s", PLANE_TIMEOUT.as_secs()),
                retryable: true,
                latency_ms: PLANE_TIMEOUT.as_millis() as i64,
            })
        })
}

/// Executes an effect at the edge of the execution plane: with a vault, the plane is given
/// cleartext (tokens back to values) and what it answers is tokenized before the state machine
/// sees it; the vault records those tokens need come back with the input.
pub(crate) async fn execute_at_edge(
    plane: &ExecutionPlane,
    vault: Option<&Vault>,
    effect: Effect,
) -> Option<(Input, Vec<VaultRecord>)> {
    let Some(vault) = vault else {
        return execute(plane, effect).await.map(|i| (i, Vec::new()));
    };
    match super::edge::reveal(vault, &effect) {
        Ok((effect, who)) => {
            let input = execute(plane, effect).await?;
            Some(super::edge::conceal(vault, &who, input))
        }
        // The vault cannot be read: the effect does not run on tokens. Retryable, like any
        // outage of a dependency.
        Err(e) => Some((super::edge::unavailable(&effect, &e), Vec::new())),
    }
}

/// Executes a Retrieve, Plan or CallTool effect. Other effects are the actor's own.
/// Every call is bounded in time, so a drain never waits on a hung dependency.
pub(crate) async fn execute(plane: &ExecutionPlane, effect: Effect) -> Option<Input> {
    Some(match effect {
        Effect::Retrieve {
            turn_id,
            query,
            tenant,
            ..
        } => Input::Retrieved(
            within(
                "retriever",
                plane.retriever.retrieve(turn_id, &tenant, &query),
            )
            .await,
        ),
        Effect::Plan {
            turn_id,
            profile,
            constrained,
            attempt,
            step,
            tenant,
            user_id,
            conversation,
        } => Input::Planned(
            within(
                "planner",
                plane.planner.plan(&PlanRequest {
                    turn_id,
                    profile,
                    constrained,
                    attempt,
                    step,
                    tenant,
                    user_id,
                    conversation: *conversation,
                }),
            )
            .await,
        ),
        Effect::CallTool { call, .. } => {
            let started = Instant::now();
            let result = match plane.tools.get(&call.tool) {
                None => Err(ToolFailure {
                    kind: ToolFailureKind::Error,
                    message: format!("no implementation of {} in this worker", call.tool),
                    retryable: false,
                    latency_ms: 0,
                }),
                Some(tool) => {
                    let timeout = Duration::from_millis(tool.spec().timeout_ms.max(1));
                    match tokio::time::timeout(timeout, tool.call(&call)).await {
                        Ok(Ok(value)) => Ok(ToolSuccess {
                            result_json: value.to_string(),
                            latency_ms: started.elapsed().as_millis() as i64,
                        }),
                        Ok(Err(e)) => Err(ToolFailure {
                            kind: e.kind,
                            message: e.message,
                            retryable: e.retryable,
                            latency_ms: started.elapsed().as_millis() as i64,
                        }),
                        // A timed-out idempotent call is safe to retry; otherwise it may have acted.
                        Err(_) => Err(ToolFailure {
                            kind: if tool.spec().idempotent {
                                ToolFailureKind::Timeout
                            } else {
                                ToolFailureKind::OutcomeUnknown
                            },
                            message: format!("no answer within {} ms", timeout.as_millis()),
                            retryable: tool.spec().idempotent,
                            latency_ms: started.elapsed().as_millis() as i64,
                        }),
                    }
                }
            };
            Input::ToolDone {
                call_id: call.call_id,
                attempt: call.attempt,
                result,
            }
        }
        Effect::Schedule { .. }
        | Effect::ScheduleDeadline { .. }
        | Effect::ScheduleHandoffDeadline { .. }
        | Effect::Finished { .. } => {
            return None;
        }
    })
}
