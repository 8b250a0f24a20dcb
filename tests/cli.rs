//! The command-line contracts: demo, turns, trace — and graceful shutdown on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use ballast::event::{Payload, ToolFailureKind};
use common::*;

#[test]
fn demo_then_turns_and_trace_and_a_rerun_redoes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf8");
    let out = ballast(&["demo", "--data-dir", dir, "--turns", "300"]);
    let summary = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "300 in the workload",
        "succeeded",
        "failed",
        "denied",
        "escalated",
        "p50",
        "p95",
        "events/s",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle}:\n{summary}"
        );
    }

    for needle in ["decisions", "guardrails", "ladder", "handoffs"] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle}:\n{summary}"
        );
    }
    // One outcome record per finished turn, with what analytics consumers need.
    let out = ballast(&["outcomes", "--data-dir", dir]);
    assert!(out.status.success());
    let outcomes: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an outcome is JSON"))
        .collect();
    assert_eq!(outcomes.len(), 300);
    assert!(
        outcomes
            .iter()
            .all(|o| o["latency_ms"].is_i64() && o["cost_micros"].is_i64())
    );
    assert!(outcomes.iter().any(|o| {
        o["policy_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sha256:"))
    }));
    assert!(
        outcomes
            .iter()
            .any(|o| o["escalation_rung"] == "human_handoff")
    );

    // The SLO table, from the same outcome records.
    let out = ballast(&["slo", "--data-dir", dir]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    for needle in [
        "task_success",
        "hallucination_with_action",
        "latency",
        "escalation_success",
        "burn 5m",
        "burn 3d",
    ] {
        assert!(table.contains(needle), "slo table lacks {needle}:\n{table}");
    }
    let out = ballast(&["slo", "--data-dir", dir, "--json"]);
    let slo: serde_json::Value = serde_json::from_slice(&out.stdout).expect("slo json");
    assert_eq!(slo["turns"], 300);
    assert_eq!(slo["slis"].as_array().map(Vec::len), Some(4));
    let task = &slo["slis"][0];
    let expected = outcomes
        .iter()
        .filter(|o| o["outcome"] == "succeeded")
        .count() as f64
        / 300.0;
    assert!((task["value"].as_f64().unwrap_or(-1.0) - expected).abs() < 1e-9);

    // Replay rebuilds every projection from offset 0: the same digest as the live ones, twice.
    let replay = |extra: &[&str]| {
        let out = ballast(&[&["replay", "--data-dir", dir, "--json"][..], extra].concat());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("replay json")
    };
    let (first, second) = (replay(&[]), replay(&[]));
    assert_eq!(first["matches_live"], true);
    assert_eq!(first["digest"], second["digest"]);
    let names: Vec<&str> = first["projections"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["turn_index", "outcomes", "waiting"]);
    assert!(first["events"].as_u64().is_some_and(|n| n > 300 * 10));
    let text = String::from_utf8_lossy(&ballast(&["replay", "--data-dir", dir]).stdout).to_string();
    assert!(text.contains("matches the live projections"), "{text}");

    let turns = turns_json(tmp.path());
    assert_eq!(turns.len(), 300);
    for t in &turns {
        assert_eq!(t["status"], "terminal");
        assert!(t["turn_id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(
            [
                "succeeded",
                "failed",
                "denied",
                "escalated",
                "escalation_failed",
                "completed_with_refusals"
            ]
            .contains(&t["outcome"].as_str().unwrap_or(""))
        );
    }

    let id = turns[0]["turn_id"].as_str().expect("id");
    let text =
        String::from_utf8_lossy(&ballast(&["trace", id, "--data-dir", dir]).stdout).to_string();
    assert!(
        text.contains("TurnRequested") && text.contains("TurnCompleted"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&ballast(&["trace", id, "--data-dir", dir, "--json"]).stdout)
            .expect("trace --json is JSON");
    let events = json.as_array().expect("array");
    assert_eq!(
        events.first().and_then(|e| e["event"].as_str()),
        Some("TurnRequested")
    );
    assert_eq!(
        events.last().and_then(|e| e["event"].as_str()),
        Some("TurnCompleted")
    );
    assert!(
        events
            .iter()
            .all(|e| e["ballast.log.offset"].is_u64() && e["turn_id"] == id)
    );
    // Each event carries OpenTelemetry GenAI attributes (ballast.* where the spec has none).
    assert!(events.iter().all(|e| e["otel"]["ballast.turn.id"] == id));
    assert!(
        events
            .iter()
            .any(|e| e["otel"]["gen_ai.usage.input_tokens"].is_i64())
    );
    assert!(
        events
            .iter()
            .any(|e| e["otel"]["gen_ai.security.decision.type"].is_string())
    );

    let effects_before = effects(tmp.path()).len();
    let again = ballast(&["demo", "--data-dir", dir, "--turns", "300"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(0 submitted now"));
    assert_eq!(
        effects(tmp.path()).len(),
        effects_before,
        "a finished workload runs nothing again"
    );

    let missing = Command::new(bin())
        .args([
            "trace",
            "019b76da-a800-7224-a722-000000000000",
            "--data-dir",
            dir,
        ])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    let not_a_dir = Command::new(bin())
        .args(["turns", "--data-dir", "/nonexistent/x"])
        .output()
        .expect("runs");
    assert!(!not_a_dir.status.success());
    assert!(String::from_utf8_lossy(&not_a_dir.stderr).contains("not a ballast data dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_so_nothing_is_left_unknown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf8");
    let args = [
        "demo",
        "--data-dir",
        dir,
        "--turns",
        "3000",
        "--service-latency-ms",
        "25",
    ];
    let child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Stop it mid-run: once some side effects have happened, whatever the machine's speed.
    let journal = tmp.path().join("effects.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 100
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let out = child.wait_with_output().expect("exits");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "an interrupted demo says so in its exit code:\n{summary}"
    );
    assert!(summary.contains("interrupted"), "{summary}");

    // Drained: every started call attempt has its result; nothing had to be settled as unknown.
    let by_turn = events_by_turn(tmp.path()).await;
    let (started, results) = check_turn_invariants(&by_turn);
    assert!(started > 0);
    assert_eq!(started, results, "a graceful stop leaves no call in flight");
    let running = turns_json(tmp.path())
        .iter()
        .filter(|t| t["status"] == "running")
        .count();
    assert!(running > 0, "the stop came mid-run");

    // The rerun finishes the rest without any recovery escalation.
    ballast(&args);
    let by_turn = events_by_turn(tmp.path()).await;
    check_turn_invariants(&by_turn);
    let settled = by_turn
        .values()
        .flatten()
        .filter(|e| matches!(&e.payload, Payload::ToolCallFailed(f) if matches!(f.kind, ToolFailureKind::OutcomeUnknown | ToolFailureKind::Interrupted)))
        .count();
    assert_eq!(settled, 0);
    assert!(
        turns_json(tmp.path())
            .iter()
            .all(|t| t["status"] == "terminal")
    );
}

/// Errors at their cause (issue #31, item 5): `demo` refuses a directory that holds something
/// other than a data dir and touches nothing in it; `check-config` names every section's type
/// error in one run; no colour codes reach a pipe; times read as RFC 3339.
#[test]
fn errors_at_their_cause() {
    let tmp = tempfile::tempdir().expect("tmp");
    let foreign = tmp.path().join("project");
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::write(foreign.join("notes.txt"), "mine").expect("file");
    let out = Command::new(bin())
        .args(["demo", "--turns", "5", "--data-dir"])
        .arg(&foreign)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not a Ballast data dir") && stderr.contains("notes.txt"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&foreign)
        .expect("read")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "demo wrote into a foreign directory: {left:?}"
    );

    let config = tmp.path().join("ballast.toml");
    std::fs::write(
        &config,
        "catalog = 7\n\n[worker]\nsnapshot_every_events = \"many\"\n\n[vault]\nmaster_key_file = 3\n",
    )
    .expect("config");
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    for line in [":1:", ":4:", ":7:"] {
        assert!(text.contains(line), "no problem at {line}: {text}");
    }

    // A warning logged to a pipe carries no escape codes.
    let data = tmp.path().join("data");
    let mut served = Served::start_with(
        &["--data-dir", data.to_str().expect("utf8")],
        Stdio::piped(),
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = served.child.kill();
    let mut stderr = String::new();
    if let Some(mut e) = served.child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("DEVELOPMENT master key"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );

    let demo = tmp.path().join("demo");
    ballast(&[
        "demo",
        "--turns",
        "20",
        "--data-dir",
        demo.to_str().expect("utf8"),
    ]);
    let turn = turns_json(&demo)[0]["turn_id"]
        .as_str()
        .expect("id")
        .to_string();
    let out = ballast(&["trace", &turn, "--data-dir", demo.to_str().expect("utf8")]);
    let head = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        head.contains("requested 20") && head.contains('T') && head.ends_with('Z'),
        "{head}"
    );
}

/// An MCP server that dies at start is shown with what it said on stderr, not only "connection
/// closed" (issue #31, item 5).
#[test]
fn an_mcp_server_that_fails_to_start_shows_its_stderr() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("ballast.toml");
    std::fs::write(
        &config,
        "[[mcp]]\nname = \"shop\"\ncommand = [\"python3\", \"-c\", \"import sys; sys.stderr.write('ModuleNotFoundError: No module named mcp\\\\n'); sys.exit(1)\"]\n\
         timeout_ms = 5000\n\n[planners.general]\nkind = \"scripted\"\n\n[planners.specialist]\nkind = \"scripted\"\n",
    )
    .expect("config");
    let out = Command::new(bin())
        .args(["tools", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("No module named mcp"),
        "the server's own words are missing: {stderr}"
    );
}
