//! Crash test: the real binary, on a real sled data dir, killed with SIGKILL at random moments,
//! restarted until the workload is done. Nothing accepted is lost; nothing unsafe runs twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use ballast::event::{Payload, ToolFailureKind};
use common::*;
use rand::{Rng, SeedableRng};

const TURNS: &str = "3000";

fn demo_cmd(dir: &str) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "demo",
        "--data-dir",
        dir,
        "--turns",
        TURNS,
        "--service-latency-ms",
        "25",
    ]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_turn_and_never_repeats_an_unsafe_effect() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf8").to_string();
    let seed: u64 = std::env::var("BALLAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ u64::from(std::process::id())
        });
    eprintln!("crash test seed {seed} (BALLAST_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // Kill at random points of real progress (side effects journaled so far), plus a random few
    // milliseconds, so every kill lands mid-run however fast the machine is.
    let journal = tmp.path().join("effects.jsonl");
    let progress = || std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count());
    let mut kills = 0;
    let mut finished_early = false;
    for round in 0..5usize {
        let target = 60 + round * 130 + rng.random_range(0..100);
        let mut child = demo_cmd(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let exited = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if progress() >= target || std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if let Some(status) = exited {
            assert!(status.success(), "demo exited with {status}");
            finished_early = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..30)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the test must really kill the process mid-run (killed {kills} times)"
    );

    // Restart until done: the last run finishes the same workload.
    let out = demo_cmd(&dir).output().expect("final run");
    assert!(
        out.status.success(),
        "final run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("3000 in the workload"), "{summary}");
    eprintln!("killed {kills} times (finished early: {finished_early}); final run:\n{summary}");

    // Every accepted turn ends terminal.
    let turns = turns_json(tmp.path());
    assert_eq!(
        turns.len(),
        3000,
        "every workload turn was accepted exactly once"
    );
    let running: Vec<_> = turns.iter().filter(|t| t["status"] != "terminal").collect();
    assert!(
        running.is_empty(),
        "{} turns not terminal: {:?}",
        running.len(),
        running.first()
    );

    // Each turn's events are dense and in order; each started call attempt has exactly one result.
    let by_turn = events_by_turn(tmp.path()).await;
    let (started, results) = check_turn_invariants(&by_turn);
    assert_eq!(started, results);

    // The write-ahead intent precedes every side effect, and no non-idempotent call ran twice.
    let mut intents: HashMap<String, bool> = HashMap::new();
    let mut recovered = 0;
    for e in by_turn.values().flatten() {
        match &e.payload {
            Payload::ToolCallStarted(s) => {
                intents.insert(s.call_id.clone(), s.idempotent);
            }
            Payload::ToolCallFailed(f)
                if matches!(
                    f.kind,
                    ToolFailureKind::OutcomeUnknown | ToolFailureKind::Interrupted
                ) =>
            {
                recovered += 1;
            }
            _ => {}
        }
    }
    let mut seen_non_idempotent = HashSet::new();
    let effects = effects(tmp.path());
    assert!(!effects.is_empty());
    for (call_id, tool, key) in &effects {
        let idempotent = *intents
            .get(call_id)
            .unwrap_or_else(|| panic!("{tool} {call_id} ran without a durable ToolCallStarted"));
        assert_eq!(call_id, key);
        if !idempotent {
            assert!(
                seen_non_idempotent.insert(call_id.clone()),
                "non-idempotent {tool} {call_id} ran twice"
            );
        }
    }
    eprintln!(
        "{} turns, {started} call attempts, {} side effects journaled, {recovered} calls settled after a crash",
        by_turn.len(),
        effects.len()
    );
}
