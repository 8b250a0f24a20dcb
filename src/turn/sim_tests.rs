//! Property tests: random turns with random results, crashes (between decisions and in the
//! middle of one) and operator answers, checked against the state machine's invariants.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{World, answered, approval, handoff, planned, request, retrieved};
use super::*;
use crate::event::{Outcome, Payload, ToolFailureKind};
use crate::ids::TurnId;

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
            Effect::Plan { step, .. } => {
                if rng.random_bool(0.05) {
                    Input::Planned(Err(ExecFailure {
                        message: "bad json".into(),
                        retryable: false,
                        latency_ms: 1,
                    }))
                } else if step >= 3 || rng.random_bool(0.3) {
                    // Sometimes the model keeps calling tools for a while; the loop's limit
                    // stops it (max_steps is 10).
                    if step < 12 && rng.random_bool(0.05) {
                        planned(&["lookup_order"], 0.9)
                    } else {
                        answered("done")
                    }
                } else {
                    let n = rng.random_range(1..5);
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
                turn_id,
                at_ms,
                approval_id,
            } => match rng.random_range(0..3) {
                0 => {
                    w.now = w.now.max(at_ms);
                    Input::ApprovalDeadline { approval_id }
                }
                k => {
                    let _ = turn_id;
                    Input::Command(approval(t, &approval_id, k == 1))
                }
            },
            Effect::ScheduleHandoffDeadline { turn_id, at_ms } => match rng.random_range(0..3) {
                0 => {
                    w.now = w.now.max(at_ms);
                    Input::HandoffDeadline
                }
                1 => Input::Command(handoff(t, true)),
                _ => {
                    // Accepted; the deadline still stands.
                    pending.push(Effect::ScheduleHandoffDeadline { turn_id, at_ms });
                    Input::Command(handoff(t, false))
                }
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

    /// A worker parks a turn that only waits for a person out of memory and, instead of
    /// resuming it, arms the deadline `parked_deadline` gives: that must be all a resume does.
    #[test]
    fn a_parked_turn_resumes_by_arming_its_deadline_alone(seed in any::<u64>()) {
        let h = simulate(seed);
        let w = World::confirming_emails();
        for state in &h.states {
            let Some((at_ms, deadline)) = state.parked_deadline() else { continue };
            let mut s = state.clone();
            let d = step(&mut s, Input::Resume, &w.ctx());
            prop_assert!(d.events.is_empty(), "a resume of a parked turn decides nothing");
            let armed = match (d.effects.as_slice(), &deadline) {
                (
                    [Effect::ScheduleDeadline { at_ms: a, approval_id, .. }],
                    crate::turn::Deadline::Approval { approval_id: id },
                ) => *a == at_ms && approval_id == id,
                ([Effect::ScheduleHandoffDeadline { at_ms: a, .. }], crate::turn::Deadline::Handoff) => {
                    *a == at_ms
                }
                _ => false,
            };
            prop_assert!(armed, "{:?} vs ({at_ms}, {deadline:?})", d.effects);
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
        // allow (a denial or escalation recorded before a crash still holds after it) — except
        // a denial fed back, which leaves each call to its own review: a call its own review
        // denied never starts.
        // A call that needed confirmation starts only once granted, and every attempt runs
        // under an open budget reservation of its own.
        let limits = Limits::default();
        let mut plan_blocked = false;
        let mut denied: HashSet<i32> = HashSet::new();
        let mut needs_approval: HashSet<i32> = HashSet::new();
        let mut granted: HashSet<String> = HashSet::new();
        let mut open: HashMap<String, Option<String>> = HashMap::new();
        for e in &h.events {
            match &e.payload {
                Payload::PlanProposed(_) => {
                    plan_blocked = false;
                    needs_approval.clear();
                    denied.clear();
                }
                Payload::PolicyEvaluated(p) if p.checkpoint == crate::event::Checkpoint::Plan => {
                    use crate::event::PolicyDecision::{Allow, Deny, RequireConfirmation};
                    plan_blocked = match p.decision {
                        Allow | RequireConfirmation => false,
                        Deny => !p.feedback,
                        _ => true,
                    };
                }
                Payload::PolicyEvaluated(p) if p.checkpoint == crate::event::Checkpoint::PreTool
                    && p.decision == crate::event::PolicyDecision::Deny => {
                    denied.insert(p.step.unwrap_or(-1));
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
                    prop_assert!(!denied.contains(&s.step), "{} started after its review denied it", s.call_id);
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
        // A terminal turn resumes to nothing; anything else that arrives is rejected: recorded,
        // and nothing else changes.
        if last.is_terminal() {
            let w = World::new();
            let mut s = last.clone();
            prop_assert!(step(&mut s, Input::Resume, &w.ctx()).is_empty());
            let again = request(s.turn_id);
            let d = step(&mut s, again, &w.ctx());
            prop_assert!(d.effects.is_empty());
            prop_assert_eq!(d.events.iter().map(|e| e.kind()).collect::<Vec<_>>(), ["InputRejected"]);
            prop_assert!(s.is_terminal());
            prop_assert_eq!(s.outcome, last.outcome);
        }
    }
}

#[test]
fn simulations_reach_every_outcome_and_crash_often() {
    let mut outcomes = HashSet::new();
    let mut crashes = 0;
    // States parked on an approval, on a handoff: the parking property is exercised on both.
    let mut parked = (0, 0);
    for seed in 0..400 {
        let h = simulate(seed);
        crashes += h.crashes;
        for s in &h.states {
            match s.parked_deadline() {
                Some((_, crate::turn::Deadline::Handoff)) => parked.1 += 1,
                Some(_) => parked.0 += 1,
                None => {}
            }
        }
        if let Some(o) = h.states.last().and_then(|s| s.outcome) {
            outcomes.insert(o);
        }
    }
    assert!(
        crashes > 100,
        "the property tests exercise recovery ({crashes} crashes)"
    );
    assert!(
        parked.0 > 0 && parked.1 > 0,
        "states parked on approvals and handoffs: {parked:?}"
    );
    for o in [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Denied,
        Outcome::Escalated,
        Outcome::EscalationFailed,
    ] {
        assert!(outcomes.contains(&o), "{o:?} reached");
    }
}
