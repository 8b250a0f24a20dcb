//! The [`EventLog`] contract as executable tests. Every backend runs the whole suite through
//! [`crate::log_conformance_tests!`]; a new backend is done when it passes.
//!
//! These are test helpers: they assert, and panic on violation.

// Test code (feature `test-util`): a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{EventLog, LogError, Record};
use crate::ids::{Offset, Partition};

/// Opens logs of one backend for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, empty log with `partitions` partitions.
    async fn fresh(&self, partitions: u32) -> Arc<dyn EventLog>;
    /// Drops `log` and opens the same storage again; `None` when the backend cannot persist.
    async fn reopen(&self, log: Arc<dyn EventLog>) -> Option<Arc<dyn EventLog>>;
    /// Whether appended batches occupy exactly `base..base+n` with nothing after them. `false`
    /// for transactional Kafka writers: each commit writes a marker that takes an offset, so a
    /// batch is contiguous but the next one starts after a gap that readers skip.
    fn dense(&self) -> bool {
        true
    }
    /// Whether a record is visible to `read`, `end` and tails as soon as `append` returns.
    /// `false` for transactional Kafka writers: a commit returns once the coordinator has
    /// recorded it, and the markers that make the records visible to `read_committed` readers
    /// are written just after (`end` is then the last stable offset).
    fn reads_own_writes(&self) -> bool {
        true
    }
}

/// Waits (bounded) until `end()` reaches `until` on backends whose appends become visible
/// shortly after they return; on the others the records must already be there.
async fn visible(h: &dyn Harness, log: &dyn EventLog, p: Partition, until: Offset) {
    if h.reads_own_writes() {
        return;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let end = log.end(p).await.expect("end");
        if end >= until {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{p} still ends at {end}, not {until}, {WAIT:?} after the append returned"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where the batch appended after one that ended at `prev_end` may start.
fn check_base(h: &dyn Harness, base: Offset, prev_end: Offset, what: &str) {
    if h.dense() {
        assert_eq!(base, prev_end, "{what}: dense offsets");
    } else {
        assert!(base >= prev_end, "{what}: {base} after {prev_end}");
    }
}

/// `end()` after the last record, at `last_end` (one past it).
async fn check_end(h: &dyn Harness, log: &dyn EventLog, p: Partition, last_end: Offset) {
    let end = log.end(p).await.expect("end");
    if h.dense() {
        assert_eq!(end, last_end, "end of {p}");
    } else {
        assert!(end >= last_end, "end of {p}: {end} before {last_end}");
    }
}

fn rec(key: &str, value: &str) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

const WAIT: Duration = Duration::from_secs(10);

pub async fn offsets_are_dense_from_zero(h: &dyn Harness) {
    let log = h.fresh(2).await;
    let p = Partition(1);
    assert_eq!(log.end(p).await.expect("end"), Offset(0));
    let a = log.append(p, vec![rec("k", "a")]).await.expect("append");
    assert_eq!(a, Offset(0), "a new partition starts at 0");
    let b = log
        .append(p, vec![rec("k", "b"), rec("k", "c"), rec("k", "d")])
        .await
        .expect("append");
    check_base(h, b, Offset(a.0 + 1), "second batch");
    let e = log.append(p, vec![rec("k", "e")]).await.expect("append");
    check_base(h, e, Offset(b.0 + 3), "third batch");
    visible(h, &*log, p, Offset(e.0 + 1)).await;
    check_end(h, &*log, p, Offset(e.0 + 1)).await;
    let all = log.read(p, Offset(0), 100).await.expect("read");
    let offsets: Vec<u64> = all.iter().map(|s| s.offset.0).collect();
    assert_eq!(
        offsets,
        vec![a.0, b.0, b.0 + 1, b.0 + 2, e.0],
        "batches are contiguous"
    );
    let values: Vec<&[u8]> = all.iter().map(|s| s.value.as_slice()).collect();
    assert_eq!(values, vec![b"a", b"b", b"c", b"d", b"e"]);
}

/// A read from any offset, a gap's included, starts at the first record at or after it.
pub async fn a_read_starts_at_the_first_record_at_or_after_from(h: &dyn Harness) {
    let log = h.fresh(1).await;
    let p = Partition(0);
    let mut last = Offset(0);
    for b in 0..4 {
        let batch = (0..3).map(|i| rec("k", &format!("{b}.{i}"))).collect();
        last = log.append(p, batch).await.expect("append");
    }
    visible(h, &*log, p, Offset(last.0 + 3)).await;
    let all = log.read(p, Offset(0), 100).await.expect("read");
    assert_eq!(all.len(), 12);
    let end = log.end(p).await.expect("end");
    for from in 0..end.0 + 2 {
        let got = log.read(p, Offset(from), 2).await.expect("read");
        let want: Vec<&super::Stored> = all.iter().filter(|s| s.offset.0 >= from).take(2).collect();
        let got: Vec<&super::Stored> = got.iter().collect();
        assert_eq!(got, want, "read from {from}");
    }
    // Reading forwards in small steps (one reader kept between reads) sees every record once.
    let mut scan = super::Scan::new(&*log, p, Offset(0));
    let mut seen = Vec::new();
    while let Some(chunk) = scan.next_chunk(5).await.expect("scan") {
        seen.extend(chunk);
    }
    assert_eq!(seen, all);
}

pub async fn read_from_any_offset(h: &dyn Harness) {
    let log = h.fresh(1).await;
    let p = Partition(0);
    let batch: Vec<Record> = (0..20).map(|i| rec("k", &format!("v{i}"))).collect();
    log.append(p, batch).await.expect("append");
    visible(h, &*log, p, Offset(20)).await;
    for from in [0u64, 1, 7, 19] {
        let got = log.read(p, Offset(from), 5).await.expect("read");
        assert_eq!(got.len(), 5.min(20 - from as usize));
        for (i, s) in got.iter().enumerate() {
            assert_eq!(s.offset, Offset(from + i as u64));
            assert_eq!(s.value, format!("v{}", from + i as u64).into_bytes());
        }
    }
    assert!(log.read(p, Offset(20), 5).await.expect("read").is_empty());
    assert!(
        log.read(p, Offset(1_000), 5)
            .await
            .expect("read")
            .is_empty()
    );
}

pub async fn partitions_are_independent(h: &dyn Harness) {
    let log = h.fresh(3).await;
    log.append(Partition(0), vec![rec("a", "0")])
        .await
        .expect("append");
    log.append(Partition(2), vec![rec("c", "0"), rec("c", "1")])
        .await
        .expect("append");
    visible(h, &*log, Partition(0), Offset(1)).await;
    visible(h, &*log, Partition(2), Offset(2)).await;
    check_end(h, &*log, Partition(0), Offset(1)).await;
    assert_eq!(log.end(Partition(1)).await.expect("end"), Offset(0));
    check_end(h, &*log, Partition(2), Offset(2)).await;
    assert!(
        log.read(Partition(1), Offset(0), 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(log.partitions(), 3);
}

pub async fn keys_route_to_one_partition(h: &dyn Harness) {
    let log = h.fresh(5).await;
    for i in 0..50 {
        let key = format!("turn-{i}");
        let p = log.partition_for(key.as_bytes());
        assert!(p.0 < 5);
        assert_eq!(
            p,
            super::partition_for(key.as_bytes(), 5),
            "same routing on every backend"
        );
    }
}

pub async fn unknown_partition_is_a_terminal_error(h: &dyn Harness) {
    let log = h.fresh(2).await;
    let err = log
        .append(Partition(2), vec![rec("k", "v")])
        .await
        .expect_err("partition 2 of 2");
    assert!(matches!(
        err,
        LogError::UnknownPartition {
            partition: 2,
            partitions: 2
        }
    ));
    assert!(!err.is_retryable());
    assert!(log.read(Partition(9), Offset(0), 1).await.is_err());
    assert!(log.end(Partition(9)).await.is_err());
    assert!(log.subscribe(Partition(9), Offset(0)).await.is_err());
}

pub async fn empty_append_is_a_no_op(h: &dyn Harness) {
    let log = h.fresh(1).await;
    let p = Partition(0);
    assert_eq!(log.append(p, vec![]).await.expect("empty"), Offset(0));
    log.append(p, vec![rec("k", "v")]).await.expect("append");
    visible(h, &*log, p, Offset(1)).await;
    let end = log.end(p).await.expect("end");
    check_end(h, &*log, p, Offset(1)).await;
    assert_eq!(log.append(p, vec![]).await.expect("empty"), end);
    assert_eq!(log.end(p).await.expect("end"), end, "nothing appended");
}

pub async fn bytes_survive_exactly(h: &dyn Harness) {
    let log = h.fresh(1).await;
    let p = Partition(0);
    let odd = Record {
        key: vec![],
        value: (0..=255u8).collect(),
    };
    let empty_value = Record {
        key: vec![0, 0xff, 0x10],
        value: vec![],
    };
    log.append(p, vec![odd.clone(), empty_value.clone()])
        .await
        .expect("append");
    visible(h, &*log, p, Offset(2)).await;
    let got = log.read(p, Offset(0), 10).await.expect("read");
    assert_eq!(
        (got[0].key.clone(), got[0].value.clone()),
        (odd.key, odd.value)
    );
    assert_eq!(
        (got[1].key.clone(), got[1].value.clone()),
        (empty_value.key, empty_value.value)
    );
}

pub async fn tail_yields_old_then_new_records_in_order(h: &dyn Harness) {
    let log = h.fresh(2).await;
    let p = Partition(1);
    log.append(p, vec![rec("k", "0"), rec("k", "1")])
        .await
        .expect("append");
    let mut tail = log.subscribe(p, Offset(1)).await.expect("subscribe");
    let first = tokio::time::timeout(WAIT, tail.next_batch(10))
        .await
        .expect("existing record arrives")
        .expect("ok");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].offset, Offset(1));
    assert_eq!(tail.position(), Offset(2));

    // Caught up: the tail waits rather than returning empty.
    let idle = tokio::time::timeout(Duration::from_millis(100), tail.next_batch(10)).await;
    assert!(idle.is_err(), "a caught-up tail waits for new records");
    // The cancelled wait lost nothing.
    assert_eq!(tail.position(), Offset(2));

    let writer = Arc::clone(&log);
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.append(p, vec![rec("k", "2"), rec("k", "3")]).await
    });
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = tokio::time::timeout(WAIT, tail.next_batch(1))
            .await
            .expect("new records wake the tail")
            .expect("ok");
        assert!(batch.len() <= 1, "max is respected");
        seen.extend(batch.into_iter().map(|s| (s.offset.0, s.value)));
    }
    let base = append.await.expect("join").expect("append");
    check_base(h, base, Offset(2), "appended while tailing");
    assert_eq!(
        seen,
        vec![(base.0, b"2".to_vec()), (base.0 + 1, b"3".to_vec())]
    );
}

pub async fn a_cancelled_tail_loses_nothing(h: &dyn Harness) {
    let log = h.fresh(1).await;
    let p = Partition(0);
    let mut tail = log.subscribe(p, Offset(0)).await.expect("subscribe");
    // Records trickle in while the tail reads, so batches often run dry half-way.
    let writer = Arc::clone(&log);
    let writing = tokio::spawn(async move {
        for b in 0..60 {
            let batch = (0..5)
                .map(|i| rec("k", &format!("{}", b * 5 + i)))
                .collect();
            writer.append(p, batch).await.expect("append");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while got.len() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 300 records arrived",
            got.len()
        );
        // Give each call only a moment, so many are dropped mid-way (as a select! would).
        if let Ok(batch) = tokio::time::timeout(Duration::from_millis(1), tail.next_batch(50)).await
        {
            got.extend(
                batch
                    .expect("ok")
                    .into_iter()
                    .map(|s| (s.offset.0, s.value)),
            );
        }
    }
    writing.await.expect("writer");
    let values: Vec<Vec<u8>> = got.iter().map(|(_, v)| v.clone()).collect();
    let want: Vec<Vec<u8>> = (0..300).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(values, want, "every record once, in order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    let last = got.last().map(|(o, _)| *o).unwrap_or(0);
    if h.dense() {
        assert_eq!(
            got.iter().map(|(o, _)| *o).collect::<Vec<u64>>(),
            (0..300).collect::<Vec<u64>>(),
            "dense"
        );
    }
    assert_eq!(tail.position(), Offset(last + 1));
}

pub async fn waiting_for_records_returns_once_one_is_readable(h: &dyn Harness) {
    let log = h.fresh(2).await;
    let p = Partition(1);
    let first = log.append(p, vec![rec("k", "0")]).await.expect("append");
    visible(h, &*log, p, first.next()).await;
    tokio::time::timeout(WAIT, log.wait_for_records(p, first))
        .await
        .expect("a readable record answers at once")
        .expect("ok");
    let end = log.end(p).await.expect("end");
    let waiting =
        tokio::time::timeout(Duration::from_millis(100), log.wait_for_records(p, end)).await;
    assert!(waiting.is_err(), "nothing at or after the end: it waits");
    let writer = Arc::clone(&log);
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.append(p, vec![rec("k", "1")]).await
    });
    tokio::time::timeout(WAIT, log.wait_for_records(p, end))
        .await
        .expect("a new record wakes it")
        .expect("ok");
    append.await.expect("join").expect("append");
    assert!(
        log.wait_for_records(Partition(7), Offset(0)).await.is_err(),
        "unknown partition"
    );
}

pub async fn concurrent_batches_stay_whole_and_dense(h: &dyn Harness) {
    let log = h.fresh(2).await;
    let p = Partition(0);
    let writers = 8;
    let batches = 25;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut bases = Vec::new();
            for b in 0..batches {
                let batch = (0..3)
                    .map(|i| rec(&format!("w{w}"), &format!("{b}.{i}")))
                    .collect();
                bases.push(log.append(p, batch).await.expect("append"));
            }
            bases
        }));
    }
    let mut bases = Vec::new();
    for t in tasks {
        bases.extend(t.await.expect("join"));
    }
    let total = (writers * batches * 3) as u64;
    let last_base = bases.iter().max().copied().unwrap_or(Offset(0));
    visible(h, &*log, p, Offset(last_base.0 + 3)).await;
    let all = log.read(p, Offset(0), 10_000).await.expect("read");
    assert_eq!(all.len() as u64, total);
    let last = all.last().map(|s| s.offset).unwrap_or(Offset(0));
    check_end(h, &*log, p, last.next()).await;
    if h.dense() {
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.offset, Offset(i as u64), "dense");
        }
    }
    let index: HashMap<Offset, usize> =
        all.iter().enumerate().map(|(i, s)| (s.offset, i)).collect();
    // Every batch occupies base..base+3 with its own records, in order.
    let mut next_by_writer: HashMap<Vec<u8>, u32> = HashMap::new();
    bases.sort();
    for base in bases {
        let at = index[&base];
        let chunk = &all[at..at + 3];
        let key = chunk[0].key.clone();
        let b = *next_by_writer.get(&key).unwrap_or(&0);
        for (i, s) in chunk.iter().enumerate() {
            assert_eq!(
                s.offset,
                Offset(base.0 + i as u64),
                "batch {base} is contiguous"
            );
            assert_eq!(s.key, key, "batch {base} is one writer's");
            assert_eq!(s.value, format!("{b}.{i}").into_bytes(), "batch order kept");
        }
        next_by_writer.insert(key, b + 1);
    }
}

pub async fn appended_records_survive_reopen(h: &dyn Harness) {
    let log = h.fresh(2).await;
    log.append(Partition(1), vec![rec("k", "0"), rec("k", "1")])
        .await
        .expect("append");
    log.append(Partition(0), vec![rec("j", "x")])
        .await
        .expect("append");
    visible(h, &*log, Partition(0), Offset(1)).await;
    visible(h, &*log, Partition(1), Offset(2)).await;
    let Some(log) = h.reopen(log).await else {
        return;
    };
    assert_eq!(log.partitions(), 2);
    check_end(h, &*log, Partition(1), Offset(2)).await;
    check_end(h, &*log, Partition(0), Offset(1)).await;
    let end = log.end(Partition(1)).await.expect("end");
    let base = log
        .append(Partition(1), vec![rec("k", "2")])
        .await
        .expect("append");
    check_base(h, base, end, "offsets continue after reopen");
    visible(h, &*log, Partition(1), base.next()).await;
    let got = log.read(Partition(1), Offset(0), 10).await.expect("read");
    let values: Vec<&[u8]> = got.iter().map(|s| s.value.as_slice()).collect();
    assert_eq!(values, vec![b"0", b"1", b"2"]);
}

/// Expands to one `#[tokio::test]` per contract rule, each calling `$harness` for its logs.
#[macro_export]
macro_rules! log_conformance_tests {
    ($harness:expr) => {
        $crate::log_conformance_tests!(@each $harness;
            offsets_are_dense_from_zero,
            a_read_starts_at_the_first_record_at_or_after_from,
            read_from_any_offset,
            partitions_are_independent,
            keys_route_to_one_partition,
            unknown_partition_is_a_terminal_error,
            empty_append_is_a_no_op,
            bytes_survive_exactly,
            tail_yields_old_then_new_records_in_order,
            a_cancelled_tail_loses_nothing,
            waiting_for_records_returns_once_one_is_readable,
            concurrent_batches_stay_whole_and_dense,
            appended_records_survive_reopen
        );
    };
    // For backends that need an external service: `$harness` is an `Option`; `None` skips.
    (optional $harness:expr) => {
        $crate::log_conformance_tests!(@each_optional $harness;
            offsets_are_dense_from_zero,
            a_read_starts_at_the_first_record_at_or_after_from,
            read_from_any_offset,
            partitions_are_independent,
            keys_route_to_one_partition,
            unknown_partition_is_a_terminal_error,
            empty_append_is_a_no_op,
            bytes_survive_exactly,
            tail_yields_old_then_new_records_in_order,
            a_cancelled_tail_loses_nothing,
            waiting_for_records_returns_once_one_is_readable,
            concurrent_batches_stay_whole_and_dense,
            appended_records_survive_reopen
        );
    };
    (@each $harness:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::log::conformance::$name(&harness).await;
            }
        )+
    };
    (@each_optional $harness:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(harness) = $harness else { return };
                $crate::log::conformance::$name(&harness).await;
            }
        )+
    };
}
