//! A scripted OpenAI-compatible model server that decides each step from the messages it is
//! sent — it must read the tool results to make the next call — and a stateful orders service
//! for its tools. Both run on 127.0.0.1:0 and stop when dropped.
//!
//! The model plays a support agent: it looks an order up, refunds the amount the lookup
//! returned, and answers; a follow-up in a session ("refund it") takes the order and amount
//! from the session's earlier turn. Requests name behaviours in their text: "both" (parallel
//! lookups in one step), "keep checking" (the same call forever), "check orders" (one lookup
//! per step), "flaky" (the model fails from its second step on).
//!
//! Every answer names the request that produced it (`model: test-model-<n>`), and every
//! request is recorded with the digest of its messages: a test can tell whether a step whose
//! answer was recorded was ever asked again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// One request the model server answered.
#[derive(Clone, Debug)]
pub struct Asked {
    /// 1-based order of arrival.
    pub seq: u64,
    pub digest: String,
    pub body: Value,
    /// The status it answered with.
    pub status: u16,
}

#[derive(Default)]
struct ModelState {
    asked: Vec<Asked>,
}

pub struct Running {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(app: axum::Router) -> Running {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        Running {
            url: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct ModelServer {
    pub url: String,
    state: Arc<Mutex<ModelState>>,
    _running: Running,
}

impl ModelServer {
    pub fn start() -> ModelServer {
        let state = Arc::new(Mutex::new(ModelState::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state(Arc::clone(&state));
        let running = Running::start(app);
        ModelServer {
            url: running.url.clone(),
            state,
            _running: running,
        }
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.state.lock().expect("state").asked.clone()
    }
}

async fn chat(State(state): State<Arc<Mutex<ModelState>>>, body: Bytes) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages: Vec<Value> = body["messages"].as_array().cloned().unwrap_or_default();
    let digest = ballast::exec::openai::wire::messages_digest(&messages);
    let mut s = state.lock().expect("state");
    let seq = s.asked.len() as u64 + 1;
    let (status, answer) = match brain(&messages) {
        Ok(turn) => (200, completion(seq, turn)),
        Err(code) => (code, json!({"error": {"message": "overloaded"}})),
    };
    s.asked.push(Asked {
        seq,
        digest,
        body,
        status,
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        answer.to_string(),
    )
}

/// What the model says: tool calls, or a final answer.
pub enum Said {
    Calls(Vec<(String, Value)>),
    Answer(String),
}

fn completion(seq: u64, said: Said) -> Value {
    let message = match said {
        Said::Calls(calls) => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": calls.iter().enumerate().map(|(i, (name, args))| json!({
                "id": format!("call_{seq}_{i}"),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            })).collect::<Vec<_>>(),
        }),
        Said::Answer(text) => json!({"role": "assistant", "content": text}),
    };
    let finish = if message["tool_calls"].is_array() {
        "tool_calls"
    } else {
        "stop"
    };
    json!({
        "id": format!("chatcmpl-{seq}"),
        "object": "chat.completion",
        "model": format!("test-model-{seq}"),
        "system_fingerprint": "fp_agent_test",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": 100 + seq as i64, "completion_tokens": 20, "total_tokens": 120 + seq as i64},
    })
}

fn order_ids(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            w.len() >= 2 && w.starts_with('A') && w[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect()
}

/// (tool, arguments, result) of every tool call answered in `messages`, in order.
fn results(messages: &[Value]) -> Vec<(String, Value, Value)> {
    let mut names: HashMap<String, (String, Value)> = HashMap::new();
    let mut out = Vec::new();
    for m in messages {
        if let Some(calls) = m["tool_calls"].as_array() {
            for c in calls {
                let id = c["id"].as_str().unwrap_or_default().to_string();
                let name = c["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let args = c["function"]["arguments"]
                    .as_str()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                names.insert(id, (name, args));
            }
        }
        if m["role"] == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or_default();
            if let Some((name, args)) = names.get(id) {
                let result = m["content"]
                    .as_str()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or(Value::Null);
                out.push((name.clone(), args.clone(), result));
            }
        }
    }
    out
}

/// The support agent, deciding from the conversation alone.
pub fn brain(messages: &[Value]) -> Result<Said, u16> {
    let last_user = messages
        .iter()
        .rposition(|m| m["role"] == "user")
        .ok_or(400u16)?;
    let request = messages[last_user]["content"].as_str().unwrap_or_default();
    let now = &messages[last_user + 1..];
    let step = now.iter().filter(|m| m["role"] == "assistant").count();
    let here = results(now);
    let earlier = results(&messages[..last_user]);
    let lookup = |id: &str| json!({"order_id": id});
    if request.contains("flaky") && step >= 1 {
        return Err(503);
    }
    if request.contains("keep checking") {
        let id = order_ids(request).first().cloned().unwrap_or_default();
        return Ok(Said::Calls(vec![("lookup_order".into(), lookup(&id))]));
    }
    if request.contains("check orders") {
        let ids = order_ids(request);
        return Ok(match ids.get(step) {
            Some(id) => Said::Calls(vec![("lookup_order".into(), lookup(id))]),
            None => Said::Answer(format!("Checked {} orders.", ids.len())),
        });
    }
    if request.contains("both") {
        let ids = order_ids(request);
        if here.is_empty() {
            return Ok(Said::Calls(
                ids.iter()
                    .map(|id| ("lookup_order".to_string(), lookup(id)))
                    .collect(),
            ));
        }
        let statuses: Vec<String> = here
            .iter()
            .map(|(_, _, r)| {
                format!(
                    "{} is {}",
                    r["order_id"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?")
                )
            })
            .collect();
        return Ok(Said::Answer(statuses.join("; ")));
    }
    // The order this turn is about: named in the request, else the one the session looked up.
    let order = order_ids(request).first().cloned().or_else(|| {
        earlier
            .iter()
            .rev()
            .find(|(t, _, _)| t == "lookup_order")
            .and_then(|(_, _, r)| r["order_id"].as_str().map(str::to_owned))
    });
    let Some(order) = order else {
        return Ok(Said::Answer("Which order do you mean?".into()));
    };
    let looked_up = here
        .iter()
        .chain(earlier.iter())
        .rev()
        .find(|(t, _, r)| t == "lookup_order" && r["order_id"] == order.as_str())
        .map(|(_, _, r)| r.clone());
    let wants_refund = request.to_lowercase().contains("refund");
    match looked_up {
        None => Ok(Said::Calls(vec![("lookup_order".into(), lookup(&order))])),
        Some(found) if wants_refund => {
            let refunded = here.iter().find(|(t, _, _)| t == "issue_refund");
            match refunded {
                None => Ok(Said::Calls(vec![(
                    "issue_refund".into(),
                    json!({"order_id": order, "amount_cents": found["amount_cents"]}),
                )])),
                Some((_, _, r)) => Ok(Said::Answer(format!(
                    "Refunded {} cents for order {order} (refund {}).",
                    r["amount_cents"],
                    r["refund_id"].as_str().unwrap_or("?")
                ))),
            }
        }
        Some(found) => Ok(Said::Answer(format!(
            "Order {order} is {}; it cost {} cents.",
            found["status"].as_str().unwrap_or("?"),
            found["amount_cents"]
        ))),
    }
}

/// An orders service: lookups (amounts follow from the order number) and refunds, which are
/// recorded with their idempotency key.
#[derive(Default)]
struct OrdersState {
    refunds: Vec<(String, Value)>,
    lookups: u64,
}

pub struct OrdersServer {
    pub url: String,
    state: Arc<Mutex<OrdersState>>,
    _running: Running,
}

/// What an order cost, in cents.
pub fn amount_of(order: &str) -> i64 {
    let n: i64 = order
        .chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0, |n, d| n * 10 + i64::from(d));
    1_000 + n % 9_000
}

impl OrdersServer {
    pub fn start() -> OrdersServer {
        let state = Arc::new(Mutex::new(OrdersState::default()));
        let app = axum::Router::new()
            .route("/orders/{id}", axum::routing::get(order))
            .route("/refunds", axum::routing::post(refund))
            .with_state(Arc::clone(&state));
        let running = Running::start(app);
        OrdersServer {
            url: running.url.clone(),
            state,
            _running: running,
        }
    }

    /// (idempotency key, body) of every refund request, in arrival order.
    pub fn refunds(&self) -> Vec<(String, Value)> {
        self.state.lock().expect("state").refunds.clone()
    }

    pub fn lookups(&self) -> u64 {
        self.state.lock().expect("state").lookups
    }
}

async fn order(
    State(state): State<Arc<Mutex<OrdersState>>>,
    Path(id): Path<String>,
) -> impl IntoResponse {
    state.lock().expect("state").lookups += 1;
    let body = json!({
        "order_id": id,
        "status": "shipped",
        "amount_cents": amount_of(&id),
        "summary": format!("Order {id} shipped"),
    });
    ([("content-type", "application/json")], body.to_string())
}

async fn refund(
    State(state): State<Arc<Mutex<OrdersState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Slow enough that a kill lands inside some calls.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let mut s = state.lock().expect("state");
    s.refunds.push((key.clone(), body.clone()));
    let id = format!("rf-{}", s.refunds.len());
    let out = json!({
        "refund_id": id,
        "order_id": body["order_id"],
        "amount_cents": body["amount_cents"],
        "summary": format!("Refund {id} issued"),
    });
    ([("content-type", "application/json")], out.to_string())
}

/// A deployment file for the two servers: permissive policies, no retrieval, the model as the
/// planner of both profiles (the specialist with its own prompt, so its steps digest apart),
/// `issue_refund` not idempotent (a call cut short by a crash goes to a person, never re-runs).
pub fn write_deployment(
    root: &std::path::Path,
    model: &str,
    orders: &str,
    extra: &str,
) -> std::path::PathBuf {
    let catalog = json!([
        {
            "name": "lookup_order",
            "description": "Look up an order's status and what it cost.",
            "args_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"], "additionalProperties": false},
            "result_schema": {"type": "object"}, "auth_scopes": [],
            "impact": "none", "idempotent": true, "deterministic": true, "timeout_ms": 3000,
            "cost_micros": 10, "key_args": ["order_id"],
            "http": {"method": "GET", "url": format!("{orders}/orders/{{order_id}}")}
        },
        {
            "name": "issue_refund",
            "description": "Refund an order by the amount given, in cents.",
            "args_schema": {"type": "object", "properties": {
                "order_id": {"type": "string"}, "amount_cents": {"type": "integer", "minimum": 1}},
                "required": ["order_id", "amount_cents"], "additionalProperties": false},
            "result_schema": {"type": "object"}, "auth_scopes": [],
            "impact": "high", "idempotent": false, "timeout_ms": 3000, "cost_micros": 10,
            "key_args": ["order_id", "amount_cents"],
            "http": {"method": "POST", "url": format!("{orders}/refunds")}
        }
    ]);
    std::fs::write(root.join("catalog.json"), catalog.to_string()).expect("catalog");
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).expect("policies");
    std::fs::write(
        policies.join("allow.cedar"),
        "@id(\"allow.all\")\npermit(principal, action, resource);\n",
    )
    .expect("policy");
    let planner = |name: &str, prompt: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{model}/v1\"\nmodel = \"test-model\"\n\
             api_key_env = \"BALLAST_TEST_NO_KEY\"\ntimeout_ms = 5000\nmax_retries = 1\nbackoff_ms = 10\n\
             default_confidence = 0.9\nsystem_prompt = \"{prompt}\"\n"
        )
    };
    let text = format!(
        "catalog = \"catalog.json\"\npolicies = \"policies\"\n\n[log]\nbackend = \"embedded\"\n\
         data_dir = \"data\"\npartitions = 2\n\n[execution]\nretriever = \"none\"\n\n{}\n{}\n\
         [control]\nmax_steps = 6\napproval_ttl_ms = 5000\n\n\
         [control.profiles.general]\nmodel = \"test-model\"\nreserve_tokens = 500\nmicros_per_1k_tokens = 1\n\n\
         [control.profiles.specialist]\nmodel = \"test-model\"\nreserve_tokens = 500\nmicros_per_1k_tokens = 1\n\n\
         [control.guards]\nhandoff_ttl_ms = 1500\n{extra}\n",
        planner("general", "You are a support agent."),
        planner("specialist", "You are a senior support agent."),
    );
    let file = root.join("ballast.toml");
    std::fs::write(&file, text).expect("config");
    file
}

/// The demo's tools behind HTTP (`POST /tools/{name}`, arguments as the body, the call's key in
/// `Idempotency-Key`), journaling to `effects`, and a catalog file naming them as HTTP tools:
/// a configured deployment has no built-in tools, so tests that drive the demo workload through
/// a configuration reach the demo's tools this way.
pub fn demo_tools_over_http(effects: &std::path::Path, catalog: &std::path::Path) -> Running {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::HeaderMap;
    use ballast::exec::Tool;
    use std::sync::Arc;
    let journal = ballast::demo::tools::EffectsJournal::open(effects).expect("journal");
    let tools: std::collections::BTreeMap<String, Arc<dyn Tool>> =
        ballast::demo::tools::demo_tools(journal, 1)
            .into_iter()
            .map(|t| (t.spec().name.clone(), t))
            .collect();
    let tools = Arc::new(tools);
    let app = axum::Router::new()
        .route(
            "/tools/{name}",
            axum::routing::post(
                |State(tools): State<Arc<std::collections::BTreeMap<String, Arc<dyn Tool>>>>,
                 UrlPath(name): UrlPath<String>,
                 headers: HeaderMap,
                 body: String| async move {
                    let Some(tool) = tools.get(&name) else {
                        return (axum::http::StatusCode::NOT_FOUND, "{}".to_string());
                    };
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let call = ballast::exec::types::ToolInvocation {
                        call_id: key.clone(),
                        tool: name.clone(),
                        args_json: body,
                        idempotency_key: key,
                        attempt: 1,
                        tenant: String::new(),
                        user_id: String::new(),
                    };
                    match tool.call(&call).await {
                        Ok(v) => (axum::http::StatusCode::OK, v.to_string()),
                        Err(e) if e.retryable => {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.message)
                        }
                        Err(e) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, e.message),
                    }
                },
            ),
        )
        .with_state(tools);
    let running = Running::start(app);
    let specs: Vec<Value> = ballast::demo::tools::demo_catalog()
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("spec");
            v["http"] =
                json!({"method": "POST", "url": format!("{}/tools/{}", running.url, s.name)});
            v
        })
        .collect();
    std::fs::write(catalog, Value::Array(specs).to_string()).expect("catalog");
    running
}
