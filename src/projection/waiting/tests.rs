use super::*;
use crate::event::fixtures::every_event;
use crate::event::{
    ApprovalExpired, ApprovalRequested, ApprovalResolved, EscalationRaised, HandoffAccepted,
    HandoffResolved, PolicyDecision, PolicyEvaluated, TurnCompleted,
};
use crate::ids::{Offset, Partition};

fn turn(n: u8) -> TurnId {
    TurnId::from_parts(1_767_225_600_000 + n as u64, [n; 10])
}

/// `payloads` as the events of `t`, seq 0.. (the first is the fixtures' TurnRequested).
fn events(t: TurnId, payloads: Vec<Payload>) -> Vec<Event> {
    let requested = every_event(t).remove(0);
    std::iter::once(requested.payload)
        .chain(payloads)
        .enumerate()
        .map(|(seq, payload)| Event {
            seq: seq as i64,
            payload,
            ..every_event(t).remove(0)
        })
        .collect()
}

fn pre_tool(provenance: &str) -> Payload {
    let Some(Payload::PolicyEvaluated(p)) = every_event(turn(0))
        .into_iter()
        .map(|e| e.payload)
        .find(|p| matches!(p, Payload::PolicyEvaluated(_)))
    else {
        unreachable!("the fixtures hold a PolicyEvaluated")
    };
    Payload::PolicyEvaluated(PolicyEvaluated {
        checkpoint: Checkpoint::PreTool,
        decision: PolicyDecision::RequireConfirmation,
        provenance_json: Some(provenance.into()),
        ..p
    })
}

fn asked(id: &str) -> Payload {
    Payload::ApprovalRequested(ApprovalRequested {
        approval_id: id.into(),
        call_id: "c0".into(),
        step: 0,
        tool: "issue_refund".into(),
        args_json: r#"{"amount_cents":90000}"#.into(),
        reason: "refunds above 100.00 need a person's confirmation".into(),
        risk_score: 0.97,
        deadline_ms: 1_767_225_660_000,
    })
}

fn answered(id: &str, granted: bool) -> Payload {
    let r = ApprovalResolved {
        approval_id: id.into(),
        operator: "ops".into(),
        reason: None,
        command_id: "cmd".into(),
    };
    if granted {
        Payload::ApprovalGranted(r)
    } else {
        Payload::ApprovalDenied(r)
    }
}

fn handed_off() -> Payload {
    Payload::EscalationRaised(EscalationRaised {
        rung: EscalationRung::HumanHandoff,
        reason: "a person has to look".into(),
        call_id: None,
        deadline_ms: Some(1_767_225_700_000),
    })
}

fn completed(outcome: Outcome) -> Payload {
    Payload::TurnCompleted(TurnCompleted {
        outcome,
        reason: "done".into(),
        latency_ms: 5,
    })
}

fn view() -> (tempfile::TempDir, WaitingView) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("store");
    let view = WaitingView::open(&store).expect("view");
    (dir, view)
}

/// Folds `events` in chunks of `chunk`, each applied as the runner applies one.
fn fold_in(view: &WaitingView, events: &[Event], chunk: usize) {
    let at: Vec<(At, Event)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let at = At {
                partition: Partition(0),
                offset: Offset(i as u64),
            };
            (at, e.clone())
        })
        .collect();
    for part in at.chunks(chunk) {
        let mut batch = sled::Batch::default();
        view.apply_chunk(part, &mut batch).expect("apply");
        view.tree.apply_batch(batch).expect("batch");
    }
}

fn rows(view: &WaitingView) -> Vec<(Vec<u8>, Vec<u8>)> {
    view.tree
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("row"))
        .collect()
}

#[test]
fn an_approval_waits_with_its_provenance_until_answered() {
    let t = turn(1);
    let history = events(
        t,
        vec![pre_tool(r#"{"p":1}"#), asked("a1"), answered("a1", true)],
    );
    let (_dir, v) = view();
    fold_in(&v, &history[..3], 10);
    let q = v.queue("acme", 10).expect("queue");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].kind, WaitingKind::Approval);
    assert_eq!(q[0].approval_id.as_deref(), Some("a1"));
    assert_eq!(q[0].provenance_json.as_deref(), Some(r#"{"p":1}"#));
    assert_eq!(q[0].deadline_ms, Some(1_767_225_660_000));
    assert!(v.queue("globex", 10).expect("other tenant").is_empty());
    fold_in(&v, &history[3..], 10);
    assert!(v.queue("acme", 10).expect("queue").is_empty());
}

#[test]
fn an_answer_to_another_approval_leaves_the_pending_one_waiting() {
    let t = turn(2);
    let history = events(t, vec![asked("a1"), answered("a0", false)]);
    let (_dir, v) = view();
    fold_in(&v, &history, 1);
    assert_eq!(v.queue("acme", 10).expect("queue").len(), 1);
}

#[test]
fn a_handoff_waits_until_resolved_and_its_listing_keeps_who_took_it() {
    let t = turn(3);
    let history = events(
        t,
        vec![
            asked("a1"),
            Payload::ApprovalExpired(ApprovalExpired {
                approval_id: "a1".into(),
                deadline_ms: 1,
            }),
            handed_off(),
            Payload::HandoffAccepted(HandoffAccepted {
                operator: "ops-anna".into(),
                command_id: "c1".into(),
            }),
            Payload::HandoffResolved(HandoffResolved {
                operator: "ops-anna".into(),
                resolution: "refunded by phone".into(),
                command_id: "c2".into(),
            }),
            completed(Outcome::Escalated),
        ],
    );
    let (_dir, v) = view();
    fold_in(&v, &history[..5], 2);
    let q = v.queue("acme", 10).expect("queue");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].kind, WaitingKind::Handoff);
    assert_eq!(q[0].accepted_by.as_deref(), Some("ops-anna"));
    assert_eq!(q[0].tool, None);
    let open = v.handoff(t).expect("status").expect("handed off");
    assert!(open.open && open.outcome.is_none());
    fold_in(&v, &history[5..], 2);
    assert!(v.all(10).expect("all").is_empty());
    assert_eq!(
        v.handoff(t).expect("status"),
        Some(HandoffStatus {
            open: false,
            accepted_by: Some("ops-anna".into()),
            outcome: Some(Outcome::Escalated),
        })
    );
}

#[test]
fn a_raised_handoff_comes_before_a_pending_approval() {
    let t = turn(4);
    let history = events(t, vec![asked("a1"), handed_off()]);
    let (_dir, v) = view();
    fold_in(&v, &history, 3);
    let q = v.queue("acme", 10).expect("queue");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].kind, WaitingKind::Handoff);
}

#[test]
fn duplicates_and_chunking_change_no_row() {
    let turns = [turn(5), turn(6), turn(7)];
    let mut once = Vec::new();
    once.extend(events(turns[0], vec![asked("a1")]));
    once.extend(events(turns[1], vec![handed_off()]));
    once.extend(events(
        turns[2],
        vec![
            asked("a2"),
            answered("a2", false),
            completed(Outcome::Denied),
        ],
    ));
    let twice: Vec<Event> = once.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    let (_a, one) = view();
    fold_in(&one, &once, 100);
    let (_b, two) = view();
    fold_in(&two, &twice, 3);
    assert_eq!(rows(&one), rows(&two));
    let queue = one.queue("acme", 10).expect("queue");
    let ids: Vec<TurnId> = queue.iter().map(|w| w.turn_id).collect();
    assert_eq!(ids, vec![turns[0], turns[1]], "oldest first");
    assert_eq!(one.queue("acme", 1).expect("limited").len(), 1);
}

#[test]
fn events_of_a_turn_never_seen_starting_are_ignored() {
    let t = turn(8);
    let history = events(t, vec![asked("a1")]);
    let (_dir, v) = view();
    fold_in(&v, &history[1..], 10);
    assert!(rows(&v).is_empty());
}
