//! Servers that answer with more than anyone should read: an MCP tool server whose result is
//! 250 MB (over stdio, and over streamable HTTP as one JSON body and as one SSE event), an HTTP
//! tool and a model server whose bodies never end. Each runs under a real `ballast serve`: the
//! call fails with a clear error, the next call works, and the serve process's peak resident
//! memory (VmHWM in /proc/PID/status) stays far under what it was offered.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use ballast::event::Payload;
use common::fake::{answer_completion, tool_call_completion};
use common::{Served, ballast, http};
use serde_json::{Value, json};

/// What the hostile MCP server sends for `huge` (its default: 250 MB).
const FLOOD_BYTES: u64 = 250 * 1000 * 1000;
/// How much a hostile answer may raise the serve process's peak resident memory over what an
/// ordinary call left it at: under half the flood (read whole, it raised it by 1.4 GiB), and
/// room for the three attempts of a retried call, each reading a few MiB before it stops.
const MAX_RISE_KIB: u64 = 100 * 1024;

fn python() -> String {
    std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn flood_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/flood_mcp.py")
}

/// The peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A model and tool server on 127.0.0.1:0. The model calls the tool the user's text names
/// (`call:TOOL`) and answers once it has a tool result; the exchanges [`Upstream::endless_next`]
/// asks for get a body that never ends. `/tools/endless` never ends either; `/tools/fine`
/// answers.
struct Upstream {
    url: String,
    endless_left: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn endless() -> Body {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    Body::from_stream(futures_util::stream::repeat_with(move || {
        Ok::<_, std::convert::Infallible>(chunk.clone())
    }))
}

async fn model(endless_left: &AtomicUsize, body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    if endless_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return ([("content-type", "application/json")], endless()).into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let reply = if messages.last().is_some_and(|m| m["role"] == "tool") {
        answer_completion("done")
    } else {
        let asked = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        match asked
            .split_whitespace()
            .find_map(|w| w.strip_prefix("call:"))
        {
            Some(tool) => tool_call_completion(tool, &json!({})),
            None => answer_completion("nothing to call"),
        }
    };
    ([("content-type", "application/json")], reply).into_response()
}

impl Upstream {
    fn start() -> Upstream {
        let endless_left = Arc::new(AtomicUsize::new(0));
        let shared = Arc::clone(&endless_left);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/v1/chat/completions",
                        axum::routing::post(move |body: Bytes| {
                            let left = Arc::clone(&shared);
                            async move { model(&left, body).await }
                        }),
                    )
                    .route(
                        "/tools/endless",
                        axum::routing::get(|| async {
                            ([("content-type", "application/json")], endless())
                        }),
                    )
                    .route(
                        "/tools/fine",
                        axum::routing::get(|| async { axum::Json(json!({"ok": true})) }),
                    );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("addr");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("upstream address");
        Upstream {
            url: format!("http://{addr}"),
            endless_left,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Upstream {
    /// The next `n` model exchanges get a body that never ends.
    fn endless_next(&self, n: usize) {
        self.endless_left.store(n, Ordering::SeqCst);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The flood server over streamable HTTP on a free port, killed on drop.
struct FloodHttp {
    child: std::process::Child,
    url: String,
}

impl FloodHttp {
    fn start(sse: bool) -> FloodHttp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = std::process::Command::new(python());
        cmd.arg(flood_script()).args(["--http", &port.to_string()]);
        if sse {
            cmd.arg("--sse");
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the flood server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the flood server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        FloodHttp {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for FloodHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `ballast serve` of a configuration naming `tools` (an `[[mcp]]` entry or a catalog line)
/// and the upstream model, with every call allowed.
struct Rig {
    root: tempfile::TempDir,
    served: Option<Served>,
    bearer: String,
}

impl Rig {
    fn start(upstream: &Upstream, tools: &str, catalog: Option<Value>) -> Rig {
        let root = tempfile::tempdir().expect("tmp");
        let policies = root.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies");
        std::fs::write(
            policies.join("allow.cedar"),
            "@id(\"allow.all\")\npermit(principal, action, resource);\n",
        )
        .expect("policy");
        let mut head = String::from("policies = \"policies\"\n");
        if let Some(catalog) = catalog {
            std::fs::write(root.path().join("catalog.json"), catalog.to_string()).expect("c");
            head.push_str("catalog = \"catalog.json\"\n");
        }
        let planner = |name: &str| {
            format!(
                "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\
                 model = \"fake-model\"\ntimeout_ms = 20000\nmax_retries = 0\nbackoff_ms = 20\n\
                 default_confidence = 0.9\n",
                upstream.url
            )
        };
        let config = root.path().join("ballast.toml");
        std::fs::write(
            &config,
            format!(
                "{head}\n[log]\nbackend = \"embedded\"\ndata_dir = \"data\"\npartitions = 2\n\n\
                 {tools}\n\n{}\n{}",
                planner("general"),
                planner("specialist")
            ),
        )
        .expect("config");
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
        let served = Served::start_with(
            &["--config", config.to_str().expect("utf8")],
            std::process::Stdio::null(),
            &[],
        );
        Rig {
            root,
            served: Some(served),
            bearer,
        }
    }

    fn served(&self) -> &Served {
        self.served.as_ref().expect("running")
    }

    /// Submits a turn asking for `text` and waits until it is terminal: its outcome.
    fn turn(&self, text: &str) -> (String, String) {
        let s = self.served();
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", self.bearer.as_str()),
        ];
        let body = json!({"user_id": "u-7", "text": text}).to_string();
        let (status, answer) = http(&s.addr, "POST", "/v1/turns", &headers, &body);
        assert_eq!(status, 202, "{answer}");
        let id = serde_json::from_str::<Value>(&answer).expect("json")["turn_id"]
            .as_str()
            .expect("id")
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, text) = http(&s.addr, "GET", &format!("/v1/turns/{id}"), &headers, "");
            if status == 200 {
                let turn: Value = serde_json::from_str(&text).expect("json");
                if turn["status"] == "terminal" {
                    return (id, turn["outcome"].as_str().unwrap_or_default().to_string());
                }
            }
            assert!(Instant::now() < deadline, "turn {id} not done: {text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The serve process's peak resident memory so far.
    fn peak_kib(&self) -> u64 {
        peak_rss_kib(self.served().child.id())
    }

    /// Stops serve; every failure message the turn log recorded (tool and model calls).
    async fn stop(mut self) -> Vec<String> {
        if let Some(s) = self.served.take() {
            assert!(s.stop().success());
        }
        let turns = common::events_by_turn(&self.root.path().join("data")).await;
        turns
            .values()
            .flatten()
            .filter_map(|e| match &e.payload {
                Payload::ToolCallFailed(f) => Some(f.error.clone()),
                Payload::ModelCallFailed(f) => Some(f.error.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A huge MCP result through `server` (an `[[mcp]]` entry named flood): the call fails saying
/// why, the next call works, and the peak memory barely moves.
async fn a_flood_fails_the_call_and_not_the_worker(transport: &str, server: &str) {
    let upstream = Upstream::start();
    let rig = Rig::start(
        &upstream,
        &format!("[[mcp]]\nname = \"flood\"\n{server}"),
        None,
    );
    let (_, first) = rig.turn("call:flood_small");
    let before = rig.peak_kib();
    let (_, outcome) = rig.turn("call:flood_huge");
    let after = rig.peak_kib();
    let (_, next) = rig.turn("call:flood_small");
    let failures = rig.stop().await;
    eprintln!(
        "MCP {transport}: a {FLOOD_BYTES}-byte result; serve's peak resident memory {before} KiB \
         before it, {after} KiB after"
    );
    assert!(
        after - before < MAX_RISE_KIB,
        "a {FLOOD_BYTES}-byte result raised serve's peak resident memory from {before} KiB to \
         {after} KiB"
    );
    assert_eq!(first, "succeeded", "{failures:?}");
    assert_eq!(outcome, "failed", "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("not read further")),
        "the failure says why: {failures:?}"
    );
    assert_eq!(next, "succeeded", "the next call works: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_mb_mcp_result_over_stdio_fails_the_call_not_the_worker() {
    let command = json!([python(), flood_script().display().to_string()]);
    a_flood_fails_the_call_and_not_the_worker("stdio", &format!("command = {command}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_mb_mcp_result_as_one_sse_event_fails_the_call_not_the_worker() {
    let flood = FloodHttp::start(true);
    a_flood_fails_the_call_and_not_the_worker("HTTP (SSE)", &format!("url = \"{}\"", flood.url))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_mb_mcp_result_as_one_json_body_fails_the_call_not_the_worker() {
    let flood = FloodHttp::start(false);
    a_flood_fails_the_call_and_not_the_worker("HTTP (JSON)", &format!("url = \"{}\"", flood.url))
        .await;
}

fn http_tool(name: &str, url: String) -> Value {
    json!({
        "name": name,
        "description": "Reads something.",
        "args_schema": {"type": "object", "properties": {}, "additionalProperties": false},
        "result_schema": {"type": "object"},
        "auth_scopes": [],
        "impact": "none",
        "idempotent": true,
        "compensation": null,
        "timeout_ms": 10000,
        "cost_micros": 1,
        "tags": ["read_only"],
        "deterministic": true,
        "http": {"method": "GET", "url": url}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_tool_whose_body_never_ends_fails_the_call_not_the_worker() {
    let upstream = Upstream::start();
    let catalog = json!([
        http_tool("endless", format!("{}/tools/endless", upstream.url)),
        http_tool("fine", format!("{}/tools/fine", upstream.url)),
    ]);
    let rig = Rig::start(&upstream, "", Some(catalog));
    let (_, first) = rig.turn("call:fine");
    let before = rig.peak_kib();
    let (_, outcome) = rig.turn("call:endless");
    let after = rig.peak_kib();
    let (_, next) = rig.turn("call:fine");
    let failures = rig.stop().await;
    eprintln!(
        "HTTP tool: an endless body; serve's peak resident memory {before} KiB before it, \
         {after} KiB after"
    );
    assert_eq!(first, "succeeded", "{failures:?}");
    assert_eq!(outcome, "failed", "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("response body over")),
        "the failure says why: {failures:?}"
    );
    assert_eq!(next, "succeeded", "{failures:?}");
    assert!(
        after - before < MAX_RISE_KIB,
        "an endless body raised serve's peak resident memory from {before} KiB to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_server_whose_body_never_ends_fails_the_exchange_not_the_worker() {
    // The exchange after the first turn's never ends; the ladder asks again and that answers.
    let upstream = Upstream::start();
    let catalog = json!([http_tool("fine", format!("{}/tools/fine", upstream.url))]);
    let rig = Rig::start(&upstream, "", Some(catalog));
    let (_, first) = rig.turn("call:fine");
    let before = rig.peak_kib();
    upstream.endless_next(1);
    let (_, outcome) = rig.turn("call:fine");
    let after = rig.peak_kib();
    let failures = rig.stop().await;
    eprintln!(
        "model: an endless body; serve's peak resident memory {before} KiB before it, \
         {after} KiB after"
    );
    assert_eq!(first, "succeeded", "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("response body over")),
        "the model call failed saying why: {failures:?}"
    );
    assert_eq!(
        outcome, "succeeded",
        "the next exchange works: {failures:?}"
    );
    assert!(
        after - before < MAX_RISE_KIB,
        "an endless body raised serve's peak resident memory from {before} KiB to {after} KiB"
    );
}
