//! HTTP tools against a local server: the idempotency key travels as a header and is the same on
//! every attempt, arguments fill the URL template and the query or body, headers come from the
//! environment, and each failure is mapped to retryable, terminal or "may have acted".

mod common;

use std::time::Duration;

use ballast::event::ToolFailureKind;
use ballast::exec::catalog::ToolSpec;
use ballast::exec::http_tool::{HttpEndpoint, HttpTool, HttpToolError};
use ballast::exec::{Tool, ToolError};
use ballast::turn::ToolInvocation;
use common::fake::{FakeServer, Reply};
use serde_json::{Value, json};

fn spec(name: &str, method: &str, url: String, idempotent: bool) -> ToolSpec {
    let mut s = ballast::demo::tools::demo_catalog()
        .get(name)
        .cloned()
        .expect("demo tool");
    s.idempotent = idempotent;
    s.timeout_ms = 300;
    s.http = Some(HttpEndpoint {
        method: Some(method.into()),
        url,
        headers: [(
            "Authorization".to_string(),
            "Bearer ${ORDERS_TOKEN}".to_string(),
        )]
        .into(),
        idempotency_header: None,
        max_response_bytes: None,
    });
    s
}

fn env(var: &str) -> Option<String> {
    (var == "ORDERS_TOKEN").then(|| "t-42".to_string())
}

fn tool(spec: ToolSpec) -> HttpTool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(spec.timeout_ms))
        .build()
        .expect("client");
    HttpTool::new(spec, client, &env).expect("tool")
}

fn call(tool: &str, args: Value, attempt: i32) -> ToolInvocation {
    ToolInvocation {
        call_id: "c-1".into(),
        tool: tool.into(),
        args_json: args.to_string(),
        idempotency_key: "turn-1/step-0".into(),
        attempt,
        tenant: "acme".into(),
        user_id: "u-1".into(),
    }
}

async fn run(t: &HttpTool, inv: &ToolInvocation) -> Result<Value, ToolError> {
    t.call(inv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_fills_the_path_and_query_and_sends_key_and_token() {
    let server = FakeServer::start(vec![Reply::json(
        200,
        r#"{"order_id":"A 1/2","status":"shipped","amount_cents":4200}"#,
    )]);
    let t = tool(spec(
        "lookup_order",
        "GET",
        format!("{}/orders/{{order_id}}", server.url),
        true,
    ));
    let inv = call(
        "lookup_order",
        json!({"order_id": "A 1/2", "verbose": true}),
        0,
    );
    let out = run(&t, &inv).await.expect("result");
    assert_eq!(out["status"], "shipped");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    // The value is percent-encoded into its segment; the rest goes in the query string.
    assert!(
        seen[0].path.starts_with("/orders/A%201%2F2"),
        "{}",
        seen[0].path
    );
    assert!(seen[0].path.contains("verbose=true"), "{}", seen[0].path);
    assert_eq!(seen[0].header("authorization"), Some("Bearer t-42"));
    assert_eq!(seen[0].header("idempotency-key"), Some("turn-1/step-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_carries_the_same_idempotency_key() {
    let server = FakeServer::start(vec![
        Reply::json(503, r#"{"error":"down"}"#),
        Reply::json(429, r#"{"error":"slow down"}"#),
        Reply::json(200, r#"{"refund_id":"r-1","status":"issued"}"#),
    ]);
    let t = tool(spec(
        "issue_refund",
        "POST",
        format!("{}/refunds", server.url),
        false,
    ));
    let args = json!({"order_id": "A1001", "amount_cents": 1200});
    for attempt in 0..2 {
        let e = run(&t, &call("issue_refund", args.clone(), attempt))
            .await
            .expect_err("server refused");
        assert!(e.retryable, "{e:?}");
    }
    run(&t, &call("issue_refund", args.clone(), 2))
        .await
        .expect("third attempt succeeds");
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("idempotency-key"), Some("turn-1/step-0"));
        let body: Value = serde_json::from_str(&r.body).expect("json body");
        assert_eq!(body, args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_map_to_retryable_terminal_or_may_have_acted() {
    let cases: Vec<(Reply, bool, bool, ToolFailureKind)> = vec![
        // (reply, idempotent tool, expect retryable, expect kind)
        (
            Reply::json(400, r#"{"error":"bad"}"#),
            false,
            false,
            ToolFailureKind::Error,
        ),
        (Reply::json(404, "{}"), true, false, ToolFailureKind::Error),
        (Reply::json(409, "{}"), false, true, ToolFailureKind::Error),
        // A 500 on a side-effecting call may have acted: not retried blindly.
        (
            Reply::json(500, "{}"),
            false,
            false,
            ToolFailureKind::OutcomeUnknown,
        ),
        (Reply::json(500, "{}"), true, true, ToolFailureKind::Error),
        // 2xx with a body that is not a JSON object.
        (
            Reply::raw(200, b"<html>ok</html>"),
            true,
            true,
            ToolFailureKind::Error,
        ),
        (
            Reply::json(200, "{}").after(Duration::from_millis(900)),
            false,
            false,
            ToolFailureKind::OutcomeUnknown,
        ),
        (
            Reply::json(200, "{}").after(Duration::from_millis(900)),
            true,
            true,
            ToolFailureKind::Timeout,
        ),
    ];
    for (i, (reply, idempotent, retryable, kind)) in cases.into_iter().enumerate() {
        let server = FakeServer::start(vec![reply]);
        let t = tool(spec(
            "issue_refund",
            "POST",
            format!("{}/refunds", server.url),
            idempotent,
        ));
        let e = run(
            &t,
            &call(
                "issue_refund",
                json!({"order_id": "A1", "amount_cents": 1}),
                0,
            ),
        )
        .await
        .expect_err("a failure");
        assert_eq!((e.retryable, e.kind), (retryable, kind), "case {i}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_retryable_whatever_the_tool() {
    let url = {
        let server = FakeServer::start(vec![Reply::json(200, "{}")]);
        server.url.clone()
    };
    let t = tool(spec(
        "issue_refund",
        "POST",
        format!("{url}/refunds"),
        false,
    ));
    let e = run(&t, &call("issue_refund", json!({"order_id": "A1"}), 0))
        .await
        .expect_err("closed port");
    assert!(e.retryable, "{e:?}");
}

#[test]
fn a_bad_entry_is_refused_when_the_tool_is_built() {
    let client = reqwest::Client::new();
    let mut s = spec(
        "lookup_order",
        "GET",
        "http://127.0.0.1:1/o/{nope}".into(),
        true,
    );
    assert!(matches!(
        HttpTool::new(s.clone(), client.clone(), &env),
        Err(HttpToolError::Url { .. })
    ));
    s.http = Some(HttpEndpoint {
        url: "http://127.0.0.1:1/o".into(),
        headers: [("X-Key".to_string(), "${NOT_SET_ANYWHERE}".to_string())].into(),
        ..HttpEndpoint::default()
    });
    assert!(matches!(
        HttpTool::new(s, client, &env),
        Err(HttpToolError::MissingEnv { .. })
    ));
}
