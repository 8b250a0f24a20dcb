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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    let turn = json_of(&body)["turn_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(status, 200, "{body}\n{}", f.diagnose(&turn));
    let done = json_of(&body);
    assert_eq!(
        done["outcome"],
        "succeeded",
        "{body}\n{}",
        f.diagnose(&turn)
    );
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
    // B holds the user's key A sealed under (read from the vault topic before the turn's
    // events): the user is redacted, not shown as forgotten.
    assert_eq!(json_of(&body)["user_id"], "[REDACTED:user]", "{body}");

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
    let turn = json_of(&body)["turn_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
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

/// What one POST was told: a status, or nothing (connection refused, reset, timed out).
fn post(addr: &str, token: &str, path: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, _) = text.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1)?.parse().ok()
}

const FAULT_TURNS: usize = 200;
const FAULT_CLIENTS: usize = 8;
const FAULT_ROUNDS: usize = 3;
/// Each client's pause between turns: 200 turns take about ten seconds to submit.
const PACE: Duration = Duration::from_millis(350);

#[test]
fn under_kill_9_of_workers_and_replicas_every_acknowledged_turn_ends_once_and_is_exported() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let began = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1}s] {what}", began.elapsed().as_secs_f64());
    let (otlp, got) = common::otlp::receiver(Duration::from_millis(20));
    let mut f = Fleet::new(&bootstrap, "fleet-faults", 4);
    f.start_worker(0);
    f.start_worker(1);
    let flags = ["--otlp-endpoint", otlp.url.as_str()];
    f.start_replica(0, &flags);
    f.start_replica(1, &flags);
    phase("deployment up");

    // Where the clients find the replicas: None while one is down.
    let addrs: Arc<RwLock<Vec<Option<String>>>> = Arc::new(RwLock::new(vec![
        Some(f.addr(0).to_string()),
        Some(f.addr(1).to_string()),
    ]));
    let history: Arc<Mutex<BTreeMap<String, Vec<Option<u16>>>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..FAULT_CLIENTS {
        let (addrs, history, next, token) = (
            Arc::clone(&addrs),
            Arc::clone(&history),
            Arc::clone(&next),
            f.token.clone(),
        );
        clients.push(std::thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(240);
            let mut attempt = c;
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= FAULT_TURNS {
                    break;
                }
                let turn = uuid::Uuid::now_v7().to_string();
                // Half refund an order (two tools, a side effect), half look one up.
                let text = if n % 2 == 0 {
                    "Please refund order A1001, it arrived broken."
                } else {
                    "Where is my order A1002?"
                };
                let body = json!({
                    "turn_id": turn,
                    "user_id": format!("c{c}-u{n}"),
                    "text": text,
                    "attributes": {"scopes": REFUND_SCOPES},
                })
                .to_string();
                // Retried as sent until a definite answer, each attempt on the other replica.
                loop {
                    attempt += 1;
                    let addr = addrs.read().expect("addrs")[attempt % 2].clone();
                    let answer = addr.and_then(|a| post(&a, &token, "/v1/turns", &body));
                    history
                        .lock()
                        .expect("history")
                        .entry(turn.clone())
                        .or_default()
                        .push(answer);
                    match answer {
                        Some(s) if (200..300).contains(&s) => break,
                        Some(s) if (400..500).contains(&s) && s != 429 => break,
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                    assert!(Instant::now() < give_up, "client {c} could not finish");
                }
                // Paced, so the submissions span the faults.
                std::thread::sleep(PACE);
            }
        }));
    }

    // The faults: a worker and a replica killed with SIGKILL, then started again, a few times.
    let mut rng_state = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut random = |lo: u64, hi: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        lo + rng_state % (hi - lo)
    };
    let mut kills = 0;
    for round in 0..FAULT_ROUNDS {
        std::thread::sleep(Duration::from_millis(random(300, 1500)));
        let (w, r) = (round % 2, (round + 1) % 2);
        addrs.write().expect("addrs")[r] = None;
        f.kill_replica(r);
        f.kill_worker(w);
        kills += 1;
        phase(&format!("killed worker {w} and replica {r}"));
        std::thread::sleep(Duration::from_millis(random(200, 1200)));
        f.start_worker(w);
        let addr = f.start_replica(r, &[]);
        addrs.write().expect("addrs")[r] = Some(addr);
        phase("restarted");
    }
    for c in clients {
        c.join().expect("client");
    }
    phase("clients done");
    let history = std::mem::take(&mut *history.lock().expect("history"));

    // The checker: what the clients were told.
    let acked: BTreeSet<String> = history
        .iter()
        .filter(|(_, a)| a.iter().flatten().any(|s| (200..300).contains(s)))
        .map(|(t, _)| t.clone())
        .collect();
    let refused: Vec<_> = history
        .iter()
        .filter(|(_, a)| {
            a.iter()
                .flatten()
                .any(|s| (400..500).contains(s) && *s != 429)
        })
        .collect();
    assert!(
        refused.is_empty(),
        "a retried submission was refused: {refused:?}"
    );
    assert_eq!(
        acked.len(),
        FAULT_TURNS,
        "every turn was acknowledged in the end"
    );
    let unanswered = history.values().flatten().filter(|a| a.is_none()).count();
    let retried = history.values().filter(|a| a.len() > 1).count();

    // Every acknowledged turn ends (bounded), read from the turn log itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    let log = loop {
        let log = f.turn_log();
        let open: Vec<&String> = acked
            .iter()
            .filter(|t| {
                !t.parse()
                    .ok()
                    .and_then(|id| log.get(&id))
                    .is_some_and(|es| {
                        es.iter()
                            .any(|e| matches!(e.payload, Payload::TurnCompleted(_)))
                    })
            })
            .collect();
        if open.is_empty() {
            break log;
        }
        if Instant::now() > deadline {
            panic!(
                "{} acknowledged turns did not end, e.g. {:?}\n{}",
                open.len(),
                open.first(),
                f.diagnose(open[0])
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };

    phase("every acknowledged turn ended");
    // Exactly once, from the log: one request and one end per acknowledged turn, nothing else.
    common::check_turn_invariants(&log);
    for (turn, events) in &log {
        let id = turn.to_string();
        assert!(
            acked.contains(&id),
            "turn {turn} is in the log but was never acknowledged"
        );
        let count = |kind: &str| events.iter().filter(|e| e.kind() == kind).count();
        assert_eq!(count("TurnRequested"), 1, "turn {turn} requested once");
        assert_eq!(count("TurnCompleted"), 1, "turn {turn} ended once");
    }
    // No side effect ran twice: one refund call per refunding turn, and the orders service
    // issued exactly one refund per call (its idempotency key).
    let mut refund_keys = BTreeSet::new();
    for (turn, events) in &log {
        let calls: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::ToolCallStarted(s) if s.tool == "issue_refund" => {
                    Some(s.idempotency_key.as_str())
                }
                _ => None,
            })
            .collect();
        assert!(
            calls.len() <= 1,
            "turn {turn} issued refunds under several keys: {calls:?}"
        );
        refund_keys.extend(calls.into_iter().map(str::to_string));
    }
    let refunds = f.refunds();
    assert_eq!(
        refunds.len(),
        refund_keys.len(),
        "one refund per refund call: {} issued for {} calls",
        refunds.len(),
        refund_keys.len()
    );

    // Each finished turn's root span reached the collector; a duplicate is the same span.
    let deadline = Instant::now() + Duration::from_secs(90);
    let roots = loop {
        let roots: HashMap<Vec<u8>, Vec<Vec<u8>>> = {
            let g = got.lock().expect("receiver");
            let mut roots: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
            for s in g.spans.iter().filter(|s| s.parent.is_empty()) {
                roots
                    .entry(s.trace_id.clone())
                    .or_default()
                    .push(s.span_id.clone());
            }
            roots
        };
        let missing: Vec<&String> = acked
            .iter()
            .filter(|t| !roots.contains_key(&common::otlp::trace_id_of(t)))
            .collect();
        if missing.is_empty() {
            break roots;
        }
        if Instant::now() > deadline {
            panic!(
                "{} finished turns never reached the OTLP receiver, e.g. {:?}\n{}{}",
                missing.len(),
                missing.first(),
                f.metrics("ballast_otlp"),
                f.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    phase("every root span received");
    let duplicated: Vec<_> = roots.iter().filter(|(_, ids)| ids.len() > 1).collect();
    for (trace, ids) in &duplicated {
        let distinct: BTreeSet<&Vec<u8>> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "trace {trace:?} exported with different root span ids"
        );
    }
    let (span_requests, spans) = {
        let g = got.lock().expect("receiver");
        (g.requests, g.spans.len())
    };

    // Both replicas' projections agree with the turn log folded directly.
    let folded: BTreeMap<String, (String, Option<String>)> = log
        .iter()
        .map(|(turn, events)| {
            let state = TurnState::replay(*turn, events.iter()).expect("replays");
            let outcome = state
                .outcome_record("")
                .map(|o| o.outcome.as_str().to_string());
            let status = if outcome.is_some() {
                "terminal"
            } else {
                "running"
            };
            (turn.to_string(), (status.to_string(), outcome))
        })
        .collect();
    for r in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _, body) = f.call(r, "GET", "/v1/turns?limit=1000", "");
            assert_eq!(status, 200, "{body}");
            let listed: BTreeMap<String, (String, Option<String>)> = json_of(&body)
                .as_array()
                .expect("a list")
                .iter()
                .map(|t| {
                    (
                        t["turn_id"].as_str().unwrap_or_default().to_string(),
                        (
                            t["status"].as_str().unwrap_or_default().to_string(),
                            t["outcome"].as_str().map(str::to_string),
                        ),
                    )
                })
                .collect();
            if listed == folded {
                break;
            }
            if Instant::now() > deadline {
                let differ: Vec<_> = folded
                    .iter()
                    .filter(|(t, v)| listed.get(*t) != Some(v))
                    .take(5)
                    .map(|(t, v)| (t, v, listed.get(t)))
                    .collect();
                panic!(
                    "replica {r}'s projection disagrees with the log ({} listed, {} in the log), e.g. (turn, log, replica): {differ:?}\n{}",
                    listed.len(),
                    folded.len(),
                    f.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    phase("projections agree");
    if std::env::var_os("FLEET_DEBUG").is_some() {
        for i in 0..2 {
            eprintln!(
                "=== replica {i}\n{}",
                std::fs::read_to_string(f.dir().join(format!("replica-{i}.log")))
                    .unwrap_or_default()
            );
        }
    }
    let outcomes: BTreeMap<&str, usize> = folded.values().fold(BTreeMap::new(), |mut m, (_, o)| {
        *m.entry(o.as_deref().unwrap_or("-")).or_default() += 1;
        m
    });
    eprintln!(
        "{FAULT_TURNS} turns acknowledged through {FAULT_CLIENTS} clients across {kills} kills of a worker and a replica: \
         {unanswered} POSTs unanswered, {retried} turns retried; outcomes {outcomes:?}; {} refunds; \
         otlp: {span_requests} export requests, {spans} spans, {} of {} traces' roots received more than once",
        refunds.len(),
        duplicated.len(),
        roots.len()
    );
}
