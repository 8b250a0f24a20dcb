//! A served demo shows what the README promises (issue #31, item 4): the approvals and
//! handoffs its workload raises wait minutes for a person (not the 2 s `ballast demo` gives
//! its built-in operator), and common customer questions are answered from the knowledge base
//! without tripping the demo's own forbidden-phrase rule; the turns it stages to go wrong are
//! labelled `deliberate_incident` and left out of the SLOs, which are then mostly met.

mod common;

use std::time::{Duration, Instant};

use common::{Served, ballast, http};
use serde_json::{Value, json};

#[test]
fn a_served_demo_has_work_for_a_person_and_answers_common_questions() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8").to_string();
    ballast(&[
        "demo",
        "--data-dir",
        &dir,
        "--workers",
        "0",
        "--turns",
        "200",
    ]);
    let out = ballast(&[
        "token",
        "--data-dir",
        &dir,
        "--name",
        "me",
        "--tenant",
        "acme",
        "--roles",
        "submitter,operator,auditor",
        "--grants",
        "role:customer,support:*",
        "--defaults",
        "role:customer,support:lookup_order,support:search_kb",
    ]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let auth = format!("Bearer {token}");
    let s = Served::start_with(&["--data-dir", &dir], std::process::Stdio::null(), &[]);
    let get = |path: &str| -> Value {
        let (status, body) = http(&s.addr, "GET", path, &[("Authorization", &auth)], "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    };

    // The seeded large refunds wait for a person, with minutes to answer.
    let deadline = Instant::now() + Duration::from_secs(120);
    let queue = loop {
        let q = get("/v1/queue");
        if q.as_array().is_some_and(|a| !a.is_empty()) {
            break q;
        }
        assert!(Instant::now() < deadline, "the queue stayed empty");
        std::thread::sleep(Duration::from_millis(200));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for entry in queue.as_array().expect("list") {
        let due = entry["deadline_ms"].as_i64().unwrap_or(i64::MAX);
        assert!(
            due - now > 5 * 60_000,
            "an operator gets minutes, not seconds: {entry}"
        );
    }

    // The turns the workload stages to go wrong are labelled as such once they end, and left
    // out of the SLOs: what remains is mostly met.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let turns = get("/v1/turns?limit=1000");
        let n = turns.as_array().map_or(0, |a| a.len());
        let labelled = turns
            .as_array()
            .expect("list")
            .iter()
            .filter(|t| {
                t["record"]["labels"]
                    .to_string()
                    .contains("deliberate_incident")
            })
            .count();
        let slo = get("/v1/slo");
        let task = slo["slis"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "task_success"))
            .cloned()
            .unwrap_or_default();
        // Eventually: the labeller labels each staged turn a moment after it ends.
        let value = task["value"].as_f64().unwrap_or(0.0);
        if labelled > 0 && task["total"].as_u64().unwrap_or(0) > 20 && value >= 0.9 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{labelled} of {n} turns labelled: {slo}; first: {}",
            turns[0]
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    for q in [
        "How do I reset my password?",
        "Can I get a refund?",
        "Do you ship internationally?",
        "When will my order arrive?",
        "Will my order arrive before Christmas?",
        "Is delivery free during the holidays?",
        "How long do refunds take?",
        "Do you deliver on weekends?",
    ] {
        let (status, body) = http(
            &s.addr,
            "POST",
            "/v1/turns?wait_ms=20000",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &json!({"user_id": "u-newcomer", "text": q}).to_string(),
        );
        assert_eq!(status, 200, "{q}: {body}");
        let turn: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(turn["outcome"], "succeeded", "{q}: {turn}");
        let id = turn["turn_id"].as_str().expect("id");
        let (_, trace) = http(
            &s.addr,
            "GET",
            &format!("/v1/turns/{id}/trace"),
            &[("Authorization", &auth)],
            "",
        );
        assert!(
            !trace.contains("lint."),
            "{q}: the reply lint tripped: {trace}"
        );
        assert!(
            turn["reply"].as_str().is_some_and(|r| !r.is_empty()),
            "{q}: {turn}"
        );
    }
    s.stop();
}
