//! Back-pressure of a `serve` replica over Kafka (issue #32, item 5): with no worker running, a
//! replica started with `--max-backlog 5` takes at most five requests per partition and then
//! answers 503 with `Retry-After` instead of producing without limit; once a worker runs, every
//! accepted turn ends, the backlog drains and the replica takes turns again.

mod common;

use std::time::{Duration, Instant};

use common::broker;
use common::fleet::Fleet;
use serde_json::{Value, json};

const PARTITIONS: u32 = 2;
const MAX_BACKLOG: usize = 5;

fn lookup(user: &str) -> String {
    json!({"user_id": user, "text": "Where is my order A1002?"}).to_string()
}

#[test]
fn a_replica_refuses_past_its_backlog_bound_and_every_accepted_turn_ends() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let mut f = Fleet::new(&bootstrap, "fleet-backlog", PARTITIONS);
    f.start_replica(0, &["--max-backlog", &MAX_BACKLOG.to_string()]);

    let (mut accepted, mut refused) = (Vec::new(), 0);
    for n in 0..40 {
        let (status, head, body) = f.call(0, "POST", "/v1/turns", &lookup(&format!("u-{n}")));
        match status {
            202 => {
                let v: Value = serde_json::from_str(&body).expect("json");
                accepted.push(v["turn_id"].as_str().expect("id").to_string());
            }
            503 => {
                refused += 1;
                let retry = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("retry-after:")
                            .map(|v| v.trim().to_string())
                    })
                    .unwrap_or_else(|| panic!("503 without Retry-After: {head}"));
                let secs: u64 = retry.parse().expect("Retry-After in seconds");
                assert!((1..=60).contains(&secs), "{retry}");
                assert!(body.contains("behind"), "{body}");
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    // The bound holds between the replica's measurements too: it counts what it wrote.
    assert!(
        accepted.len() <= MAX_BACKLOG * PARTITIONS as usize,
        "{} accepted with no worker running",
        accepted.len()
    );
    assert!(accepted.len() >= MAX_BACKLOG, "{} accepted", accepted.len());
    assert_eq!(accepted.len() + refused, 40);

    // A worker comes: every accepted turn ends.
    f.start_worker(0);
    for id in &accepted {
        f.poll(
            0,
            &format!("/v1/turns/{id}?wait_ms=5000"),
            Duration::from_secs(90),
            "an accepted turn to end once a worker runs",
            id,
            |s, body| s == 200 && body.contains("\"status\":\"terminal\""),
        );
    }
    // The backlog drained: the replica takes turns again (its measurement runs every second).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = f.call(0, "POST", "/v1/turns", &lookup("u-after"));
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "still refused: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
