//! The configuration file end to end: `ballast check-config` accepts the shipped example and
//! points at the line of each mistake; `ballast serve --config` plans with an OpenAI-compatible
//! server and calls an HTTP tool, and the tool's retried call carries the same idempotency key.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast::event::Payload;
use common::fake::{FakeServer, Reply, answer_completion, tool_call_completion};
use common::{Served, ballast, http};
use serde_json::{Value, json};

fn check_config(file: &Path, env: &[(&str, &str)], json: bool) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.arg("check-config").arg(file);
    if json {
        cmd.arg("--json");
    }
    cmd.env_remove("ORDERS_API_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("check-config runs")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_shipped_example_passes_once_its_token_is_set() {
    let file = repo("examples/ballast.toml");
    let out = check_config(&file, &[("ORDERS_API_TOKEN", "t")], false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ballast.toml: ok"), "{stdout}");
    assert!(stdout.contains("tools: 7 over HTTP"), "{stdout}");

    // Without it, each HTTP tool that needs it is an error at its catalog entry.
    let out = check_config(&file, &[], true);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 7, "{report}");
    for e in errors {
        assert!(
            e["file"].as_str().unwrap_or("").ends_with("catalog.json"),
            "{e}"
        );
        assert!(e["line"].as_u64().unwrap_or(0) > 1, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("ORDERS_API_TOKEN"),
            "{e}"
        );
    }
}

#[test]
fn each_mistake_is_reported_at_its_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, usize, &str)] = &[
        // (file, line of the mistake, words in the message)
        ("[log\nbackend = \"embedded\"\n", 1, "table header"),
        (
            "[log]\nbackend = \"embedded\"\npartitions = 0\n",
            3,
            "partitions",
        ),
        ("[log]\nbackend = \"kafka\"\n", 1, "bootstrap"),
        (
            "[planners.general]\nkind = \"openai\"\nbase_url = \"not a url\"\nmodel = \"m\"\n",
            3,
            "base_url",
        ),
        (
            "[control.routing]\ndefault_profile = \"general\"\n\n[[control.routing.rules]]\nname = \"r\"\nclass = \"billing\"\nprofile = \"nobody\"\n",
            7,
            "nobody",
        ),
        (
            "[control.guards]\nladder = [\"constrained_retry\", \"human_handoff\", \"human_handoff\"]\n",
            2,
            "human_handoff",
        ),
        ("[execution]\nretriever = \"google\"\n", 2, "google"),
        (
            "[worker]\nsnapshot_interval_ms = 5000\ncommit_interval_ms = 60000\n",
            3,
            "commit_interval_ms",
        ),
        (
            "[worker]\ncommit_interval_ms = \"fast\"\n",
            2,
            "expected u64",
        ),
        (
            "[worker]\nsnapshot_every_events = 5\n",
            2,
            "snapshot_every_events",
        ),
    ];
    for (i, (text, line, words)) in cases.iter().enumerate() {
        let file = root.path().join(format!("case{i}.toml"));
        std::fs::write(&file, text).expect("write");
        let out = check_config(&file, &[], false);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "case {i} passed:\n{stdout}");
        let at = format!("{}:{line}:", file.display());
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("error: ") && l.contains(&at) && l.contains(words)),
            "case {i}: no error at {at} mentioning {words:?}:\n{stdout}"
        );
    }
}

/// A configuration whose planners and HTTP tools are the two local servers.
fn write_config(root: &Path, model: &FakeServer, orders: &FakeServer) -> PathBuf {
    let catalog = std::fs::read_to_string(repo("examples/http/catalog.json"))
        .expect("catalog")
        .replace("http://127.0.0.1:8081", &orders.url);
    std::fs::write(root.join("catalog.json"), catalog).expect("write catalog");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"fake-model\"\n\
             api_key_env = \"BALLAST_TEST_MODEL_KEY\"\ntimeout_ms = 5000\nbackoff_ms = 20\n",
            model.url
        )
    };
    let text = format!(
        "catalog = \"catalog.json\"\npolicies = \"{}\"\n\n[log]\nbackend = \"embedded\"\n\
         data_dir = \"data\"\npartitions = 2\n\n{}\n{}",
        repo("examples/demo/policies").display(),
        planner("general"),
        planner("specialist"),
    );
    let file = root.join("ballast.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

fn token(dir: &Path) -> String {
    let out = ballast(&[
        "token",
        "--data-dir",
        dir.to_str().expect("utf8"),
        "--name",
        "backend",
        "--tenant",
        "acme",
        "--roles",
        "submitter,auditor",
        "--grants",
        "role:customer,support:*",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn serve(config: &Path) -> Served {
    // Served::start inherits the environment: the orders token and the model key go with it.
    // SAFETY: set before the child is spawned, read only by the child.
    unsafe {
        std::env::set_var("ORDERS_API_TOKEN", "orders-secret");
        std::env::set_var("BALLAST_TEST_MODEL_KEY", "sk-local");
    }
    Served::start(&["--config", config.to_str().expect("utf8")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_config_plans_with_the_model_and_retries_the_http_tool_with_one_key() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = FakeServer::start(vec![
        Reply::json(
            200,
            tool_call_completion("lookup_order", &json!({"order_id": "A1001"})),
        ),
        Reply::json(200, answer_completion("Order A1001 has shipped.")),
    ]);
    // The orders service is down once, then answers.
    let orders = FakeServer::start(vec![
        Reply::json(503, r#"{"error":"warming up"}"#),
        Reply::json(
            200,
            r#"{"order_id":"A1001","status":"shipped","amount_cents":4200}"#,
        ),
    ]);
    let config = write_config(root.path(), &model, &orders);
    let data = root.path().join("data");
    let bearer = format!("Bearer {}", token(&data));
    let s = serve(&config);

    let body = json!({
        "user_id": "u-7",
        "text": "Where is my order A1001?",
        "attributes": {"roles": "customer", "scopes": ballast::demo::workload::SCOPES},
    })
    .to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let (status, text) = http(&s.addr, "POST", "/v1/turns", &headers, &body);
    assert_eq!(status, 202, "{text}");
    let submitted: Value = serde_json::from_str(&text).expect("json");
    let id = submitted["turn_id"].as_str().expect("turn id").to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    let turn = loop {
        let (status, text) = http(&s.addr, "GET", &format!("/v1/turns/{id}"), &headers, "");
        // 404 until the projection has seen the request.
        assert!(status == 200 || status == 404, "{status}: {text}");
        if status == 200 {
            let turn: Value = serde_json::from_str(&text).expect("json");
            if turn["status"] == "terminal" {
                break turn;
            }
        }
        assert!(Instant::now() < deadline, "turn not done: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(s.stop().success());
    assert_eq!(turn["outcome"], "succeeded", "{turn}");

    // The model was asked twice, with the key and the catalog's tools: for the call, then —
    // with the order service's answer as a tool message — for the reply.
    let asked = model.requests();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].header("authorization"), Some("Bearer sk-local"));
    assert!(asked[0].body.contains("lookup_order"));
    let second: Value = serde_json::from_str(&asked[1].body).expect("json");
    let tool_message = second["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["role"] == "tool"))
        .expect("the result went back to the model");
    assert!(
        tool_message["content"]
            .as_str()
            .unwrap_or("")
            .contains("shipped")
    );
    assert_eq!(turn["reply"], "Order A1001 has shipped.", "{turn}");

    // The orders service saw the same call twice, with one idempotency key and the token.
    let calls = orders.requests();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.method, "GET");
        assert_eq!(c.path, "/orders/A1001");
        assert_eq!(c.header("authorization"), Some("Bearer orders-secret"));
    }
    let key = calls[0].header("idempotency-key").expect("key").to_string();
    assert_eq!(calls[1].header("idempotency-key"), Some(key.as_str()));

    // And the log says so: two starts with that key, one failure, one success; the plan names
    // the server's model version and token usage.
    let turns = common::events_by_turn(&data).await;
    assert_eq!(turns.len(), 1);
    let events = turns.values().next().expect("one turn");
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ToolCallStarted(s) => Some(s.idempotency_key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![key.as_str(), key.as_str()]);
    let plan = events
        .iter()
        .find_map(|e| match &e.payload {
            Payload::PlanProposed(p) => Some(p.clone()),
            _ => None,
        })
        .expect("a plan");
    assert_eq!(plan.model_version, "fake-model-2026-01");
    assert_eq!(plan.system_fingerprint.as_deref(), Some("fp_test"));
    assert!(
        plan.messages_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!((plan.input_tokens, plan.output_tokens), (123, 17));
}
