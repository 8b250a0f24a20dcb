//! Helpers shared by the integration tests that drive the real `ballast` binary.
#![allow(dead_code)]

pub mod broker;
pub mod kafka;
pub mod plane;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

use ballast::embedded::Embedded;
use ballast::event::{Event, Payload};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::EventLog;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ballast")
}

pub fn ballast(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("ballast runs");
    if !out.status.success() {
        panic!(
            "ballast {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn turns_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = ballast(&["turns", "--data-dir", dir.to_str().expect("utf8"), "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Every event in the data dir, grouped by turn, in seq order as stored.
pub async fn events_by_turn(dir: &Path) -> BTreeMap<TurnId, Vec<Event>> {
    let emb = Embedded::open(dir, 0).expect("open data dir");
    let mut out: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for p in (0..emb.events.partitions()).map(Partition) {
        for s in emb
            .events
            .read(p, Offset::ZERO, usize::MAX)
            .await
            .expect("read")
        {
            let e = emb
                .codecs
                .events
                .decode(&s.value)
                .expect("every stored event decodes");
            out.entry(e.turn_id).or_default().push(e);
        }
    }
    out
}

/// Checks the log invariants every run must keep; returns (tool calls started, results).
pub fn check_turn_invariants(turns: &BTreeMap<TurnId, Vec<Event>>) -> (usize, usize) {
    let (mut started, mut results) = (0, 0);
    for (turn, events) in turns {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (0..events.len() as i64).collect::<Vec<_>>(),
            "turn {turn}: dense, in order, no duplicates"
        );
        let mut per_attempt: HashMap<(String, i32), usize> = HashMap::new();
        for e in events {
            match &e.payload {
                Payload::ToolCallStarted(s) => {
                    started += 1;
                    per_attempt
                        .entry((s.call_id.clone(), s.attempt))
                        .or_insert(0);
                }
                Payload::ToolCallCompleted(c) => {
                    results += 1;
                    *per_attempt
                        .entry((c.call_id.clone(), c.attempt))
                        .or_insert(100) += 1;
                }
                Payload::ToolCallFailed(f) => {
                    results += 1;
                    *per_attempt
                        .entry((f.call_id.clone(), f.attempt))
                        .or_insert(100) += 1;
                }
                _ => {}
            }
        }
        for (call, n) in per_attempt {
            assert_eq!(
                n, 1,
                "turn {turn}: call {call:?} must have exactly one result event"
            );
        }
    }
    (started, results)
}

/// effects.jsonl as (call_id, tool, idempotency_key) lines.
pub fn effects(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("effects.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("effects.jsonl line is JSON");
            let s = |k: &str| v[k].as_str().expect("string field").to_string();
            (s("call_id"), s("tool"), s("idempotency_key"))
        })
        .collect()
}
