//! `decide`: every business rule of a turn, as a pure function of state, input and context.
//!
//! It returns the events to append and the effects to run once they are durable. It never does
//! I/O, never reads a clock (time arrives in [`DecideCtx::now_ms`]) and never draws randomness
//! (ids are derived), so replaying recorded inputs reproduces recorded events exactly.

use crate::control::ControlPlane;
use crate::control::budget::{BudgetLimits, Ledger};
use crate::event::{
    ContextRetrieved, EscalationRung, Event, GuardCheckpoint, GuardVerdict, ModelCallFailed,
    Outcome, Payload, PlanProposed, ResponseSynthesized, SessionTurn, ToolCallCompleted,
    ToolCallFailed, ToolCallStarted, ToolFailureKind, TurnCompleted, TurnRequested,
};
use crate::exec::catalog::Catalog;
use crate::guard::{Breakers, Guards, Trip};

use super::effect::{Effect, ToolInvocation};
use super::guarding::At;
use super::input::Input;
use super::ladder::HANDOFF_DEADLINE;
use super::state::{CallState, Phase, TurnState};

/// Limits the state machine enforces itself (the control plane enforces the rest).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Attempts per tool call, the first included.
    pub max_attempts: i32,
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attempts: 3,
            retry_base_ms: 20,
            retry_max_ms: 2_000,
        }
    }
}

/// Everything `decide` may consult besides the turn itself.
pub struct DecideCtx<'a> {
    pub now_ms: i64,
    pub catalog: &'a Catalog,
    pub control: &'a dyn ControlPlane,
    pub limits: &'a Limits,
    /// Budget limits as this partition enforces them (see `BudgetLimits::for_partitions`).
    pub budgets: &'a BudgetLimits,
    /// The partition's window accounts, as of every event decided before this step.
    pub ledger: &'a Ledger,
    /// Compiled guards (schemas, redaction patterns, ladder).
    pub guards: &'a Guards,
    /// The partition's per-tool circuit breakers, as of every event decided before this step.
    pub breakers: &'a Breakers,
    /// The worker is shutting down: record results, start nothing new. What was not started is
    /// derived again from the state by `Resume` after the restart.
    pub draining: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }
}

/// Decides without changing `state`. Equivalent to [`step`] on a copy.
pub fn decide(state: &TurnState, input: Input, ctx: &DecideCtx<'_>) -> Decision {
    let mut scratch = state.clone();
    step(&mut scratch, input, ctx)
}

/// Decides and applies the decided events to `state` (the runtime's form: no copy). On return,
/// `state` equals `state` replayed with `Decision::events`.
pub fn step(state: &mut TurnState, input: Input, ctx: &DecideCtx<'_>) -> Decision {
    let mut b = Builder {
        state,
        ctx,
        out: Decision::default(),
        pending_trips: Vec::new(),
        session: Vec::new(),
    };
    b.handle(input);
    b.out
}

/// Backoff before `attempt` (2, 3, …): exponential, capped, with a deterministic jitter so that
/// retries of many turns do not fire in lockstep.
pub fn backoff_ms(limits: &Limits, call_id: &str, attempt: i32) -> i64 {
    let exp = (attempt - 2).clamp(0, 20) as u32;
    let base = limits
        .retry_base_ms
        .saturating_mul(1 << exp)
        .min(limits.retry_max_ms);
    let jitter = call_id
        .bytes()
        .fold(attempt as i64, |h, b| (h * 31 + b as i64) % 1_000_003);
    base + jitter % (base / 4 + 1)
}

pub(super) struct Builder<'s, 'c> {
    pub(super) state: &'s mut TurnState,
    pub(super) ctx: &'c DecideCtx<'c>,
    pub(super) out: Decision,
    /// Modify trips found before the event they qualify, recorded right after it.
    pub(super) pending_trips: Vec<Trip>,
    /// The session turns a new request arrived with, until routing picks the budget for them.
    pub(super) session: Vec<SessionTurn>,
}

impl Builder<'_, '_> {
    pub(super) fn emit(&mut self, payload: Payload) {
        let seq = self.state.next_seq;
        let event = Event {
            event_id: self.state.turn_id.event_id(seq as u64),
            turn_id: self.state.turn_id,
            tenant: self.state.tenant.clone(),
            seq,
            at_ms: self.ctx.now_ms,
            payload,
        };
        // Infallible here: the event is built for this turn at exactly next_seq.
        let _ = self.state.apply(&event);
        self.out.events.push(event);
    }

    pub(super) fn effect(&mut self, effect: Effect) {
        self.out.effects.push(effect);
    }

    fn handle(&mut self, input: Input) {
        if self.state.outcome.is_some() {
            self.after_end(input);
            return;
        }
        let phase = self.state.phase();
        match (input, phase) {
            (
                Input::Request {
                    request,
                    source_offset,
                    session,
                },
                Phase::New,
            ) => {
                if request.turn_id != self.state.turn_id {
                    return;
                }
                let waiting = request.session_id.is_some() && session.is_none();
                self.session = session.unwrap_or_default();
                self.state.tenant = request.tenant.clone();
                // PII never reaches the log: the request is recorded redacted.
                let (text, found) = self.ctx.guards.redactor.redact(&request.text);
                let found = super::guarding::pii_kinds(found, &text);
                if !found.is_empty() {
                    let mut kinds = found.clone();
                    kinds.sort();
                    kinds.dedup();
                    self.pending_trips.push(Trip::new(
                        "redaction",
                        "redaction.pii",
                        GuardVerdict::Modify,
                        format!(
                            "{} redaction(s) in the request: {}",
                            found.len(),
                            kinds.join(", ")
                        ),
                    ));
                }
                self.emit(Payload::TurnRequested(TurnRequested {
                    user_id: request.user_id,
                    text,
                    channel: request.channel,
                    attributes: request.attributes,
                    submitted_at_ms: request.submitted_at_ms,
                    source_offset,
                    session_id: request.session_id,
                }));
                self.flush_trips(At::new(GuardCheckpoint::Intake));
                // Turns of one session run one after the other: a follow-up waits for the
                // answer it follows up on.
                if !waiting {
                    self.route();
                }
            }
            (Input::SessionReady(turns), Phase::Routing) => {
                self.session = turns;
                self.route();
            }
            (Input::Retrieved(result), Phase::Retrieving) => {
                let query = self.state.text.clone();
                let mut contradiction = None;
                let payload = match result {
                    Ok(r) => {
                        let (documents, c) = self.guard_context(r.documents);
                        contradiction = c;
                        ContextRetrieved {
                            query: r.query,
                            documents,
                            latency_ms: r.latency_ms,
                            error: None,
                        }
                    }
                    // Degrade, don't fail: the planner sees no context and can say so.
                    Err(f) => ContextRetrieved {
                        query,
                        documents: Vec::new(),
                        latency_ms: f.latency_ms,
                        error: Some(f.message),
                    },
                };
                self.emit(Payload::ContextRetrieved(payload));
                self.flush_trips(At::new(GuardCheckpoint::PostTool));
                match contradiction {
                    // Acting on disagreeing sources is how small errors become actions.
                    Some(t) => {
                        self.trip(At::new(GuardCheckpoint::PostTool), t);
                    }
                    None => self.plan(),
                }
            }
            (Input::Planned(Err(f)), Phase::Planning) => {
                self.release_model("model call failed");
                let step = self.state.next_model_step();
                let plan_rev = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
                let (error, _) = self.ctx.guards.redactor.redact(&f.message);
                self.emit(Payload::ModelCallFailed(ModelCallFailed {
                    step,
                    plan_rev,
                    error: error.clone(),
                    retryable: f.retryable,
                    latency_ms: f.latency_ms,
                }));
                // The planner already retried what it could: the ladder decides what is next
                // (a re-ask with constraints, the specialist, a person).
                self.climb(format!("model step {step} failed: {error}"), None, None);
            }
            (Input::Planned(Ok(p)), Phase::Planning) => self.proposed(p),
            (
                Input::ToolDone {
                    call_id,
                    attempt,
                    result,
                },
                Phase::AwaitingTool { index },
            ) => {
                let Some(tool) = self
                    .current_call(index, &call_id, attempt)
                    .map(|c| c.tool.clone())
                else {
                    return;
                };
                match result {
                    Ok(ok) => {
                        let (result_json, stop) =
                            self.guard_result(index, &tool, &call_id, ok.result_json);
                        self.emit(Payload::ToolCallCompleted(ToolCallCompleted {
                            call_id: call_id.clone(),
                            attempt,
                            result_json,
                            latency_ms: ok.latency_ms,
                        }));
                        self.flush_trips(At {
                            checkpoint: GuardCheckpoint::PostTool,
                            step: Some(index),
                            tool: Some(tool),
                            call_id: Some(call_id.clone()),
                        });
                        self.commit_call(&call_id);
                        match stop {
                            Some((at, t)) => {
                                // The call ran; its result cannot be trusted: nothing was
                                // pending to confirm, so the ladder re-plans or hands off.
                                let at = At { step: None, ..at };
                                self.trip(at, t);
                            }
                            None => self.next_step(),
                        }
                    }
                    Err(f) => {
                        let (error, _) = self.ctx.guards.redactor.redact(&f.message);
                        self.emit(Payload::ToolCallFailed(ToolCallFailed {
                            call_id: call_id.clone(),
                            attempt,
                            kind: f.kind,
                            error,
                            retryable: f.retryable,
                            latency_ms: f.latency_ms,
                        }));
                        if f.kind == ToolFailureKind::OutcomeUnknown {
                            // It may have run: charge it.
                            self.commit_call(&call_id);
                        } else {
                            self.release_call(&call_id, "call failed");
                        }
                        if f.retryable && attempt < self.ctx.limits.max_attempts {
                            self.schedule_retry(call_id, attempt + 1);
                        } else if f.kind == ToolFailureKind::OutcomeUnknown {
                            // Not a failure we can report: something may have happened.
                            self.handoff(
                                format!("outcome unknown: {tool} attempt {attempt}: {}", f.message),
                                Some(call_id),
                            );
                        } else {
                            let why = if f.retryable {
                                "retries exhausted"
                            } else {
                                "not retryable"
                            };
                            self.complete(
                                Outcome::Failed,
                                format!(
                                    "{tool} failed on attempt {attempt} ({why}): {}",
                                    f.message
                                ),
                            );
                        }
                    }
                }
            }
            (Input::RetryDue { call_id, attempt }, Phase::AwaitingRetry { index }) => {
                if self.ctx.draining {
                    return;
                }
                if let Some(call) = self
                    .state
                    .calls
                    .get(index)
                    .filter(|c| c.call_id == call_id && c.attempt + 1 == attempt)
                    .cloned()
                    && self.guard_call(index, &call_id, attempt)
                {
                    self.start_call(call, attempt);
                }
            }
            (Input::Command(command), Phase::AwaitingApproval { index }) => {
                self.on_command(command, index);
            }
            (Input::Command(command), Phase::AwaitingHandoff) => self.on_handoff_command(command),
            (Input::ApprovalDeadline { approval_id }, Phase::AwaitingHandoff)
                if approval_id == HANDOFF_DEADLINE =>
            {
                self.on_handoff_deadline();
            }
            (Input::ApprovalDeadline { approval_id }, Phase::AwaitingApproval { index }) => {
                self.on_deadline(&approval_id, index);
            }
            (Input::Resume, phase) => self.resume(phase),
            // Late, duplicate or out-of-phase inputs change nothing.
            _ => {}
        }
    }

    pub(super) fn retrieve(&mut self) {
        if self.ctx.draining {
            return;
        }
        self.effect(Effect::Retrieve {
            turn_id: self.state.turn_id,
            query: self.state.text.clone(),
            tenant: self.state.tenant.clone(),
            user_id: self.state.user_id.clone(),
        });
    }

    /// Asks the model for the loop's next step (or a re-ask of this one), sending it the
    /// conversation so far — unless the loop is at its step limit or spending faster than
    /// allowed, which the mid-plan guard stops.
    pub(super) fn plan(&mut self) {
        if self.ctx.draining {
            return;
        }
        let step = self.state.next_model_step();
        if let Some(t) = self.loop_limits(step) {
            // Asking the model again cannot help a loop at its limits: a person decides.
            let at = At::new(GuardCheckpoint::MidPlan);
            self.record_trip(&at, &t);
            self.climb_from(format!("{}: {}", t.rule, t.detail), None, None, false);
            return;
        }
        if !self.reserve_model() {
            return;
        }
        let escalated = |rung| self.state.escalations.contains(&rung);
        let constrained = self.state.constrained();
        let profile = if escalated(EscalationRung::Specialist) {
            self.ctx.guards.config.specialist_profile.clone()
        } else {
            self.state
                .route
                .as_ref()
                .map(|r| r.profile.clone())
                .unwrap_or_default()
        };
        // A constrained retry sees fewer documents (the best ranked) and deterministic tools only.
        let keep = if constrained {
            self.ctx.guards.config.constrained_documents
        } else {
            usize::MAX
        };
        let attempt = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
        let conversation = super::conversation::conversation(self.state, keep);
        self.effect(Effect::Plan {
            turn_id: self.state.turn_id,
            profile,
            constrained,
            attempt,
            step,
            tenant: self.state.tenant.clone(),
            user_id: self.state.user_id.clone(),
            conversation: Box::new(conversation),
        });
    }

    /// Records the model's answer to a step: its tool calls go to review, or — with none — its
    /// text is the reply.
    fn proposed(&mut self, p: crate::exec::types::Planned) {
        let plan_rev = self.state.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
        let step = self.state.next_model_step();
        let mut found = 0;
        let steps = p
            .steps
            .into_iter()
            .map(|mut step| {
                let (args, f) = self.ctx.guards.redactor.redact_json_text(&step.args_json);
                found += super::guarding::pii_kinds(f, &args).len();
                step.args_json = args;
                step
            })
            .collect();
        if found > 0 {
            self.pending_trips.push(Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!("{found} redaction(s) in the step's arguments"),
            ));
        }
        let (content, in_reply) = match p.content {
            Some(c) => {
                let (text, f) = self.ctx.guards.redactor.redact(&c);
                let n = super::guarding::pii_kinds(f, &text).len();
                (Some(text), n)
            }
            None => (None, 0),
        };
        self.emit(Payload::PlanProposed(PlanProposed {
            plan_rev,
            model: p.model,
            model_version: p.model_version,
            prompt_template_hash: p.prompt_template_hash,
            steps,
            confidence: p.confidence,
            input_tokens: p.input_tokens,
            output_tokens: p.output_tokens,
            latency_ms: p.latency_ms,
            step,
            content,
            finish_reason: p.finish_reason,
            system_fingerprint: p.system_fingerprint,
            messages_digest: p.messages_digest,
        }));
        self.flush_trips(At::new(GuardCheckpoint::MidPlan));
        self.commit_model();
        if self.state.plan.as_ref().is_some_and(|p| p.is_answer()) {
            self.answer(in_reply);
        } else {
            self.review_plan();
        }
    }

    /// The model answered without tool calls: its text (citation marks taken out) is the
    /// reply, checked at the pre-response checkpoint before it is sent.
    pub(super) fn answer(&mut self, redactions: usize) {
        let content = self
            .state
            .plan
            .as_ref()
            .and_then(|p| p.content.clone())
            .unwrap_or_default();
        if content.trim().is_empty() {
            let t = Trip::new(
                "model",
                "model.empty_answer",
                GuardVerdict::Escalate,
                "the model asked for no tool and wrote no answer".to_string(),
            );
            self.trip(At::new(GuardCheckpoint::PreResponse), t);
            return;
        }
        let (text, citations) = super::conversation::split_citations(&content);
        let stop =
            crate::guard::checks::citations(&citations, &self.state.documents).or_else(|| {
                crate::guard::checks::lint(&text, &self.ctx.guards.config.forbidden_phrases)
            });
        self.emit(Payload::ResponseSynthesized(ResponseSynthesized {
            text,
            citations,
            redactions: redactions as i32,
            latency_ms: 0,
        }));
        if redactions > 0 {
            let t = Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!("{redactions} redaction(s) in the reply"),
            );
            self.record_trip(&At::new(GuardCheckpoint::PreResponse), &t);
        }
        match stop {
            Some(t) => {
                self.trip(At::new(GuardCheckpoint::PreResponse), t);
            }
            None => self.review_response(),
        }
    }

    /// Call `index`, if `attempt` of `call_id` is its current attempt.
    pub(super) fn current_call(
        &self,
        index: usize,
        call_id: &str,
        attempt: i32,
    ) -> Option<&CallState> {
        self.state
            .calls
            .get(index)
            .filter(|c| c.call_id == call_id && c.attempt == attempt)
    }

    /// Reserves the call's budget, records the write-ahead intent, then asks for the call.
    pub(super) fn start_call(&mut self, call: CallState, attempt: i32) {
        if !self.reserve_call(&call, attempt) {
            return;
        }
        self.emit(Payload::ToolCallStarted(ToolCallStarted {
            call_id: call.call_id.clone(),
            step: call.step,
            tool: call.tool.clone(),
            args_json: call.args_json.clone(),
            idempotency_key: call.idempotency_key.clone(),
            attempt,
            idempotent: call.idempotent,
        }));
        self.effect(Effect::CallTool {
            turn_id: self.state.turn_id,
            call: ToolInvocation {
                call_id: call.call_id,
                tool: call.tool,
                args_json: call.args_json,
                idempotency_key: call.idempotency_key,
                attempt,
                tenant: self.state.tenant.clone(),
                user_id: self.state.user_id.clone(),
            },
        });
    }

    fn schedule_retry(&mut self, call_id: String, attempt: i32) {
        if self.ctx.draining {
            return;
        }
        let at_ms = self.ctx.now_ms + backoff_ms(self.ctx.limits, &call_id, attempt);
        self.effect(Effect::Schedule {
            turn_id: self.state.turn_id,
            at_ms,
            call_id,
            attempt,
        });
    }

    pub(super) fn complete(&mut self, outcome: Outcome, reason: String) {
        self.release_all("turn ended");
        // An answer after calls were refused, denied or stopped (and not run since) is not a
        // success: the task may be unfinished, whatever the model says.
        let (refused, denied) = (self.state.refused_calls(), self.state.denied_calls());
        let (outcome, reason) = if outcome == Outcome::Succeeded && refused + denied > 0 {
            let reason =
                format!("{reason}; {refused} call(s) refused, {denied} not confirmed, never run");
            (Outcome::CompletedWithRefusals, reason)
        } else {
            (outcome, reason)
        };
        let latency_ms = (self.ctx.now_ms - self.state.requested_at_ms).max(0);
        self.emit(Payload::TurnCompleted(TurnCompleted {
            outcome,
            reason,
            latency_ms,
        }));
        self.effect(Effect::Finished {
            turn_id: self.state.turn_id,
            tenant: self.state.tenant.clone(),
            outcome,
            latency_ms,
        });
    }
}
