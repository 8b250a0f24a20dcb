//! Audit on the real sled log: the chain behind an approved refund; a backtest under a stricter
//! policy set that denies exactly the recorded refunds it should, without calling any tool; a
//! reversal that compensates two calls newest first, once; a late label that moves the SLO; and
//! a reversal killed with SIGKILL mid-way that resumes where it stopped.

mod common;

use std::time::{Duration, Instant};

use ballast::audit::backtest::{Window, backtest};
use ballast::event::{Payload, PlanStep};
use ballast::operator::Reversal;
use ballast::projection::turn_index::TurnIndex;
use common::plane::{Env, refund, turn};
use serde_json::json;

fn email() -> PlanStep {
    PlanStep {
        tool: "send_email".into(),
        args_json: json!({"customer_id": "C-7", "template": "refund_confirmation"}).to_string(),
    }
}

fn second_refund(amount: i64) -> PlanStep {
    PlanStep {
        tool: "issue_refund".into(),
        args_json: json!({"order_id": "A1002", "amount_cents": amount}).to_string(),
    }
}

async fn index(env: &Env) -> TurnIndex {
    let index = TurnIndex::open(&env.emb.store).expect("index");
    index
        .catch_up(env.emb.events.as_ref(), &env.emb.codecs.events)
        .await
        .expect("catch up");
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_refund_has_its_whole_chain() {
    let env = Env::new();
    let w = vec![turn(1, "u-1", refund(25_000), 0.9)];
    let mut running = env.start(&w, env.control(&w));
    env.submit(&w).await;
    env.awaiting_approval(w[0].turn_id).await;
    env.answer(w[0].turn_id, true).await;
    running.finished(1).await;
    running.stop().await;

    let events = env.events(w[0].turn_id).await;
    let audit = ballast::audit::audit(&events).expect("audit");
    assert_eq!(audit.outcome.as_deref(), Some("succeeded"));
    assert_eq!(audit.actions.len(), 1);
    let a = &audit.actions[0];
    assert_eq!(a.tool, "issue_refund");
    assert!(a.args_json.contains("25000"));
    assert!(
        !a.documents.is_empty(),
        "the documents retrieved before the plan"
    );
    assert!(a.plan.model.starts_with("scripted") || !a.plan.model.is_empty());
    assert!(!a.plan.prompt_template_hash.is_empty());
    let checkpoints: Vec<(&str, &str)> = a
        .decisions
        .iter()
        .map(|d| (d.checkpoint, d.decision))
        .collect();
    assert_eq!(
        checkpoints,
        vec![
            ("plan", "require_confirmation"),
            ("pre_tool", "require_confirmation")
        ]
    );
    assert!(
        a.decisions[1]
            .policy_ids
            .contains(&"refund.confirm_large".to_string())
    );
    assert!(a.decisions[1].risk_score > 0.0);
    let approval = a.approval.as_ref().expect("approval");
    assert_eq!(approval.status, "granted");
    assert_eq!(approval.operator.as_deref(), Some("ops-anna"));
    assert!(approval.answered_at_ms.is_some());
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].result.as_deref(), Some("ok"));
    assert!(
        a.attempts[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("Refund"))
    );
    let text = audit.render();
    for needle in [
        "← documents",
        "← plan",
        "← policy",
        "← approval   granted by ops-anna",
        "→ call",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stricter_policy_would_deny_exactly_the_large_refunds_without_calling_a_tool() {
    let env = Env::new();
    // Seven refunds of 10.00 … 70.00 EUR, each by its own user: all allowed by the demo set.
    let w: Vec<_> = (0..7)
        .map(|i| {
            turn(
                10 + i,
                &format!("u-{i}"),
                refund(1_000 * (i as i64 + 1)),
                0.95,
            )
        })
        .collect();
    let mut running = env.start(&w, env.control(&w));
    env.submit(&w).await;
    running.finished(w.len()).await;
    running.stop().await;
    let effects_before = env.side_effects();

    // The stricter set: refunds above 40.00 are denied.
    let strict = env.root.path().join("strict");
    std::fs::create_dir_all(&strict).expect("mkdir");
    for f in std::fs::read_dir(env.policies()).expect("policies") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, strict.join(f.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(
        strict.join("strict.cedar"),
        r#"@id("strict.refund_cap")
@reason("refunds above 40.00 are denied")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"issue_refund")
when { context.args has amount_cents && context.args.amount_cents > 4000 };
"#,
    )
    .expect("write");
    // The control plane is typed against a catalog whose tools all fail if called: the backtest
    // gets no execution plane at all, so none can be.
    let catalog = env.exec(&w).tools.catalog().clone();
    let control =
        ballast::control::CedarControlPlane::load(&strict, catalog.clone()).expect("strict loads");
    let mut turns = Vec::new();
    for t in &w {
        turns.push(env.events(t.turn_id).await);
    }
    let report = backtest(turns, &control, &catalog, Window::default());
    assert_eq!(report.turns, 7);
    // Three refunds (50, 60, 70 EUR): each one's plan review and pre-tool review flip.
    assert_eq!(
        report.transitions.get("allow→deny"),
        Some(&6),
        "{}",
        report.render()
    );
    assert_eq!(report.transitions.len(), 1, "{}", report.render());
    assert_eq!(report.by_tool.get("issue_refund"), Some(&3));
    let affected = report.affected_turns();
    assert_eq!(
        affected,
        w[4..].iter().map(|t| t.turn_id).collect::<Vec<_>>()
    );
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.new_rules.contains(&"strict.refund_cap".to_string()))
    );
    assert_eq!(
        report.approximate, 0,
        "every decision recorded its review inputs"
    );
    // The same set the decisions were made under changes nothing.
    let same = env.control(&w);
    let again = backtest(
        {
            let mut t = Vec::new();
            for x in &w {
                t.push(env.events(x.turn_id).await);
            }
            t
        },
        same.as_ref(),
        &catalog,
        Window::default(),
    );
    assert!(again.changes.is_empty(), "{}", again.render());
    assert_eq!(again.unchanged, again.evaluated);
    // A window that ends before the run re-evaluates nothing.
    let none = backtest(
        vec![env.events(w[0].turn_id).await],
        &control,
        &catalog,
        Window {
            since_ms: None,
            until_ms: Some(0),
        },
    );
    assert_eq!(none.evaluated, 0);
    assert_eq!(env.side_effects(), effects_before, "no tool ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_compensates_both_refunds_newest_first_and_only_once() {
    let env = Env::new();
    let mut steps = refund(2_000);
    steps.push(second_refund(3_000));
    steps.push(email());
    let mut t = turn(30, "u-30", steps, 0.95);
    t.text = "Orders A1001 and A1002 arrived broken, refund 20.00 EUR and 30.00 EUR please, I am customer C-7".into();
    let w = vec![t];
    let control = env.control(&w);
    let mut running = env.start(&w, control.clone());
    env.submit(&w).await;
    let done = running.finished(1).await;
    assert_eq!(
        done[0].outcome.as_str(),
        "succeeded",
        "{:?}",
        common::plane::kinds(&env.events(w[0].turn_id).await)
            .into_iter()
            .zip(env.events(w[0].turn_id).await.iter().map(|e| e.describe()))
            .collect::<Vec<_>>()
    );

    let index = index(&env).await;
    let state = env
        .emb
        .desk(&index)
        .request_reversal(
            w[0].turn_id,
            Some("refunded the wrong orders".into()),
            ("ops-anna", common::plane::T0),
        )
        .await
        .expect("request");
    assert!(matches!(state, Reversal::Requested(_)));
    running.finished(1).await;
    // Asked again: nothing more.
    let index = index_again(&env).await;
    let again = env
        .emb
        .desk(&index)
        .request_reversal(w[0].turn_id, None, ("ops-bob", common::plane::T0))
        .await
        .expect("again");
    assert_eq!(again, Reversal::Done);
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;

    let events = env.events(w[0].turn_id).await;
    let calls: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ToolCallStarted(s) if s.tool == "issue_refund" => Some(s.call_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    let after: Vec<String> = events
        .iter()
        .skip_while(|e| !matches!(e.payload, Payload::ReversalRequested(_)))
        .map(|e| match &e.payload {
            Payload::ReversalRequested(r) => format!(
                "Requested({}|{})",
                r.compensable.join(","),
                r.not_reversible.len()
            ),
            Payload::CompensationStarted(c) => format!("Started({},{})", c.call_id, c.tool),
            Payload::CompensationCompleted(c) => format!("Completed({})", c.call_id),
            other => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("")
                .to_string(),
        })
        .collect();
    assert_eq!(
        after,
        vec![
            format!("Requested({},{}|1)", calls[1], calls[0]),
            format!("Started({},reverse_refund)", calls[1]),
            format!("Completed({})", calls[1]),
            format!("Started({},reverse_refund)", calls[0]),
            format!("Completed({})", calls[0]),
            "TurnReversed".to_string(),
        ],
        "newest first, each once, then TurnReversed; nothing after"
    );
    let undone = std::fs::read_to_string(env.journal())
        .expect("journal")
        .lines()
        .filter(|l| l.contains("reverse_refund"))
        .count();
    assert_eq!(undone, 2, "two compensations ran, once each");
    let audit = ballast::audit::audit(&events).expect("audit");
    assert_eq!(audit.outcome.as_deref(), Some("reversed"));
    assert_eq!(
        audit
            .actions
            .iter()
            .filter(|a| a.compensation.as_ref().is_some_and(|c| c.completed))
            .count(),
        2
    );
}

async fn index_again(env: &Env) -> TurnIndex {
    index(env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_label_moves_the_hallucination_slo() {
    let env = Env::new();
    let w = vec![
        turn(40, "u-40", refund(1_500), 0.95),
        turn(41, "u-41", refund(1_600), 0.95),
    ];
    let mut running = env.start(&w, env.control(&w));
    env.submit(&w).await;
    running.finished(2).await;
    let projections = ballast::projection::Projections::standard(&env.emb.store).expect("p");
    let view = ballast::projection::outcomes::OutcomeView::open(&env.emb.store).expect("view");
    let slo = |view: &ballast::projection::outcomes::OutcomeView| {
        ballast::projection::slo::compute(
            &view.all().expect("all"),
            common::plane::T0 + 60_000,
            &Default::default(),
        )
    };
    projections
        .catch_up(env.emb.events.as_ref(), &env.emb.codecs.events, &|_| {})
        .await
        .expect("catch up");
    let before = slo(&view);
    assert_eq!((before[1].good, before[1].total), (2, 2));

    let index = index(&env).await;
    env.emb
        .desk(&index)
        .label_turn(
            w[1].turn_id,
            "hallucination_with_action",
            Some("the amount was never in the request".into()),
            ("reviewer-li", common::plane::T0),
        )
        .await
        .expect("label");
    running.finished(1).await;
    running.stop().await;
    projections
        .catch_up(env.emb.events.as_ref(), &env.emb.codecs.events, &|_| {})
        .await
        .expect("catch up");
    let after = slo(&view);
    assert_eq!(after[1].name, "hallucination_with_action");
    assert_eq!((after[1].good, after[1].total), (1, 2), "the label counts");
    assert_eq!(
        (after[0].good, after[0].total),
        (1, 2),
        "and the task no longer succeeded"
    );
    let record = view.get(w[1].turn_id).expect("get").expect("record");
    assert_eq!(record.labels, vec!["hallucination_with_action".to_string()]);
    // The worker published the relabeled record too (same key, newer record).
    let events = env.events(w[1].turn_id).await;
    let labeled = events.iter().find_map(|e| match &e.payload {
        Payload::OutcomeLabeled(l) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(labeled.map(|l| l.operator), Some("reviewer-li".to_string()));
}

/// The demo tools' service delay for a call id (the same hash), to time a kill between two
/// compensations.
fn delay_ms(call_id: &str, max_ms: u64) -> u64 {
    let h = call_id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    1 + h % max_ms
}

#[test]
fn a_reversal_killed_mid_way_resumes_and_repeats_nothing() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let max_ms = 3_000;
    // Record turns with two refunds each; pick one whose second compensation is slow enough to
    // be killed in the middle of.
    let (root, clock, target, calls) = rt.block_on(async {
        let env = Env::new();
        let w: Vec<_> = (0..16)
            .map(|i| {
                let mut steps = refund(2_000);
                steps.push(second_refund(3_000));
                let mut t = turn(50 + i, &format!("u-5{i}"), steps, 0.95);
                t.text =
                    "Orders A1001 and A1002 arrived broken, refund 20.00 EUR and 30.00 EUR please"
                        .into();
                t
            })
            .collect();
        let mut running = env.start(&w, env.control(&w));
        env.submit(&w).await;
        running.finished(w.len()).await;
        running.stop().await;
        let mut pick = None;
        for t in &w {
            let calls: Vec<String> = env
                .events(t.turn_id)
                .await
                .iter()
                .filter_map(|e| match &e.payload {
                    Payload::ToolCallStarted(s) => Some(s.call_id.clone()),
                    _ => None,
                })
                .collect();
            // The first compensation (of the newest call) quick, the second slow enough.
            if delay_ms(&format!("{}/undo", calls[0]), max_ms) > 1_200
                && delay_ms(&format!("{}/undo", calls[1]), max_ms) < 1_000
                && pick.is_none()
            {
                pick = Some((t.turn_id, calls));
            }
        }
        let (target, calls) = pick.expect("a turn with a slow second compensation");
        let (root, clock) = env.close();
        (root, clock, target, calls)
    });
    let data = root.path().join("data");
    let policies = root.path().join("policies");
    let journal = data.join("effects.jsonl");
    let undone = || {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("reverse_refund"))
            .count()
    };
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "reverse".into(),
            target.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--policies".into(),
            policies.display().to_string(),
            "--service-latency-ms".into(),
            max_ms.to_string(),
            "--operator".into(),
            "ops-anna".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut child = std::process::Command::new(common::bin())
        .args(args(&[]))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn reverse");
    // The newest refund is compensated first; once it has run, the second compensation is in
    // flight (it takes over a second): kill there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while undone() < 1 {
        assert!(Instant::now() < deadline, "first compensation never ran");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "reverse ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(undone(), 1, "killed before the second compensation ran");

    // Again: it resumes the reversal where it stopped.
    let out = common::ballast(
        &args(&["--json"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}({})",
                e["event"].as_str().unwrap_or(""),
                e["call_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ReversalRequested()".to_string(),
            format!("CompensationStarted({})", calls[1]),
            format!("CompensationCompleted({})", calls[1]),
            format!("CompensationStarted({})", calls[0]),
            format!("CompensationFailed({})", calls[0]),
            format!("CompensationStarted({})", calls[0]),
            format!("CompensationCompleted({})", calls[0]),
            "TurnReversed()".to_string(),
        ],
        "the interrupted compensation is recorded and run again"
    );
    let keys: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "CompensationStarted" && e["call_id"] == calls[0].as_str())
        .filter_map(|e| e["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0], keys[1],
        "the retry carries the same idempotency key"
    );
    assert_eq!(undone(), 2);

    // A third time: nothing more.
    let out = common::ballast(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already reversed"));
    assert_eq!(undone(), 2);
    drop(clock);
}
