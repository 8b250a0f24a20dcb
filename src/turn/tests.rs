use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::control::CedarControlPlane;
use crate::control::budget::{BudgetLimits, Ledger};
use crate::event::{Outcome, Payload, PlanStep, ToolFailureKind, TurnRequest};
use crate::exec::catalog::{Catalog, Impact, ToolSpec};
use crate::ids::TurnId;

fn tool(name: &str, idempotent: bool, impact: Impact) -> ToolSpec {
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

fn catalog() -> Catalog {
    Catalog::new([
        tool("lookup_order", true, Impact::None),
        tool("issue_refund", true, Impact::High),
        tool("send_email", false, Impact::Medium),
    ])
}

struct World {
    catalog: Catalog,
    control: CedarControlPlane,
    limits: Limits,
    budgets: BudgetLimits,
    ledger: Ledger,
    now: i64,
}

impl World {
    fn new() -> Self {
        World {
            catalog: catalog(),
            control: CedarControlPlane::builtin(catalog()).expect("built-in policies load"),
            limits: Limits::default(),
            budgets: BudgetLimits::default(),
            ledger: Ledger::default(),
            now: 1_000,
        }
    }
    /// The built-in policies plus one: emails need a person's confirmation.
    fn confirming_emails() -> Self {
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

    fn ctx(&self) -> DecideCtx<'_> {
        DecideCtx {
            now_ms: self.now,
            catalog: &self.catalog,
            control: &self.control,
            limits: &self.limits,
            budgets: &self.budgets,
            ledger: &self.ledger,
            draining: false,
        }
    }
}

fn approval(t: TurnId, approval_id: &str, granted: bool) -> crate::event::TurnCommand {
    crate::event::TurnCommand {
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

fn turn() -> TurnId {
    TurnId::from_parts(1_700_000_000_000, [9; 10])
}

fn request(t: TurnId) -> Input {
    Input::Request {
        request: TurnRequest {
            turn_id: t,
            tenant: "acme".into(),
            user_id: "u1".into(),
            text: "refund order A1".into(),
            channel: "api".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 900,
        },
        source_offset: Some(4),
    }
}

fn planned(steps: &[&str], confidence: f64) -> Input {
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
    }))
}

fn retrieved() -> Input {
    Input::Retrieved(Ok(Retrieval {
        query: "q".into(),
        documents: vec![],
        latency_ms: 1,
    }))
}

/// The kinds of the decided events, leaving out routing and budget bookkeeping (the
/// control-plane scenarios in `control_tests` assert those exactly).
fn kinds(d: &Decision) -> Vec<&'static str> {
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

fn only_call(d: &Decision) -> ToolInvocation {
    match d.effects.as_slice() {
        [Effect::CallTool { call, .. }] => call.clone(),
        other => panic!("expected one CallTool, got {other:?}"),
    }
}

/// given(inputs) on a fresh turn: returns the state after them.
fn given(w: &World, inputs: Vec<Input>) -> TurnState {
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
    assert!(matches!(&d.effects[..], [Effect::Synthesize { results, .. }] if results.len() == 2));
    let d = step(
        &mut s,
        Input::Synthesized(Ok(Synthesis {
            text: "done".into(),
            citations: vec![],
            latency_ms: 1,
        })),
        &w.ctx(),
    );
    assert_eq!(
        kinds(&d),
        ["ResponseSynthesized", "PolicyEvaluated", "TurnCompleted"]
    );
    assert!(matches!(
        d.effects.as_slice(),
        [Effect::Finished {
            outcome: Outcome::Succeeded,
            ..
        }]
    ));
    assert_eq!(s.phase(), Phase::Done(Outcome::Succeeded));
    // 12 core events, the route, the reply review, and a reservation and commit per call.
    assert_eq!(s.next_seq, 20);
    assert!(
        step(&mut s, Input::Resume, &w.ctx()).is_empty(),
        "terminal turns stay put"
    );
}

#[test]
fn an_unknown_tool_is_denied_before_any_side_effect() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(
        &mut s,
        planned(&["lookup_order", "delete_account"], 0.9),
        &w.ctx(),
    );
    assert_eq!(
        kinds(&d),
        ["PlanProposed", "PolicyEvaluated", "TurnCompleted"]
    );
    assert!(
        !d.effects
            .iter()
            .any(|e| matches!(e, Effect::CallTool { .. }))
    );
    assert_eq!(s.outcome, Some(Outcome::Denied));
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
fn low_confidence_escalates_to_a_human() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, planned(&["issue_refund"], 0.2), &w.ctx());
    assert_eq!(
        kinds(&d),
        [
            "PlanProposed",
            "PolicyEvaluated",
            "EscalationRaised",
            "TurnCompleted"
        ]
    );
    assert_eq!(s.outcome, Some(Outcome::Escalated));
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
    assert_eq!(s.phase(), Phase::NextStep);
    // After the restart, Resume starts the step that was held back.
    let d = step(&mut s, Input::Resume, &w.ctx());
    assert_eq!(kinds(&d), ["PolicyEvaluated", "ToolCallStarted"]);
    assert_eq!(only_call(&d).tool, "send_email");
}

#[test]
fn stale_results_are_ignored() {
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
    assert!(step(&mut s, stale, &w.ctx()).is_empty());
    assert!(step(&mut s, retrieved(), &w.ctx()).is_empty());
    assert!(step(&mut s, request(turn()), &w.ctx()).is_empty());
    assert_eq!(s, before);
}

#[test]
fn resume_never_reruns_a_non_idempotent_call() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    only_call(&step(&mut s, planned(&["send_email"], 0.9), &w.ctx()));
    let d = step(&mut s, Input::Resume, &w.ctx());
    assert_eq!(
        kinds(&d),
        ["ToolCallFailed", "EscalationRaised", "TurnCompleted"]
    );
    assert!(
        !d.effects
            .iter()
            .any(|e| matches!(e, Effect::CallTool { .. }))
    );
    assert!(matches!(
        &d.events[0].payload,
        Payload::ToolCallFailed(f) if f.kind == ToolFailureKind::OutcomeUnknown && !f.retryable
    ));
    assert_eq!(s.outcome, Some(Outcome::Escalated));
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

struct History {
    events: Vec<Event>,
    /// State after each event, as `step` left it.
    states: Vec<TurnState>,
    /// Every (call_id, attempt) the runtime was asked to execute, in order.
    executed: Vec<(String, i32, bool)>,
    crashes: usize,
}

use crate::event::Event;

/// Drives one turn with random effect results and random crashes (a crash drops pending
/// effects, rebuilds the state from the events and resumes).
fn simulate(seed: u64) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::confirming_emails();
    let t = TurnId::from_parts(1_700_000_000_000, [seed as u8; 10]);
    let mut s = TurnState::new(t);
    let mut h = History {
        events: vec![],
        states: vec![],
        executed: vec![],
        crashes: 0,
    };
    let mut pending: Vec<Effect> = Vec::new();
    let record = |h: &mut History, s: &TurnState, d: Decision, pending: &mut Vec<Effect>| {
        let mut replayed = h
            .states
            .last()
            .cloned()
            .unwrap_or_else(|| TurnState::new(t));
        for e in &d.events {
            replayed.apply(e).expect("decided events apply");
            h.events.push(e.clone());
            h.states.push(replayed.clone());
        }
        assert_eq!(
            &replayed, s,
            "step leaves state equal to replaying its events"
        );
        pending.extend(d.effects);
    };
    let d = step(&mut s, request(t), &w.ctx());
    record(&mut h, &s, d, &mut pending);
    let tools = ["lookup_order", "issue_refund", "send_email", "unknown_tool"];
    for _ in 0..200 {
        if s.is_terminal() {
            break;
        }
        w.now += rng.random_range(0..50);
        if rng.random_bool(0.15) {
            // Crash: forget effects in flight, rebuild from the log, resume.
            h.crashes += 1;
            pending.clear();
            s = TurnState::replay(t, &h.events).expect("replays");
            let d = step(&mut s, Input::Resume, &w.ctx());
            record(&mut h, &s, d, &mut pending);
            continue;
        }
        let Some(effect) = (!pending.is_empty()).then(|| pending.remove(0)) else {
            break;
        };
        let input = match effect {
            Effect::Retrieve { .. } => {
                if rng.random_bool(0.1) {
                    Input::Retrieved(Err(ExecFailure {
                        message: "down".into(),
                        retryable: true,
                        latency_ms: 1,
                    }))
                } else {
                    retrieved()
                }
            }
            Effect::Plan { .. } => {
                if rng.random_bool(0.05) {
                    Input::Planned(Err(ExecFailure {
                        message: "bad json".into(),
                        retryable: false,
                        latency_ms: 1,
                    }))
                } else {
                    let n = rng.random_range(0..5);
                    let steps: Vec<&str> = (0..n)
                        .map(|_| {
                            let upto = if rng.random_bool(0.1) { 4 } else { 3 };
                            tools[rng.random_range(0..upto)]
                        })
                        .collect();
                    planned(&steps, rng.random_range(0.3..1.0))
                }
            }
            Effect::CallTool { call, .. } => {
                let idempotent = w.catalog.get(&call.tool).is_some_and(|t| t.idempotent);
                h.executed
                    .push((call.call_id.clone(), call.attempt, idempotent));
                let result = match rng.random_range(0..10) {
                    0..=5 => Ok(ToolSuccess {
                        result_json: "{}".into(),
                        latency_ms: 1,
                    }),
                    6 | 7 => Err(ToolFailure {
                        kind: ToolFailureKind::Timeout,
                        message: "t".into(),
                        retryable: true,
                        latency_ms: 1,
                    }),
                    _ => Err(ToolFailure {
                        kind: ToolFailureKind::Error,
                        message: "e".into(),
                        retryable: rng.random_bool(0.5),
                        latency_ms: 1,
                    }),
                };
                Input::ToolDone {
                    call_id: call.call_id,
                    attempt: call.attempt,
                    result,
                }
            }
            Effect::Synthesize { .. } => {
                if rng.random_bool(0.05) {
                    Input::Synthesized(Err(ExecFailure {
                        message: "x".into(),
                        retryable: false,
                        latency_ms: 1,
                    }))
                } else {
                    Input::Synthesized(Ok(Synthesis {
                        text: "ok".into(),
                        citations: vec![],
                        latency_ms: 1,
                    }))
                }
            }
            Effect::Schedule {
                at_ms,
                call_id,
                attempt,
                ..
            } => {
                w.now = w.now.max(at_ms);
                Input::RetryDue { call_id, attempt }
            }
            Effect::ScheduleDeadline {
                at_ms, approval_id, ..
            } => match rng.random_range(0..3) {
                0 => {
                    w.now = w.now.max(at_ms);
                    Input::ApprovalDeadline { approval_id }
                }
                k => Input::Command(approval(t, &approval_id, k == 1)),
            },
            Effect::Finished { .. } => continue,
        };
        let mut d = step(&mut s, input, &w.ctx());
        if d.events.len() > 1 && rng.random_bool(0.1) {
            // Crash mid-decision: only a prefix of its events is durable (Kafka without
            // transactions can do this); its effects never ran.
            let keep = rng.random_range(1..d.events.len());
            d.events.truncate(keep);
            d.effects.clear();
            h.crashes += 1;
            pending.clear();
            let mut cut = h
                .states
                .last()
                .cloned()
                .unwrap_or_else(|| TurnState::new(t));
            for e in &d.events {
                cut.apply(e).expect("prefix applies");
            }
            s = cut.clone();
            record(&mut h, &s, d, &mut pending);
            let d = step(&mut s, Input::Resume, &w.ctx());
            record(&mut h, &s, d, &mut pending);
            continue;
        }
        record(&mut h, &s, d, &mut pending);
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replaying_any_prefix_yields_the_recorded_state(seed in any::<u64>()) {
        let h = simulate(seed);
        let t = h.events[0].turn_id;
        for k in 0..=h.events.len() {
            let replayed = TurnState::replay(t, &h.events[..k]).expect("replays");
            let expected = if k == 0 { TurnState::new(t) } else { h.states[k - 1].clone() };
            prop_assert_eq!(&replayed, &expected);
            // Snapshot at k, then the tail: the same final state as a full replay.
            let json = serde_json::to_string(&replayed).expect("snapshot serializes");
            let mut resumed: TurnState = serde_json::from_str(&json).expect("snapshot loads");
            for e in &h.events[k..] {
                resumed.apply(e).expect("tail applies");
            }
            prop_assert_eq!(&resumed, h.states.last().expect("non-empty"));
        }
    }

    #[test]
    fn duplicate_deliveries_change_nothing(seed in any::<u64>(), dup_seed in any::<u64>()) {
        let h = simulate(seed);
        let t = h.events[0].turn_id;
        let mut rng = StdRng::seed_from_u64(dup_seed);
        let mut s = TurnState::new(t);
        let mut duplicates = 0;
        for (i, e) in h.events.iter().enumerate() {
            prop_assert_eq!(s.apply(e), Ok(Applied::Applied));
            // Redeliver a random earlier event (or this one) a few times.
            for _ in 0..rng.random_range(0..3) {
                let j = rng.random_range(0..=i);
                let before = s.clone();
                prop_assert_eq!(s.apply(&h.events[j]), Ok(Applied::Duplicate));
                prop_assert_eq!(&s, &before);
                duplicates += 1;
            }
        }
        prop_assert_eq!(&s, h.states.last().expect("non-empty"));
        let _ = duplicates;
    }

    #[test]
    fn histories_keep_their_invariants(seed in any::<u64>()) {
        let h = simulate(seed);
        // Dense sequence, opened by the request, at most one completion, at the end.
        for (i, e) in h.events.iter().enumerate() {
            prop_assert_eq!(e.seq, i as i64);
        }
        prop_assert_eq!(h.events[0].kind(), "TurnRequested");
        let completions = h.events.iter().filter(|e| e.kind() == "TurnCompleted").count();
        prop_assert!(completions <= 1);
        let last = h.states.last().expect("non-empty");
        if last.is_terminal() {
            prop_assert_eq!(h.events.last().map(|e| e.kind()), Some("TurnCompleted"));
        }
        // Every started attempt has at most one result, exactly one once the turn is over.
        let mut started: HashMap<(String, i32), usize> = HashMap::new();
        for e in &h.events {
            match &e.payload {
                Payload::ToolCallStarted(s) => { started.insert((s.call_id.clone(), s.attempt), 0); }
                Payload::ToolCallCompleted(c) => *started.entry((c.call_id.clone(), c.attempt)).or_insert(99) += 1,
                Payload::ToolCallFailed(f) => *started.entry((f.call_id.clone(), f.attempt)).or_insert(99) += 1,
                _ => {}
            }
        }
        for (k, n) in &started {
            prop_assert!(*n <= 1, "{k:?} has {n} results");
            if last.is_terminal() {
                prop_assert_eq!(*n, 1, "{:?} has no result", k);
            }
        }
        // No attempt ever runs twice, and a non-idempotent call runs at most once overall.
        let mut attempts = HashSet::new();
        let mut non_idempotent = HashSet::new();
        for (call, attempt, idempotent) in &h.executed {
            prop_assert!(attempts.insert((call.clone(), *attempt)), "{call} attempt {attempt} ran twice");
            if !idempotent {
                let outcome_unknown = h.events.iter().any(|e| matches!(&e.payload,
                    Payload::ToolCallFailed(f) if &f.call_id == call && f.kind == ToolFailureKind::OutcomeUnknown && f.attempt < *attempt));
                prop_assert!(!outcome_unknown, "{call} ran again after its outcome became unknown");
                non_idempotent.insert(call.clone());
            }
        }
        // No attempt beyond the limit, and no tool call after a plan decision that was not
        // allow (a denial or escalation recorded before a crash still holds after it).
        // A call that needed confirmation starts only once granted, and every attempt runs
        // under an open budget reservation of its own.
        let limits = Limits::default();
        let mut plan_blocked = false;
        let mut needs_approval: HashSet<i32> = HashSet::new();
        let mut granted: HashSet<String> = HashSet::new();
        let mut open: HashMap<String, Option<String>> = HashMap::new();
        for e in &h.events {
            match &e.payload {
                Payload::PlanProposed(_) => {
                    plan_blocked = false;
                    needs_approval.clear();
                }
                Payload::PolicyEvaluated(p) if p.checkpoint == crate::event::Checkpoint::Plan => {
                    use crate::event::PolicyDecision::{Allow, RequireConfirmation};
                    plan_blocked = !matches!(p.decision, Allow | RequireConfirmation);
                }
                Payload::PolicyEvaluated(p) if p.checkpoint == crate::event::Checkpoint::PreTool
                    && p.decision == crate::event::PolicyDecision::RequireConfirmation => {
                    needs_approval.insert(p.step.unwrap_or(-1));
                }
                Payload::ApprovalGranted(a) => { granted.insert(a.approval_id.clone()); }
                Payload::BudgetReserved(r) => { open.insert(r.reservation_id.clone(), r.call_id.clone()); }
                Payload::BudgetCommitted(c) => { open.remove(&c.reservation_id); }
                Payload::BudgetReleased(r) => { open.remove(&r.reservation_id); }
                Payload::ToolCallStarted(s) => {
                    prop_assert!(!plan_blocked, "{} started after the plan was not allowed", s.call_id);
                    prop_assert!(s.attempt <= limits.max_attempts, "{} attempt {}", s.call_id, s.attempt);
                    if needs_approval.contains(&s.step) {
                        prop_assert!(granted.contains(&s.call_id), "{} started without its approval", s.call_id);
                    }
                    prop_assert!(open.values().any(|c| c.as_deref() == Some(s.call_id.as_str())),
                        "{} attempt {} started without a budget reservation", s.call_id, s.attempt);
                }
                _ => {}
            }
        }
        if last.is_terminal() {
            prop_assert!(open.is_empty(), "a finished turn holds reservations {:?}", open);
            prop_assert!(last.budget.open.is_empty());
        }
        // Decisions on a terminal turn are empty whatever arrives.
        if last.is_terminal() {
            let w = World::new();
            let mut s = last.clone();
            prop_assert!(step(&mut s, Input::Resume, &w.ctx()).is_empty());
            let again = request(s.turn_id);
            prop_assert!(step(&mut s, again, &w.ctx()).is_empty());
        }
    }
}

#[test]
fn simulations_reach_every_outcome_and_crash_often() {
    let mut outcomes = HashSet::new();
    let mut crashes = 0;
    for seed in 0..400 {
        let h = simulate(seed);
        crashes += h.crashes;
        if let Some(o) = h.states.last().and_then(|s| s.outcome) {
            outcomes.insert(o);
        }
    }
    assert!(
        crashes > 100,
        "the property tests exercise recovery ({crashes} crashes)"
    );
    for o in [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Denied,
        Outcome::Escalated,
    ] {
        assert!(outcomes.contains(&o), "{o:?} reached");
    }
}
