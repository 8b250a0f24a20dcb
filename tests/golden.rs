//! Histories that must replay: logs of turns recorded by an earlier build (`tests/golden/
//! histories/`, how they were made and what to do when one breaks: `tests/golden/README.md`).
//! For each one this build must
//!
//! (a) decode every record — requests, commands, events, handoffs, outcome records — with its
//!     own codecs (which must still know every schema the records were written with);
//! (b) fold the recorded turn log into the projections with the recorded digests, and the
//!     recorded outcome records and events;
//! (c) open the logs as a data dir and resume them with a worker: the turns left in flight (a
//!     call interrupted by a crash, an approval or a handoff waiting, a reversal cut short, a
//!     command sent while no worker ran) go on, the recorded operators act, and everything ends
//!     with the recorded events, outcome records and projection digests.
//!
//! The `waiting` projection is also held to the turn's phase after every event of every turn.

#[path = "golden/harness/mod.rs"]
mod harness;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use ballast::event::Event;
use ballast::event::codec::{Codecs, SchemaRegistry};
use ballast::projection::waiting::{WaitingKind, waiting_after};
use ballast::turn::{Phase, TurnState};
use harness::check::{self, After};
use harness::file::{self, History};

const MIGRATION: &str = "a change that breaks these is a migration: write one \
    (tests/golden/README.md says how)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_history_decodes_replays_and_resumes_as_recorded() {
    let started = Instant::now();
    let paths = file::all().expect("tests/golden/histories/ lists");
    assert!(
        paths.len() >= 6,
        "the golden histories are missing: {paths:?}"
    );
    let mut broken = Vec::new();
    for path in &paths {
        let one = Instant::now();
        match check_history(path).await {
            Ok(summary) => eprintln!("{summary} in {:.1} s", one.elapsed().as_secs_f64()),
            Err(e) => broken.push(format!("{}: {e:#}", path.display())),
        }
    }
    eprintln!(
        "{} golden histories checked in {:.1} s",
        paths.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        broken.is_empty(),
        "golden histories no longer replay — {MIGRATION}:\n\n{}",
        broken.join("\n\n")
    );
}

async fn check_history(path: &Path) -> anyhow::Result<String> {
    let h = History::read(path)?;
    let name = &h.header.name;
    // (a)
    let codecs = Codecs::new(SchemaRegistry::new())?;
    let decoded = check::decode_all(&h, &codecs).context("(a) decoding")?;
    // (b)
    let dir = tempfile::tempdir()?;
    let (replayed, _) = check::replay(&h, &dir.path().join("replay")).await?;
    compare(&h, After::Replay, &replayed).context("(b) the recorded log, replayed")?;
    // (c)
    let resumed = check::resume(&h, &dir.path().join("resume"))
        .await
        .context("(c) resuming")?;
    compare(&h, After::Resume, &resumed.expected).context("(c) the log, resumed")?;
    if h.header.covers.iter().any(|c| c == "parked") && resumed.parked == 0 {
        bail!("(c) no turn waiting for a person was parked after the restart");
    }
    waiting_follows_the_phase(&resumed.events).context("the waiting projection")?;
    Ok(format!(
        "{name}: {decoded} records decoded, {} turns replayed and resumed",
        resumed.expected.turns.len()
    ))
}

fn compare(h: &History, after: After, got: &check::Expected) -> anyhow::Result<()> {
    let want = h
        .expected
        .iter()
        .find(|e| e.after == after)
        .with_context(|| format!("the history records nothing for {after:?}"))?;
    let diffs = check::differences(want, got);
    if !diffs.is_empty() {
        bail!("{}", diffs.join("\n"));
    }
    Ok(())
}

/// After every event of every turn, the `waiting` projection's fold says what the turn's phase
/// says: an approval pending, a handoff open, or nothing a person is asked.
fn waiting_follows_the_phase(events: &[Event]) -> anyhow::Result<()> {
    for (turn, events) in check::by_turn(events) {
        for n in 1..=events.len() {
            let prefix = &events[..n];
            let state = TurnState::replay(turn, prefix)?;
            let folded = waiting_after(prefix);
            let kind = folded.as_ref().map(|w| w.kind);
            let phase = state.phase();
            let agrees = match phase {
                Phase::AwaitingApproval { index } => {
                    kind == Some(WaitingKind::Approval)
                        && folded.as_ref().and_then(|w| w.approval_id.clone())
                            == state.approval_for(index).map(|a| a.approval_id.clone())
                }
                Phase::AwaitingHandoff => {
                    kind == Some(WaitingKind::Handoff)
                        && folded.as_ref().and_then(|w| w.accepted_by.clone())
                            == state.handoff.as_ref().and_then(|h| h.accepted_by.clone())
                }
                _ => kind.is_none(),
            };
            if !agrees {
                bail!(
                    "turn {turn} after {} ({n} events): the phase is {phase:?}, the projection \
                     folds {kind:?}",
                    prefix.last().map_or("", Event::kind)
                );
            }
        }
    }
    Ok(())
}

/// Records the histories of `harness/histories.rs` into `tests/golden/histories/`: those not
/// recorded yet, or the one named by `GOLDEN_HISTORY` (overwriting it only with
/// `GOLDEN_OVERWRITE=1` — a recorded history is what later releases are held to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records tests/golden/histories/ (see tests/golden/README.md)"]
async fn record_golden() {
    let only = std::env::var("GOLDEN_HISTORY").ok();
    let overwrite = std::env::var("GOLDEN_OVERWRITE").is_ok_and(|v| v == "1");
    std::fs::create_dir_all(file::dir()).expect("mkdir");
    for def in harness::histories::all() {
        if only.as_deref().is_some_and(|n| n != def.name) {
            continue;
        }
        let path = file::dir().join(format!("{}.jsonl", def.name));
        if path.exists() && !overwrite {
            eprintln!(
                "{}: recorded already (GOLDEN_OVERWRITE=1 to replace)",
                def.name
            );
            continue;
        }
        let history = harness::record(&def)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", def.name));
        history.write(&path).expect("write");
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "{}: {} records, {} turns, {bytes} bytes",
            def.name,
            history.records.len(),
            history.workload.len()
        );
    }
}

/// Rewrites what the histories expect — never their records — with what this build makes of
/// them, and prints what changed. Only with a migration for that change in the same commit
/// (tests/golden/README.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites the expectations of tests/golden/histories/ (see tests/golden/README.md)"]
async fn bless_golden() {
    for path in file::all().expect("histories") {
        let mut h = History::read(&path).expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
        let (replayed, _) = check::replay(&h, &dir.path().join("replay"))
            .await
            .expect("replay");
        let resumed = check::resume(&h, &dir.path().join("resume"))
            .await
            .expect("resume");
        for got in [replayed, resumed.expected] {
            let old = h.expected.iter().find(|e| e.after == got.after);
            let diffs = old.map(|w| check::differences(w, &got)).unwrap_or_default();
            if old.is_none() || !diffs.is_empty() {
                eprintln!("{} {:?}:\n{}", h.header.name, got.after, diffs.join("\n"));
            }
            h.expected.retain(|e| e.after != got.after);
            h.expected.push(got);
        }
        h.expected.sort_by_key(|e| e.after == After::Resume);
        h.write(&path).expect("write");
    }
}
