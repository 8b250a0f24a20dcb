//! `kill -9` of the real `ballast serve` at random points of multi-step agent turns (look an
//! order up, refund what it cost, answer), repeated, with an OpenAI-compatible model server
//! and an orders service that count what they are asked. After the last restart every turn is
//! terminal, no step whose answer was recorded was ever asked of the model again, and no
//! refund (not idempotent) ran twice or without a recorded intent.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ballast::event::Payload;
use common::agent::{ModelServer, OrdersServer, write_deployment};
use common::{Served, ballast, http};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const TURNS: usize = 40;

fn serve(config: &std::path::Path) -> Served {
    Served::start(&["--config", config.to_str().expect("utf8")])
}

fn status(s: &Served, bearer: &str, id: &str) -> Option<String> {
    let (code, text) = http(
        &s.addr,
        "GET",
        &format!("/v1/turns/{id}"),
        &[("Authorization", bearer)],
        "",
    );
    (code == 200)
        .then(|| serde_json::from_str::<Value>(&text).ok())
        .flatten()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_loop_never_reasks_a_recorded_step_nor_repeats_a_refund() {
    let seed: u64 = std::env::var("BALLAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(3)
        });
    eprintln!("agent crash seed {seed} (BALLAST_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
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
        "submitter,auditor",
    ]);
    let bearer = format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim());

    let s = serve(&config);
    let ids: Vec<String> = (0..TURNS)
        .map(|i| {
            let body = json!({
                "user_id": format!("u-{}", i % 7),
                "text": format!("Please refund order A{}", 5_000 + i),
            });
            let (code, text) = http(
                &s.addr,
                "POST",
                "/v1/turns",
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &bearer),
                ],
                &body.to_string(),
            );
            assert_eq!(code, 202, "{text}");
            serde_json::from_str::<Value>(&text).expect("json")["turn_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();

    // Kill at points of real progress: after some refunds went through, plus a few ms.
    let mut s = Some(s);
    let mut kills = 0;
    for round in 0..4 {
        let target = 3 + round * 7 + rng.random_range(0..5);
        let deadline = Instant::now() + Duration::from_secs(60);
        while orders.refunds().len() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        drop(s.take()); // SIGKILL
        kills += 1;
        s = Some(serve(&config));
    }
    let s = s.expect("running");
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        while status(&s, &bearer, id).as_deref() != Some("terminal") {
            assert!(Instant::now() < deadline, "turn {id} never finished");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(s.stop().success());
    assert_eq!(kills, 4);

    let all = common::events_by_turn(&data).await;
    assert_eq!(all.len(), TURNS, "every turn accepted is in the log");
    let (_, _) = common::check_turn_invariants(&all);

    // No recorded step was asked again: a recorded answer names the request it came from
    // (test-model-<n>); no later request carried the same messages.
    let asked = model.asked();
    let mut by_digest: HashMap<&str, Vec<u64>> = HashMap::new();
    for a in &asked {
        by_digest.entry(a.digest.as_str()).or_default().push(a.seq);
    }
    let mut recorded = 0;
    for events in all.values() {
        for e in events {
            let Payload::PlanProposed(p) = &e.payload else {
                continue;
            };
            recorded += 1;
            let n: u64 = p
                .model_version
                .strip_prefix("test-model-")
                .and_then(|n| n.parse().ok())
                .expect("the answer names its request");
            let digest = p.messages_digest.as_deref().expect("digest recorded");
            let later: Vec<&u64> = by_digest
                .get(digest)
                .map(|v| v.iter().filter(|s| **s > n).collect())
                .unwrap_or_default();
            assert!(
                later.is_empty(),
                "step {} of turn {} was recorded from request {n} and asked again as {later:?}",
                p.step,
                e.turn_id
            );
        }
    }
    println!(
        "{kills} kills: {} model requests for {recorded} recorded steps; {} refunds",
        asked.len(),
        orders.refunds().len()
    );

    // No refund ran twice, and each one that ran had its intent recorded first.
    let refunds = orders.refunds();
    let mut keys = HashSet::new();
    for (key, _) in &refunds {
        assert!(keys.insert(key.clone()), "refund {key} ran twice");
    }
    let intents: HashSet<String> = all
        .values()
        .flatten()
        .filter_map(|e| match &e.payload {
            Payload::ToolCallStarted(s) if s.tool == "issue_refund" => {
                Some(s.idempotency_key.clone())
            }
            _ => None,
        })
        .collect();
    for key in keys {
        assert!(
            intents.contains(&key),
            "refund {key} ran without a recorded intent"
        );
    }
}
