//! "202 means durable", attacked: `ballast serve` is killed with SIGKILL at random instants
//! while clients submit turns concurrently and retry every POST that got no answer (same
//! `turn_id`, same content), as a real client does. Every operation and what it was told is
//! recorded; afterwards a checker goes over that history, as Jepsen's does: every turn id that
//! ever got a 2xx exists and ends exactly once, and no turn exists that nobody submitted.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ballast::event::Payload;
use common::*;
use rand::{Rng, SeedableRng};

const KILLS: usize = 20;
const CLIENTS: usize = 12;

/// What one POST was told: a status, or nothing (connection refused, reset, timed out).
fn post(addr: &str, token: &str, body: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST /v1/turns HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    // A head without its body is no answer a client could act on.
    let (head, _) = text.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct History {
    /// turn id → every answer it got (None: no answer).
    answers: BTreeMap<String, Vec<Option<u16>>>,
}

#[test]
fn kill_9_under_retried_submissions_loses_no_acknowledged_turn() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf8").to_string();
    let seed: u64 = std::env::var("BALLAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id())
        });
    eprintln!("submission crash test seed {seed} (BALLAST_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let out = ballast(&[
        "token",
        "--data-dir",
        &dir,
        "--name",
        "client",
        "--tenant",
        "acme",
        "--roles",
        "submitter,auditor",
        "--grants",
        "role:customer,support:*",
        "--defaults",
        "role:customer,support:lookup_order,support:search_kb",
    ]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let addr: Arc<RwLock<Option<String>>> = Arc::new(RwLock::new(None));
    let history = Arc::new(Mutex::new(History::default()));
    let stop_new = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (addr, history, stop_new, submitted, token) = (
            Arc::clone(&addr),
            Arc::clone(&history),
            Arc::clone(&stop_new),
            Arc::clone(&submitted),
            token.clone(),
        );
        clients.push(std::thread::spawn(move || {
            // Submissions this client has not had a definite answer to, retried as they were.
            let mut open: Vec<(String, String)> = Vec::new();
            let mut n = 0;
            let give_up = Instant::now() + Duration::from_secs(600);
            loop {
                if open.is_empty() {
                    if stop_new.load(Ordering::SeqCst) {
                        break;
                    }
                    let turn = uuid::Uuid::now_v7().to_string();
                    let body = serde_json::json!({
                        "turn_id": turn,
                        // A user per turn: no user's rolling budget runs out over the run.
                        "user_id": format!("u-{c}-{n}"),
                        // A question the served demo always answers: every turn ends by itself
                        // (an order lookup may wait minutes for a person).
                        "text": format!("How long do refunds take? ({n})"),
                    })
                    .to_string();
                    n += 1;
                    submitted.fetch_add(1, Ordering::SeqCst);
                    open.push((turn, body));
                }
                let Some(current) = addr.read().ok().and_then(|a| a.clone()) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (turn, body) = open[0].clone();
                let answer = post(&current, &token, &body);
                if let Ok(mut h) = history.lock() {
                    h.answers.entry(turn.clone()).or_default().push(answer);
                }
                match answer {
                    Some(s) if (200..300).contains(&s) || (400..500).contains(&s) && s != 429 => {
                        open.remove(0);
                    }
                    // No answer, 429, 5xx: the client does not know; it retries the same.
                    _ => std::thread::sleep(Duration::from_millis(3)),
                }
                assert!(Instant::now() < give_up, "client {c} could not finish");
            }
        }));
    }

    let start = |addr: &RwLock<Option<String>>| {
        let served = Served::start_with(&["--data-dir", &dir], std::process::Stdio::null(), &[]);
        *addr.write().expect("addr") = Some(served.addr.trim_start_matches("http://").to_string());
        served
    };
    for _ in 0..KILLS {
        let mut served = start(&addr);
        std::thread::sleep(Duration::from_millis(rng.random_range(80..700)));
        *addr.write().expect("addr") = None;
        served.child.kill().expect("SIGKILL");
        served.child.wait().expect("reap");
    }
    let served = start(&addr);
    stop_new.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let history = Arc::try_unwrap(history)
        .ok()
        .expect("clients done")
        .into_inner()
        .expect("history");

    // The checker.
    let acked: Vec<&String> = history
        .answers
        .iter()
        .filter(|(_, a)| a.iter().any(|s| s.is_some_and(|s| (200..300).contains(&s))))
        .map(|(t, _)| t)
        .collect();
    let refused: Vec<(&String, &Vec<Option<u16>>)> = history
        .answers
        .iter()
        .filter(|(_, a)| {
            a.iter()
                .any(|s| s.is_some_and(|s| (400..500).contains(&s) && s != 429))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "a retried submission of the same content was refused: {refused:?}"
    );
    let unanswered = history
        .answers
        .values()
        .flatten()
        .filter(|a| a.is_none())
        .count();
    eprintln!(
        "{} turns submitted, {} acknowledged, {unanswered} POSTs unanswered across {KILLS} kills",
        submitted.load(Ordering::SeqCst),
        acked.len()
    );
    assert!(
        unanswered > 0,
        "no kill landed mid-request: the test proved nothing"
    );

    // Every acknowledged turn exists and finishes.
    let audit = ballast(&[
        "token",
        "--data-dir",
        &dir,
        "--name",
        "checker",
        "--tenant",
        "acme",
        "--roles",
        "auditor,operator",
    ]);
    let auditor = String::from_utf8_lossy(&audit.stdout).trim().to_string();
    std::thread::sleep(Duration::from_millis(1500)); // the auth file is re-read every second
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut missing: Vec<String> = Vec::new();
    for turn in &acked {
        loop {
            let (status, body) = http(
                &served.addr,
                "GET",
                &format!("/v1/turns/{turn}"),
                &[("Authorization", &format!("Bearer {auditor}"))],
                "",
            );
            if status == 200 && body.contains("\"status\":\"terminal\"") {
                break;
            }
            if status == 429 {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            // A tool call interrupted by kill after kill on its every attempt is handed to a
            // person ("outcome unknown"), as it must be: the operator resolves it, and the turn
            // ends there.
            let (_, handoffs) = http(
                &served.addr,
                "GET",
                "/v1/handoffs",
                &[("Authorization", &format!("Bearer {auditor}"))],
                "",
            );
            if handoffs.contains(turn.as_str()) {
                http(
                    &served.addr,
                    "POST",
                    &format!("/v1/handoffs/{turn}/resolve"),
                    &[
                        ("Authorization", &format!("Bearer {auditor}")),
                        ("Content-Type", "application/json"),
                    ],
                    r#"{"resolution":"checked by the crash test's operator"}"#,
                );
            }
            if Instant::now() > deadline {
                missing.push(format!("{turn}: {status} {body}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(first) = missing.first() {
        // Where the first one stopped, for whoever reads the failure.
        let id = first.split(':').next().unwrap_or_default();
        let trace = std::process::Command::new(bin())
            .args(["trace", id, "--data-dir", &dir])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        panic!(
            "{} acknowledged turns never existed or never ended: {missing:#?}\nthe first one's trace:\n{trace}",
            missing.len()
        );
    }
    served.stop();

    // Exactly once, from the log itself.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let turns = rt.block_on(events_by_turn(tmp.path()));
    check_turn_invariants(&turns);
    let mut requested: HashMap<String, usize> = HashMap::new();
    let mut ended: HashMap<String, usize> = HashMap::new();
    for (turn, events) in &turns {
        for e in events {
            match &e.payload {
                Payload::TurnRequested(_) => *requested.entry(turn.to_string()).or_default() += 1,
                Payload::TurnCompleted(_) => *ended.entry(turn.to_string()).or_default() += 1,
                _ => {}
            }
        }
    }
    for turn in &acked {
        assert_eq!(requested.get(*turn), Some(&1), "turn {turn} requested once");
        assert_eq!(ended.get(*turn), Some(&1), "turn {turn} ended once");
    }
    for turn in turns.keys() {
        assert!(
            history.answers.contains_key(&turn.to_string()),
            "turn {turn} is in the log but nobody submitted it"
        );
    }
}
