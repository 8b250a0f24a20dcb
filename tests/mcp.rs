//! MCP tool servers against the example server of `examples/mcp/` (the official Python SDK),
//! over stdio and streamable HTTP: the catalog `ballast tools` resolves, calls with their
//! idempotency key in `_meta`, error mapping, a changed tool list, a server that is down or
//! dies, and a whole turn through `ballast serve --config`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::event::{Payload, ToolFailureKind};
use ballast::exec::Tool;
use ballast::exec::catalog::ToolSpec;
use ballast::exec::mcp::{McpServer, McpServerConfig, McpTool, mapping};
use ballast::exec::types::ToolInvocation;
use common::fake::{FakeServer, Reply, answer_completion, tool_call_completion};
use common::{Served, ballast, http};
use serde_json::{Value, json};

/// `ballast ARGS`, whatever its exit status.
fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::bin())
        .args(args)
        .output()
        .expect("ballast runs")
}

fn python() -> String {
    std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mcp/server.py")
}

fn stdio_command() -> Vec<String> {
    vec![python(), example().display().to_string()]
}

fn env(v: &str) -> Option<String> {
    std::env::var(v).ok()
}

/// The example server over streamable HTTP on a free port, killed on drop.
struct HttpShop {
    child: std::process::Child,
    url: String,
}

impl HttpShop {
    fn start(log: &Path) -> HttpShop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new(python())
            .arg(example())
            .args(["--http", "--port", &port.to_string()])
            .env("SHOP_CALL_LOG", log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the example server (scripts/test.sh installs its SDK)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the example server did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        HttpShop {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpShop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn calls_logged(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn invocation(tool: &str, args: Value, key: &str) -> ToolInvocation {
    ToolInvocation {
        call_id: "c-1".into(),
        tool: tool.into(),
        args_json: args.to_string(),
        idempotency_key: key.into(),
        attempt: 1,
        tenant: "acme".into(),
        user_id: "u-1".into(),
    }
}

/// Each listed tool of `server` as the executor would call it.
async fn tools_of(server: &Arc<McpServer>) -> Vec<McpTool> {
    let (listed, live) = server.tools().await.expect("tools");
    assert!(live);
    listed
        .iter()
        .map(|t| {
            let spec = mapping::spec_for(server.config(), t).expect("spec");
            McpTool::new(spec, t.name.to_string(), Arc::clone(server))
        })
        .collect()
}

fn find<'a>(tools: &'a [McpTool], name: &str) -> &'a McpTool {
    tools
        .iter()
        .find(|t| t.spec().name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_calls_carry_the_key_map_errors_and_follow_a_changed_list() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("calls.jsonl");
    let mut config = McpServerConfig::stdio("shop", stdio_command());
    config
        .env
        .insert("SHOP_CALL_LOG".into(), log.display().to_string());
    let server = McpServer::new(config, &env, Some(dir.path().join("lists"))).expect("server");
    let tools = tools_of(&server).await;
    assert_eq!(tools.len(), 6, "the example's six tools");

    // A refund retried with the same key refunds once; the key and attempt reach the server.
    let refund = find(&tools, "shop_issue_refund");
    let args = json!({"order_id": "A1001", "amount_cents": 500});
    let first = refund
        .call(&invocation("shop_issue_refund", args.clone(), "key-1"))
        .await
        .expect("refund");
    let again = refund
        .call(&invocation("shop_issue_refund", args, "key-1"))
        .await
        .expect("refund");
    assert_eq!(first, again);
    assert_eq!(first["refund_id"], "R-1");
    let logged = calls_logged(&log);
    assert_eq!(logged.len(), 2);
    assert!(
        logged
            .iter()
            .all(|c| c["idempotency_key"] == "key-1" && c["attempt"] == 1)
    );

    // The tool refused (an error result): terminal. Arguments the schema refuses: terminal.
    let lookup = find(&tools, "shop_lookup_order");
    let e = lookup
        .call(&invocation(
            "shop_lookup_order",
            json!({"order_id": "Z9"}),
            "k2",
        ))
        .await
        .expect_err("no such order");
    assert!(!e.retryable && e.message.contains("Z9"), "{e:?}");
    let e = lookup
        .call(&invocation("shop_lookup_order", json!({}), "k3"))
        .await
        .expect_err("missing argument");
    assert!(!e.retryable, "{e:?}");

    // No answer in time: a read-only tool is retried, with the timeout recorded as such.
    let stock = find(&tools, "shop_stock_level");
    let mut slow = ToolSpec {
        timeout_ms: 300,
        ..stock.spec().clone()
    };
    let slow_tool = McpTool::new(slow.clone(), "stock_level".into(), Arc::clone(&server));
    let e = slow_tool
        .call(&invocation(
            "shop_stock_level",
            json!({"sku": "SKU-1", "delay_ms": 3000}),
            "k4",
        ))
        .await
        .expect_err("timeout");
    assert!(e.retryable && e.kind == ToolFailureKind::Timeout, "{e:?}");
    // The same for a tool that acts: the outcome is unknown, never re-run blindly.
    slow.idempotent = false;
    let acting = McpTool::new(slow, "stock_level".into(), Arc::clone(&server));
    let e = acting
        .call(&invocation(
            "shop_stock_level",
            json!({"sku": "SKU-1", "delay_ms": 3000}),
            "k5",
        ))
        .await
        .expect_err("timeout");
    assert_eq!(e.kind, ToolFailureKind::OutcomeUnknown);

    // The server adds a tool and says so: the next listing has it.
    find(&tools, "shop_enable_gift_cards")
        .call(&invocation("shop_enable_gift_cards", json!({}), "k6"))
        .await
        .expect("enable");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (listed, _) = server.tools().await.expect("tools");
        if listed.iter().any(|t| t.name == "gift_card_balance") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the changed list was not fetched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server goes away: the next call starts it again.
    server.shutdown().await;
    let ok = lookup
        .call(&invocation(
            "shop_lookup_order",
            json!({"order_id": "A1002"}),
            "k7",
        ))
        .await
        .expect("after a restart");
    assert_eq!(ok["status"], "delivered");
    server.shutdown().await;

    // The tool list was kept: a server that cannot start still has its tools, and its calls
    // fail as not sent (retryable: the breaker counts them), without touching the other.
    let kept = dir.path().join("lists");
    std::fs::copy(kept.join("shop.json"), kept.join("spare.json")).expect("copy list");
    let broken = McpServerConfig::stdio("spare", vec!["/nonexistent/mcp-server".into()]);
    let spare = McpServer::new(broken, &env, Some(kept)).expect("server");
    let (listed, live) = spare.tools().await.expect("the kept list");
    assert!(!live && !listed.is_empty());
    let spec = mapping::spec_for(spare.config(), &listed[0]).expect("spec");
    let remote = listed[0].name.to_string();
    let down = McpTool::new(spec, remote, Arc::clone(&spare));
    for _ in 0..2 {
        let e = down
            .call(&invocation("spare_x", json!({}), "k8"))
            .await
            .expect_err("down");
        assert!(e.retryable && e.message.contains("spare"), "{e:?}");
    }
    let still = lookup
        .call(&invocation(
            "shop_lookup_order",
            json!({"order_id": "A1003"}),
            "k9",
        ))
        .await
        .expect("the other server works");
    assert_eq!(still["status"], "processing");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_lists_and_calls() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("calls.jsonl");
    let shop = HttpShop::start(&log);
    let server = McpServer::new(McpServerConfig::http("web", &shop.url), &env, None).expect("srv");
    let tools = tools_of(&server).await;
    assert_eq!(tools.len(), 6);
    let answer = find(&tools, "web_lookup_order")
        .call(&invocation(
            "web_lookup_order",
            json!({"order_id": "A1001"}),
            "http-key",
        ))
        .await
        .expect("call");
    assert_eq!(answer["status"], "shipped");
    let reviews = find(&tools, "web_search_reviews")
        .call(&invocation(
            "web_search_reviews",
            json!({"product": "kettle"}),
            "http-key-2",
        ))
        .await
        .expect("call");
    assert!(reviews.to_string().contains("evil.example"));
    assert_eq!(calls_logged(&log)[0]["idempotency_key"], "http-key");
    server.shutdown().await;

    // Nothing listens: unavailable, retryable.
    drop(shop);
    let gone = McpServer::new(
        McpServerConfig::http("web", "http://127.0.0.1:9/mcp"),
        &env,
        None,
    )
    .expect("srv");
    let e = gone.tools().await.expect_err("down");
    assert!(e.retryable(), "{e}");
}

/// `head`: top-level keys (before any table); `extra`: more tables.
fn write_config(root: &Path, head: &str, server: &str, extra: &str) -> PathBuf {
    let file = root.join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "{head}\n[log]\nbackend = \"embedded\"\ndata_dir = \"data\"\npartitions = 2\n\n\
             [[mcp]]\nname = \"shop\"\n{server}\n\n\
             [tools.shop_send_email]\nsinks = [\"to\"]\nscopes = [\"mail:send\"]\n\n\
             [tools.shop_issue_refund]\ncost_micros = 100\nimpact = \"low\"\n\n{extra}"
        ),
    )
    .expect("config");
    file
}

fn tools_json(config: &Path) -> Value {
    let out = ballast(&[
        "tools",
        "--config",
        config.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn ballast_tools_prints_the_resolved_catalog() {
    let root = tempfile::tempdir().expect("tmp");
    let command = format!("command = {}", json!(stdio_command()));
    let config = write_config(root.path(), "", &command, "");
    let printed = tools_json(&config);
    let tools = printed["tools"].as_array().expect("tools");
    let by_name = |n: &str| {
        tools
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no {n}: {printed}"))
    };
    assert_eq!(tools.len(), 6);
    let lookup = by_name("shop_lookup_order");
    assert_eq!(
        (
            &lookup["source"],
            &lookup["impact"],
            &lookup["trust"],
            &lookup["idempotent"]
        ),
        (
            &json!("mcp:shop"),
            &json!("none"),
            &json!("trusted"),
            &json!(true)
        )
    );
    assert_eq!(by_name("shop_search_reviews")["trust"], "untrusted");
    let mail = by_name("shop_send_email");
    assert_eq!(mail["sinks"], json!(["to"]));
    assert_eq!(mail["scopes"], json!(["mail:send"]));
    assert_eq!(mail["impact"], "low");
    let refund = by_name("shop_issue_refund");
    assert_eq!(
        (&refund["impact"], &refund["cost_micros"]),
        (&json!("low"), &json!(100))
    );

    // The same server over streamable HTTP gives the same catalog.
    let shop = HttpShop::start(&root.path().join("calls.jsonl"));
    let over_http = write_config(root.path(), "", &format!("url = \"{}\"", shop.url), "");
    let names = |v: &Value| -> Vec<String> {
        v["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&tools_json(&over_http)), names(&printed));
    let text = ballast(&["tools", "--config", over_http.to_str().expect("utf8")]);
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("shop_send_email"),
        "{table}"
    );

    // An override of a tool no server offers is an error that names it.
    let wrong = write_config(
        root.path(),
        "",
        &command,
        "[tools.shop_nope]\nimpact = \"high\"\n",
    );
    let out = run(&["tools", "--config", wrong.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shop_nope"));
}

#[test]
fn a_configuration_without_tools_is_an_error_not_the_demo() {
    let root = tempfile::tempdir().expect("tmp");
    let file = root.path().join("ballast.toml");
    std::fs::write(&file, "[log]\nbackend = \"embedded\"\ndata_dir = \"d\"\n").expect("w");
    let out = run(&["check-config", file.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no tools"));
    std::fs::write(
        &file,
        "[log]\nbackend = \"embedded\"\n\n[[mcp]]\nname = \"a_b\"\nurl = \"ftp://x\"\n\n\
         [execution]\nretriever = \"demo_kb\"\n",
    )
    .expect("w");
    let out = run(&["check-config", file.to_str().expect("utf8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    for words in ["mcp.0.name", "mcp.0.url", "demo knowledge base"] {
        assert!(text.contains(words), "{words}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_runs_mcp_tools_under_the_control_plane() {
    let root = tempfile::tempdir().expect("tmp");
    let log = root.path().join("calls.jsonl");
    let model = FakeServer::start(vec![
        Reply::json(
            200,
            tool_call_completion("shop_lookup_order", &json!({"order_id": "A1001"})),
        ),
        Reply::json(
            200,
            tool_call_completion(
                "shop_issue_refund",
                &json!({"order_id": "A1001", "amount_cents": 4200}),
            ),
        ),
        Reply::json(200, answer_completion("Refunded 42.00 for order A1001.")),
    ]);
    let policies = root.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policies");
    std::fs::write(
        policies.join("allow.cedar"),
        "@id(\"allow.all\")\npermit(principal, action, resource);\n",
    )
    .expect("policy");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"fake-model\"\n\
             timeout_ms = 5000\nbackoff_ms = 20\ndefault_confidence = 0.9\n",
            model.url
        )
    };
    let command = format!(
        "command = {}\nenv = {{ SHOP_CALL_LOG = \"{}\" }}",
        json!(stdio_command()),
        log.display()
    );
    let planners = format!("{}\n{}", planner("general"), planner("specialist"));
    let config = write_config(root.path(), "policies = \"policies\"", &command, &planners);
    let data = root.path().join("data");
    let out = ballast(&[
        "token",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--name",
        "backend",
        "--tenant",
        "acme",
        "--roles",
        "submitter,auditor",
    ]);
    let bearer = format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim());
    let s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let body = json!({"user_id": "u-7", "text": "Please refund my order A1001."}).to_string();
    let (status, text) = http(&s.addr, "POST", "/v1/turns", &headers, &body);
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let turn = loop {
        let (status, text) = http(&s.addr, "GET", &format!("/v1/turns/{id}"), &headers, "");
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

    // The server saw both calls, each with the key the log recorded for it.
    let logged = calls_logged(&log);
    let tools: Vec<&str> = logged.iter().filter_map(|c| c["tool"].as_str()).collect();
    assert_eq!(tools, vec!["lookup_order", "issue_refund"], "{logged:?}");
    let turns = common::events_by_turn(&data).await;
    let events = turns.values().next().expect("one turn");
    let started: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ToolCallStarted(s) => Some((s.tool.clone(), s.idempotency_key.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(started[0].0, "shop_lookup_order");
    assert_eq!(logged[0]["idempotency_key"], started[0].1);
    assert_eq!(logged[1]["idempotency_key"], started[1].1);
    // Every call was reviewed by the control plane first.
    let reviewed = events
        .iter()
        .filter(|e| matches!(e.payload, Payload::PolicyEvaluated(_)))
        .count();
    assert!(reviewed >= 2, "{reviewed}");
    // The lookup's answer went back to the model.
    let asked = model.requests();
    assert!(asked.len() >= 3);
    assert!(asked[1].body.contains("shipped"));
}

/// What an MCP call costs against a direct HTTP tool, measured in one run (`cargo test --test
/// mcp -- --ignored --nocapture`): the example server's `lookup_order` over stdio and over
/// streamable HTTP, and an HTTP catalog tool calling a local endpoint that answers the same
/// JSON. Prints medians; asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn mcp_call_overhead_against_an_http_tool() {
    const N: usize = 300;
    async fn median_us(tool: &dyn Tool, name: &str, args: Value) -> f64 {
        let mut us = Vec::with_capacity(N);
        for i in 0..N + 20 {
            let started = Instant::now();
            tool.call(&invocation(name, args.clone(), &format!("k-{i}")))
                .await
                .expect("call");
            if i >= 20 {
                us.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        us.sort_by(f64::total_cmp);
        us[N / 2]
    }
    let dir = tempfile::tempdir().expect("tmp");
    let stdio = McpServer::new(McpServerConfig::stdio("shop", stdio_command()), &env, None)
        .expect("server");
    let stdio_tools = tools_of(&stdio).await;
    let args = json!({"order_id": "A1001"});
    let over_stdio = median_us(
        find(&stdio_tools, "shop_lookup_order"),
        "shop_lookup_order",
        args.clone(),
    )
    .await;
    stdio.shutdown().await;

    let shop = HttpShop::start(&dir.path().join("calls.jsonl"));
    let web = McpServer::new(McpServerConfig::http("web", &shop.url), &env, None).expect("srv");
    let web_tools = tools_of(&web).await;
    let over_http = median_us(
        find(&web_tools, "web_lookup_order"),
        "web_lookup_order",
        args.clone(),
    )
    .await;
    web.shutdown().await;

    let answer =
        r#"{"order_id":"A1001","status":"shipped","amount_cents":4200,"email":"dana@example.com"}"#;
    let orders = FakeServer::start((0..N + 20).map(|_| Reply::json(200, answer)).collect());
    let spec: ToolSpec = serde_json::from_value(json!({
        "name": "lookup_order", "description": "Look up an order.",
        "args_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "none",
        "idempotent": true, "timeout_ms": 5000,
        "http": {"method": "GET", "url": format!("{}/orders/{{order_id}}", orders.url)}
    }))
    .expect("spec");
    let http_tool =
        ballast::exec::http_tool::HttpTool::new(spec, reqwest::Client::new(), &env).expect("tool");
    let direct = median_us(&http_tool, "lookup_order", args.clone()).await;

    // The same HTTP tool against a Python server (the standard library's), so the comparison
    // with MCP is not a comparison of languages.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let script = format!(
        "import http.server, json\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   protocol_version = 'HTTP/1.1'; wbufsize = 65536\n\
         \x20   def do_GET(self):\n\
         \x20       body = json.dumps({{'order_id': 'A1001', 'status': 'shipped', 'amount_cents': 4200, 'email': 'dana@example.com'}}).encode()\n\
         \x20       self.send_response(200); self.send_header('Content-Type', 'application/json')\n\
         \x20       self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let mut py = std::process::Command::new(python())
        .args(["-c", &script])
        .spawn()
        .expect("python http server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no python http server");
        std::thread::sleep(Duration::from_millis(50));
    }
    let spec: ToolSpec = serde_json::from_value(json!({
        "name": "lookup_order", "description": "Look up an order.",
        "args_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "none",
        "idempotent": true, "timeout_ms": 5000,
        "http": {"method": "GET", "url": format!("http://127.0.0.1:{port}/orders/{{order_id}}")}
    }))
    .expect("spec");
    let py_tool =
        ballast::exec::http_tool::HttpTool::new(spec, reqwest::Client::new(), &env).expect("tool");
    let python_http = median_us(&py_tool, "lookup_order", args).await;
    let _ = py.kill();
    let _ = py.wait();
    println!(
        "median per call over {N} calls: MCP stdio {over_stdio:.0} µs, MCP streamable HTTP \
         {over_http:.0} µs; HTTP tool to a Python server {python_http:.0} µs, to a Rust server \
         {direct:.0} µs. MCP over the HTTP tool, same language: stdio +{:.0} µs ({:.1}×), \
         streamable HTTP +{:.0} µs ({:.1}×)",
        over_stdio - python_http,
        over_stdio / python_http,
        over_http - python_http,
        over_http / python_http
    );
}

/// A chat-completions step calling several tools at once.
fn calls_completion(calls: &[(&str, Value)]) -> String {
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1_790_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_escalates_the_turn_and_the_other_server_works() {
    let root = tempfile::tempdir().expect("tmp");
    let pid_file = root.path().join("stock.pid");
    let down_file = root.path().join("stock.down");
    let stock_log = root.path().join("stock.jsonl");
    // The model asks for both servers' tools at once; the stock call takes 5 s.
    let step = calls_completion(&[
        ("orders_lookup_order", json!({"order_id": "A1002"})),
        (
            "stock_stock_level",
            json!({"sku": "SKU-1", "delay_ms": 5000}),
        ),
    ]);
    let model = FakeServer::start(vec![Reply::json(200, step)]);
    let policies = root.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policies");
    std::fs::write(
        policies.join("allow.cedar"),
        "@id(\"allow.all\")\npermit(principal, action, resource);\n",
    )
    .expect("policy");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"fake-model\"\n\
             timeout_ms = 5000\nbackoff_ms = 20\ndefault_confidence = 0.9\n",
            model.url
        )
    };
    let file = root.path().join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "policies = \"policies\"\n\n[log]\nbackend = \"embedded\"\ndata_dir = \"data\"\n\
             partitions = 1\n\n\
             [[mcp]]\nname = \"orders\"\ncommand = {cmd}\n\n\
             [[mcp]]\nname = \"stock\"\ncommand = {cmd}\n\
             env = {{ SHOP_PID_FILE = \"{pid}\", SHOP_DOWN_FILE = \"{down}\", SHOP_CALL_LOG = \"{log}\" }}\n\n\
             # This deployment's stock reads reserve stock: a call that may have acted is never re-run.\n\
             [tools.stock_stock_level]\nidempotent = false\ntimeout_ms = 20000\n\n\
             {}\n{}\n\
             [control]\nmax_steps = 4\n\n\
             [control.profiles.general]\nmodel = \"fake-model\"\nreserve_tokens = 100\n\n\
             [control.profiles.specialist]\nmodel = \"fake-model\"\nreserve_tokens = 100\n\n\
             [control.guards]\nhandoff_ttl_ms = 1000\n",
            planner("general"),
            planner("specialist"),
            cmd = json!(stdio_command()),
            pid = pid_file.display(),
            down = down_file.display(),
            log = stock_log.display(),
        ),
    )
    .expect("config");
    let data = root.path().join("data");
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
    let s = Served::start(&["--config", file.to_str().expect("utf8")]);
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let body = json!({"user_id": "u-3", "text": "Is SKU-1 in stock for order A1002?"}).to_string();
    let (status, text) = http(&s.addr, "POST", "/v1/turns", &headers, &body);
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string();

    // Once the stock server is inside the call, kill it for good.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !calls_logged(&stock_log)
        .iter()
        .any(|c| c["tool"] == "stock_level")
    {
        assert!(Instant::now() < deadline, "the stock call never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(&pid_file).expect("the stock server's pid");
    std::fs::write(&down_file, "down").expect("down");
    let killed = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let deadline = Instant::now() + Duration::from_secs(90);
    let turn = loop {
        let (status, text) = http(&s.addr, "GET", &format!("/v1/turns/{id}"), &headers, "");
        if status == 200 {
            let turn: Value = serde_json::from_str(&text).expect("json");
            if turn["status"] == "terminal" {
                break turn;
            }
        }
        assert!(Instant::now() < deadline, "turn not done: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(s.stop().success());
    assert_ne!(turn["outcome"], "succeeded", "{turn}");

    let turns = common::events_by_turn(&data).await;
    let events = turns.values().next().expect("one turn");
    let payloads = || {
        format!(
            "{:#?}",
            events.iter().map(|e| &e.payload).collect::<Vec<_>>()
        )
    };
    // The other server's tool worked.
    assert!(
        events
            .iter()
            .any(|e| matches!(e.payload, Payload::ToolCallCompleted(_))),
        "no call completed: {}",
        payloads()
    );
    // The killed call may have acted: outcome unknown, never re-run, and the turn goes to a
    // person.
    let failed: Vec<(ToolFailureKind, String)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ToolCallFailed(f) => Some((f.kind, f.error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, ToolFailureKind::OutcomeUnknown, "{failed:?}");
    assert!(failed[0].1.contains("mcp server stock"), "{failed:?}");
    let started = events
        .iter()
        .filter(
            |e| matches!(&e.payload, Payload::ToolCallStarted(s) if s.tool == "stock_stock_level"),
        )
        .count();
    assert_eq!(started, 1, "re-run: {}", payloads());
    assert!(
        events
            .iter()
            .any(|e| matches!(e.payload, Payload::EscalationRaised(_))),
        "not escalated: {}",
        payloads()
    );
}
