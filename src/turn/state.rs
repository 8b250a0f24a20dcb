//! Turn state and `apply`: the only way state changes. `apply` holds no business logic — it
//! records facts; every choice is made in `decide`.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::event::{
    BudgetPurpose, Checkpoint, EscalationRung, Event, GuardVerdict, Outcome, Payload, PlanProposed,
    PolicyDecision, RetrievedDocument, RouteSelected, SessionLoaded, ToolFailureKind,
};
use crate::ids::TurnId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallStatus {
    Running,
    Completed {
        result_json: String,
    },
    Failed {
        kind: ToolFailureKind,
        error: String,
        retryable: bool,
        at_ms: i64,
    },
    /// Never run: refused, and the refusal reported to the model as this call's error.
    Refused {
        reason: String,
    },
}

/// The current attempt of one plan step's tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    pub call_id: String,
    pub step: i32,
    pub tool: String,
    pub args_json: String,
    pub idempotency_key: String,
    pub idempotent: bool,
    pub attempt: i32,
    pub status: CallStatus,
}

/// An earlier model step of the loop: the model's answer and the calls it made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub plan: PlanProposed,
    pub calls: Vec<CallState>,
}

/// A reservation not yet committed or released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenReservation {
    pub reservation_id: String,
    pub purpose: BudgetPurpose,
    pub call_id: Option<String>,
    pub tokens: i64,
    pub cost_micros: i64,
}

/// What the turn has used of its own budget (open reservations included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnBudget {
    /// Reservations made so far (names the next one).
    pub reservations: i32,
    pub open: Vec<OpenReservation>,
    pub tokens: i64,
    pub cost_micros: i64,
    pub tool_calls: i32,
    pub retries: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalStatus {
    Pending,
    Granted,
    Denied,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub approval_id: String,
    pub call_id: String,
    pub step: i32,
    pub deadline_ms: i64,
    pub status: ApprovalStatus,
    /// The rules behind the decision that asked for it (the call's pre-tool policy ids).
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A human handoff: the turn waits for an operator until the deadline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffState {
    pub deadline_ms: i64,
    pub accepted_by: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

/// The last guard that fired with a verdict that ends or redirects the turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TripState {
    pub guard: String,
    pub rule: String,
    pub verdict: GuardVerdict,
    pub detail: String,
}

/// Where a turn is, derived from its facts rather than stored beside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No TurnRequested yet.
    New,
    /// Requested, but the routing choice is not recorded: a turn of a session waiting for the
    /// one before it to finish, or a decision cut short.
    Routing,
    Retrieving,
    Planning,
    /// A tool call attempt is running (its intent is durable, its result is not).
    AwaitingTool {
        index: usize,
    },
    /// The last attempt failed retryably; the next one waits for its backoff.
    AwaitingRetry {
        index: usize,
    },
    /// The step's tool calls are recorded but their review is not (a decision cut short).
    ReviewPlan,
    /// The model answered without tool calls and the reply is not recorded yet (a decision cut
    /// short).
    Answering,
    /// Step `index` waits for a person to approve its call.
    AwaitingApproval {
        index: usize,
    },
    /// Step `index` was approved and its call has not started.
    Approved {
        index: usize,
    },
    /// The previous call of this model step finished and the next has not started.
    NextCall,
    /// An ending was decided (final failure, denial, escalation, reply) but TurnCompleted is
    /// missing: the decision was cut short; Resume completes it.
    Settle,
    /// Handed to a person; waits for HandoffResolved or the deadline.
    AwaitingHandoff,
    Done(Outcome),
}

impl Phase {
    /// The plan step a call phase is about (`AwaitingTool`, `AwaitingRetry`,
    /// `AwaitingApproval`, `Approved`).
    pub fn index(&self) -> Option<usize> {
        match self {
            Phase::AwaitingTool { index }
            | Phase::AwaitingRetry { index }
            | Phase::AwaitingApproval { index }
            | Phase::Approved { index } => Some(*index),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnState {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    /// The seq the next event must carry; also the number of events applied.
    pub next_seq: i64,
    pub requested: bool,
    pub text: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub requested_at_ms: i64,
    pub source_offset: Option<i64>,
    #[serde(default)]
    pub route: Option<Box<RouteSelected>>,
    pub retrieved: bool,
    #[serde(default)]
    pub retrieval_failed: bool,
    pub documents: Vec<RetrievedDocument>,
    /// The current model step's answer (its tool calls are `calls`).
    pub plan: Option<Box<PlanProposed>>,
    /// The calls of the current model step.
    pub calls: Vec<CallState>,
    /// Earlier model steps of this turn's loop, oldest first.
    #[serde(default)]
    pub history: Vec<StepRecord>,
    /// The session this turn continues.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The session's earlier turns as this turn recorded them.
    #[serde(default)]
    pub session: Option<Box<SessionLoaded>>,
    /// Model steps that failed after the planner's own retries.
    #[serde(default)]
    pub model_failures: u32,
    /// The step whose model call failed last, until a proposal answers it.
    #[serde(default)]
    pub failed_step: Option<i32>,
    pub failures: u32,
    pub last_decision: Option<PolicyDecision>,
    /// The current plan's plan-checkpoint decision (None until reviewed).
    #[serde(default)]
    pub plan_decision: Option<PolicyDecision>,
    /// The plan checkpoint denied with `on_refusal = feedback`: each call goes to its own
    /// review (a denied one is refused and reported to the model) instead of the turn ending.
    #[serde(default)]
    pub plan_feedback: bool,
    /// The pre-response decision on the reply (None until reviewed).
    #[serde(default)]
    pub response_decision: Option<PolicyDecision>,
    #[serde(default)]
    pub budget: TurnBudget,
    #[serde(default)]
    pub approvals: Vec<ApprovalState>,
    /// The policy ids of the last pre-tool decision (an approval it asks for keeps them).
    #[serde(default)]
    pub last_call_rules: Vec<String>,
    pub escalations: Vec<EscalationRung>,
    /// Plans the turn has asked for: one, plus one per re-planning rung of the ladder.
    #[serde(default)]
    pub plans_wanted: i32,
    #[serde(default)]
    pub handoff: Option<Box<HandoffState>>,
    /// The last guard that denied or escalated (None once a new plan starts).
    #[serde(default)]
    pub trip: Option<Box<TripState>>,
    /// Calls blocked as hallucinations with action.
    #[serde(default)]
    pub hallucinations: u32,
    #[serde(default)]
    pub guard_trips: u32,
    /// Model tokens over all plans: (input, output).
    #[serde(default)]
    pub tokens: (i64, i64),
    /// The policy set behind the last policy decision.
    #[serde(default)]
    pub policy_version: Option<String>,
    pub response: Option<String>,
    #[serde(default)]
    pub citations: Vec<String>,
    pub outcome: Option<Outcome>,
    pub completed_at_ms: Option<i64>,
    /// Events whose content did not fit the state (e.g. a result for an unknown call). They are
    /// counted rather than trusted, and never panic.
    pub anomalies: u32,
    /// Why the turn ended (TurnCompleted's reason).
    #[serde(default)]
    pub reason: String,
    /// The reversal of a finished turn, once an operator asked for it.
    #[serde(default)]
    pub reversal: Option<Box<super::reversal::ReversalState>>,
    /// Late outcome labels, oldest first.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The commands those labels came from: a command read again (after a crash, commands
    /// after the last snapshot are re-read from the request log) labels nothing twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_commands: Vec<String>,
    /// Calls stopped (by a rule or a person) that have not run since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<super::stops::StoppedCall>,
    /// Calls held for a person's confirmation.
    #[serde(default)]
    pub held_calls: u32,
}

/// What `apply` did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied (same turn, seq below `next_seq`): delivered twice, changes nothing.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event of turn {got} applied to turn {expected}")]
    WrongTurn { expected: TurnId, got: TurnId },
    #[error("turn {turn}: expected seq {expected}, got {got}: events are missing")]
    Gap {
        turn: TurnId,
        expected: i64,
        got: i64,
    },
}

impl TurnState {
    pub fn new(turn_id: TurnId) -> Self {
        TurnState {
            turn_id,
            tenant: String::new(),
            user_id: String::new(),
            next_seq: 0,
            requested: false,
            text: String::new(),
            channel: String::new(),
            attributes: BTreeMap::new(),
            requested_at_ms: 0,
            source_offset: None,
            route: None,
            retrieved: false,
            retrieval_failed: false,
            documents: Vec::new(),
            plan: None,
            calls: Vec::new(),
            history: Vec::new(),
            session_id: None,
            session: None,
            model_failures: 0,
            failed_step: None,
            failures: 0,
            last_decision: None,
            plan_decision: None,
            plan_feedback: false,
            response_decision: None,
            budget: TurnBudget::default(),
            approvals: Vec::new(),
            last_call_rules: Vec::new(),
            escalations: Vec::new(),
            plans_wanted: 0,
            handoff: None,
            trip: None,
            hallucinations: 0,
            guard_trips: 0,
            tokens: (0, 0),
            policy_version: None,
            response: None,
            citations: Vec::new(),
            outcome: None,
            completed_at_ms: None,
            anomalies: 0,
            reason: String::new(),
            reversal: None,
            labels: Vec::new(),
            label_commands: Vec::new(),
            stopped: Vec::new(),
            held_calls: 0,
        }
    }

    /// Rebuilds a turn from its events (duplicates are skipped).
    pub fn replay<'a>(
        turn_id: TurnId,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Self, ApplyError> {
        let mut state = TurnState::new(turn_id);
        for e in events {
            state.apply(e)?;
        }
        Ok(state)
    }

    /// Finished, and not being reversed.
    pub fn is_terminal(&self) -> bool {
        self.outcome.is_some() && self.reversal.as_ref().is_none_or(|r| r.done)
    }

    pub fn phase(&self) -> Phase {
        if let Some(o) = self.outcome {
            return Phase::Done(o);
        }
        if !self.requested {
            return Phase::New;
        }
        if self.route.is_none() {
            return Phase::Routing;
        }
        if !self.retrieved {
            return Phase::Retrieving;
        }
        if let Some(h) = &self.handoff {
            return if h.resolved_by.is_some() {
                Phase::Settle
            } else {
                Phase::AwaitingHandoff
            };
        }
        if self.response.is_some() {
            return Phase::Settle;
        }
        if self
            .trip
            .as_ref()
            .is_some_and(|t| t.verdict == GuardVerdict::Deny)
        {
            return Phase::Settle;
        }
        let Some(plan) = self
            .plan
            .as_ref()
            .filter(|p| p.plan_rev + 1 >= self.plans_wanted)
        else {
            return Phase::Planning;
        };
        // The model answered: the reply is recorded with the answer (then Settle, above).
        if plan.is_answer() {
            return Phase::Answering;
        }
        match self.plan_decision {
            None => return Phase::ReviewPlan,
            // Confirmation is asked per call, at the pre-tool checkpoint, with the real arguments.
            Some(PolicyDecision::Allow | PolicyDecision::RequireConfirmation) => {}
            // Refused with feedback: each call's own review refuses what the plan's did.
            Some(PolicyDecision::Deny) if self.plan_feedback => {}
            Some(_) => return Phase::Settle,
        }
        // A guard escalated and the ladder's next step is not recorded (a decision cut short).
        if self
            .trip
            .as_ref()
            .is_some_and(|t| t.verdict == GuardVerdict::Escalate)
        {
            return Phase::Settle;
        }
        if let Some((index, last)) = self.calls.iter().enumerate().next_back() {
            match last.status {
                CallStatus::Running => return Phase::AwaitingTool { index },
                CallStatus::Failed {
                    retryable: true, ..
                } => return Phase::AwaitingRetry { index },
                CallStatus::Failed { .. } => return Phase::Settle,
                CallStatus::Completed { .. } | CallStatus::Refused { .. } => {}
            }
        }
        if self.calls.len() < plan.steps.len() {
            let index = self.calls.len();
            match self.approval_for(index).map(|a| a.status) {
                Some(ApprovalStatus::Pending) => Phase::AwaitingApproval { index },
                Some(ApprovalStatus::Granted) => Phase::Approved { index },
                Some(ApprovalStatus::Denied | ApprovalStatus::Expired) => Phase::Settle,
                None => Phase::NextCall,
            }
        } else {
            // Every call of this step has its result: the model sees them in the next step.
            Phase::Planning
        }
    }

    /// The loop step the next model call answers: the current one again when the ladder asked
    /// for a re-plan, else the one after the last recorded.
    pub fn next_model_step(&self) -> i32 {
        if let Some(step) = self.failed_step {
            return step;
        }
        match &self.plan {
            None => 0,
            Some(p) if p.plan_rev + 1 < self.plans_wanted => p.step,
            Some(p) => p.step + 1,
        }
    }

    /// Model steps the loop has taken (re-asks of a step count once).
    pub fn steps_taken(&self) -> i32 {
        self.plan.as_ref().map_or(0, |p| p.step + 1)
    }

    /// Every tool call of the turn, earlier steps first.
    pub fn all_calls(&self) -> impl Iterator<Item = &CallState> {
        self.history
            .iter()
            .flat_map(|s| s.calls.iter())
            .chain(self.calls.iter())
    }

    /// Applies one event. Pure: no I/O, no clock, no randomness.
    pub fn apply(&mut self, event: &Event) -> Result<Applied, ApplyError> {
        if event.turn_id != self.turn_id {
            return Err(ApplyError::WrongTurn {
                expected: self.turn_id,
                got: event.turn_id,
            });
        }
        if event.seq < self.next_seq {
            return Ok(Applied::Duplicate);
        }
        if event.seq > self.next_seq {
            return Err(ApplyError::Gap {
                turn: self.turn_id,
                expected: self.next_seq,
                got: event.seq,
            });
        }
        self.next_seq += 1;
        match &event.payload {
            Payload::TurnRequested(r) => {
                self.requested = true;
                self.tenant = event.tenant.clone();
                self.user_id = r.user_id.clone();
                self.text = r.text.clone();
                self.channel = r.channel.clone();
                self.attributes = r.attributes.clone();
                self.requested_at_ms = event.at_ms;
                self.source_offset = r.source_offset;
                self.session_id = r.session_id.clone();
            }
            Payload::SessionLoaded(s) => self.session = Some(Box::new(s.clone())),
            Payload::ModelCallFailed(f) => {
                self.model_failures += 1;
                self.failed_step = Some(f.step);
            }
            Payload::ContextRetrieved(c) => {
                self.plans_wanted = self.plans_wanted.max(1);
                self.retrieved = true;
                self.retrieval_failed = c.error.is_some();
                self.documents = c.documents.clone();
            }
            Payload::PlanProposed(p) => {
                self.tokens.0 += p.input_tokens;
                self.tokens.1 += p.output_tokens;
                // The loop moved on: the previous step (its answer, its calls) becomes history.
                // A re-ask of the same step replaces it instead.
                if let Some(prev) = self.plan.take_if(|prev| p.step > prev.step) {
                    self.history.push(StepRecord {
                        plan: *prev,
                        calls: std::mem::take(&mut self.calls),
                    });
                }
                self.plan = Some(Box::new(p.clone()));
                self.failed_step = None;
                self.plan_decision = None;
                self.plan_feedback = false;
                self.calls.clear();
                self.approvals.clear();
                self.trip = None;
            }
            Payload::PolicyEvaluated(p) => {
                self.last_decision = Some(p.decision);
                if p.policy_version != crate::turn::budgeting::BUDGET_POLICY_VERSION {
                    self.policy_version = Some(p.policy_version.clone());
                }
                let stops = matches!(p.decision, PolicyDecision::Deny | PolicyDecision::Escalate);
                match p.checkpoint {
                    Checkpoint::Plan => {
                        self.plan_decision = Some(p.decision);
                        self.plan_feedback = p.feedback;
                        if stops {
                            self.stop_plan();
                        }
                    }
                    Checkpoint::PreResponse => self.response_decision = Some(p.decision),
                    Checkpoint::PreTool => {
                        self.last_call_rules = p.policy_ids.clone();
                        if stops && let (Some(step), Some(plan)) = (p.step, self.plan.as_ref()) {
                            let id = crate::ids::call_id(
                                self.turn_id,
                                plan.plan_rev.max(0) as u32,
                                step.max(0) as u32,
                            );
                            self.stop(&id, Some(step), false);
                        }
                    }
                    Checkpoint::PreModel => {}
                }
            }
            Payload::CallRefused(r) => {
                let args_json = self
                    .plan
                    .as_ref()
                    .and_then(|p| p.steps.get(r.step.max(0) as usize))
                    .map(|s| s.args_json.clone())
                    .unwrap_or_default();
                let call = CallState {
                    call_id: r.call_id.clone(),
                    step: r.step,
                    tool: r.tool.clone(),
                    args_json,
                    idempotency_key: r.call_id.clone(),
                    idempotent: false,
                    attempt: 0,
                    status: CallStatus::Refused {
                        reason: r.reason.clone(),
                    },
                };
                match self.calls.last_mut() {
                    Some(last) if last.call_id == r.call_id => *last = call,
                    _ => self.calls.push(call),
                }
                // The refusal answers the guard that stopped the call: the loop goes on.
                self.trip = None;
                self.stop(&r.call_id, Some(r.step), false);
            }
            Payload::ToolCallStarted(s) => {
                self.ran(&s.tool, &s.args_json);
                let call = CallState {
                    call_id: s.call_id.clone(),
                    step: s.step,
                    tool: s.tool.clone(),
                    args_json: s.args_json.clone(),
                    idempotency_key: s.idempotency_key.clone(),
                    idempotent: s.idempotent,
                    attempt: s.attempt,
                    status: CallStatus::Running,
                };
                match self.calls.last_mut() {
                    Some(last) if last.call_id == s.call_id => *last = call,
                    _ => self.calls.push(call),
                }
            }
            Payload::ToolCallCompleted(c) => match self.current_call_mut(&c.call_id, c.attempt) {
                Some(call) => {
                    call.status = CallStatus::Completed {
                        result_json: c.result_json.clone(),
                    }
                }
                None => self.anomalies += 1,
            },
            Payload::ToolCallFailed(f) => match self.current_call_mut(&f.call_id, f.attempt) {
                Some(call) => {
                    call.status = CallStatus::Failed {
                        kind: f.kind,
                        error: f.error.clone(),
                        retryable: f.retryable,
                        at_ms: event.at_ms,
                    };
                    self.failures += 1;
                }
                None => self.anomalies += 1,
            },
            Payload::EscalationRaised(e) => {
                self.escalations.push(e.rung);
                match e.rung {
                    EscalationRung::ConstrainedRetry | EscalationRung::Specialist => {
                        let plans = self.plan.as_ref().map_or(0, |p| p.plan_rev + 1);
                        self.plans_wanted = self.plans_wanted.max(plans + 1).max(1);
                        self.trip = None;
                        // A re-plan starts over: a reply the guards stopped is not the answer.
                        self.response = None;
                        self.response_decision = None;
                        self.citations.clear();
                    }
                    EscalationRung::UserConfirmation => self.trip = None,
                    EscalationRung::HumanHandoff => {
                        self.handoff = Some(Box::new(HandoffState {
                            deadline_ms: e.deadline_ms.unwrap_or(i64::MAX),
                            accepted_by: None,
                            resolved_by: None,
                            resolution: None,
                        }));
                    }
                }
            }
            Payload::GuardrailTripped(g) => {
                self.guard_trips += 1;
                if g.hallucination {
                    self.hallucinations += 1;
                }
                if matches!(g.verdict, GuardVerdict::Deny | GuardVerdict::Escalate) {
                    if let Some(id) = &g.call_id {
                        self.stop(id, g.step, false);
                    }
                    self.trip = Some(Box::new(TripState {
                        guard: g.guard.clone(),
                        rule: g.rule.clone(),
                        verdict: g.verdict,
                        detail: g.detail.clone(),
                    }));
                }
            }
            Payload::HandoffAccepted(h) => match self.handoff.as_mut() {
                Some(s) => s.accepted_by = Some(h.operator.clone()),
                None => self.anomalies += 1,
            },
            Payload::HandoffResolved(h) => match self.handoff.as_mut() {
                Some(s) => {
                    s.resolved_by = Some(h.operator.clone());
                    s.resolution = Some(h.resolution.clone());
                }
                None => self.anomalies += 1,
            },
            Payload::ResponseSynthesized(r) => {
                self.response = Some(r.text.clone());
                self.citations = r.citations.clone();
            }
            Payload::TurnCompleted(c) => {
                self.outcome = Some(c.outcome);
                self.completed_at_ms = Some(event.at_ms);
                self.reason = c.reason.clone();
            }
            Payload::ReversalRequested(_)
            | Payload::CompensationStarted(_)
            | Payload::CompensationCompleted(_)
            | Payload::CompensationFailed(_)
            | Payload::TurnReversed(_)
            | Payload::OutcomeLabeled(_) => self.apply_after_end(&event.payload),
            Payload::RouteSelected(r) => self.route = Some(Box::new(r.clone())),
            // A rejected input changed nothing but the turn's record (see `table.rs`).
            Payload::InputRejected(_) => {}
            Payload::BudgetReserved(r) => {
                let b = &mut self.budget;
                b.reservations += 1;
                b.tokens += r.tokens;
                b.cost_micros += r.cost_micros;
                b.tool_calls += r.tool_calls;
                b.retries += r.retries;
                b.open.push(OpenReservation {
                    reservation_id: r.reservation_id.clone(),
                    purpose: r.purpose,
                    call_id: r.call_id.clone(),
                    tokens: r.tokens,
                    cost_micros: r.cost_micros,
                });
            }
            Payload::BudgetCommitted(c) => match self.take_reservation(&c.reservation_id) {
                Some(open) => {
                    self.budget.tokens += c.tokens - open.tokens;
                    self.budget.cost_micros += c.cost_micros - open.cost_micros;
                }
                None => self.anomalies += 1,
            },
            Payload::BudgetReleased(r) => match self.take_reservation(&r.reservation_id) {
                Some(open) => {
                    self.budget.tokens -= open.tokens;
                    self.budget.cost_micros -= open.cost_micros;
                }
                None => self.anomalies += 1,
            },
            Payload::ApprovalRequested(a) => {
                self.held_calls += 1;
                self.approvals.push(ApprovalState {
                    approval_id: a.approval_id.clone(),
                    call_id: a.call_id.clone(),
                    step: a.step,
                    deadline_ms: a.deadline_ms,
                    status: ApprovalStatus::Pending,
                    rules: self.last_call_rules.clone(),
                })
            }
            Payload::ApprovalGranted(a) => self.resolve(&a.approval_id, ApprovalStatus::Granted),
            Payload::ApprovalDenied(a) => self.resolve(&a.approval_id, ApprovalStatus::Denied),
            Payload::ApprovalExpired(a) => self.resolve(&a.approval_id, ApprovalStatus::Expired),
        }
        Ok(Applied::Applied)
    }

    /// Whether the current plan comes from a constrained retry (fewer documents,
    /// deterministic tools only): the latest re-planning rung was that one.
    pub fn constrained(&self) -> bool {
        self.escalations.iter().rev().find(|r| {
            matches!(
                r,
                EscalationRung::ConstrainedRetry | EscalationRung::Specialist
            )
        }) == Some(&EscalationRung::ConstrainedRetry)
    }

    /// The approval asked for plan step `index` of the current plan, if any.
    pub fn approval_for(&self, index: usize) -> Option<&ApprovalState> {
        self.approvals.iter().rev().find(|a| a.step == index as i32)
    }

    /// The open reservation for a call (or, with `None`, for the model).
    pub fn open_reservation(&self, call_id: Option<&str>) -> Option<&OpenReservation> {
        self.budget
            .open
            .iter()
            .find(|r| r.call_id.as_deref() == call_id)
    }

    fn take_reservation(&mut self, id: &str) -> Option<OpenReservation> {
        let i = self
            .budget
            .open
            .iter()
            .position(|r| r.reservation_id == id)?;
        Some(self.budget.open.remove(i))
    }

    fn resolve(&mut self, approval_id: &str, status: ApprovalStatus) {
        match self
            .approvals
            .iter_mut()
            .rev()
            .find(|a| a.approval_id == approval_id && a.status == ApprovalStatus::Pending)
        {
            Some(a) => {
                a.status = status;
                if matches!(status, ApprovalStatus::Denied | ApprovalStatus::Expired) {
                    let (id, step) = (a.call_id.clone(), a.step);
                    self.stop(&id, Some(step), true);
                }
            }
            None => self.anomalies += 1,
        }
    }

    fn current_call_mut(&mut self, call_id: &str, attempt: i32) -> Option<&mut CallState> {
        self.calls.last_mut().filter(|c| {
            c.call_id == call_id && c.attempt == attempt && c.status == CallStatus::Running
        })
    }
}
