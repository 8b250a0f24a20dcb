//! Guardrails end to end on the embedded sled log: each guard's recorded verdict, a hallucinated
//! refund blocked before the refund runs while the turn walks all four rungs, a breaker that
//! opens and closes, and a redaction corpus that never reaches the log, a trace or an outcome.

mod common;

use std::time::Duration;

use ballast::event::{EscalationRung, Event, GuardVerdict, Outcome, Payload, PlanStep};
use ballast::exec::scripted::WorkloadTurn;
use ballast::guard::redact::CORPUS;
use ballast::log::EventLog;
use common::plane::*;
use serde_json::json;

fn step(tool: &str, args: serde_json::Value) -> PlanStep {
    PlanStep {
        tool: tool.into(),
        args_json: args.to_string(),
    }
}

fn with_text(mut t: WorkloadTurn, text: &str) -> WorkloadTurn {
    t.text = text.into();
    t
}

/// (checkpoint, rule, verdict) of every guard trip.
fn trips(events: &[Event]) -> Vec<(String, String, GuardVerdict)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::GuardrailTripped(g) => {
                Some((g.checkpoint.as_str().to_string(), g.rule.clone(), g.verdict))
            }
            _ => None,
        })
        .collect()
}

fn rungs(events: &[Event]) -> Vec<EscalationRung> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::EscalationRaised(r) => Some(r.rung),
            _ => None,
        })
        .collect()
}

async fn wait_for(env: &Env, t: &WorkloadTurn, kind: &str) {
    for _ in 0..500 {
        if env.events(t.turn_id).await.iter().any(|e| e.kind() == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("turn {} never recorded {kind}", t.turn_id);
}

/// Nobody mentioned an amount; the "model" makes one up.
fn made_up_refund() -> WorkloadTurn {
    with_text(
        turn(
            1,
            "u-h",
            vec![
                step("lookup_order", json!({"order_id": "A1001"})),
                step(
                    "issue_refund",
                    json!({"order_id": "A1001", "amount_cents": 33_300}),
                ),
            ],
            0.95,
        ),
        "Order A1001 arrived damaged. What can you do?",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_amount_is_held_for_a_person_at_once_and_never_runs() {
    let env = Env::new();
    let t = made_up_refund();
    let w = vec![t.clone()];
    let run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    // No re-plan with fewer tools: the user is asked about this refund right away.
    env.awaiting_approval(t.turn_id).await;
    run.stop().await;
    // Nobody confirms: past the deadline a person takes over.
    env.clock.advance(61_000);
    let mut run = env.start(&w, env.control(&w));
    env.resolve_handoff(&t).await;
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::Escalated);
    let e = env.events(t.turn_id).await;
    assert_eq!(
        rungs(&e),
        [
            EscalationRung::UserConfirmation,
            EscalationRung::HumanHandoff
        ]
    );
    let blocked = e
        .iter()
        .filter(|e| matches!(&e.payload, Payload::GuardrailTripped(g) if g.hallucination))
        .count();
    assert_eq!(blocked, 1);
    assert!(
        !e.iter()
            .any(|e| matches!(&e.payload, Payload::ToolCallStarted(s) if s.tool == "issue_refund"))
    );
    assert_eq!(env.side_effects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_end_turn_a_hallucinated_refund_walks_all_four_rungs() {
    let env = Env::new();
    // The deployment keeps grounding on the ladder (`on_refusal.grounding = "end_turn"`).
    let toml = env.policies().join("control.toml");
    let mut config = std::fs::read_to_string(&toml).expect("read");
    config.push_str("[guards.on_refusal]\ngrounding = \"end_turn\"\n");
    std::fs::write(&toml, config).expect("write");
    let t = with_text(
        turn(
            1,
            "u-h",
            vec![
                step("lookup_order", json!({"order_id": "A1001"})),
                step(
                    "issue_refund",
                    json!({"order_id": "A1001", "amount_cents": 33_300}),
                ),
            ],
            0.95,
        ),
        "Order A1001 arrived damaged. What can you do?",
    );
    let w = vec![t.clone()];
    let run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    // Rungs 1 and 2 re-plan; each plan's refund is blocked again; rung 3 asks the user.
    env.awaiting_approval(t.turn_id).await;
    run.stop().await;
    // The user never confirms: past the deadline the approval expires and a person takes over.
    env.clock.advance(61_000);
    let mut run = env.start(&w, env.control(&w));
    env.resolve_handoff(&t).await;
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::Escalated);

    let e = env.events(t.turn_id).await;
    assert_eq!(
        rungs(&e),
        [
            EscalationRung::ConstrainedRetry,
            EscalationRung::Specialist,
            EscalationRung::UserConfirmation,
            EscalationRung::HumanHandoff
        ]
    );
    let blocked: Vec<_> = e
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::GuardrailTripped(g) if g.hallucination => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(
        blocked.len(),
        2,
        "once per plan that reached the refund (the constrained plan stops at the tool rule)"
    );
    assert!(
        blocked
            .iter()
            .all(|g| g.rule == "hallucination.amount_cents" && g.verdict == GuardVerdict::Escalate)
    );
    assert!(
        trips(&e)
            .iter()
            .any(|(_, r, _)| r == "constrained.deterministic_only")
    );
    // The refund never started; the lookups did.
    assert!(
        !e.iter()
            .any(|e| matches!(&e.payload, Payload::ToolCallStarted(s) if s.tool == "issue_refund"))
    );
    assert_eq!(env.side_effects(), 0);
    let published = env
        .emb
        .escalations
        .read(ballast::ids::Partition(0), ballast::ids::Offset::ZERO, 100)
        .await
        .expect("read escalations");
    assert_eq!(
        published.len(),
        1,
        "the handoff is published to the escalations log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_never_reaches_the_log_a_trace_or_an_outcome() {
    let env = Env::new();
    let seeded: Vec<&str> = CORPUS.iter().map(|(_, s)| *s).collect();
    let text = format!("Order P1001: {}", seeded.join(" / "));
    // The request carries every kind; the lookup's result carries more.
    let t = with_text(
        turn(
            1,
            "u-p",
            vec![step("lookup_order", json!({"order_id": "P1001"}))],
            0.95,
        ),
        &text,
    );
    let w = vec![t.clone()];
    let mut run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::Succeeded);
    let e = env.events(t.turn_id).await;
    let tripped = trips(&e);
    for checkpoint in ["intake", "post_tool"] {
        assert!(
            tripped.iter().any(|(c, r, v)| c == checkpoint
                && r == "redaction.pii"
                && *v == GuardVerdict::Modify),
            "{checkpoint}: {tripped:?}"
        );
    }
    let result_secrets = [
        "jane.doe@example.com",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
    ];
    let log_text: String = e.iter().map(|e| e.to_json().to_string()).collect();
    for secret in seeded.iter().chain(result_secrets.iter()) {
        assert!(!log_text.contains(secret), "{secret} is in the turn log");
    }
    assert!(
        log_text.contains("[REDACTED:"),
        "redactions are visible as such"
    );
    // The CLI views read the log; what is not in it cannot leak through them.
    let (root, _) = env.close();
    let data = root.path().join("data");
    let data = data.to_str().expect("utf-8");
    for args in [
        vec![
            "trace",
            &t.turn_id.to_string(),
            "--data-dir",
            data,
            "--json",
        ],
        vec!["trace", &t.turn_id.to_string(), "--data-dir", data],
        vec!["turns", "--data-dir", data, "--json"],
    ] {
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        let out = common::ballast(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && !text.is_empty(), "{args:?}");
        for secret in seeded.iter().chain(result_secrets.iter()) {
            assert!(!text.contains(secret), "{secret} leaked through {args:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_breaker_opens_refuses_calls_and_closes_after_a_successful_probe() {
    let env = Env::new();
    let stock = |i: u64, sku: &str| {
        with_text(
            turn(
                i,
                "u-w",
                vec![step("warehouse_stock", json!({"sku": sku}))],
                0.95,
            ),
            &format!("Is {sku} in stock?"),
        )
    };
    // W skus hit the outage (503, retryable): 3 attempts each; the 5th failure opens the breaker.
    let w = vec![
        stock(1, "W1"),
        stock(2, "W2"),
        stock(3, "S3"),
        stock(4, "S4"),
        stock(5, "S5"),
    ];
    let mut run = env.start(&w, env.control(&w));
    let mut outcomes = Vec::new();
    for (i, t) in w.iter().enumerate() {
        if i == 3 {
            // The breaker cools down (30 s): the next call is the probe.
            env.clock.advance(31_000);
        }
        env.submit(std::slice::from_ref(t)).await;
        // Retries wait out their backoff on the worker's clock: move it on while waiting.
        outcomes.push(run.finished_moving(1, &env.clock, 100).await[0].outcome);
    }
    run.stop().await;
    assert_eq!(
        outcomes,
        [
            Outcome::Failed,
            Outcome::Failed,
            Outcome::Failed,
            Outcome::Succeeded,
            Outcome::Succeeded
        ]
    );
    let mut open = Vec::new();
    for t in &w {
        let e = env.events(t.turn_id).await;
        open.push(
            trips(&e)
                .into_iter()
                .filter(|(_, r, _)| r == "breaker.open")
                .count(),
        );
    }
    // W2's third attempt and all of S3 were refused without running.
    assert_eq!(open[..3], [0, 1, 1]);
    let ran = |e: &[Event]| e.iter().filter(|e| e.kind() == "ToolCallStarted").count();
    assert_eq!(ran(&env.events(w[0].turn_id).await), 3);
    assert_eq!(ran(&env.events(w[1].turn_id).await), 2);
    assert_eq!(ran(&env.events(w[2].turn_id).await), 0);
    // S4 was the probe; it closed the breaker, so S5 went through untouched.
    assert_eq!(open[3..], [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_guard_records_its_verdict() {
    let env = Env::new();
    let mut no_scope = turn(
        1,
        "u-1",
        vec![step("lookup_order", json!({"order_id": "A1001"}))],
        0.95,
    );
    no_scope
        .attributes
        .insert("scopes".into(), "support:search_kb".into());
    let bad_args = turn(
        2,
        "u-2",
        vec![step("lookup_order", json!({"order_id": "not an id"}))],
        0.95,
    );
    let stale = with_text(
        turn(
            3,
            "u-3",
            vec![step("search_kb", json!({"query": "refund timing"}))],
            0.95,
        ),
        "How long do refunds take to reach my card?",
    );
    let contradictory = with_text(
        turn(
            4,
            "u-4",
            vec![step("search_kb", json!({"query": "refund timing"}))],
            0.95,
        ),
        "How fast are express-lane reimbursements compared to normal refunds?",
    );
    let drift = with_text(
        turn(
            5,
            "u-5",
            vec![step("carrier_status", json!({"tracking_id": "R77"}))],
            0.95,
        ),
        "Where is parcel R77?",
    );
    let lint = with_text(
        turn(
            6,
            "u-6",
            vec![step("search_kb", json!({"query": "holiday campaign"}))],
            0.95,
        ),
        "Will my order arrive before the holidays?",
    );
    let looping = turn(
        7,
        "u-7",
        vec![step("lookup_order", json!({"order_id": "A1001"})); 3],
        0.95,
    );
    let w = vec![
        no_scope.clone(),
        bad_args.clone(),
        stale.clone(),
        contradictory.clone(),
        drift.clone(),
        lint.clone(),
        looping.clone(),
    ];
    let mut run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    for t in [&drift, &lint, &looping] {
        wait_for(&env, t, "EscalationRaised").await;
        env.resolve_handoff(t).await;
    }
    let done = run.finished(w.len()).await;
    run.stop().await;
    let outcome = |t: &WorkloadTurn| {
        done.iter()
            .find(|f| f.turn_id == t.turn_id)
            .map(|f| f.outcome)
    };
    let has = |e: &[Event], checkpoint: &str, rule: &str, verdict: GuardVerdict| {
        trips(e)
            .iter()
            .any(|(c, r, v)| c == checkpoint && r == rule && *v == verdict)
    };

    let e = env.events(no_scope.turn_id).await;
    assert!(has(&e, "pre_tool", "auth.scopes", GuardVerdict::Deny));
    // The model is told the user lacks the scope, and answers: not a success.
    assert!(e.iter().any(|e| matches!(&e.payload,
        Payload::CallRefused(r) if r.rules == ["auth.scopes"])));
    assert_eq!(outcome(&no_scope), Some(Outcome::CompletedWithRefusals));
    assert!(!e.iter().any(|e| e.kind() == "ToolCallStarted"));

    let e = env.events(bad_args.turn_id).await;
    assert!(has(&e, "pre_tool", "args.schema", GuardVerdict::Deny));
    let detail = e.iter().find_map(|e| match &e.payload {
        Payload::GuardrailTripped(g) => Some(g.detail.clone()),
        _ => None,
    });
    assert!(
        detail.is_some_and(|d| d.contains("/order_id")),
        "the error names the path"
    );

    let e = env.events(stale.turn_id).await;
    assert!(has(&e, "post_tool", "context.stale", GuardVerdict::Modify));
    assert!(
        e.iter()
            .any(|e| matches!(&e.payload, Payload::ContextRetrieved(c)
        if c.documents.iter().all(|d| d.id != "kb-refund-timing-2019")))
    );
    assert_eq!(outcome(&stale), Some(Outcome::Succeeded));

    let e = env.events(contradictory.turn_id).await;
    assert!(has(
        &e,
        "post_tool",
        "context.contradictory",
        GuardVerdict::Escalate
    ));
    assert_eq!(rungs(&e), [EscalationRung::ConstrainedRetry]);
    assert_eq!(outcome(&contradictory), Some(Outcome::Succeeded));

    let e = env.events(drift.turn_id).await;
    assert!(has(
        &e,
        "post_tool",
        "result.schema",
        GuardVerdict::Escalate
    ));
    assert_eq!(
        rungs(&e),
        [
            EscalationRung::ConstrainedRetry,
            EscalationRung::Specialist,
            EscalationRung::HumanHandoff
        ]
    );

    let e = env.events(lint.turn_id).await;
    assert!(has(
        &e,
        "pre_response",
        "lint.forbidden_phrase",
        GuardVerdict::Escalate
    ));
    assert_eq!(outcome(&lint), Some(Outcome::Escalated));

    let e = env.events(looping.turn_id).await;
    assert!(has(
        &e,
        "mid_plan",
        "loop.repeated_call",
        GuardVerdict::Escalate
    ));
    assert_eq!(outcome(&looping), Some(Outcome::Escalated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_accept_and_resolve_handoffs_from_the_command_line() {
    let env = Env::new();
    let t = with_text(
        turn(
            1,
            "u-o",
            vec![step("search_kb", json!({"query": "holiday campaign"}))],
            0.95,
        ),
        "Will my order arrive before the holidays?",
    );
    let w = vec![t.clone()];
    let run = env.start(&w, env.control(&w));
    env.submit(&w).await;
    for _ in 0..500 {
        if rungs(&env.events(t.turn_id).await).contains(&EscalationRung::HumanHandoff) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.stop().await;
    let (root, clock) = env.close();
    let data = root.path().join("data");
    let data = data.to_str().expect("utf-8");
    let id = t.turn_id.to_string();

    let out = common::ballast(&["handoff", "list", "--data-dir", data]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && listed.contains(&id) && listed.contains("waiting"),
        "{listed}"
    );
    let out = common::ballast(&["handoff", "list", "--data-dir", data, "--json"]);
    let line: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("{}"),
    )
    .expect("json");
    assert_eq!(
        line["rungs"],
        json!(["constrained_retry", "specialist", "human_handoff"])
    );
    // The published trace shape (version 2), not the engine's internal state.
    assert_eq!(line["trace_version"], 2);
    assert_eq!(line["trace"]["version"], 2);
    assert!(
        line["trace"]["steps"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "the handoff carries the turn's model steps: {line}"
    );
    assert!(line["trace"]["request"]["text"].is_string(), "{line}");
    assert!(line["trace"].get("next_seq").is_none(), "{line}");
    for args in [
        vec![
            "handoff",
            "accept",
            id.as_str(),
            "--data-dir",
            data,
            "--operator",
            "ops-eve",
        ],
        vec![
            "handoff",
            "resolve",
            id.as_str(),
            "--data-dir",
            data,
            "--operator",
            "ops-eve",
            "--resolution",
            "told the customer we cannot promise dates",
        ],
    ] {
        let out = common::ballast(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let env = Env::reopen(root, clock);
    let mut run = env.start(&w, env.control(&w));
    let done = run.finished(1).await;
    run.stop().await;
    assert_eq!(done[0].outcome, Outcome::Escalated);
    let e = env.events(t.turn_id).await;
    assert!(
        e.iter()
            .any(|e| matches!(&e.payload, Payload::HandoffAccepted(h) if h.operator == "ops-eve"))
    );
    assert!(
        e.iter()
            .any(|e| matches!(&e.payload, Payload::HandoffResolved(h) if h.operator == "ops-eve"))
    );
    let (root, _) = env.close();
    let data = root.path().join("data");
    let out = common::ballast(&[
        "handoff",
        "list",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&id),
        "resolved handoffs leave the open list"
    );
}
