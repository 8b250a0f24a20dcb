//! Retrieval over a team's own documents: `ballast index build|search` over `examples/docs`, and
//! turns whose `ContextRetrieved` comes from the local index or from a search service behind
//! the HTTP contract — with the stale-context guard working on the real documents' dates.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ballast::event::Payload;
use common::fake::{FakeServer, Reply, answer_completion};
use common::{Served, ballast, http};
use serde_json::{Value, json};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs")
}

#[test]
fn index_build_and_search_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let index = dir.path().join("index");
    let out = ballast(&[
        "index",
        "build",
        docs().to_str().expect("utf8"),
        "--out",
        index.to_str().expect("utf8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("indexed 5 documents"), "{text}");
    let out = ballast(&[
        "index",
        "search",
        index.to_str().expect("utf8"),
        "how long do refunds take",
        "--json",
    ]);
    let hits: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = hits.iter().filter_map(|h| h["id"].as_str()).collect();
    assert!(ids.contains(&"policies/refund-timing"), "{ids:?}");
    let timing = hits
        .iter()
        .find(|h| h["id"] == "policies/refund-timing")
        .expect("hit");
    assert_eq!(timing["version"], 2);
    assert_eq!(timing["facts"]["refund_days"], "5-7");
    assert_eq!(timing["updated_at_ms"], 1_790_845_200_000_i64);
    // A plain text file is a document too; the text form prints one line per hit.
    let out = ballast(&[
        "index",
        "search",
        index.to_str().expect("utf8"),
        "post office label",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("returns-faq"));
    // Not an index: an error, not an empty answer.
    let bad = std::process::Command::new(common::bin())
        .args(["index", "search", dir.path().to_str().expect("utf8"), "x"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
}

/// A deployment with one HTTP tool (never called), the model answering at once, and `retrieval`.
fn deployment(root: &Path, model: &FakeServer, retrieval: &str) -> PathBuf {
    let catalog = json!([{
        "name": "lookup_order", "description": "Look up an order.",
        "args_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "none",
        "idempotent": true, "timeout_ms": 1000,
        "http": {"method": "GET", "url": "http://127.0.0.1:9/orders/{order_id}"}
    }]);
    std::fs::write(root.join("catalog.json"), catalog.to_string()).expect("catalog");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"m\"\n\
             timeout_ms = 5000\ndefault_confidence = 0.9\n",
            model.url
        )
    };
    let file = root.join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "catalog = \"catalog.json\"\n\n[log]\nbackend = \"embedded\"\ndata_dir = \"data\"\n\
             partitions = 1\n\n{retrieval}\n\n{}\n{}",
            planner("general"),
            planner("specialist")
        ),
    )
    .expect("config");
    file
}

/// Submits one turn and waits for it to end; returns its events.
async fn one_turn(config: &Path, data: &Path) -> Vec<ballast::event::Event> {
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
    let bearer = format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim());
    let s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let body = json!({"user_id": "u-1", "text": "How long do refunds take?"}).to_string();
    let (status, text) = http(&s.addr, "POST", "/v1/turns", &headers, &body);
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = http(&s.addr, "GET", &format!("/v1/turns/{id}"), &headers, "");
        if status == 200
            && serde_json::from_str::<Value>(&text).expect("json")["status"] == "terminal"
        {
            break;
        }
        assert!(Instant::now() < deadline, "turn not done: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.stop().success());
    let turns = common::events_by_turn(data).await;
    turns.into_values().next().expect("one turn")
}

fn retrieved(events: &[ballast::event::Event]) -> Vec<String> {
    events
        .iter()
        .find_map(|e| match &e.payload {
            Payload::ContextRetrieved(c) => {
                Some(c.documents.iter().map(|d| d.id.clone()).collect())
            }
            _ => None,
        })
        .expect("ContextRetrieved")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_retrieves_from_the_local_index_and_drops_stale_pages() {
    let root = tempfile::tempdir().expect("tmp");
    let index = root.path().join("index");
    ballast(&[
        "index",
        "build",
        docs().to_str().expect("utf8"),
        "--out",
        index.to_str().expect("utf8"),
    ]);
    let model = FakeServer::start(vec![Reply::json(
        200,
        answer_completion("Refunds take 5 to 7 business days [doc:policies/refund-timing]."),
    )]);
    let config = deployment(
        root.path(),
        &model,
        "[retrieval]\nkind = \"index\"\nindex_dir = \"index\"\nk = 4",
    );
    let events = one_turn(&config, &root.path().join("data")).await;
    let ids = retrieved(&events);
    assert!(
        ids.contains(&"policies/refund-timing".to_string()),
        "{ids:?}"
    );
    // The 2019 page matched too, and the stale-context guard dropped it, saying so.
    let stale = events
        .iter()
        .find_map(|e| match &e.payload {
            Payload::GuardrailTripped(g) if g.rule == "context.stale" => Some(g.detail.clone()),
            _ => None,
        })
        .expect("context.stale tripped");
    assert!(stale.contains("refund-timing-2019"), "{stale}");
    assert!(!ids.contains(&"policies/refund-timing-2019".to_string()));
    // The model was shown the current page.
    let asked = model.requests();
    assert!(
        asked[0].body.contains("5 to 7 business days"),
        "{}",
        asked[0].body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_retrieves_from_a_search_service_over_the_http_contract() {
    let root = tempfile::tempdir().expect("tmp");
    let search = FakeServer::start(vec![Reply::json(
        200,
        json!({"documents": [
            {"id": "kb-7", "title": "Refund timing", "snippet": "Refunds take 3 days.",
             "score": 2.5, "version": 9, "updated_at": "2026-11-30T12:00:00Z",
             "facts": {"refund_days": "3"}},
            {"id": "kb-8", "title": "Refund timing (old)", "snippet": "Refunds take 3 days.",
             "score": 1.0, "version": 1, "updated_at": 1_500_000_000_000_i64}
        ]})
        .to_string(),
    )]);
    let model = FakeServer::start(vec![Reply::json(
        200,
        answer_completion("3 days [doc:kb-7]."),
    )]);
    let config = deployment(
        root.path(),
        &model,
        &format!(
            "[retrieval]\nkind = \"http\"\nurl = \"{}/search\"\nk = 3\n\
             headers = {{ Authorization = \"Bearer ${{SEARCH_TOKEN}}\" }}",
            search.url
        ),
    );
    // SAFETY: set before the server child is spawned, read only by it.
    unsafe { std::env::set_var("SEARCH_TOKEN", "s3cret") };
    let events = one_turn(&config, &root.path().join("data")).await;
    assert_eq!(retrieved(&events), vec!["kb-7".to_string()]);
    let asked = search.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/search");
    assert_eq!(asked[0].header("authorization"), Some("Bearer s3cret"));
    let sent: Value = serde_json::from_str(&asked[0].body).expect("json");
    assert_eq!(
        sent,
        json!({"query": "How long do refunds take?", "k": 3, "tenant": "acme"})
    );
}
