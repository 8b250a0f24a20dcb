//! Refusals fed back to the model, the older handling when the model is not getting anywhere,
//! and outcomes that say whether everything the model asked for ran.

use super::tests::{
    World, answered, approval, catalog, given, kinds, ok, only_call, planned, request, retrieved,
    tool, turn,
};
use super::*;
use crate::control::CedarControlPlane;
use crate::event::{Outcome, Payload, PlanStep};
use crate::exec::catalog::{Catalog, Impact};

fn with_policy(policy: &str) -> World {
    let sources = vec![
        (
            "builtin.cedar".to_string(),
            crate::control::cedar::BUILTIN_POLICIES.to_string(),
        ),
        ("deploy.cedar".to_string(), policy.to_string()),
    ];
    let policies =
        crate::control::cedar::Policies::from_sources(&sources, &catalog()).expect("loads");
    World {
        control: CedarControlPlane::new(Default::default(), catalog(), policies, None),
        ..World::new()
    }
}

fn refused(d: &Decision) -> Option<crate::event::CallRefused> {
    d.events.iter().find_map(|e| match &e.payload {
        Payload::CallRefused(r) => Some(r.clone()),
        _ => None,
    })
}

fn asks_the_model(d: &Decision) -> bool {
    d.effects.iter().any(|e| matches!(e, Effect::Plan { .. }))
}

const NO_REFUNDS: &str = r#"@id("refund.never") @reason("the agent never issues refunds")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"issue_refund");"#;

#[test]
fn a_policy_denial_goes_back_to_the_model_and_the_rest_of_the_task_runs() {
    let w = with_policy(NO_REFUNDS);
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(
        &mut s,
        planned(&["issue_refund", "lookup_order"], 0.9),
        &w.ctx(),
    );
    let r = refused(&d).expect("the refund is refused, not the turn");
    assert_eq!(
        (r.tool.as_str(), r.rules.as_slice()),
        ("issue_refund", &["refund.never".to_string()][..])
    );
    assert!(
        r.reason.contains("the agent never issues refunds"),
        "{}",
        r.reason
    );
    // The rest of the step runs.
    let call = only_call(&d);
    assert_eq!(call.tool, "lookup_order");
    let d = step(&mut s, ok(&call), &w.ctx());
    assert!(asks_the_model(&d));
    step(
        &mut s,
        answered("I looked the order up; refunds need a person."),
        &w.ctx(),
    );
    assert_eq!(s.outcome, Some(Outcome::CompletedWithRefusals));
    let o = s.outcome_record("").expect("record");
    assert_eq!((o.refused_calls, o.held_calls, o.denied_calls), (1, 0, 0));
}

#[test]
fn a_policy_that_says_end_turn_ends_the_turn() {
    let w = with_policy(&format!("@on_refusal(\"end_turn\")\n{NO_REFUNDS}"));
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(
        &mut s,
        planned(&["issue_refund", "lookup_order"], 0.9),
        &w.ctx(),
    );
    assert_eq!(
        kinds(&d),
        ["PlanProposed", "PolicyEvaluated", "TurnCompleted"]
    );
    assert_eq!(s.outcome, Some(Outcome::Denied));
}

#[test]
fn a_person_refusing_a_confirmation_is_told_to_the_model_and_the_turn_goes_on() {
    let w = World::confirming_emails();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, planned(&["send_email"], 0.9), &w.ctx());
    assert!(kinds(&d).contains(&"ApprovalRequested"));
    let id = s.approvals[0].approval_id.clone();
    let d = step(
        &mut s,
        Input::Command(approval(turn(), &id, false)),
        &w.ctx(),
    );
    let r = refused(&d).expect("refused, not denied");
    assert!(r.reason.contains("did not confirm it"), "{}", r.reason);
    assert!(asks_the_model(&d), "the model is asked for its next step");
    step(&mut s, answered("I could not send the e-mail."), &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::CompletedWithRefusals));
    let o = s.outcome_record("").expect("record");
    assert_eq!((o.refused_calls, o.held_calls, o.denied_calls), (0, 1, 1));
    assert!(s.reason.contains("not confirmed"), "{}", s.reason);
}

#[test]
fn asking_again_for_a_refused_call_is_not_fed_back_twice() {
    let w = with_policy(NO_REFUNDS);
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, planned(&["issue_refund"], 0.9), &w.ctx());
    assert!(refused(&d).is_some());
    // The model insists: the older handling, a denial, ends the turn.
    let d = step(&mut s, planned(&["issue_refund"], 0.9), &w.ctx());
    assert!(refused(&d).is_none());
    assert_eq!(s.outcome, Some(Outcome::Denied));
}

#[test]
fn refusals_past_the_limit_end_the_turn() {
    let mut w = with_policy(NO_REFUNDS);
    let config = crate::guard::GuardConfig {
        max_refusals: 1,
        ..Default::default()
    };
    w.guards = crate::guard::Guards::or_default(config, &catalog());
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, planned(&["issue_refund"], 0.9), &w.ctx());
    assert!(refused(&d).is_some());
    let other = Input::Planned(Ok(Planned {
        steps: vec![PlanStep {
            tool: "issue_refund".into(),
            args_json: r#"{"order_id":"A2"}"#.into(),
        }],
        confidence: 0.9,
        ..Planned::empty("scripted")
    }));
    step(&mut s, other, &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::Denied));
}

fn grounded_world(impact: Impact) -> World {
    let mut pay = tool("pay", false, impact);
    pay.key_args = vec!["amount".into()];
    let catalog = Catalog::new([tool("lookup_order", true, Impact::None), pay]);
    World {
        control: CedarControlPlane::builtin(catalog.clone()).expect("loads"),
        guards: crate::guard::Guards::or_default(Default::default(), &catalog),
        catalog,
        ..World::new()
    }
}

fn pay(amount: &str) -> Input {
    Input::Planned(Ok(Planned {
        steps: vec![PlanStep {
            tool: "pay".into(),
            args_json: format!(r#"{{"amount":{amount}}}"#),
        }],
        confidence: 0.9,
        ..Planned::empty("scripted")
    }))
}

#[test]
fn a_value_found_nowhere_is_asked_about_when_the_call_matters_and_fed_back_when_not() {
    // A payment of a sum the model worked out: a person may know where it comes from.
    let w = grounded_world(Impact::Medium);
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, pay("109.9"), &w.ctx());
    assert!(kinds(&d).contains(&"ApprovalRequested"), "{:?}", kinds(&d));
    assert!(refused(&d).is_none() && s.outcome.is_none());
    let id = s.approvals[0].approval_id.clone();
    let d = step(
        &mut s,
        Input::Command(approval(turn(), &id, true)),
        &w.ctx(),
    );
    let call = only_call(&d);
    step(&mut s, ok(&call), &w.ctx());
    step(&mut s, answered("Paid."), &w.ctx());
    assert_eq!(
        s.outcome,
        Some(Outcome::Succeeded),
        "it ran: a full success"
    );
    // A low-impact call: the model is told, no re-plan with fewer tools.
    let w = grounded_world(Impact::Low);
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(&mut s, pay("109.9"), &w.ctx());
    let r = refused(&d).expect("fed back");
    assert_eq!(r.rules, ["hallucination.amount"]);
    assert!(s.escalations.is_empty(), "no ladder: {:?}", s.escalations);
    step(&mut s, answered("I need the amount."), &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::CompletedWithRefusals));
}

#[test]
fn writes_to_different_people_with_the_same_acknowledgement_are_not_a_loop() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let mail = |to: &str| PlanStep {
        tool: "send_email".into(),
        args_json: format!(r#"{{"to":"{to}"}}"#),
    };
    let plan = Input::Planned(Ok(Planned {
        steps: vec![mail("ann"), mail("bob"), mail("cy"), mail("dee")],
        confidence: 0.9,
        ..Planned::empty("scripted")
    }));
    let mut d = step(&mut s, plan, &w.ctx());
    let sent = |c: &ToolInvocation| Input::ToolDone {
        call_id: c.call_id.clone(),
        attempt: c.attempt,
        result: Ok(crate::exec::types::ToolSuccess {
            result_json: r#"{"status":"sent"}"#.into(),
            latency_ms: 1,
        }),
    };
    for _ in 0..4 {
        let call = only_call(&d);
        d = step(&mut s, sent(&call), &w.ctx());
        assert!(!kinds(&d).contains(&"GuardrailTripped"), "{:?}", kinds(&d));
    }
    assert!(asks_the_model(&d), "all four sent; the model goes on");
}

#[test]
fn a_log_from_an_earlier_build_replays_as_it_was_recorded() {
    // An earlier build fed a provenance refusal back and recorded the answer as succeeded:
    // replay keeps what was recorded; the record counts the refusal.
    let w = with_policy(NO_REFUNDS);
    let mut s = TurnState::new(turn());
    let mut events = Vec::new();
    for i in [
        request(turn()),
        retrieved(),
        planned(&["issue_refund"], 0.9),
    ] {
        events.extend(step(&mut s, i, &w.ctx()).events);
    }
    assert!(events.iter().any(|e| e.kind() == "CallRefused"));
    events.push(crate::event::Event {
        event_id: turn().event_id(s.next_seq as u64),
        turn_id: turn(),
        tenant: s.tenant.clone(),
        seq: s.next_seq,
        at_ms: 2_000,
        payload: Payload::TurnCompleted(crate::event::TurnCompleted {
            outcome: Outcome::Succeeded,
            reason: "answered".into(),
            latency_ms: 5,
        }),
    });
    let old = TurnState::replay(turn(), &events).expect("replays");
    assert_eq!(old.outcome, Some(Outcome::Succeeded));
    assert_eq!(old.outcome_record("").expect("record").refused_calls, 1);
}

#[test]
fn a_turn_whose_model_reported_no_confidence_survives_a_snapshot() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    step(&mut s, planned(&["lookup_order"], f64::NAN), &w.ctx());
    let json = serde_json::to_string(&s).expect("serializes");
    let back: TurnState = serde_json::from_str(&json).expect("a NaN written as null reads back");
    assert!(back.plan.as_ref().is_some_and(|p| p.confidence.is_nan()));
}

#[test]
fn an_unknown_tool_is_refused_and_the_model_told_while_the_rest_of_the_step_runs() {
    let w = World::new();
    let mut s = given(&w, vec![request(turn()), retrieved()]);
    let d = step(
        &mut s,
        planned(&["lookup_order", "delete_account"], 0.9),
        &w.ctx(),
    );
    // The plan's denial is fed back: each call goes to its own review.
    assert_eq!(
        kinds(&d),
        [
            "PlanProposed",
            "PolicyEvaluated",
            "PolicyEvaluated",
            "ToolCallStarted"
        ]
    );
    let call = only_call(&d);
    assert_eq!(call.tool, "lookup_order");
    let d = step(&mut s, ok(&call), &w.ctx());
    assert_eq!(
        kinds(&d)
            .into_iter()
            .filter(|k| *k == "GuardrailTripped" || *k == "CallRefused")
            .collect::<Vec<_>>(),
        ["GuardrailTripped", "CallRefused"]
    );
    let refused = d.events.iter().find_map(|e| match &e.payload {
        crate::event::Payload::CallRefused(r) => Some(r.clone()),
        _ => None,
    });
    let refused = refused.expect("refused");
    assert_eq!(refused.tool, "delete_account");
    assert_eq!(refused.rules, ["tool.exists"]);
    assert!(
        refused.reason.contains("not in the catalog"),
        "{}",
        refused.reason
    );
    assert!(s.outcome.is_none(), "the model is asked for the next step");
    // It answers: the turn completed, but not as a success.
    step(&mut s, answered("done what I could"), &w.ctx());
    assert_eq!(s.outcome, Some(Outcome::CompletedWithRefusals));
    let record = s.outcome_record("").expect("record");
    assert_eq!((record.refused_calls, record.denied_calls), (1, 0));
}

#[test]
fn with_end_turn_an_unknown_tool_is_denied_before_any_side_effect() {
    let mut w = World::new();
    let config = crate::guard::GuardConfig {
        on_refusal: crate::guard::GuardsOnRefusal {
            unknown_tool: crate::guard::OnRefusal::EndTurn,
            ..Default::default()
        },
        ..Default::default()
    };
    w.guards = crate::guard::Guards::or_default(config, &catalog());
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
