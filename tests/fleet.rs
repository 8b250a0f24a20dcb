//! `ballast serve --config C` over Kafka (issue #32): replicas of the front door over the
//! quickstart deployment on a real broker (tests/common/fleet.rs) — two workers and two
//! replicas sharing one auth file and one master key.
//!
//! - A turn submitted through replica A with `wait_ms` answers with the model's reply; replica B
//!   streams it to its outcome; a turn POSTed through A is read at once through B with
//!   `wait_ms`; a refund held for a person is listed and approved through B and issued once.
//! - Personal values sent to the API reach no topic in clear.
//! - Under `kill -9` of a worker and of a replica (a few times) while clients submit through
//!   both replicas and retry what got no answer, the history checks out: every acknowledged
//!   turn ends exactly once, no side effect runs twice, each finished turn's spans reach the
//!   OTLP receiver (duplicates only with the same span ids), and both replicas' projections
//!   agree with the turn log folded directly.
//! - With the workers stopped, a replica with `--max-backlog 5` refuses new turns with 503 and
//!   `Retry-After`; once the workers run again, every accepted turn ends.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ballast::event::Payload;
use ballast::turn::TurnState;
use common::broker;
use common::fleet::{Fleet, REFUND_SCOPES};
use serde_json::{Value, json};

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn refund_request(user: &str, order: &str) -> String {
    json!({
        "user_id": user,
        "text": format!("Please refund order {order}, it arrived broken."),
        "attributes": {"scopes": REFUND_SCOPES},
    })
    .to_string()
}

/// The SSE stream's events as (event, data).
fn sse_events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let (mut event, mut data) = (None, String::new());
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim());
            }
        }
        if let Some(e) = event {
            out.push((e, data));
        }
    }
    out
}

#[test]
fn one_deployment_through_two_replicas_answers_streams_reads_its_writes_and_approves() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let mut f = Fleet::new(&bootstrap, "fleet-rw", 2);
    f.start_worker(0);
    f.start_worker(1);
    let (a, b) = (0, 1);
    f.start_replica(a, &[]);
    f.start_replica(b, &[]);

    // 1. Through A, waiting for the answer: the model's reply.
    let (status, _, body) = f.call(
        a,
        "POST",
        "/v1/turns?wait_ms=45000",
        &refund_request("customer-1", "A1001"),
    );
    let turn = json_of(&body)["turn_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, 200, "{body}\n{}", f.diagnose(&turn));
    let done = json_of(&body);
    assert_eq!(done["outcome"], "succeeded", "{body}\n{}", f.diagnose(&turn));
    let reply = done["reply"].as_str().unwrap_or_default();
    assert!(
        reply.contains("refunded 42.50 for order A1001"),
        "the model's reply: {body}"
    );

    // 2. The same turn streamed through B, to its outcome.
    let (status, head, body) = f.call(b, "GET", &format!("/v1/turns/{turn}/events"), "");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("text/event-stream"), "{head}");
    let events = sse_events(&body);
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"TurnRequested"), "{kinds:?}");
    assert_eq!(
        kinds.iter().rev().take(2).collect::<Vec<_>>(),
        [&"outcome", &"TurnCompleted"],
        "the stream ends with the outcome: {kinds:?}"
    );
    let outcome = json_of(&events.last().expect("outcome").1);
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    assert_eq!(outcome["reply"].as_str(), Some(reply));

    // 3. Read-your-writes across replicas: POST through A, read through B at once.
    let (status, _, body) = f.call(
        a,
        "POST",
        "/v1/turns",
        &json!({"user_id": "customer-2", "text": "Where is my order A1002?"}).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    let asked = json_of(&body)["turn_id"].as_str().expect("id").to_string();
    let (status, _, body) = f.call(b, "GET", &format!("/v1/turns/{asked}?wait_ms=10000"), "");
    assert_eq!(status, 200, "{body}\n{}", f.diagnose(&asked));
    assert_eq!(json_of(&body)["turn_id"], asked.as_str());

    // 4. A refund over 100.00 submitted through A waits for a person; B lists it, approves it.
    let (status, _, body) = f.call(
        a,
        "POST",
        "/v1/turns",
        &refund_request("customer-3", "A1003"),
    );
    assert_eq!(status, 202, "{body}");
    let held = json_of(&body)["turn_id"].as_str().expect("id").to_string();
    let queue = f.poll(
        b,
        "/v1/queue",
        Duration::from_secs(45),
        "the held refund in replica B's queue",
        &held,
        |s, body| s == 200 && body.contains(&held),
    );
    let entry = json_of(&queue)
        .as_array()
        .and_then(|q| q.iter().find(|w| w["turn_id"] == held.as_str()).cloned())
        .expect("listed");
    assert_eq!(entry["kind"], "approval", "{entry}");
    let (status, _, body) = f.call(
        b,
        "POST",
        &format!("/v1/turns/{held}/approve"),
        &json!({"reason": "checked the order"}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let finished = f.poll(
        a,
        &format!("/v1/turns/{held}"),
        Duration::from_secs(45),
        "the approved refund to finish (read through A)",
        &held,
        |s, body| s == 200 && body.contains("\"status\":\"terminal\""),
    );
    assert_eq!(json_of(&finished)["outcome"], "succeeded", "{finished}");
    // The orders service issued each refund once.
    let refunds = f.refunds();
    let per_order = |o: &str| refunds.iter().filter(|r| r["order_id"] == o).count();
    assert_eq!(per_order("A1003"), 1, "{refunds:?}");
    assert_eq!(per_order("A1001"), 1, "{refunds:?}");
    assert_eq!(refunds.len(), 2, "{refunds:?}");
}

#[test]
fn personal_values_sent_to_a_replica_reach_no_topic_in_clear() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let mut f = Fleet::new(&bootstrap, "fleet-pii", 2);
    f.start_worker(0);
    f.start_replica(0, &[]);
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let email = format!("pia.{}@example.org", &tag[20..]);
    let phone = "+49 151 2345 6789";
    let (status, _, body) = f.call(
        0,
        "POST",
        "/v1/turns?wait_ms=45000",
        &json!({
            "user_id": email,
            "text": format!("Where is my order A1002? Call me on {phone} if it is late."),
        })
        .to_string(),
    );
    let turn = json_of(&body)["turn_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, 200, "{body}\n{}", f.diagnose(&turn));
    assert_eq!(json_of(&body)["outcome"], "succeeded", "{body}");
    // Each form a value could take in a record: as sent, and its digits alone.
    let values = [email.clone(), phone.to_string(), phone.replace(' ', "")];
    let topics = [
        &f.topics.requests,
        &f.topics.events,
        &f.topics.outcomes,
        &f.topics.escalations,
        &f.topics.dead_letters,
        &f.topics.vault,
        &f.topics.reveals,
    ];
    let mut read = BTreeMap::new();
    for topic in topics {
        let (n, bytes) = f.topic_bytes(topic);
        read.insert(topic.clone(), n);
        // What is not personal is there in clear: the search reads what the records hold.
        if [&f.topics.requests, &f.topics.events].contains(&topic) {
            assert!(
                bytes.windows(5).any(|w| w == b"A1002"),
                "the order id is not found in {topic}: the search reads nothing"
            );
        }
        for v in &values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{v:?} is in clear in {topic}"
            );
        }
    }
    // Something was read, or the check proves nothing.
    assert!(read[&f.topics.requests] >= 1, "{read:?}");
    assert!(read[&f.topics.events] >= 5, "{read:?}");
    assert!(read[&f.topics.outcomes] >= 1, "{read:?}");
    assert!(read[&f.topics.vault] >= 1, "{read:?}");
}
