//! Turns exported as OpenTelemetry spans to a real OTLP/HTTP receiver on 127.0.0.1 (built here on
//! the `opentelemetry-proto` types): a multi-step turn arrives as one trace — the turn as root,
//! `chat` and `execute_tool` children with GenAI attributes, decisions as span events — and after
//! a `kill -9` of the exporting process mid-run every turn's spans arrive, with the same ids
//! when one is sent again.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::fake::{FakeServer, Reply, answer_completion, tool_call_completion};
use common::otlp::{Received, Receiver, receiver, trace_id_of};
use common::{Served, ballast, http};
use serde_json::{Value, json};

fn deployment(root: &Path, model: &FakeServer, orders: &FakeServer, otlp: &str) -> PathBuf {
    let catalog = json!([{
        "name": "lookup_order", "description": "Look up an order.",
        "args_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"]},
        "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "none",
        "idempotent": true, "timeout_ms": 3000,
        "http": {"method": "GET", "url": format!("{}/orders/{{order_id}}", orders.url)}
    }]);
    std::fs::write(root.join("catalog.json"), catalog.to_string()).expect("catalog");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"fake-model\"\n\
             timeout_ms = 5000\ndefault_confidence = 0.9\n",
            model.url
        )
    };
    let file = root.join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "catalog = \"catalog.json\"\n\n[log]\nbackend = \"embedded\"\ndata_dir = \"data\"\n\
             partitions = 2\n\n[telemetry]\notlp_endpoint = \"{otlp}\"\nservice_name = \"support-agent\"\n\n\
             {}\n{}",
            planner("general"),
            planner("specialist")
        ),
    )
    .expect("config");
    file
}

fn token(data: &Path) -> String {
    let out = ballast(&[
        "token",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--name",
        "b",
        "--tenant",
        "acme",
        "--roles",
        "submitter",
    ]);
    format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
}

fn submit(addr: &str, bearer: &str, user: &str, text: &str) -> String {
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer),
    ];
    let body = json!({"user_id": user, "text": text}).to_string();
    let (status, answer) = http(addr, "POST", "/v1/turns", &headers, &body);
    assert_eq!(status, 202, "{answer}");
    serde_json::from_str::<Value>(&answer).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn wait_for(got: &Mutex<Receiver>, what: &str, done: impl Fn(&Receiver) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&got.lock().expect("lock")) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_multi_step_turn_arrives_as_one_trace_with_genai_spans() {
    let root = tempfile::tempdir().expect("tmp");
    let (otlp, got) = receiver(Duration::ZERO);
    let model = FakeServer::start(vec![
        Reply::json(
            200,
            tool_call_completion("lookup_order", &json!({"order_id": "A1001"})),
        ),
        Reply::json(200, answer_completion("Order A1001 has shipped.")),
    ]);
    let orders = FakeServer::start(vec![Reply::json(
        200,
        r#"{"order_id":"A1001","status":"shipped"}"#,
    )]);
    let config = deployment(root.path(), &model, &orders, &otlp.url);
    let data = root.path().join("data");
    let bearer = token(&data);
    let s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let turn = submit(&s.addr, &bearer, "u-1", "Where is my order A1001?");
    let trace = trace_id_of(&turn);
    wait_for(&got, "the turn's spans", |r| {
        r.spans.iter().filter(|s| s.trace_id == trace).count() >= 4
    });
    // Nothing more comes for it.
    std::thread::sleep(Duration::from_millis(600));
    assert!(s.stop().success());

    let g = got.lock().expect("lock");
    let spans: Vec<&Received> = g.spans.iter().filter(|s| s.trace_id == trace).collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 4, "{names:?}");
    let root_span = spans
        .iter()
        .find(|s| s.parent.is_empty())
        .expect("a root span");
    assert_eq!(root_span.name, "invoke_agent ballast");
    assert!(
        root_span.service.contains("support-agent"),
        "{}",
        root_span.service
    );
    assert!(root_span.attributes["ballast.outcome"].contains("succeeded"));
    // Personal values are masked in spans too.
    assert!(
        root_span
            .attributes
            .values()
            .all(|v| !v.contains("u-1\"") || v.contains("REDACTED")),
        "{:?}",
        root_span.attributes
    );
    for child in spans.iter().filter(|s| !s.parent.is_empty()) {
        assert_eq!(
            child.parent, root_span.span_id,
            "{} is the turn's child",
            child.name
        );
    }
    let chats: Vec<&&Received> = spans
        .iter()
        .filter(|s| s.name == "chat fake-model")
        .collect();
    assert_eq!(chats.len(), 2, "{names:?}");
    assert!(chats[0].attributes["gen_ai.operation.name"].contains("chat"));
    assert!(
        chats[0]
            .attributes
            .contains_key("gen_ai.usage.input_tokens")
    );
    let tool = spans
        .iter()
        .find(|s| s.name == "execute_tool lookup_order")
        .expect("the tool span");
    assert!(tool.attributes["gen_ai.tool.name"].contains("lookup_order"));
    // The policy decisions are span events.
    let decisions = spans
        .iter()
        .flat_map(|s| s.events.iter())
        .filter(|e| e.as_str() == "PolicyEvaluated")
        .count();
    assert!(decisions >= 2, "{decisions}");
    let ids: BTreeSet<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
    assert_eq!(ids.len(), spans.len(), "each span once");
}

#[test]
fn after_a_kill_9_mid_export_every_turns_spans_arrive_with_their_ids() {
    let root = tempfile::tempdir().expect("tmp");
    // Each export is held 300 ms: the kill lands while one is in flight.
    let (otlp, got) = receiver(Duration::from_millis(300));
    let model = FakeServer::start(vec![Reply::json(200, answer_completion("Hello."))]);
    let orders = FakeServer::start(vec![Reply::json(200, "{}")]);
    let config = deployment(root.path(), &model, &orders, &otlp.url);
    let data = root.path().join("data");
    let bearer = token(&data);
    let mut s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let mut turns = Vec::new();
    for i in 0..12 {
        turns.push(submit(&s.addr, &bearer, &format!("u-{i}"), "Hi there"));
    }
    wait_for(&got, "a first export", |r| r.requests >= 1);
    let killed = std::process::Command::new("kill")
        .args(["-9", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = s.child.wait();
    std::mem::forget(s);
    let s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let traces: BTreeSet<Vec<u8>> = turns.iter().map(|t| trace_id_of(t)).collect();
    wait_for(&got, "every turn's spans", |r| {
        let seen: BTreeSet<&Vec<u8>> = r
            .spans
            .iter()
            .filter(|s| s.parent.is_empty())
            .map(|s| &s.trace_id)
            .collect();
        traces.iter().all(|t| seen.contains(t))
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(s.stop().success());

    let g = got.lock().expect("lock");
    for t in &traces {
        let spans: Vec<&Received> = g.spans.iter().filter(|s| &s.trace_id == t).collect();
        let distinct: BTreeSet<(&Vec<u8>, &str)> = spans
            .iter()
            .map(|s| (&s.span_id, s.name.as_str()))
            .collect();
        // A root and one chat span; a turn sent again (its export was in flight at the kill)
        // comes with the same span ids, never as a second copy with new ones.
        assert_eq!(
            distinct.len(),
            2,
            "{:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    let resent = g.spans.len().saturating_sub(2 * traces.len());
    println!(
        "{} turns, {} spans received, {resent} re-sent after the kill, {} export requests",
        traces.len(),
        g.spans.len(),
        g.requests
    );
}
