//! Prometheus: a real scrape of `ballast serve` passes `promtool check metrics`; the generated
//! SLO rules pass `promtool check rules` and the rule tests (series that must and must not fire);
//! the Grafana dashboard only queries metrics and rules that exist. promtool comes from Debian's
//! `prometheus` package, which the test command installs when it is missing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Served, ballast};

fn promtool() -> String {
    std::env::var("BALLAST_PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

fn run_promtool(args: &[&str], cwd: &Path, stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs Debian's prometheus package)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_real_scrape_passes_promtool_and_keeps_labels_low_cardinality() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().to_str().expect("utf8");
    // Submit a demo workload without running it; `serve` runs it live.
    ballast(&[
        "demo",
        "--data-dir",
        dir,
        "--turns",
        "200",
        "--workers",
        "0",
    ]);
    let served = Served::start(&["--data-dir", dir]);
    let (status, _) = served.get("/healthz");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(90);
    let scrape = loop {
        let (status, body) = served.get("/metrics");
        assert_eq!(status, 200);
        let finished =
            sample(&body, "ballast_sli_events_total{sli=\"task_success\"}").unwrap_or(0.0);
        let ready = served.get("/readyz").0 == 200;
        if finished >= 150.0 && ready && body.contains("ballast_slo_burn_rate{") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "only {finished} turns finished:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (ok, lint) = run_promtool(&["check", "metrics"], root.path(), Some(&scrape));
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );

    for name in [
        "ballast_events_appended_total",
        "ballast_turns_started_total",
        "ballast_turns_completed_total",
        "ballast_turn_duration_seconds_bucket",
        "ballast_tool_calls_total",
        "ballast_policy_decisions_total",
        "ballast_guardrail_trips_total",
        "ballast_escalations_total",
        "ballast_model_tokens_total",
        "ballast_cost_micros_total",
        "ballast_sli_events_total",
        "ballast_sli_bad_events_total",
        "ballast_slo_objective_ratio",
        "ballast_slo_error_budget_remaining_ratio",
        "ballast_slo_burn_rate",
        "ballast_projection_lag_events",
    ] {
        assert!(
            scrape.lines().any(|l| l.starts_with(name)),
            "{name} missing from the scrape"
        );
    }
    assert!(
        scrape.contains("le=\"4.5\""),
        "the latency SLO threshold is a bucket boundary"
    );
    // No identifier of a turn, user or tenant in any label.
    for forbidden in ["turn_id=", "user_id=", "tenant=", "call_id="] {
        assert!(
            !scrape.contains(forbidden),
            "label {forbidden} in the scrape"
        );
    }
    let windows: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("ballast_slo_burn_rate{sli=\"task_success\""))
        .collect();
    assert_eq!(
        windows.len(),
        5,
        "one burn rate per SRE window: {windows:?}"
    );
    let status = served.stop();
    assert!(
        status.success(),
        "serve drains and exits cleanly on SIGTERM: {status}"
    );
}

#[test]
fn generated_rules_pass_promtool_check_and_the_rule_tests() {
    let root = tempfile::tempdir().expect("tempdir");
    let rules = root.path().join("ballast-slo.rules.yml");
    ballast(&["slo", "rules", "--out", rules.to_str().expect("utf8")]);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/prometheus");
    std::fs::copy(
        shipped.join("ballast-slo.rules.test.yml"),
        root.path().join("ballast-slo.rules.test.yml"),
    )
    .expect("copy rule tests");
    let (ok, out) = run_promtool(
        &["check", "rules", "ballast-slo.rules.yml"],
        root.path(),
        None,
    );
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("17 rules found"), "{out}");
    let (ok, out) = run_promtool(
        &["test", "rules", "ballast-slo.rules.test.yml"],
        root.path(),
        None,
    );
    assert!(ok, "promtool test rules:\n{out}");

    // Stricter targets from a policy directory's [slo] section reach the thresholds, and the
    // same rule tests then fail where a 10% failure rate would now page.
    let policies = root.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(
        policies.join("control.toml"),
        "[slo]\ntask_success = 0.999\n",
    )
    .expect("write control.toml");
    let strict = ballast(&[
        "slo",
        "rules",
        "--policies",
        policies.to_str().expect("utf8"),
    ]);
    let strict = String::from_utf8_lossy(&strict.stdout).to_string();
    assert!(strict.contains("> (14.4 * 0.001)"), "{strict}");
    std::fs::write(&rules, &strict).expect("write strict rules");
    let (ok, out) = run_promtool(
        &["check", "rules", "ballast-slo.rules.yml"],
        root.path(),
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = run_promtool(
        &["test", "rules", "ballast-slo.rules.test.yml"],
        root.path(),
        None,
    );
    assert!(
        !ok,
        "the default-target rule tests must fail under stricter targets:\n{out}"
    );
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("docker/grafana/ballast-slo.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let rules = std::fs::read_to_string(root.join("docker/prometheus/ballast-slo.rules.yml"))
        .expect("rules");
    let telemetry = std::fs::read_to_string(root.join("src/telemetry/mod.rs")).expect("source");
    let known = |name: &str| {
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        telemetry.contains(&format!("\"{base}\"")) || rules.contains(&format!("record: {name}"))
    };
    let name_re = regex::Regex::new(r"ballast[_:][a-z0-9_:]+").expect("regex");
    let mut queries = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            queries += 1;
            for m in name_re.find_iter(expr) {
                assert!(
                    known(m.as_str()),
                    "{} queries unknown {}",
                    panel["title"],
                    m.as_str()
                );
            }
        }
    }
    assert!(queries >= 20, "{queries} queries");
    for sli in [
        "task_success",
        "hallucination_with_action",
        "latency",
        "escalation_success",
    ] {
        assert!(
            text.contains(&format!(
                "ballast:sli_error_ratio:rate1h{{sli=\\\"{sli}\\\"}}"
            )),
            "{sli} burn panel"
        );
    }
}
