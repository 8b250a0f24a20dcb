//! The agent loop end to end: `ballast serve --config` with an OpenAI-compatible model server
//! that decides each step from the messages it is sent (`common::agent`), and an orders service
//! behind HTTP tools. One serve runs every scenario at once:
//!
//! - a three-step turn: look the order up, refund the amount the lookup returned, answer — the
//!   reply is the model's own;
//! - parallel tool calls in one step, their results fed back in the model's order;
//! - a loop (the same call again and again) the mid-plan guard stops;
//! - a loop longer than `max_steps`;
//! - a session whose second turn refunds what the first turn looked up;
//! - a model failing mid-loop, retried by the planner, then escalated up the ladder.
//!
//! Then, with the model server stopped, replay and backtest work from the record alone.

mod common;

use std::time::{Duration, Instant};

use ballast::event::{EscalationRung, Event, Payload};
use common::agent::{ModelServer, OrdersServer, amount_of, write_deployment};
use common::{Served, ballast, http};
use serde_json::{Value, json};

struct Api<'a> {
    s: &'a Served,
    bearer: String,
}

impl Api<'_> {
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", self.bearer.as_str()),
        ];
        let (status, text) = http(&self.s.addr, method, path, &headers, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn submit(&self, text: &str, session: Option<&str>) -> String {
        let mut body = json!({"user_id": "u-agent", "text": text});
        if let Some(s) = session {
            body["session_id"] = json!(s);
        }
        let (status, v) = self.call("POST", "/v1/turns", &body.to_string());
        assert_eq!(status, 202, "{v}");
        v["turn_id"].as_str().expect("id").to_string()
    }

    fn finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, v) = self.call("GET", &format!("/v1/turns/{id}"), "");
            if status == 200 && v["status"] == "terminal" {
                return v;
            }
            assert!(Instant::now() < deadline, "turn {id} did not finish: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn events_of(
    all: &std::collections::BTreeMap<ballast::ids::TurnId, Vec<Event>>,
    id: &str,
) -> Vec<Event> {
    let id: ballast::ids::TurnId = id.parse().expect("uuid");
    all.get(&id).cloned().unwrap_or_default()
}

fn plans(events: &[Event]) -> Vec<ballast::event::PlanProposed> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::PlanProposed(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn trips(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::GuardrailTripped(g) => Some(g.rule.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_sees_tool_results_and_writes_the_reply() {
    let root = tempfile::tempdir().expect("tmp");
    let model = ModelServer::start();
    let orders = OrdersServer::start();
    let config = write_deployment(root.path(), &model.url, &orders.url, "");
    let data = root.path().join("data");
    let d = data.to_str().expect("utf8");
    let out = ballast(&[
        "token",
        "--data-dir",
        d,
        "--name",
        "shop",
        "--tenant",
        "acme",
        "--roles",
        "submitter,operator,auditor",
    ]);
    let bearer = format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim());
    let s = Served::start(&["--config", config.to_str().expect("utf8")]);
    let api = Api { s: &s, bearer };

    let refund = api.submit("Please refund order A1234, it arrived broken.", None);
    let both = api.submit("What is the status of both A1001 and A1002?", None);
    let looping = api.submit("keep checking order A1003 until it moves", None);
    let long = api.submit(
        "check orders A2001 A2002 A2003 A2004 A2005 A2006 A2007 A2008",
        None,
    );
    let flaky = api.submit("Please refund order A1005 (flaky)", None);
    let first = api.submit("Where is my order A3001?", Some("chat-7"));
    let first_done = api.finished(&first);
    // A follow-up is submitted once the first answer is back, as a chat would.
    let second = api.submit("It arrived broken. Please refund it.", Some("chat-7"));
    let refund_done = api.finished(&refund);
    let both_done = api.finished(&both);
    let second_done = api.finished(&second);
    let looping_done = api.finished(&looping);
    let long_done = api.finished(&long);
    let flaky_done = api.finished(&flaky);
    let (status, session) = api.call("GET", "/v1/sessions/chat-7", "");
    assert!(s.stop().success());
    let all = common::events_by_turn(&data).await;

    // Three steps: lookup, refund of the looked-up amount, the model's own reply.
    assert_eq!(refund_done["outcome"], "succeeded", "{refund_done}");
    let e = events_of(&all, &refund);
    let p = plans(&e);
    assert_eq!(p.iter().map(|p| p.step).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(p[0].steps[0].tool, "lookup_order");
    assert_eq!(p[1].steps[0].tool, "issue_refund");
    let amount: Value = serde_json::from_str(&p[1].steps[0].args_json).expect("args");
    assert_eq!(
        amount["amount_cents"],
        amount_of("A1234"),
        "the looked-up amount"
    );
    assert!(p[2].is_answer());
    let reply = refund_done["reply"].as_str().expect("a reply");
    assert_eq!(reply, p[2].content.as_deref().unwrap_or_default());
    assert!(reply.contains(&amount_of("A1234").to_string()), "{reply}");
    assert!(p.iter().all(|p| {
        p.messages_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    }));
    assert!(
        p.iter()
            .all(|p| p.system_fingerprint.as_deref() == Some("fp_agent_test"))
    );
    assert_eq!(refund_done["steps"], 3);
    // The model asked for the refund only after it saw the lookup's result.
    let asked = model.asked();
    let refund_ask = asked
        .iter()
        .find(|a| {
            a.body.to_string().contains("A1234")
                && a.body["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x["role"] == "tool"))
        })
        .expect("a step with the lookup's result");
    assert!(
        refund_ask
            .body
            .to_string()
            .contains(&amount_of("A1234").to_string())
    );

    // Parallel calls: two lookups in one step, both results back in the model's order.
    assert_eq!(both_done["outcome"], "succeeded", "{both_done}");
    let p = plans(&events_of(&all, &both));
    assert_eq!(p[0].steps.len(), 2);
    assert_eq!(both_done["reply"], "A1001 is shipped; A1002 is shipped");

    // A loop: the same call again is stopped by the mid-plan guard, and the ladder takes over.
    let e = events_of(&all, &looping);
    assert!(
        trips(&e).iter().any(|r| r == "loop.repeated_call"),
        "{:?}",
        trips(&e)
    );
    assert_ne!(looping_done["outcome"], "succeeded");

    // max_steps: the seventh step is never asked; a person is asked instead (and, here, does
    // not answer in time).
    let e = events_of(&all, &long);
    assert!(
        trips(&e).iter().any(|r| r == "loop.max_steps"),
        "{:?}",
        trips(&e)
    );
    assert!(plans(&e).iter().all(|p| p.step < 6));
    assert!(e.iter().any(|e| matches!(&e.payload, Payload::EscalationRaised(r) if r.rung == EscalationRung::HumanHandoff)));
    assert_eq!(long_done["outcome"], "escalation_failed");

    // A session: the second turn saw the first (recorded), and refunded what it looked up.
    assert_eq!(first_done["outcome"], "succeeded");
    assert_eq!(second_done["outcome"], "succeeded", "{second_done}");
    let e = events_of(&all, &second);
    let loaded = e
        .iter()
        .find_map(|e| match &e.payload {
            Payload::SessionLoaded(s) => Some(s.clone()),
            _ => None,
        })
        .expect("the session is recorded");
    assert_eq!(loaded.turns.len(), 1);
    assert_eq!(loaded.turns[0].turn_id, first);
    let p = plans(&e);
    assert_eq!(
        p[0].steps[0].tool, "issue_refund",
        "no second lookup needed"
    );
    let args: Value = serde_json::from_str(&p[0].steps[0].args_json).expect("args");
    assert_eq!(args["order_id"], "A3001");
    assert_eq!(args["amount_cents"], amount_of("A3001"));
    assert_eq!(status, 200, "{session}");
    let listed: Vec<&str> = session["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .filter_map(|t| t["turn_id"].as_str())
        .collect();
    assert_eq!(listed, [first.as_str(), second.as_str()]);
    assert!(
        session["turns"][1]["reply"]
            .as_str()
            .is_some_and(|r| r.contains("Refunded"))
    );

    // The model failing mid-loop: the planner retried each ask, the turn climbed the ladder.
    let e = events_of(&all, &flaky);
    let failed = e
        .iter()
        .filter(|e| matches!(e.payload, Payload::ModelCallFailed(_)))
        .count();
    assert!(failed >= 2, "failures recorded: {failed}");
    let rungs: Vec<EscalationRung> = e
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::EscalationRaised(r) => Some(r.rung),
            _ => None,
        })
        .collect();
    assert_eq!(
        rungs.first(),
        Some(&EscalationRung::ConstrainedRetry),
        "{rungs:?}"
    );
    assert_eq!(
        rungs.last(),
        Some(&EscalationRung::HumanHandoff),
        "{rungs:?}"
    );
    let flaky_asks = model.asked().iter().filter(|a| a.status == 503).count();
    assert!(
        flaky_asks >= 2 * failed,
        "each failure was retried once: {flaky_asks}"
    );
    assert_eq!(flaky_done["outcome"], "escalation_failed");

    // The refund ran once per recorded refund call.
    let refund_calls: usize = all
        .values()
        .flatten()
        .filter(|e| matches!(&e.payload, Payload::ToolCallStarted(s) if s.tool == "issue_refund"))
        .count();
    assert_eq!(orders.refunds().len(), refund_calls);

    // With the model server gone, the record alone answers.
    drop(model);
    let out = ballast(&["replay", "--data-dir", d]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("matches the live projections"));
    let policies = root.path().join("policies");
    let out = ballast(&[
        "backtest",
        "--policies",
        policies.to_str().expect("utf8"),
        "--data-dir",
        d,
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("backtest json");
    assert!(
        report["evaluated"].as_u64().is_some_and(|n| n > 10),
        "{report}"
    );
    assert_eq!(report["evaluated"], report["unchanged"], "{report}");
    let out = ballast(&["audit", &refund, "--data-dir", d, "--json"]);
    let audit: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    assert!(audit.to_string().contains("issue_refund"), "{audit}");
    if std::env::var("BALLAST_PRINT_TRACES").is_ok() {
        for id in [&first, &second] {
            let out = ballast(&["trace", id, "--data-dir", d]);
            println!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    let out = ballast(&["trace", &refund, "--data-dir", d]);
    let trace = String::from_utf8_lossy(&out.stdout);
    assert!(
        trace.contains("step 0") && trace.contains("step 2"),
        "{trace}"
    );
    let out = ballast(&["trace", &refund, "--data-dir", d, "--json"]);
    let trace: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .or_else(|_| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<Vec<Value>, _>>()
        })
        .expect("trace json");
    let chats: Vec<&Value> = trace
        .iter()
        .filter(|e| e["otel"]["gen_ai.operation.name"] == "chat")
        .collect();
    assert_eq!(chats.len(), 3);
    assert!(
        chats
            .iter()
            .all(|c| c["otel"]["gen_ai.usage.input_tokens"].is_number())
    );
    assert_eq!(
        chats[2]["otel"]["gen_ai.response.finish_reasons"],
        json!(["stop"])
    );
    assert!(
        trace
            .iter()
            .any(|e| e["otel"]["gen_ai.operation.name"] == "execute_tool")
    );
}
