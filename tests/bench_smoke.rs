//! `ballast bench` runs and prints its figures. Figures are not asserted: machines are noisy,
//! and timing assertions do not belong in tests.

mod common;

#[test]
fn bench_prints_every_figure_as_key_value() {
    let out = common::ballast(&["bench", "--turns", "300"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "turns_per_sec",
        "events_per_sec",
        "p50_ms",
        "p99_ms",
        "baseline_ratio",
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value} is not a number"));
        assert!(v.is_finite() && v >= 0.0);
    }
    assert!(text.contains("turns=300\n"));
    // 300 turns × 38 events: request, route, context, model reservation, the step asking for
    // five calls, its commit, the step's policy, 5 × (policy, reservation, start, result,
    // commit), model reservation, the answering step, its commit, reply, reply policy,
    // completion.
    assert!(text.contains("events=11400\n"), "{text}");
}

#[test]
fn the_kafka_bench_prints_the_same_figures() {
    let Some(bootstrap) = common::broker::bootstrap() else {
        return;
    };
    let out = common::ballast(&["bench", "--bootstrap", &bootstrap, "--turns", "300"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "turns_per_sec",
        "p50_ms",
        "p99_ms",
        "raw_appends_per_sec",
        "baseline_ratio",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .parse()
            .expect("number");
        assert!(value.is_finite() && value > 0.0, "{key}={value}");
    }
    // The first turn is outside the steady-state window: 299 turns × 38 events.
    assert!(text.contains("turns=299\nevents=11362\n"), "{text}");
}

#[test]
fn the_policy_bench_prints_its_figures() {
    let out = common::ballast(&["bench", "--policy", "--evals", "300"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "call_review_us_mean",
        "call_review_us_p99",
        "call_review_cold_us_mean",
        "call_review_cold_us_p99",
        "plan_review_us_mean",
        "baseline_encode_us_mean",
        "call_review_vs_encode_ratio",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .parse()
            .expect("number");
        assert!(value.is_finite() && value > 0.0, "{key}={value}");
    }
    assert!(text.contains("policy_evals=300\n"), "{text}");
}

#[test]
fn the_vault_bench_runs_both_sides_and_prints_the_cost() {
    let out = common::ballast(&["bench", "--vault", "--turns", "200"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number:\n{text}"))
    };
    for key in [
        "plain.turns_per_sec",
        "vault.turns_per_sec",
        "tokenize_us_per_request",
        "vault_added_us_per_turn",
        "vault_ratio",
    ] {
        assert!(figure(key).is_finite(), "{key}");
    }
    // Both sides ran every turn; with the vault, the model's and tools' real values are sealed
    // where they enter (a redaction record at the plan, each of the 5 results and the reply).
    assert_eq!(figure("plain.turns"), 200.0);
    assert_eq!(figure("vault.turns"), 200.0);
    assert_eq!(
        figure("vault.events") - figure("plain.events"),
        200.0 * 7.0,
        "{text}"
    );
    assert!(figure("tokenize_us_per_request") > 0.0);
}

/// `--waiting`: turns parked on approvals, the parking process killed with SIGKILL, a fresh
/// process resumes them. The resume phase itself fails unless every parked turn came back; here
/// the recovery read a bounded tail (periodic snapshots), not the whole log.
#[test]
fn the_waiting_bench_kills_parked_turns_and_resumes_every_one_from_a_snapshot() {
    let out = common::ballast(&["bench", "--waiting", "3000", "--partitions", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number:\n{text}"))
    };
    assert!(text.contains("killed=SIGKILL\n"), "{text}");
    assert_eq!(value("parked"), 3000.0);
    assert_eq!(value("waiting"), 3000.0);
    let (events, replayed) = (value("events"), value("replayed_events"));
    // 3,000 turns × 9 events each before they wait; each partition snapshotted at least once
    // (every 10,000 events), so a restart reads less than the log.
    assert_eq!(events, 27_000.0, "{text}");
    assert!(value("snapshots") >= 2.0, "{text}");
    assert!(replayed < events, "recovery re-read the whole log:\n{text}");
    assert!(value("resume_ms") > 0.0);
    assert!(value("bytes_per_waiting_turn") >= 0.0);
}

/// The outcome mix of a bench's output line `PREFIX outcomes: succeeded=N failed=N …`.
fn outcomes(text: &str, prefix: &str) -> std::collections::BTreeMap<String, u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{prefix}outcomes: ")))
        .unwrap_or_else(|| panic!("no {prefix}outcomes line:\n{text}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect()
}

/// `--http` times turns that look an order up and answer — not refusals. Before its token
/// carried grants, every turn it timed was denied at the plan (8 events, no tool call).
#[test]
fn the_http_bench_times_turns_that_succeed_and_prints_how_they_ended() {
    let out = common::ballast(&["bench", "--http", "--clients", "1,3", "--http-turns", "40"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for clients in ["1", "3"] {
        let mix = outcomes(&text, &format!("clients={clients} "));
        assert_eq!(
            mix.get("succeeded"),
            Some(&40),
            "clients={clients}:\n{text}"
        );
        assert_eq!(mix.values().sum::<u64>(), 40, "{text}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("did not succeed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_bench_prints_the_outcome_mix() {
    let out = common::ballast(&["bench", "--turns", "50"]);
    let mix = outcomes(&String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(mix.get("succeeded"), Some(&50));
    let out = common::ballast(&["bench", "--model-steps", "--turns", "5"]);
    let mix = outcomes(&String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(mix.get("succeeded"), Some(&5));
}
