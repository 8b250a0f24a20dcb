//! The OpenAI-compatible planner against a local server that speaks the same API: a recorded
//! tool-calling answer becomes the plan with its model, version, tokens and confidence; 429s and
//! 5xx are retried a bounded number of times; 4xx other than 408/409/429 is terminal; a slow
//! server times out; and every body of the malformed corpus is a failure, never a panic.

mod common;

use std::time::Duration;

use ballast::exec::openai::{OpenAiConfig, OpenAiPlanner};
use ballast::exec::{PlanRequest, Planner};
use ballast::ids::TurnId;
use common::fake::{FakeServer, Reply, tool_call_completion};
use serde_json::{Value, json};

fn config(server: &FakeServer) -> OpenAiConfig {
    OpenAiConfig {
        base_url: format!("{}/v1", server.url),
        model: "fake-model".into(),
        api_key_env: Some("BALLAST_TEST_MODEL_KEY".into()),
        timeout_ms: 2_000,
        max_retries: 2,
        backoff_ms: 10,
        max_backoff_ms: 50,
        ..OpenAiConfig::default()
    }
}

fn planner(cfg: OpenAiConfig) -> OpenAiPlanner {
    OpenAiPlanner::new(cfg, ballast::demo::tools::demo_catalog()).expect("planner")
}

fn request(constrained: bool) -> PlanRequest {
    PlanRequest {
        turn_id: TurnId::new_v7(),
        profile: "general".into(),
        constrained,
        attempt: 0,
        tenant: "acme".into(),
        user_id: "u-1".into(),
        step: 0,
        conversation: ballast::exec::Conversation {
            request: "Where is my order A1001?".into(),
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_answer_becomes_the_plan_with_what_an_audit_needs() {
    // Only this test reads the variable; the key must reach the server as a bearer token.
    unsafe { std::env::set_var("BALLAST_TEST_MODEL_KEY", "sk-test-123") };
    let server = FakeServer::start(vec![Reply::json(
        200,
        tool_call_completion("lookup_order", &json!({"order_id": "A1001"})),
    )]);
    let p = planner(config(&server));
    let planned = p.plan(&request(false)).await.expect("plan");
    assert_eq!(planned.model, "fake-model");
    assert_eq!(planned.model_version, "fake-model-2026-01");
    assert_eq!(planned.system_fingerprint.as_deref(), Some("fp_test"));
    assert_eq!(planned.finish_reason.as_deref(), Some("tool_calls"));
    assert!(
        planned
            .messages_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(planned.prompt_template_hash.starts_with("sha256:"));
    assert_eq!(planned.steps.len(), 1);
    assert_eq!(planned.steps[0].tool, "lookup_order");
    assert_eq!(planned.steps[0].args_json, r#"{"order_id":"A1001"}"#);
    assert_eq!((planned.input_tokens, planned.output_tokens), (123, 17));
    assert!((planned.confidence - (-0.02f64).exp()).abs() < 1e-9);

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-123"));
    let body: Value = serde_json::from_str(&seen[0].body).expect("json body");
    assert_eq!(body["model"], "fake-model");
    let catalog = ballast::demo::tools::demo_catalog();
    let tools = body["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), catalog.len());
    for t in tools {
        let name = t["function"]["name"].as_str().expect("name");
        let spec = catalog.get(name).expect("a catalog tool");
        assert_eq!(t["function"]["parameters"], spec.args_schema, "{name}");
    }
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .is_some_and(|c| c.contains("A1001"))
    );

    // A constrained retry offers the deterministic tools only.
    let again = p.plan(&request(true)).await.expect("plan");
    assert_eq!(again.steps.len(), 1);
    let body: Value = serde_json::from_str(&server.requests()[1].body).expect("json body");
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(!offered.contains(&"issue_refund"), "{offered:?}");
    assert!(
        offered
            .iter()
            .all(|n| catalog.get(n).is_some_and(|s| s.deterministic))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried_then_reported_retryable() {
    let ok = tool_call_completion("lookup_order", &json!({"order_id": "A1001"}));
    let server = FakeServer::start(vec![
        Reply::json(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "0"),
        Reply::json(503, "overloaded"),
        Reply::json(200, ok),
    ]);
    let planned = planner(config(&server))
        .plan(&request(false))
        .await
        .expect("third answer");
    assert_eq!(planned.steps.len(), 1);
    assert_eq!(server.requests().len(), 3);

    let failing = FakeServer::start(vec![Reply::json(500, "boom")]);
    let err = planner(config(&failing))
        .plan(&request(false))
        .await
        .expect_err("only 500s");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("HTTP 500"), "{}", err.message);
    // The first attempt and max_retries = 2 more, then the turn's own retry budget decides.
    assert_eq!(failing.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_terminal_and_not_retried() {
    let server = FakeServer::start(vec![Reply::json(
        400,
        r#"{"error":{"message":"unknown parameter logprobs"}}"#,
    )]);
    let err = planner(config(&server))
        .plan(&request(false))
        .await
        .expect_err("400");
    assert!(!err.retryable);
    assert!(err.message.contains("logprobs"), "{}", err.message);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_in_time_times_out() {
    let server = FakeServer::start(vec![Reply::json(200, "{}").after(Duration::from_secs(3))]);
    let mut cfg = config(&server);
    cfg.timeout_ms = 200;
    cfg.max_retries = 1;
    let err = planner(cfg)
        .plan(&request(false))
        .await
        .expect_err("timeout");
    assert!(err.retryable);
    assert!(
        err.message.contains("no answer within 200 ms"),
        "{}",
        err.message
    );
    assert_eq!(server.requests().len(), 2);

    // Nobody listening: a transport error, retryable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = config(&server);
    cfg.base_url = format!("http://127.0.0.1:{closed}/v1");
    cfg.max_retries = 0;
    let err = planner(cfg)
        .plan(&request(false))
        .await
        .expect_err("closed");
    assert!(
        err.retryable && err.message.contains("cannot reach"),
        "{err:?}"
    );
}

/// Bodies a misbehaving or misconfigured server has been seen to send, with status 200.
fn malformed_corpus() -> Vec<(&'static str, Vec<u8>)> {
    let long_name = "x".repeat(500);
    let many_calls: Vec<Value> = (0..100)
        .map(|i| json!({"function": {"name": format!("t{i}"), "arguments": "{}"}}))
        .collect();
    vec![
        ("empty", b"".to_vec()),
        ("html", b"<html><body>502 Bad Gateway</body></html>".to_vec()),
        ("truncated", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"lookup_order","argu"#.to_vec()),
        ("not utf-8", vec![0xff, 0xfe, 0x7b, 0x00, 0x80]),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("number", b"42".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("error object", br#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#.to_vec()),
        ("choices null", br#"{"choices":null}"#.to_vec()),
        ("choices empty", br#"{"choices":[]}"#.to_vec()),
        ("choices object", br#"{"choices":{"0":{}}}"#.to_vec()),
        ("choice not object", br#"{"choices":["hello"]}"#.to_vec()),
        ("message missing", br#"{"choices":[{"finish_reason":"stop"}]}"#.to_vec()),
        ("message null", br#"{"choices":[{"message":null}]}"#.to_vec()),
        ("message string", br#"{"choices":[{"message":"call lookup_order"}]}"#.to_vec()),
        ("nothing in message", br#"{"choices":[{"message":{"role":"assistant"}}]}"#.to_vec()),
        ("tool_calls object", br#"{"choices":[{"message":{"tool_calls":{"function":{}}}}]}"#.to_vec()),
        ("function missing", br#"{"choices":[{"message":{"tool_calls":[{"id":"a","type":"function"}]}}]}"#.to_vec()),
        ("name missing", br#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}"#.to_vec()),
        ("name empty", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"","arguments":"{}"}}]}}]}"#.to_vec()),
        ("name number", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":7,"arguments":"{}"}}]}}]}"#.to_vec()),
        ("name too long", json!({"choices":[{"message":{"tool_calls":[{"function":{"name":long_name,"arguments":"{}"}}]}}]}).to_string().into_bytes()),
        ("arguments not json", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"lookup_order","arguments":"{order_id: A1001"}}]}}]}"#.to_vec()),
        ("arguments array", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"lookup_order","arguments":"[1,2]"}}]}}]}"#.to_vec()),
        ("arguments number", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"lookup_order","arguments":12}}]}}]}"#.to_vec()),
        ("arguments quoted string", br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"lookup_order","arguments":"\"A1001\""}}]}}]}"#.to_vec()),
        ("cut off at max_tokens", br#"{"choices":[{"finish_reason":"length","message":{"content":"I will look up"}}]}"#.to_vec()),
        ("a hundred tool calls", json!({"choices":[{"message":{"tool_calls":many_calls}}]}).to_string().into_bytes()),
        ("deep nesting", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_answer_in_the_corpus_is_a_failure_not_a_panic() {
    let corpus = malformed_corpus();
    let replies: Vec<Reply> = corpus.iter().map(|(_, b)| Reply::raw(200, b)).collect();
    let server = FakeServer::start(replies);
    let mut cfg = config(&server);
    cfg.max_retries = 0;
    let p = planner(cfg);
    for (name, _) in &corpus {
        let result = p.plan(&request(false)).await;
        let err = result.expect_err(name);
        assert!(
            err.retryable,
            "{name}: a second answer may be fine: {err:?}"
        );
        assert!(!err.message.is_empty(), "{name}");
    }
    assert_eq!(server.requests().len(), corpus.len());

    // Odd but usable: tokens missing or negative, logprobs of the wrong type, extra fields.
    let odd = br#"{"choices":[{"message":{"content":"Your order ships today.","extra":1},
        "logprobs":{"content":"none"}}],"usage":{"prompt_tokens":-5}}"#;
    let server = FakeServer::start(vec![Reply::raw(200, odd)]);
    let planned = planner(config(&server))
        .plan(&request(false))
        .await
        .expect("a plain answer");
    assert!(planned.steps.is_empty());
    assert!(
        planned.confidence.is_nan(),
        "no logprobs and no default: dropped signal"
    );
    assert!(
        planned.input_tokens > 0,
        "estimated when the server gives none"
    );
}
