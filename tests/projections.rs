//! Projections on the real sled log: folded live, in many small catch-ups while a worker runs the
//! demo workload, then rebuilt from offset 0; both must hold exactly the same rows (digests), and
//! the outcome projection must hold exactly the outcome records the worker published.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::demo::tools::EffectsJournal;
use ballast::embedded::Embedded;
use ballast::event::TurnOutcome;
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::{EventLog, Scan};
use ballast::projection::outcomes::OutcomeView;
use ballast::projection::turn_index::{TurnIndex, TurnStatus};
use ballast::projection::{Projections, slo};
use ballast::runtime::{Worker, WorkerConfig};
use tokio::sync::watch;

async fn published_outcomes(emb: &Embedded) -> BTreeMap<TurnId, TurnOutcome> {
    let mut out = BTreeMap::new();
    for p in (0..emb.outcomes.partitions()).map(Partition) {
        let mut scan = Scan::new(emb.outcomes.as_ref(), p, Offset::ZERO);
        while let Some(chunk) = scan.next_chunk(1024).await.expect("read outcomes") {
            for s in chunk {
                let o = emb
                    .codecs
                    .outcomes
                    .decode(&s.value)
                    .expect("decode outcome");
                out.insert(o.turn_id, o);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_projections_equal_a_rebuild_from_offset_zero() {
    let root = tempfile::tempdir().expect("tempdir");
    let emb = Embedded::open(root.path(), 4).expect("open");
    let workload = ballast::demo::workload::generate(400, 7);
    let journal = EffectsJournal::open(&root.path().join("effects.jsonl")).expect("journal");
    let exec = ballast::demo::plane(&workload, journal, 1);
    let control = Arc::new(
        ballast::demo::operator::demo_control(exec.tools.catalog().clone()).expect("policies"),
    );
    let deps = emb.deps(exec, control);
    let worker = Worker::new(deps, WorkerConfig::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let partitions: Vec<Partition> = (0..emb.partitions()).map(Partition).collect();
    let task = tokio::spawn(async move { worker.run(partitions, stop_rx).await });
    let now = ballast::clock::Clock::now_ms(&ballast::clock::SystemClock);
    ballast::submit::submit(
        emb.requests.as_ref(),
        &emb.codecs.requests,
        &ballast::demo::run::requests_for(&workload, now),
    )
    .await
    .expect("submit");

    // Live: catch up over and over while turns run, so chunks end mid-turn everywhere.
    let live = Projections::standard(&emb.store).expect("projections");
    let index = TurnIndex::open(&emb.store).expect("index");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut catch_ups = 0;
    loop {
        live.catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
            .await
            .expect("catch up");
        catch_ups += 1;
        let done = workload
            .iter()
            .filter(|t| {
                index
                    .get(t.turn_id)
                    .expect("index")
                    .is_some_and(|e| e.status == TurnStatus::Terminal)
            })
            .count();
        if done == workload.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} turns finished",
            workload.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send_replace(true);
    task.await.expect("join").expect("worker");
    live.catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
        .await
        .expect("final catch up");
    assert!(
        catch_ups > 3,
        "the live fold ran in several steps ({catch_ups})"
    );
    let live_digests = live.digests().expect("digests");
    let live_digest = live.digest().expect("digest");

    // The outcome projection holds exactly what the worker published.
    let view = OutcomeView::open(&emb.store).expect("view");
    let projected: BTreeMap<TurnId, TurnOutcome> = view
        .all()
        .expect("outcomes")
        .into_iter()
        .map(|o| (o.turn_id, o))
        .collect();
    let published = published_outcomes(&emb).await;
    assert_eq!(projected.len(), workload.len());
    assert_eq!(
        projected, published,
        "projected outcomes = published outcomes"
    );
    let slis_live = slo::compute(&view.all().expect("all"), now + 60_000, &Default::default());

    // Rebuild from offset 0 in one pass.
    live.reset().expect("reset");
    assert!(view.all().expect("empty").is_empty());
    let rebuilt = live
        .catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
        .await
        .expect("rebuild");
    assert_eq!(rebuilt.undecodable, 0);
    assert_eq!(live.digests().expect("digests"), live_digests);
    assert_eq!(live.digest().expect("digest"), live_digest);
    let slis_rebuilt = slo::compute(&view.all().expect("all"), now + 60_000, &Default::default());
    assert_eq!(slis_live, slis_rebuilt);
    // A demo workload fails some turns on purpose: the SLIs are not trivially perfect.
    assert!(slis_live[0].value < 1.0 && slis_live[0].total == workload.len() as u64);
}

/// A duplicated delivery (Kafka's idempotent producer may write a batch twice) changes no row.
#[tokio::test]
async fn duplicate_events_change_no_row() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = ballast::log::SledStore::open(root.path()).expect("store");
    let codecs = ballast::embedded::load_codecs(&store).expect("codecs");
    let once = ballast::log::MemoryLog::new(1);
    let twice = ballast::log::MemoryLog::new(1);
    let turn = TurnId::from_parts(1_767_225_600_000, [3; 10]);
    let events = ballast::event::fixtures::every_event(turn);
    for (log, copies) in [(&once, 1), (&twice, 2)] {
        for e in &events {
            for _ in 0..copies {
                log.append(
                    Partition(0),
                    vec![ballast::log::Record {
                        key: turn.key(),
                        value: codecs.events.encode(e).expect("encode"),
                    }],
                )
                .await
                .expect("append");
            }
        }
    }
    let rows = |log: &ballast::log::MemoryLog| {
        let store = store.clone();
        let codecs = codecs.clone();
        let log = log.clone();
        async move {
            let set = Projections::standard(&store).expect("projections");
            set.reset().expect("reset");
            set.catch_up(&log, &codecs.events, &|_| {})
                .await
                .expect("catch up");
            let index = TurnIndex::open(&store).expect("index").all().expect("all");
            let outcomes = OutcomeView::open(&store).expect("view").all().expect("all");
            (
                serde_json::to_string(&index).expect("json"),
                serde_json::to_string(&outcomes).expect("json"),
            )
        }
    };
    let a = rows(&once).await;
    let b = rows(&twice).await;
    assert!(a.0.contains(&turn.to_string()));
    assert_eq!(a, b);
}
