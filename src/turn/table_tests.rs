//! One test per row of the transition table (`table.rs`): given a turn in a phase (built from
//! real inputs, or a decision cut short), when an input arrives, then these events and effects.
//! Accepted rows each have their own test; rejected rows one test per reason, plus one that
//! walks every rejected row. `every_row_is_covered` fails when a row is added without a test.

use std::collections::BTreeSet;

use super::table::{Handler, InputKind, PhaseKind, rows, transition};
use super::tests::{
    World, answered, approval, handoff, kinds, ok, only_call, planned, request, retrieved, tool,
    turn,
};
use super::*;
use crate::event::{CommandAction, LabelTurn, Outcome, Payload, ReverseTurn, ToolFailureKind};
use crate::exec::catalog::{Catalog, Impact};

/// Emails need a person's confirmation; a refund has a compensating call.
fn world() -> World {
    let mut refund = tool("issue_refund", true, Impact::High);
    refund.compensation = Some("cancel_refund".into());
    World {
        catalog: Catalog::new([
            tool("lookup_order", true, Impact::None),
            refund,
            tool("cancel_refund", true, Impact::Low),
            tool("send_email", false, Impact::Medium),
        ]),
        ..World::confirming_emails()
    }
}

fn draining(w: &World) -> DecideCtx<'_> {
    DecideCtx {
        draining: true,
        ..w.ctx()
    }
}

/// given(inputs): the turn after them.
fn given(w: &World, inputs: Vec<Input>) -> TurnState {
    let mut s = TurnState::new(turn());
    for i in inputs {
        step(&mut s, i, &w.ctx());
    }
    s
}

/// The turn as `input`'s decision left it when only the events up to the first that puts it
/// in `target` became durable (a decision cut short by a crash).
fn cut(w: &World, mut s: TurnState, input: Input, target: PhaseKind) -> TurnState {
    let d = decide(&s, input, &w.ctx());
    for e in &d.events {
        s.apply(e).expect("applies");
        if PhaseKind::of(&s) == target {
            return s;
        }
    }
    panic!("{target:?} never reached: {:?}", kinds(&d));
}

fn session_request() -> Input {
    let Input::Request {
        mut request,
        source_offset,
        ..
    } = request(turn())
    else {
        unreachable!()
    };
    request.session_id = Some("s1".into());
    Input::Request {
        request,
        source_offset,
        session: None,
    }
}

fn failed(call: &ToolInvocation, kind: ToolFailureKind, retryable: bool) -> Input {
    Input::ToolDone {
        call_id: call.call_id.clone(),
        attempt: call.attempt,
        result: Err(ToolFailure {
            kind,
            message: "down".into(),
            retryable,
            latency_ms: 1,
        }),
    }
}

fn command(action: CommandAction) -> Input {
    let mut c = handoff(turn(), true);
    c.command_id = "cmd-late".into();
    c.action = action;
    Input::Command(c)
}

fn running(w: &World) -> (TurnState, ToolInvocation) {
    let mut s = given(w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(&mut s, planned(&["lookup_order"], 0.9), &w.ctx()));
    (s, call)
}

fn awaiting_approval(w: &World) -> (TurnState, String) {
    let s = given(
        w,
        vec![request(turn()), retrieved(), planned(&["send_email"], 0.9)],
    );
    let id = s.approval_for(0).expect("asked").approval_id.clone();
    (s, id)
}

/// A finished turn with a completed refund; `Reversing` once a reversal was asked for.
fn ended(w: &World) -> (TurnState, ToolInvocation) {
    let mut s = given(w, vec![request(turn()), retrieved()]);
    let call = only_call(&step(&mut s, planned(&["issue_refund"], 0.9), &w.ctx()));
    step(&mut s, ok(&call), &w.ctx());
    step(&mut s, answered("refunded"), &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    (s, call)
}

fn reverse() -> Input {
    command(CommandAction::Reverse(ReverseTurn {
        reason: Some("wrong order".into()),
    }))
}

fn reversing(w: &World) -> (TurnState, ToolInvocation) {
    let (mut s, _) = ended(w);
    let d = step(&mut s, reverse(), &w.ctx());
    (s, only_call(&d))
}

/// A turn in `phase`, built from real inputs.
fn in_phase(w: &World, phase: PhaseKind) -> TurnState {
    use PhaseKind as P;
    let s = match phase {
        P::New => TurnState::new(turn()),
        P::Routing => given(w, vec![session_request()]),
        P::Retrieving => given(w, vec![request(turn())]),
        P::Planning => given(w, vec![request(turn()), retrieved()]),
        P::ReviewPlan => {
            let s = given(w, vec![request(turn()), retrieved()]);
            cut(w, s, planned(&["lookup_order"], 0.9), P::ReviewPlan)
        }
        P::Answering => {
            let s = given(w, vec![request(turn()), retrieved()]);
            cut(w, s, answered("done"), P::Answering)
        }
        P::NextCall => {
            let mut s = given(w, vec![request(turn()), retrieved()]);
            let d = step(
                &mut s,
                planned(&["lookup_order", "lookup_order"], 0.9),
                &w.ctx(),
            );
            step(&mut s, ok(&only_call(&d)), &draining(w));
            s
        }
        P::AwaitingApproval => awaiting_approval(w).0,
        P::Approved => {
            let (mut s, id) = awaiting_approval(w);
            step(
                &mut s,
                Input::Command(approval(turn(), &id, true)),
                &draining(w),
            );
            s
        }
        P::AwaitingTool => running(w).0,
        P::AwaitingRetry => {
            let (mut s, call) = running(w);
            step(
                &mut s,
                failed(&call, ToolFailureKind::Timeout, true),
                &w.ctx(),
            );
            s
        }
        P::AwaitingHandoff => {
            let (mut s, call) = running(w);
            let unknown = failed(&call, ToolFailureKind::OutcomeUnknown, false);
            step(&mut s, unknown, &w.ctx());
            s
        }
        P::Settle => {
            let s = given(w, vec![request(turn()), retrieved()]);
            cut(w, s, answered("done"), P::Settle)
        }
        P::Ended => ended(w).0,
        P::Reversing => reversing(w).0,
    };
    assert_eq!(PhaseKind::of(&s), phase, "built in the wrong phase");
    s
}

/// An input of `kind`, aimed at what `s` waits for where it waits for something.
fn sample(s: &TurnState, kind: InputKind) -> Input {
    let call = s.calls.last();
    match kind {
        InputKind::Request => request(turn()),
        InputKind::SessionReady => Input::SessionReady(Vec::new()),
        InputKind::Retrieved => retrieved(),
        InputKind::Planned => answered("done"),
        InputKind::ToolDone => Input::ToolDone {
            call_id: call.map_or("c".into(), |c| c.call_id.clone()),
            attempt: call.map_or(1, |c| c.attempt),
            result: Ok(ToolSuccess {
                result_json: "{}".into(),
                latency_ms: 1,
            }),
        },
        InputKind::RetryDue => Input::RetryDue {
            call_id: call.map_or("c".into(), |c| c.call_id.clone()),
            attempt: call.map_or(2, |c| c.attempt + 1),
        },
        InputKind::Command => {
            let id = s
                .approvals
                .last()
                .map_or("a".into(), |a| a.approval_id.clone());
            Input::Command(approval(turn(), &id, true))
        }
        InputKind::ApprovalDeadline => Input::ApprovalDeadline {
            approval_id: s
                .approvals
                .last()
                .map_or("a".into(), |a| a.approval_id.clone()),
        },
        InputKind::HandoffDeadline => Input::HandoffDeadline,
        InputKind::Resume => Input::Resume,
    }
}

/// One test per row: `name: Phase + Input => body`. The rows the tests name are kept in
/// `TESTED` for `every_row_is_covered`.
macro_rules! row_tests {
    ($($name:ident: $phase:ident + $input:ident => $body:block)*) => {
        $(
            #[test]
            fn $name() $body
        )*
        const TESTED: &[(PhaseKind, InputKind)] = &[$((PhaseKind::$phase, InputKind::$input)),*];
    };
}

/// Asserts `d` is the rejection of `input` in `phase` with `reason`, recorded, nothing else.
fn assert_rejected(s: &TurnState, d: &Decision, phase: PhaseKind, input: InputKind) {
    let Handler::Rejected(reason) = transition(phase, input) else {
        panic!("{phase:?} + {input:?} is accepted");
    };
    let r = d.rejected.expect("rejected");
    assert_eq!((r.phase, r.input, r.reason), (phase, input, reason));
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    if phase == PhaseKind::New {
        assert!(
            d.events.is_empty(),
            "nothing is recorded before the request"
        );
        return;
    }
    assert_eq!(kinds(d), ["InputRejected"]);
    let Payload::InputRejected(e) = &d.events[0].payload else {
        unreachable!()
    };
    assert_eq!(
        (e.phase.as_str(), e.input.as_str(), e.reason.as_str()),
        (phase.as_str(), input.as_str(), reason)
    );
    assert_eq!(PhaseKind::of(s), phase, "a rejection changes no phase");
}

fn when(w: &World, mut s: TurnState, input: Input) -> (TurnState, Decision) {
    let d = step(&mut s, input, &w.ctx());
    (s, d)
}

row_tests! {
    // ── New
    new_request_records_it_and_asks_for_documents: New + Request => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::New), request(turn()));
        assert_eq!(kinds(&d), ["TurnRequested"]);
        assert!(matches!(d.effects.as_slice(), [Effect::Retrieve { .. }]));
        assert_eq!(PhaseKind::of(&s), PhaseKind::Retrieving);
    }
    new_resume_does_nothing: New + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::New), Input::Resume);
        assert!(d.is_empty() && d.rejected.is_none());
    }
    // ── Routing
    routing_session_ready_routes_and_asks_for_documents: Routing + SessionReady => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Routing), Input::SessionReady(Vec::new()));
        assert!(d.events.iter().any(|e| e.kind() == "RouteSelected"));
        assert!(matches!(d.effects.as_slice(), [Effect::Retrieve { .. }]));
        assert_eq!(PhaseKind::of(&s), PhaseKind::Retrieving);
    }
    routing_resume_keeps_a_session_turn_waiting: Routing + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Routing), Input::Resume);
        assert!(d.is_empty() && d.rejected.is_none());
    }
    // ── Retrieving
    retrieving_retrieved_records_documents_and_asks_the_model: Retrieving + Retrieved => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Retrieving), retrieved());
        assert_eq!(kinds(&d), ["ContextRetrieved"]);
        assert!(matches!(d.effects.as_slice(), [Effect::Plan { step: 0, .. }]));
        assert_eq!(PhaseKind::of(&s), PhaseKind::Planning);
    }
    retrieving_resume_asks_for_documents_again: Retrieving + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Retrieving), Input::Resume);
        assert!(d.events.is_empty());
        assert!(matches!(d.effects.as_slice(), [Effect::Retrieve { .. }]));
    }
    // ── Planning
    planning_planned_records_the_step_and_runs_its_call: Planning + Planned => {
        let w = world();
        let input = planned(&["lookup_order"], 0.9);
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Planning), input);
        assert_eq!(kinds(&d), ["PlanProposed", "PolicyEvaluated", "PolicyEvaluated", "ToolCallStarted"]);
        assert_eq!(only_call(&d).tool, "lookup_order");
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingTool);
    }
    planning_resume_asks_the_model_again: Planning + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Planning), Input::Resume);
        assert!(matches!(d.effects.as_slice(), [Effect::Plan { step: 0, .. }]));
    }
    // ── Decisions cut short: a resume finishes them
    review_plan_resume_reviews_and_runs_the_call: ReviewPlan + Resume => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::ReviewPlan), Input::Resume);
        assert_eq!(kinds(&d), ["PolicyEvaluated", "PolicyEvaluated", "ToolCallStarted"]);
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingTool);
    }
    answering_resume_records_the_reply_and_completes: Answering + Resume => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Answering), Input::Resume);
        assert_eq!(kinds(&d), ["ResponseSynthesized", "PolicyEvaluated", "TurnCompleted"]);
        assert_eq!(s.outcome, Some(Outcome::Succeeded));
    }
    next_call_resume_runs_the_next_call: NextCall + Resume => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::NextCall), Input::Resume);
        assert_eq!(kinds(&d), ["PolicyEvaluated", "ToolCallStarted"]);
        assert_eq!(s.calls.len(), 2);
    }
    settle_resume_completes_the_decided_ending: Settle + Resume => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Settle), Input::Resume);
        assert_eq!(kinds(&d).last(), Some(&"TurnCompleted"));
        assert!(matches!(d.effects.last(), Some(Effect::Finished { .. })));
        assert_eq!(s.outcome, Some(Outcome::Succeeded));
    }
    // ── AwaitingApproval
    awaiting_approval_command_grants_and_runs_the_call: AwaitingApproval + Command => {
        let w = world();
        let (s, id) = awaiting_approval(&w);
        let (s, d) = when(&w, s, Input::Command(approval(turn(), &id, true)));
        assert_eq!(kinds(&d), ["ApprovalGranted", "ToolCallStarted"]);
        assert_eq!(only_call(&d).tool, "send_email");
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingTool);
    }
    awaiting_approval_deadline_expires_it_and_hands_off: AwaitingApproval + ApprovalDeadline => {
        let mut w = world();
        let (s, id) = awaiting_approval(&w);
        w.now = s.approval_for(0).expect("asked").deadline_ms;
        let (s, d) = when(&w, s, Input::ApprovalDeadline { approval_id: id });
        assert_eq!(kinds(&d), ["ApprovalExpired", "EscalationRaised"]);
        assert!(matches!(d.effects.as_slice(), [Effect::ScheduleHandoffDeadline { .. }]));
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingHandoff);
    }
    awaiting_approval_resume_arms_its_deadline: AwaitingApproval + Resume => {
        let w = world();
        let (s, id) = awaiting_approval(&w);
        let (_, d) = when(&w, s, Input::Resume);
        assert!(d.events.is_empty());
        assert!(matches!(d.effects.as_slice(), [Effect::ScheduleDeadline { approval_id, .. }] if *approval_id == id));
    }
    approved_resume_starts_the_approved_call: Approved + Resume => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Approved), Input::Resume);
        assert_eq!(kinds(&d), ["ToolCallStarted"]);
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingTool);
    }
    // ── AwaitingTool, AwaitingRetry
    awaiting_tool_done_records_the_result_and_asks_the_next_step: AwaitingTool + ToolDone => {
        let w = world();
        let (s, call) = running(&w);
        let (s, d) = when(&w, s, ok(&call));
        assert_eq!(kinds(&d), ["ToolCallCompleted"]);
        assert!(matches!(d.effects.as_slice(), [Effect::Plan { step: 1, .. }]));
        assert_eq!(PhaseKind::of(&s), PhaseKind::Planning);
    }
    awaiting_tool_resume_retries_an_idempotent_call: AwaitingTool + Resume => {
        let w = world();
        let (s, call) = running(&w);
        let (_, d) = when(&w, s, Input::Resume);
        assert_eq!(kinds(&d), ["ToolCallFailed", "ToolCallStarted"]);
        assert_eq!(only_call(&d).idempotency_key, call.idempotency_key);
    }
    awaiting_retry_due_starts_the_next_attempt: AwaitingRetry + RetryDue => {
        let w = world();
        let s = in_phase(&w, PhaseKind::AwaitingRetry);
        let call_id = s.calls[0].call_id.clone();
        let (s, d) = when(&w, s, Input::RetryDue { call_id, attempt: 2 });
        // The same call again (its review stands): the next attempt, same idempotency key.
        assert_eq!(kinds(&d), ["ToolCallStarted"]);
        assert_eq!(only_call(&d).attempt, 2);
        assert_eq!(PhaseKind::of(&s), PhaseKind::AwaitingTool);
    }
    awaiting_retry_resume_schedules_the_retry: AwaitingRetry + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::AwaitingRetry), Input::Resume);
        assert!(d.events.is_empty());
        assert!(matches!(d.effects.as_slice(), [Effect::Schedule { attempt: 2, .. }]));
    }
    // ── AwaitingHandoff
    awaiting_handoff_command_resolves_it: AwaitingHandoff + Command => {
        let w = world();
        let s = in_phase(&w, PhaseKind::AwaitingHandoff);
        let (s, d) = when(&w, s, Input::Command(handoff(turn(), true)));
        assert_eq!(kinds(&d), ["HandoffResolved", "TurnCompleted"]);
        assert_eq!(s.outcome, Some(Outcome::Escalated));
    }
    awaiting_handoff_deadline_fails_the_escalation: AwaitingHandoff + HandoffDeadline => {
        let mut w = world();
        let s = in_phase(&w, PhaseKind::AwaitingHandoff);
        w.now = s.handoff.as_ref().expect("handed off").deadline_ms;
        let (s, d) = when(&w, s, Input::HandoffDeadline);
        assert_eq!(kinds(&d), ["TurnCompleted"]);
        assert_eq!(s.outcome, Some(Outcome::EscalationFailed));
    }
    awaiting_handoff_resume_arms_its_deadline: AwaitingHandoff + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::AwaitingHandoff), Input::Resume);
        assert!(d.events.is_empty());
        assert!(matches!(d.effects.as_slice(), [Effect::ScheduleHandoffDeadline { .. }]));
    }
    // ── Ended, Reversing
    ended_command_labels_the_outcome: Ended + Command => {
        let w = world();
        let label = command(CommandAction::Label(LabelTurn { label: "incorrect".into(), note: None }));
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Ended), label);
        assert_eq!(kinds(&d), ["OutcomeLabeled"]);
        assert_eq!(s.labels, ["incorrect"]);
    }
    ended_resume_does_nothing: Ended + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Ended), Input::Resume);
        assert!(d.is_empty() && d.rejected.is_none());
    }
    reversing_command_reverses_once: Reversing + Command => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Reversing), reverse());
        assert!(d.is_empty() && d.rejected.is_none(), "reversing twice does nothing more");
    }
    reversing_tool_done_completes_the_reversal: Reversing + ToolDone => {
        let w = world();
        let (s, undo) = reversing(&w);
        let (s, d) = when(&w, s, ok(&undo));
        assert_eq!(kinds(&d), ["CompensationCompleted", "TurnReversed"]);
        assert_eq!(PhaseKind::of(&s), PhaseKind::Ended);
    }
    reversing_retry_due_runs_the_compensation_again: Reversing + RetryDue => {
        let w = world();
        let (mut s, undo) = reversing(&w);
        step(&mut s, failed(&undo, ToolFailureKind::Timeout, true), &w.ctx());
        let due = Input::RetryDue { call_id: undo.call_id.clone(), attempt: 2 };
        let (_, d) = when(&w, s, due);
        assert_eq!(kinds(&d), ["CompensationStarted"]);
        assert_eq!(only_call(&d).attempt, 2);
    }
    reversing_resume_reissues_the_running_compensation: Reversing + Resume => {
        let w = world();
        let (_, d) = when(&w, in_phase(&w, PhaseKind::Reversing), Input::Resume);
        assert!(d.effects.iter().any(|e| matches!(e, Effect::CallTool { .. })), "{:?}", d);
    }

    // ── One test per rejection class
    rejects_input_for_a_turn_not_yet_requested: New + ToolDone => {
        let w = world();
        let s = in_phase(&w, PhaseKind::New);
        let (s, d) = when(&w, s, sample(&TurnState::new(turn()), InputKind::ToolDone));
        assert_rejected(&s, &d, PhaseKind::New, InputKind::ToolDone);
        assert_eq!(s, TurnState::new(turn()));
    }
    rejects_a_second_request: Planning + Request => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Planning), request(turn()));
        assert_rejected(&s, &d, PhaseKind::Planning, InputKind::Request);
    }
    rejects_a_session_wakeup_for_a_turn_not_waiting: Planning + SessionReady => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::Planning), Input::SessionReady(Vec::new()));
        assert_rejected(&s, &d, PhaseKind::Planning, InputKind::SessionReady);
    }
    rejects_a_late_retrieval: AwaitingTool + Retrieved => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::AwaitingTool), retrieved());
        assert_rejected(&s, &d, PhaseKind::AwaitingTool, InputKind::Retrieved);
    }
    rejects_a_late_model_answer: AwaitingApproval + Planned => {
        let w = world();
        let (s, d) = when(&w, in_phase(&w, PhaseKind::AwaitingApproval), answered("x"));
        assert_rejected(&s, &d, PhaseKind::AwaitingApproval, InputKind::Planned);
    }
    rejects_a_late_tool_result: Planning + ToolDone => {
        let w = world();
        let (mut s, call) = running(&w);
        step(&mut s, ok(&call), &w.ctx());
        let (s, d) = when(&w, s, ok(&call));
        assert_rejected(&s, &d, PhaseKind::Planning, InputKind::ToolDone);
    }
    rejects_a_retry_timer_for_a_call_not_waiting: AwaitingTool + RetryDue => {
        let w = world();
        let (s, call) = running(&w);
        let due = Input::RetryDue { call_id: call.call_id, attempt: 2 };
        let (s, d) = when(&w, s, due);
        assert_rejected(&s, &d, PhaseKind::AwaitingTool, InputKind::RetryDue);
    }
    rejects_a_command_for_a_turn_not_waiting_for_a_person: AwaitingTool + Command => {
        let w = world();
        let s = in_phase(&w, PhaseKind::AwaitingTool);
        let (s, d) = when(&w, s, Input::Command(approval(turn(), "a-old", true)));
        assert_rejected(&s, &d, PhaseKind::AwaitingTool, InputKind::Command);
    }
    rejects_an_approval_deadline_once_handed_off: AwaitingHandoff + ApprovalDeadline => {
        let w = world();
        let s = in_phase(&w, PhaseKind::AwaitingHandoff);
        let (s, d) = when(&w, s, Input::ApprovalDeadline { approval_id: "a-old".into() });
        assert_rejected(&s, &d, PhaseKind::AwaitingHandoff, InputKind::ApprovalDeadline);
    }
    rejects_a_handoff_deadline_for_a_turn_not_handed_off: AwaitingApproval + HandoffDeadline => {
        let w = world();
        let s = in_phase(&w, PhaseKind::AwaitingApproval);
        let (s, d) = when(&w, s, Input::HandoffDeadline);
        assert_rejected(&s, &d, PhaseKind::AwaitingApproval, InputKind::HandoffDeadline);
    }
    rejects_a_late_tool_result_for_a_finished_turn: Ended + ToolDone => {
        let w = world();
        let (s, call) = ended(&w);
        let outcome = s.outcome;
        let (s, d) = when(&w, s, ok(&call));
        assert_rejected(&s, &d, PhaseKind::Ended, InputKind::ToolDone);
        assert!(s.is_terminal() && s.outcome == outcome);
    }
}

#[test]
fn every_rejected_row_is_recorded_and_changes_nothing_else() {
    let w = world();
    let mut n = 0;
    for (phase, input, handler) in rows() {
        if !matches!(handler, Handler::Rejected(_)) {
            continue;
        }
        let before = in_phase(&w, phase);
        let (s, d) = when(&w, before.clone(), sample(&before, input));
        assert_rejected(&s, &d, phase, input);
        // Only the record changed.
        let mut unchanged = s.clone();
        unchanged.next_seq = before.next_seq;
        assert_eq!(unchanged, before, "{phase:?} + {input:?}");
        n += 1;
    }
    assert!(n > 100, "{n}");
}

#[test]
fn every_accepted_row_is_taken_by_its_handler() {
    let w = world();
    for (phase, input, handler) in rows() {
        if matches!(handler, Handler::Rejected(_)) {
            continue;
        }
        let s = in_phase(&w, phase);
        let (_, d) = when(&w, s.clone(), sample(&s, input));
        assert_eq!(d.rejected, None, "{phase:?} + {input:?}");
        assert!(
            !d.events.iter().any(|e| e.kind() == "InputRejected"),
            "{phase:?} + {input:?}"
        );
    }
}

/// A row added to the table without a test fails here: every accepted row has its own test,
/// every rejection reason at least one.
#[test]
fn every_row_is_covered() {
    let tested: BTreeSet<_> = TESTED.iter().copied().collect();
    assert_eq!(tested.len(), TESTED.len(), "a row is tested twice");
    let mut reasons = BTreeSet::new();
    let mut tested_reasons = BTreeSet::new();
    for (phase, input, handler) in rows() {
        match handler {
            Handler::Rejected(reason) => {
                reasons.insert(reason);
                if tested.contains(&(phase, input)) {
                    tested_reasons.insert(reason);
                }
            }
            _ => assert!(
                tested.contains(&(phase, input)),
                "accepted row {phase:?} + {input:?} has no test"
            ),
        }
    }
    assert_eq!(reasons, tested_reasons, "rejection classes without a test");
    assert_eq!(rows().count(), PhaseKind::ALL.len() * InputKind::ALL.len());
}
