//! Example-based tests of the state machine, and the test world shared with `sim_tests`.

use std::collections::BTreeMap;

use super::*;
use crate::control::CedarControlPlane;
use crate::control::budget::{BudgetLimits, Ledger};
use crate::event::{Outcome, Payload, PlanStep, ToolFailureKind, TurnRequest};
use crate::exec::catalog::{Catalog, Impact, ToolSpec};
use crate::ids::TurnId;

pub(super) fn tool(name: &str, idempotent: bool, impact: Impact) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: name.into(),
        args_schema: serde_json::json!({"type": "object"}),
        result_schema: serde_json::json!({"type": "object"}),
        auth_scopes: vec![],
        impact,
        idempotent,
        compensation: None,
        timeout_ms: 1_000,
        ..ToolSpec::default()
    }
}

pub(super) fn catalog() -> Catalog {
    Catalog::new([
        tool("lookup_order", true, Impact::None),
        tool("issue_refund", true, Impact::High),
        tool("send_email", false, Impact::Medium),
    ])
}

pub(super) struct World {
    pub(super) catalog: Catalog,
    pub(super) control: CedarControlPlane,
    pub(super) limits: Limits,
    pub(super) budgets: BudgetLimits,
    pub(super) ledger: Ledger,
    pub(super) guards: crate::guard::Guards,
    pub(super) breakers: crate::guard::Breakers,
    pub(super) now: i64,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            catalog: catalog(),
            control: CedarControlPlane::builtin(catalog()).expect("built-in policies load"),
            limits: Limits::default(),
            budgets: BudgetLimits::default(),
            ledger: Ledger::default(),
            guards: crate::guard::Guards::or_default(
                crate::guard::GuardConfig::default(),
                &catalog(),
            ),
            breakers: crate::guard::Breakers::default(),
            now: 1_000,
        }
    }
    /// The built-in policies plus one: emails need a person's confirmation.
    pub(super) fn confirming_emails() -> Self {
        let sources = vec![
            (
                "builtin.cedar".to_string(),
                crate::control::cedar::BUILTIN_POLICIES.to_string(),
            ),
            (
                "email.cedar".to_string(),
                r#"@id("email.confirm") @decision("require_confirmation")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"send_email")
when { context.checkpoint == "pre_tool" };"#
                    .to_string(),
            ),
        ];
        let policies =
            crate::control::cedar::Policies::from_sources(&sources, &catalog()).expect("loads");
        World {
            control: CedarControlPlane::new(
                crate::control::ControlConfig::default(),
                catalog(),
                policies,
                None,
            ),
            ..World::new()
        }
    }

    pub(super) fn ctx(&self) -> DecideCtx<'_> {
        DecideCtx {
            now_ms: self.now,
            catalog: &self.catalog,
            control: &self.control,
            limits: &self.limits,
            budgets: &self.budgets,
            ledger: &self.ledger,
            guards: &self.guards,
            breakers: &self.breakers,
            draining: false,
        }
    }
}

pub(super) fn approval(t: TurnId, approval_id: &str, granted: bool) -> crate::event::TurnCommand {
    crate::event::TurnCommand {
        turn_offset: None,
        command_id: format!("cmd-{approval_id}"),
        turn_id: t,
        tenant: "acme".into(),
        operator: "ops".into(),
        issued_at_ms: 0,
        action: crate::event::CommandAction::ApprovalDecision(crate::event::ApprovalDecision {
            approval_id: approval_id.into(),
            granted,
            reason: None,
        }),
    }
}

/// An operator's handoff command: resolve it, or only accept it.
pub(super) fn handoff(t: TurnId, resolve: bool) -> crate::event::TurnCommand {
    use crate::event::{CommandAction, HandoffAcceptance, HandoffResolution};
    crate::event::TurnCommand {
        turn_offset: None,
        command_id: "cmd-handoff".into(),
        turn_id: t,
        tenant: "acme".into(),
        operator: "ops".into(),
        issued_at_ms: 0,
        action: if resolve {
            CommandAction::HandoffResolve(HandoffResolution {
                resolution: "handled by phone".into(),
            })
        } else {
            CommandAction::HandoffAccept(HandoffAcceptance { note: None })
        },
    }
}

pub(super) fn turn() -> TurnId {
    TurnId::from_parts(1_700_000_000_000, [9; 10])
}

pub(super) fn request(t: TurnId) -> Input {
    Input::Request {
        request: TurnRequest {
            turn_id: t,
            tenant: "acme".into(),
            user_id: "u1".into(),
            text: "refund order A1".into(),
            channel: "api".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 900,
            session_id: None,
        },
        source_offset: Some(4),
        session: Some(Vec::new()),
    }
}

pub(super) fn planned(steps: &[&str], confidence: f64) -> Input {
    Input::Planned(Ok(Planned {
        model: "scripted".into(),
        model_version: "1".into(),
        prompt_template_hash: "h".into(),
        steps: steps
            .iter()
            .map(|t| PlanStep {
                tool: t.to_string(),
                args_json: r#"{"order_id":"A1"}"#.into(),
            })
            .collect(),
        confidence,
        input_tokens: 10,
        output_tokens: 5,
        latency_ms: 1,
        ..Planned::empty("scripted")
    }))
}

/// The model's final answer: no tool calls, `text` as the reply.
pub(super) fn answered(text: &str) -> Input {
    Input::Planned(Ok(Planned {
        model_version: "1".into(),
        prompt_template_hash: "h".into(),
        confidence: 0.9,
        input_tokens: 30,
        output_tokens: 5,
        latency_ms: 1,
        content: Some(text.into()),
        finish_reason: Some("stop".into()),
        ..Planned::empty("scripted")
    }))
}

pub(super) fn retrieved() -> Input {
    Input::Retrieved(Ok(Retrieval {
        query: "q".into(),
        documents: vec![],
        latency_ms: 1,
    }))
}

/// The kinds of the decided events, leaving out routing and budget bookkeeping (the
/// control-plane scenarios in `control_tests` assert those exactly).
pub(super) fn kinds(d: &Decision) -> Vec<&'static str> {
    d.events
        .iter()
        .filter(|e| {
            !matches!(
                e.payload,
                Payload::RouteSelected(_)
                    | Payload::BudgetReserved(_)
                    | Payload::BudgetCommitted(_)
                    | Payload::BudgetReleased(_)
            )
        })
        .map(|e| e.kind())
        .collect()
}

/// The call's result: `{}`.
pub(super) fn ok(c: &ToolInvocation) -> Input {
    Input::ToolDone {
        call_id: c.call_id.clone(),
        attempt: c.attempt,
        result: Ok(ToolSuccess {
            result_json: "{}".into(),
            latency_ms: 2,
        }),
    }
}

pub(super) fn only_call(d: &Decision) -> ToolInvocation {
    match d.effects.as_slice() {
        [Effect::CallTool { call, .. }] => call.clone(),
        other => panic!("expected one CallTool, got {other:?}"),
    }
}

/// given(inputs) on a fresh turn: returns the state after them.
pub(super) fn given(w: &World, inputs: Vec<Input>) -> TurnState {
    let mut s = TurnState::new(turn());
    for i in inputs {
        step(&mut s, i, &w.ctx());
    }
    s
}

#[test]
fn happy_path_records_intent_before_each_call_and_completes() {
    let w = World::new();
    let mut s = TurnState::new(turn());
    let d = step(&mut s, request(turn()), &w.ctx());
    assert_eq!(kinds(&d), ["TurnRequested"]);
    assert!(matches!(d.effects.as_slice(), [Effect::Retrieve { .. }]));
    let d = step(&mut s, retrieved(), &w.ctx());
    assert_eq!(kinds(&d), ["ContextRetrieved"]);
    assert!(matches!(d.effects.as_slice(), [Effect::Plan { .. }]));
    let d = step(
        &mut s,
        planned(&["lookup_order", "issue_refund"], 0.9),
        &w.ctx(),
    );
    assert_eq!(
        kinds(&d),
        [
            "PlanProposed",
            "PolicyEvaluated",
            "PolicyEvaluated",
            "ToolCallStarted"
        ]
    );
    let first = only_call(&d);
    assert_eq!((first.tool.as_str(), first.attempt), ("lookup_order", 1));
    let ok = |c: &ToolInvocation| Input::ToolDone {
        call_id: c.call_id.clone(),
        attempt: c.attempt,
        result: Ok(ToolSuccess {
            result_json: "{}".into(),
            latency_ms: 2,
        }),
    };
    let d = step(&mut s, ok(&first), &w.ctx());
    assert_eq!(
        kinds(&d),
        ["ToolCallCompleted", "PolicyEvaluated", "ToolCallStarted"]
    );
    let second = only_call(&d);
    assert_eq!(second.tool, "issue_refund");
    assert_ne!(second.idempotency_key, first.idempotency_key);
    let d = step(&mut s, ok(&second), &w.ctx());
    assert_eq!(kinds(&d), ["ToolCallCompleted"]);
    // The model sees both results in its next step.
    match &d.effects[..] {
        [
            Effect::Plan {
                step, conversation, ..
            },
        ] => {
            assert_eq!(*step, 1);
            assert_eq!(conversation.steps.len(), 1);
            assert_eq!(conversation.steps[0].calls.len(), 2);
            assert!(conversation.steps[0].calls.iter().all(|c| c.result.is_ok()));
        }
        other => panic!("expected the next model step, got {other:?}"),
    }
    let d = step(&mut s, answered("Refunded order A1."), &w.ctx());
    assert_eq!(
        kinds(&d),
        [
            "PlanProposed",
            "ResponseSynthesized",
            "PolicyEvaluated",
            "TurnCompleted"
        ]
    );
    assert_eq!(s.response.as_deref(), Some("Refunded order A1."));
    assert_eq!(s.history.len(), 1, "the first step is history");
    assert!(matches!(
        d.effects.as_slice(),
        [Effect::Finished {
            outcome: Outcome::Succeeded,
            ..
        }]
    ));
    assert_eq!(s.phase(), Phase::Done(Outcome::Succeeded));
    // 13 core events, the route, the reply review, and a reservation and commit per call and
    // per model step.
    assert_eq!(s.next_seq, 23);
    assert!(
        step(&mut s, Input::Resume, &w.ctx()).is_empty(),
        "terminal turns stay put"
    );
}

#[test]
fn a_long_plan_is_denied_by_the_step_limit() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let steps = vec!["lookup_order"; 9];
    step(&mut s, planned(&steps, 0.9), &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::Denied));
}

#[test]
fn low_confidence_climbs_the_ladder_to_a_human_who_resolves_it() {
    let mut w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    // Rung 1: re-plan with constrained context.
    let d = step(&mut s, planned(&["issue_refund"], 0.2), &w.ctx());
    assert_eq!(
        kinds(&d),
        ["PlanProposed", "PolicyEvaluated", "EscalationRaised"]
    );
    assert!(matches!(
        d.effects.as_slice(),
        [Effect::Plan {
            constrained: true,
            attempt: 1,
            ..
        }]
    ));
    // Rung 2: a specialist.
    let d = step(&mut s, planned(&["issue_refund"], 0.2), &w.ctx());
    assert_eq!(
        kinds(&d),
        ["PlanProposed", "PolicyEvaluated", "EscalationRaised"]
    );
    assert!(
        matches!(&d.effects[..], [Effect::Plan { profile, attempt: 2, .. }] if profile == "specialist")
    );
    // Nothing to confirm (no call was stopped): rung 4, a person, with a deadline.
    let d = step(&mut s, planned(&["issue_refund"], 0.2), &w.ctx());
    assert_eq!(
        kinds(&d),
        ["PlanProposed", "PolicyEvaluated", "EscalationRaised"]
    );
    assert!(matches!(
        d.effects.as_slice(),
        [Effect::ScheduleHandoffDeadline { .. }]
    ));
    assert_eq!(s.phase(), Phase::AwaitingHandoff);
    assert_eq!(
        s.escalations,
        [
            crate::event::EscalationRung::ConstrainedRetry,
            crate::event::EscalationRung::Specialist,
            crate::event::EscalationRung::HumanHandoff
        ]
    );
    // A restart re-arms the deadline; accepting does not end the wait; resolving does.
    let d = step(&mut s, Input::Resume, &w.ctx());
    assert!(
        d.events.is_empty()
            && matches!(
                d.effects.as_slice(),
                [Effect::ScheduleHandoffDeadline { .. }]
            )
    );
    assert_eq!(
        kinds(&step(
            &mut s,
            Input::Command(handoff(turn(), false)),
            &w.ctx()
        )),
        ["HandoffAccepted"]
    );
    let mut late = s.clone();
    let d = step(&mut s, Input::Command(handoff(turn(), true)), &w.ctx());
    assert_eq!(kinds(&d), ["HandoffResolved", "TurnCompleted"]);
    assert_eq!(s.outcome, Some(Outcome::Escalated));
    // A late label, read twice (a restart re-reads commands after the last snapshot): once.
    let label = |id: &str| {
        let mut c = handoff(turn(), true);
        c.command_id = id.into();
        c.action = crate::event::CommandAction::Label(crate::event::LabelTurn {
            label: "incorrect".into(),
            note: None,
        });
        Input::Command(c)
    };
    assert_eq!(
        kinds(&step(&mut s, label("cmd-l1"), &w.ctx()))[0],
        "OutcomeLabeled"
    );
    assert!(step(&mut s, label("cmd-l1"), &w.ctx()).events.is_empty());
    assert_eq!(
        kinds(&step(&mut s, label("cmd-l2"), &w.ctx()))[0],
        "OutcomeLabeled"
    );
    assert_eq!(s.labels, ["incorrect", "incorrect"]);
    // Unresolved past the deadline instead: escalation_failed.
    w.now += w.guards.config.handoff_ttl_ms + 1;
    let d = step(&mut late, Input::HandoffDeadline, &w.ctx());
    assert_eq!(kinds(&d), ["TurnCompleted"]);
    assert_eq!(late.outcome, Some(Outcome::EscalationFailed));
}

#[test]
fn retryable_failures_back_off_then_retry_with_the_same_key_until_exhausted() {
    let mut w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(&mut s, planned(&["lookup_order"], 0.9), &w.ctx()));
    let mut attempt = call.attempt;
    for _ in 0..2 {
        let d = step(
            &mut s,
            Input::ToolDone {
                call_id: call.call_id.clone(),
                attempt,
                result: Err(ToolFailure {
                    kind: ToolFailureKind::Timeout,
                    message: "slow".into(),
                    retryable: true,
                    latency_ms: 5,
                }),
            },
            &w.ctx(),
        );
        assert_eq!(kinds(&d), ["ToolCallFailed"]);
        let Some(Effect::Schedule {
            at_ms,
            attempt: next,
            ..
        }) = d.effects.first().cloned()
        else {
            panic!("expected a retry timer, got {:?}", d.effects)
        };
        assert!(at_ms > w.now);
        assert_eq!(next, attempt + 1);
        // Early or mismatched timers change nothing.
        assert!(
            step(
                &mut s,
                Input::RetryDue {
                    call_id: call.call_id.clone(),
                    attempt: next + 1
                },
                &w.ctx()
            )
            .is_empty()
        );
        w.now = at_ms;
        let d = step(
            &mut s,
            Input::RetryDue {
                call_id: call.call_id.clone(),
                attempt: next,
            },
            &w.ctx(),
        );
        assert_eq!(kinds(&d), ["ToolCallStarted"]);
        let retry = only_call(&d);
        assert_eq!(retry.idempotency_key, call.idempotency_key);
        attempt = retry.attempt;
    }
    let d = step(
        &mut s,
        Input::ToolDone {
            call_id: call.call_id.clone(),
            attempt,
            result: Err(ToolFailure {
                kind: ToolFailureKind::Error,
                message: "503".into(),
                retryable: true,
                latency_ms: 5,
            }),
        },
        &w.ctx(),
    );
    assert_eq!(kinds(&d), ["ToolCallFailed", "TurnCompleted"]);
    assert_eq!(s.outcome, Some(Outcome::Failed));
}

#[test]
fn a_draining_worker_records_results_but_starts_nothing_new() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(
        &mut s,
        planned(&["lookup_order", "send_email"], 0.9),
        &w.ctx(),
    ));
    let draining = DecideCtx {
        draining: true,
        ..w.ctx()
    };
    let d = step(
        &mut s,
        Input::ToolDone {
            call_id: call.call_id,
            attempt: call.attempt,
            result: Ok(ToolSuccess {
                result_json: "{}".into(),
                latency_ms: 1,
            }),
        },
        &draining,
    );
    assert_eq!(kinds(&d), ["ToolCallCompleted"]);
    assert!(d.effects.is_empty());
    assert_eq!(s.phase(), Phase::NextCall);
    // After the restart, Resume starts the step that was held back.
    let d = step(&mut s, Input::Resume, &w.ctx());
    assert_eq!(kinds(&d), ["PolicyEvaluated", "ToolCallStarted"]);
    assert_eq!(only_call(&d).tool, "send_email");
}

#[test]
fn stale_results_change_nothing_and_out_of_phase_inputs_are_recorded() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(&mut s, planned(&["lookup_order"], 0.9), &w.ctx()));
    let before = s.clone();
    let stale = Input::ToolDone {
        call_id: call.call_id.clone(),
        attempt: call.attempt + 1,
        result: Ok(ToolSuccess {
            result_json: "{}".into(),
            latency_ms: 1,
        }),
    };
    // A result for another attempt of the running call: accepted, and changes nothing.
    assert!(step(&mut s, stale, &w.ctx()).is_empty());
    assert_eq!(s, before);
    // Inputs the phase does not take: rejected, recorded, nothing else changes.
    for input in [retrieved(), request(turn())] {
        let d = step(&mut s, input, &w.ctx());
        assert_eq!(kinds(&d), ["InputRejected"]);
        assert!(d.effects.is_empty() && d.rejected.is_some());
    }
    assert_eq!(s.phase(), before.phase());
    assert_eq!((&s.calls, &s.budget), (&before.calls, &before.budget));
}

#[test]
fn resume_never_reruns_a_non_idempotent_call() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    only_call(&step(&mut s, planned(&["send_email"], 0.9), &w.ctx()));
    let d = step(&mut s, Input::Resume, &w.ctx());
    // Straight to a person: re-planning cannot settle whether an email went out.
    assert_eq!(kinds(&d), ["ToolCallFailed", "EscalationRaised"]);
    assert!(
        !d.effects
            .iter()
            .any(|e| matches!(e, Effect::CallTool { .. }))
    );
    assert!(matches!(
        &d.events[0].payload,
        Payload::ToolCallFailed(f) if f.kind == ToolFailureKind::OutcomeUnknown && !f.retryable
    ));
    assert_eq!(s.phase(), Phase::AwaitingHandoff);
}

#[test]
fn resume_retries_an_idempotent_call_with_the_same_key() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(&mut s, planned(&["issue_refund"], 0.9), &w.ctx()));
    let d = step(&mut s, Input::Resume, &w.ctx());
    assert_eq!(kinds(&d), ["ToolCallFailed", "ToolCallStarted"]);
    let again = only_call(&d);
    assert_eq!(again.idempotency_key, call.idempotency_key);
    assert_eq!(again.attempt, call.attempt + 1);
}

#[test]
fn decide_is_pure() {
    let w = World::new();
    let s = given(&w, vec![request(turn()), retrieved()]);
    let before = s.clone();
    let a = decide(&s, planned(&["lookup_order"], 0.9), &w.ctx());
    let b = decide(&s, planned(&["lookup_order"], 0.9), &w.ctx());
    assert_eq!(a, b);
    assert_eq!(s, before);
    // Applying the decided events reproduces what `step` does in place.
    let mut applied = before.clone();
    for e in &a.events {
        assert_eq!(applied.apply(e), Ok(Applied::Applied));
    }
    let mut stepped = before;
    step(&mut stepped, planned(&["lookup_order"], 0.9), &w.ctx());
    assert_eq!(applied, stepped);
}

#[test]
fn apply_rejects_gaps_and_foreign_events_and_skips_duplicates() {
    let w = World::new();
    let mut s = TurnState::new(turn());
    let d = step(&mut s, request(turn()), &w.ctx());
    let d2 = step(&mut s, retrieved(), &w.ctx());
    let mut fresh = TurnState::new(turn());
    assert_eq!(fresh.apply(&d.events[0]), Ok(Applied::Applied));
    assert_eq!(fresh.apply(&d.events[0]), Ok(Applied::Duplicate));
    let mut gap = d2.events[0].clone();
    gap.seq = 5;
    assert!(matches!(
        fresh.apply(&gap),
        Err(ApplyError::Gap {
            expected: 1,
            got: 5,
            ..
        })
    ));
    let mut foreign = d2.events[0].clone();
    foreign.turn_id = TurnId::from_parts(1, [1; 10]);
    assert!(matches!(
        fresh.apply(&foreign),
        Err(ApplyError::WrongTurn { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Property tests: random histories, crashes included, checked against invariants.
