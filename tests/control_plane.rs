//! The control plane end to end on the embedded sled log: each scenario asserts the exact
//! events of its turn. Policies come from a policy directory on disk (the demo's, plus what a
//! scenario adds), the clock is manual, tools are the demo's (they journal real side effects).

mod common;

use std::sync::Arc;
use std::time::Duration;

use ballast::control::{CedarControlPlane, PolicyWatcher};
use ballast::event::{EscalationRung, Event, Outcome, Payload};
use ballast::exec::scripted::WorkloadTurn;
use ballast::ids::{Partition, TurnId};
use ballast::runtime::state_store::StateStore;
use ballast::runtime::{RuntimeStats, WorkerConfig};
use common::plane::*;

/// A turn whose confirmation was granted: the call runs, the model sees the result and answers
/// in a second step.
fn granted_then_ran() -> Vec<&'static str> {
    let mut want = vec![
        "Policy(plan:require_confirmation)",
        "Policy(pre_tool:require_confirmation)",
        "ApprovalRequested",
        "ApprovalGranted",
    ];
    want.extend(CALL_RAN);
    want.extend([
        "BudgetReserved",
        "PlanProposed",
        "BudgetCommitted",
        "ResponseSynthesized",
        "Policy(pre_response:allow)",
        "TurnCompleted",
    ]);
    want
}

/// A call refused (by a policy or a person) is reported to the model, which answers in a
/// second step: the turn completed, with refusals.
const REFUSED_THEN_ANSWERED: &[&str] = &[
    "CallRefused",
    "BudgetReserved",
    "PlanProposed",
    "BudgetCommitted",
    "ResponseSynthesized",
    "Policy(pre_response:allow)",
    "TurnCompleted",
];

/// A confirmation a person refused: the refund never runs; the model is told.
fn confirmation_refused() -> Vec<&'static str> {
    let mut want = vec![
        "Policy(plan:require_confirmation)",
        "Policy(pre_tool:require_confirmation)",
        "ApprovalRequested",
        "ApprovalDenied",
    ];
    want.extend(REFUSED_THEN_ANSWERED);
    want
}

/// Nobody answered the approval, then nobody took the handoff.
const EXPIRED_THEN_HANDOFF_EXPIRED: &[&str] = &[
    "Policy(plan:require_confirmation)",
    "Policy(pre_tool:require_confirmation)",
    "ApprovalRequested",
    "ApprovalExpired",
    "EscalationRaised",
    "TurnCompleted",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_table_exact_events() {
    let env = Env::new();
    let allowed = turn(1, "u-allow", refund(5_000), 0.95);
    let denied = turn(2, "u-deny", refund(90_000), 0.95);
    let granted = turn(3, "u-grant", refund(20_000), 0.95);
    let refused = turn(4, "u-refuse", refund(20_000), 0.95);
    let unsure = turn(5, "u-unsure", refund(5_000), 0.3);
    let w = vec![
        allowed.clone(),
        denied.clone(),
        granted.clone(),
        refused.clone(),
        unsure.clone(),
    ];
    let control = env.control(&w);
    let version = control.version();
    let mut run = env.start(&w, control);
    env.submit(&w).await;
    env.awaiting_approval(granted.turn_id).await;
    env.awaiting_approval(refused.turn_id).await;
    env.answer(granted.turn_id, true).await;
    env.answer(refused.turn_id, false).await;
    env.resolve_handoff(&unsure).await;
    let done = run.finished(5).await;
    run.stop().await;
    let outcome = |t: TurnId| done.iter().find(|f| f.turn_id == t).map(|f| f.outcome);

    // Allowed: reviewed as a plan, then the call with its real arguments, then the reply.
    let e = env.events(allowed.turn_id).await;
    let mut want = vec!["Policy(plan:allow)", "Policy(pre_tool:allow)"];
    want.extend(CALL_RAN);
    // The model sees the result and answers in a second step.
    want.extend([
        "BudgetReserved",
        "PlanProposed",
        "BudgetCommitted",
        "ResponseSynthesized",
        "Policy(pre_response:allow)",
        "TurnCompleted",
    ]);
    assert_eq!(kinds(&e), expect(&want), "allowed");
    assert_eq!(outcome(allowed.turn_id), Some(Outcome::Succeeded));
    assert!(matches!(&e[1].payload, Payload::RouteSelected(r) if r.profile == "specialist"));
    assert!(e.iter().all(|e| match &e.payload {
        Payload::PolicyEvaluated(p) => p.policy_version == version,
        _ => true,
    }));

    // Denied by a named rule at the plan checkpoint and again at the call's own review: the
    // refund never runs, the model is told why and answers; the turn completed with refusals.
    let e = env.events(denied.turn_id).await;
    let mut want = vec!["Policy(plan:deny)", "Policy(pre_tool:deny)"];
    want.extend(REFUSED_THEN_ANSWERED);
    assert_eq!(kinds(&e), expect(&want), "denied");
    assert_eq!(
        policy_ids(&e)[..2],
        [
            vec!["refund.over_limit".to_string()],
            vec!["refund.over_limit".to_string()]
        ]
    );
    assert!(e.iter().any(|e| matches!(&e.payload,
        Payload::CallRefused(r) if r.rules == ["refund.over_limit"] && r.reason.contains("refused by policy"))));
    assert_eq!(
        outcome(denied.turn_id),
        Some(Outcome::CompletedWithRefusals)
    );

    // Confirmation required, then granted by an operator: the call runs after the grant.
    let e = env.events(granted.turn_id).await;
    assert_eq!(kinds(&e), expect(&granted_then_ran()), "granted");
    assert!(e.iter().any(|e| matches!(&e.payload,
        Payload::ApprovalGranted(a) if a.operator == "ops-anna")));
    assert_eq!(outcome(granted.turn_id), Some(Outcome::Succeeded));

    // Confirmation denied: the refund never runs, the model is told and answers.
    let e = env.events(refused.turn_id).await;
    assert_eq!(kinds(&e), expect(&confirmation_refused()), "refused");
    assert_eq!(
        outcome(refused.turn_id),
        Some(Outcome::CompletedWithRefusals)
    );

    // Low confidence climbs the ladder: a constrained re-plan, a specialist re-plan (each is
    // still unsure), then a person, who resolves it.
    let e = env.events(unsure.turn_id).await;
    let replan = [
        "Policy(plan:escalate)",
        "EscalationRaised",
        "BudgetReserved",
        "PlanProposed",
        "BudgetCommitted",
    ];
    let mut want = replan.to_vec();
    want.extend(replan);
    want.extend([
        "Policy(plan:escalate)",
        "EscalationRaised",
        "HandoffResolved",
        "TurnCompleted",
    ]);
    assert_eq!(kinds(&e), expect(&want), "unsure");
    let rungs: Vec<EscalationRung> = e
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::EscalationRaised(r) => Some(r.rung),
            _ => None,
        })
        .collect();
    assert_eq!(
        rungs,
        [
            EscalationRung::ConstrainedRetry,
            EscalationRung::Specialist,
            EscalationRung::HumanHandoff
        ]
    );
    assert!(
        policy_ids(&e)
            .iter()
            .all(|ids| ids == &vec!["confidence.too_low".to_string()])
    );
    assert_eq!(outcome(unsure.turn_id), Some(Outcome::Escalated));

    // Exactly the two permitted refunds ran.
    assert_eq!(env.side_effects(), 2);
}

/// Timers run on the worker's clock: moving the manual clock past a deadline fires it in the
/// running worker — no restart, no waiting for wall time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_fire_when_the_clock_passes_them() {
    let env = Env::new();
    let waiting = turn(1, "u-wait", refund(20_000), 0.95);
    let w = vec![waiting.clone()];
    let mut run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    env.awaiting_approval(waiting.turn_id).await;
    // The approval expires: the turn is handed to a person, with the handoff's own deadline.
    env.clock.advance(61_000);
    env.handed_off(waiting.turn_id).await;
    // Nobody takes the handoff either.
    env.clock.advance(61_000);
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::EscalationFailed);
    assert_eq!(
        kinds(&env.events(waiting.turn_id).await),
        expect(EXPIRED_THEN_HANDOFF_EXPIRED)
    );
}

/// Waits until the worker holds `n` turns parked (out of memory, in the snapshot store).
async fn parked(run: &Running, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while RuntimeStats::get(&run.stats.parked_turns) != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} turns parked, expected {n}",
            RuntimeStats::get(&run.stats.parked_turns)
        );
        tokio::task::yield_now().await;
    }
}

/// Turns waiting for a person leave memory once a snapshot holds them, and come back for
/// whatever arrives: an answer, a deadline, a restart (which arms their deadlines without
/// loading them). What each turn records is exactly what it records when it never left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_waiting_for_people_are_parked_and_come_back() {
    let env = Env::new();
    let granted = turn(1, "u-grant", refund(20_000), 0.95);
    let refused = turn(2, "u-refuse", refund(20_000), 0.95);
    let expiring = turn(3, "u-wait", refund(20_000), 0.95);
    let w = vec![granted.clone(), refused.clone(), expiring.clone()];
    // A snapshot after every round: a turn parks as soon as it waits.
    let cfg = WorkerConfig {
        snapshot_every: 1,
        ..WorkerConfig::default()
    };
    let mut run = env.start_with(&w, env.control(&w), cfg.clone());
    env.submit(&w).await;
    for t in &w {
        env.awaiting_approval(t.turn_id).await;
    }
    parked(&run, 3).await;
    env.answer(granted.turn_id, true).await;
    let done = run.finished(1).await;
    assert_eq!(
        (done[0].turn_id, done[0].outcome),
        (granted.turn_id, Outcome::Succeeded)
    );
    run.stop().await;

    // A restart recovers the two still waiting as parked: not loaded, deadlines armed.
    let mut run = env.start_with(&w, env.control(&w), cfg.clone());
    parked(&run, 2).await;
    assert_eq!(RuntimeStats::get(&run.stats.resumed_turns), 2);
    env.answer(refused.turn_id, false).await;
    let done = run.finished(1).await;
    assert_eq!(
        (done[0].turn_id, done[0].outcome),
        (refused.turn_id, Outcome::CompletedWithRefusals)
    );
    // The parked turn's deadline fires from the timer recovery armed: handed to a person,
    // parked again, and that deadline passes too.
    env.clock.advance(61_000);
    env.handed_off(expiring.turn_id).await;
    parked(&run, 1).await;
    env.clock.advance(61_000);
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(
        (done[0].turn_id, done[0].outcome),
        (expiring.turn_id, Outcome::EscalationFailed)
    );

    assert_eq!(
        kinds(&env.events(granted.turn_id).await),
        expect(&granted_then_ran())
    );
    assert_eq!(
        kinds(&env.events(refused.turn_id).await),
        expect(&confirmation_refused())
    );
    assert_eq!(
        kinds(&env.events(expiring.turn_id).await),
        expect(EXPIRED_THEN_HANDOFF_EXPIRED)
    );
    assert_eq!(env.side_effects(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_expires_across_a_restart() {
    let env = Env::new();
    let waiting = turn(1, "u-wait", refund(20_000), 0.95);
    let w = vec![waiting.clone()];
    let run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    env.awaiting_approval(waiting.turn_id).await;
    run.stop().await;

    // Nobody answers; the worker is down past the deadline. The timer is rebuilt from the log,
    // the approval expires and the turn is handed to a person.
    env.clock.advance(61_000);
    let run = env.start(&w, env.control(&w));
    env.handed_off(waiting.turn_id).await;
    run.stop().await;
    // Nobody resolves the handoff either, across another restart: escalation_failed.
    env.clock.advance(61_000);
    let mut run = env.start(&w, env.control(&w));
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::EscalationFailed);
    let e = env.events(waiting.turn_id).await;
    assert_eq!(kinds(&e), expect(EXPIRED_THEN_HANDOFF_EXPIRED));
    assert_eq!(env.side_effects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_budget_is_denied_and_concurrent_turns_never_overspend() {
    let env = Env::new();
    // 40 simultaneous turns of one user, each a 2 000 µ¤ refund, against a 10 000 µ¤ budget.
    let racing: Vec<WorkloadTurn> = (0..40)
        .map(|i| turn(i, "u-hog", refund(1_000), 0.95))
        .collect();
    let run_control = env.control(&racing);
    let mut run = env.start(&racing, run_control);
    env.submit(&racing).await;
    let done = run.finished(racing.len()).await;
    run.stop().await;
    let ok = done
        .iter()
        .filter(|f| f.outcome == Outcome::Succeeded)
        .count();
    let denied = done.iter().filter(|f| f.outcome == Outcome::Denied).count();
    assert_eq!((ok, denied), (5, 35), "exactly the budget's worth ran");
    assert_eq!(env.side_effects(), 5);
    let mut committed = 0;
    for t in &racing {
        let e = env.events(t.turn_id).await;
        committed += e
            .iter()
            .map(|e| match &e.payload {
                Payload::BudgetCommitted(c) => c.cost_micros,
                _ => 0,
            })
            .sum::<i64>();
        if kinds(&e).iter().any(|k| k == "Policy(pre_tool:deny)") {
            // Over budget: refused at the pre-tool checkpoint, after the model call was paid.
            assert_eq!(
                kinds(&e),
                expect(&[
                    "Policy(plan:allow)",
                    "Policy(pre_tool:allow)",
                    "Policy(pre_tool:deny)",
                    "TurnCompleted"
                ]),
            );
            assert_eq!(policy_ids(&e)[2], vec!["budget.user.cost".to_string()]);
        }
    }
    assert_eq!(committed, 10_000, "spent exactly the budget, never more");

    // After a restart that cannot use its snapshot, the ledger is rebuilt from the log: the
    // user is still out of budget.
    for p in (0..env.emb.partitions()).map(Partition) {
        env.emb
            .state
            .save_snapshot(
                p,
                ballast::runtime::state_store::SnapshotDelta::replace_with(
                    b"not a snapshot".to_vec(),
                ),
            )
            .await
            .expect("spoil snapshot");
    }
    let late = vec![turn(100, "u-hog", refund(1_000), 0.95)];
    let mut run = env.start(&late, env.control(&late));
    env.submit(&late).await;
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::Denied);
    assert_eq!(env.side_effects(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_is_picked_up_mid_run_and_recorded_with_its_version() {
    let env = Env::new();
    let first = turn(1, "u-1", refund(5_000), 0.95);
    let second = turn(2, "u-2", refund(5_000), 0.95);
    let w = vec![first.clone(), second.clone()];
    let control = env.control(&w);
    let v1 = control.version();
    let _watcher = PolicyWatcher::spawn(Arc::clone(&control), Duration::from_millis(50));
    let mut run = env.start(&w, control.clone());
    env.submit(&w[..1]).await;
    assert_eq!(run.finished(1).await[0].outcome, Outcome::Succeeded);

    std::fs::write(
        env.policies().join("freeze.cedar"),
        "@id(\"freeze.refunds\")\n@reason(\"refunds are frozen during the audit\")\nforbid(principal, action == Ballast::Action::\"call_tool\", resource == Ballast::Tool::\"issue_refund\");\n",
    )
    .expect("write policy");
    let mut v2 = v1.clone();
    for _ in 0..200 {
        v2 = control.version();
        if v2 != v1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_ne!(v1, v2, "the watcher reloaded the policy set");
    env.submit(&w[1..]).await;
    assert_eq!(
        run.finished(1).await[0].outcome,
        Outcome::CompletedWithRefusals
    );
    run.stop().await;
    let version_of = |e: &[Event]| -> Vec<String> {
        e.iter()
            .filter_map(|e| match &e.payload {
                Payload::PolicyEvaluated(p) => Some(p.policy_version.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(
        version_of(&env.events(first.turn_id).await)
            .iter()
            .all(|v| *v == v1)
    );
    // Every decision of the second turn — the plan's, the refund's own, the reply's — was
    // made by the new set; the refund was refused by the new rule.
    let e = env.events(second.turn_id).await;
    assert_eq!(version_of(&e), vec![v2.clone(), v2.clone(), v2]);
    assert_eq!(
        policy_ids(&e)[..2],
        [
            vec!["freeze.refunds".to_string()],
            vec!["freeze.refunds".to_string()]
        ]
    );
}

#[test]
fn malformed_or_invalid_policies_are_refused_at_load_naming_file_and_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = policy_dir(root.path());
    let catalog = ballast::demo::tools::demo_catalog();
    let good = CedarControlPlane::load(&dir, catalog.clone()).expect("the examples load");

    // A syntax error on line 3.
    std::fs::write(
        dir.join("zz_bad.cedar"),
        "// broken\n\npermit(principal, action, resource) when { context.risk > };\n",
    )
    .expect("write");
    let err = CedarControlPlane::load(&dir, catalog.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("zz_bad.cedar:3:"), "{err}");

    // Parses, but reads an attribute the schema does not have (caught by validation, at load).
    std::fs::write(
        dir.join("zz_bad.cedar"),
        "@id(\"typo\")\nforbid(principal, action == Ballast::Action::\"call_tool\", resource)\nwhen { context.amount > 5 };\n",
    )
    .expect("write");
    let err = CedarControlPlane::load(&dir, catalog.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("zz_bad.cedar:3:"), "{err}");

    // An unknown @decision is refused too.
    std::fs::write(
        dir.join("zz_bad.cedar"),
        "@id(\"x\")\n@decision(\"maybe\")\nforbid(principal, action, resource);\n",
    )
    .expect("write");
    let err = CedarControlPlane::load(&dir, catalog.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("maybe") && err.contains("zz_bad.cedar:1:"),
        "{err}"
    );

    // A running plane keeps its policy set when a reload meets a broken file.
    let dir2 = policy_dir(&root.path().join("second"));
    let live = CedarControlPlane::load(&dir2, catalog).expect("loads");
    let before = live.version();
    std::fs::write(dir2.join("zz_bad.cedar"), "permit(").expect("write");
    assert!(live.reload().is_err());
    assert_eq!(live.version(), before);
    assert_eq!(good.version(), before, "same files, same version");
}

fn ballast(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .output()
        .expect("ballast runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_answer_waiting_turns_from_the_command_line() {
    let env = Env::new();
    let yes = turn(1, "u-yes", refund(20_000), 0.95);
    let no = turn(2, "u-no", refund(20_000), 0.95);
    let w = vec![yes.clone(), no.clone()];
    let run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    env.awaiting_approval(yes.turn_id).await;
    env.awaiting_approval(no.turn_id).await;
    run.stop().await;
    let (root, clock) = env.close();
    let data = root.path().join("data");
    let data = data.to_str().expect("utf-8 path");

    let out = ballast(&[
        "approve",
        &yes.turn_id.to_string(),
        "--data-dir",
        data,
        "--reason",
        "verified",
        "--operator",
        "ops-bob",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("approved turn"));
    let out = ballast(&[
        "deny",
        &no.turn_id.to_string(),
        "--data-dir",
        data,
        "--operator",
        "ops-bob",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = TurnId::from_parts(T0 as u64 + 999, [9; 10]).to_string();
    let out = ballast(&["approve", &stranger, "--data-dir", data]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the log"));

    // The worker applies the answers when it runs again.
    let env = Env::reopen(root, clock);
    let mut run = env.start(&w, env.control(&w));
    let done = run.finished(2).await;
    run.stop().await;
    let outcome = |t: TurnId| done.iter().find(|f| f.turn_id == t).map(|f| f.outcome);
    assert_eq!(outcome(yes.turn_id), Some(Outcome::Succeeded));
    assert_eq!(outcome(no.turn_id), Some(Outcome::CompletedWithRefusals));
    let e = env.events(yes.turn_id).await;
    assert!(e.iter().any(|e| matches!(&e.payload,
        Payload::ApprovalGranted(a) if a.operator == "ops-bob" && a.reason.as_deref() == Some("verified"))));
    assert_eq!(env.side_effects(), 1);
    let (root, _) = env.close();

    // A finished turn is not waiting any more: refused, with the reason.
    let data = root.path().join("data");
    let out = ballast(&[
        "approve",
        &yes.turn_id.to_string(),
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not waiting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
