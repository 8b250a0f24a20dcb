//! `ballast bench --model-steps`: the engine's overhead per model step. Turns of a five-step
//! loop (one tool call per step, then the answer) run one at a time against an
//! OpenAI-compatible server on 127.0.0.1 that answers instantly, through the real adapter (HTTP,
//! JSON, the conversation rendered each step). The baseline, measured in the same run, is the
//! same server asked directly over HTTP with the same conversation: what a step costs without
//! the engine. The difference per step is the engine's: durable events before each effect,
//! reviews, guards, budgets, the tool call.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::demo::run::{DemoError, percentile};
use crate::embedded::Embedded;
use crate::exec::openai::{OpenAiConfig, OpenAiPlanner};
use crate::exec::{ExecutionPlane, Toolbox};
use crate::ids::Partition;
use crate::runtime::{Deps, RuntimeError, RuntimeStats, Worker, WorkerConfig};
use crate::submit::submit;

/// Tool calls per turn before the answer.
pub const CALLS: usize = 5;

#[derive(Clone, Debug)]
pub struct ModelBenchReport {
    pub turns: usize,
    pub steps_per_turn: f64,
    pub turn_p50_us: u64,
    pub turn_p99_us: u64,
    /// A direct request to the same server with a conversation of the same shape, p50.
    pub http_p50_us: u64,
    pub events: u64,
    /// How the timed turns ended.
    pub outcomes: super::OutcomeMix,
}

impl ModelBenchReport {
    pub fn per_step_us(&self) -> f64 {
        self.turn_p50_us as f64 / self.steps_per_turn.max(1.0)
    }
    pub fn overhead_per_step_us(&self) -> f64 {
        self.per_step_us() - self.http_p50_us as f64
    }
    pub fn render(&self) -> String {
        let figures = format!(
            "turns={}\nmodel_steps_per_turn={:.1}\nevents={}\nturn_p50_ms={:.2}\nturn_p99_ms={:.2}\n\
             per_step_us={:.0}\nhttp_roundtrip_us={}\noverhead_per_step_us={:.0}\n",
            self.turns,
            self.steps_per_turn,
            self.events,
            self.turn_p50_us as f64 / 1000.0,
            self.turn_p99_us as f64 / 1000.0,
            self.per_step_us(),
            self.http_p50_us,
            self.overhead_per_step_us(),
        );
        figures + &self.outcomes.render()
    }
}

/// The instant model: one `step{k}` call per step until five results are in, then "done".
fn answer(body: &Value) -> Value {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rposition(|m| m["role"] == "user")
        .unwrap_or(0);
    let done = messages
        .iter()
        .skip(last_user + 1)
        .filter(|m| m["role"] == "tool")
        .count();
    let message = if done < CALLS {
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("c{done}"), "type": "function",
            "function": {"name": format!("step{done}"), "arguments": json!({"n": done}).to_string()}
        }]})
    } else {
        json!({"role": "assistant", "content": "done"})
    };
    json!({
        "model": "instant",
        "choices": [{"index": 0, "finish_reason": if done < CALLS { "tool_calls" } else { "stop" }, "message": message}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 5},
    })
}

async fn serve_instant() -> Result<(String, tokio::task::JoinHandle<()>), DemoError> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: axum::Json<Value>| async move { axum::Json(answer(&body.0)) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Journal)?;
    let addr = listener.local_addr().map_err(DemoError::Journal)?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/v1"), task))
}

pub async fn run(turns: usize) -> Result<ModelBenchReport, DemoError> {
    let (base_url, server) = serve_instant().await?;
    let dir = tempfile::tempdir().map_err(DemoError::Journal)?;
    let emb = Embedded::open(dir.path(), 1)?;
    let tools = Toolbox::new(super::instant_tools());
    let planner = OpenAiPlanner::new(
        OpenAiConfig {
            base_url: base_url.clone(),
            model: "instant".into(),
            api_key_env: None,
            max_retries: 0,
            logprobs: false,
            default_confidence: Some(0.9),
            ..OpenAiConfig::default()
        },
        tools.catalog().clone(),
    )
    .map_err(|e| DemoError::Runtime(RuntimeError::Task(e.to_string())))?;
    let exec = ExecutionPlane {
        retriever: Arc::new(super::NoContext),
        planner: Arc::new(planner),
        tools,
    };
    // One turn at a time: latency without queueing.
    let cfg = WorkerConfig {
        max_turns_per_partition: 1,
        ..WorkerConfig::default()
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let deps = Deps::new(
        emb.events.clone(),
        emb.requests.clone(),
        emb.codecs.clone(),
        exec,
        emb.state.clone(),
    )
    .with_outcomes(out_tx);
    let worker = Worker::new(deps, cfg);
    let stats = worker.stats();
    let (stop_tx, stop_rx) = watch::channel(false);
    submit(
        emb.requests.as_ref(),
        &emb.codecs.requests,
        &super::bench_requests(turns),
    )
    .await?;
    let task = tokio::spawn(async move { worker.run(vec![Partition(0)], stop_rx).await });
    let (latencies, outcomes) = super::collect(&mut out_rx, turns).await;
    stop_tx.send_replace(true);
    task.await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;

    // The baseline: the same conversations, asked directly.
    let client = reqwest::Client::new();
    let mut direct = Vec::with_capacity(turns);
    let mut body = json!({"model": "instant", "messages": [
        {"role": "system", "content": crate::exec::openai::wire::SYSTEM_TEMPLATE},
        {"role": "user", "content": "run the five steps"},
    ]});
    for i in 0..turns.min(2_000) {
        let started = Instant::now();
        let resp = client
            .post(format!("{base_url}/chat/completions"))
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Ok(r) = resp {
            let _ = r.bytes().await;
        }
        direct.push(started.elapsed().as_micros() as u64);
        // Grow the conversation like a step would, up to the loop's length, then start over.
        let Some(m) = body
            .get_mut("messages")
            .and_then(serde_json::Value::as_array_mut)
        else {
            continue;
        };
        if i % (CALLS + 1) == CALLS {
            m.truncate(2);
        } else {
            m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "step0", "arguments": "{}"}}]}));
            m.push(json!({"role": "tool", "tool_call_id": "c", "content": "{\"ok\":true}"}));
        }
    }
    direct.sort_unstable();
    server.abort();
    Ok(ModelBenchReport {
        turns,
        steps_per_turn: (CALLS + 1) as f64,
        turn_p50_us: percentile(&latencies, 0.50),
        turn_p99_us: percentile(&latencies, 0.99),
        http_p50_us: percentile(&direct, 0.50),
        events: RuntimeStats::get(&stats.events_appended),
        outcomes,
    })
}
