//! Every EventLog backend passes the same contract suite.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ballast::log::conformance::Harness;
use ballast::log::kafka::{KafkaConfig, KafkaLog, ensure_topic};
use ballast::log::{EventLog, MemoryLog, SledStore};

#[path = "common/broker.rs"]
mod broker;

struct Memory;

#[async_trait]
impl Harness for Memory {
    async fn fresh(&self, partitions: u32) -> Arc<dyn EventLog> {
        Arc::new(MemoryLog::new(partitions))
    }
    async fn reopen(&self, _log: Arc<dyn EventLog>) -> Option<Arc<dyn EventLog>> {
        None
    }
}

struct Sled {
    dir: tempfile::TempDir,
    opened: AtomicUsize,
}

impl Sled {
    fn new() -> Self {
        Sled {
            dir: tempfile::tempdir().expect("tempdir"),
            opened: AtomicUsize::new(0),
        }
    }
    fn path(&self) -> PathBuf {
        self.dir
            .path()
            .join(self.opened.load(Ordering::SeqCst).to_string())
    }
}

#[async_trait]
impl Harness for Sled {
    async fn fresh(&self, partitions: u32) -> Arc<dyn EventLog> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let store = SledStore::open(&self.path()).expect("open store");
        Arc::new(store.log("events", partitions).expect("open log"))
    }
    async fn reopen(&self, log: Arc<dyn EventLog>) -> Option<Arc<dyn EventLog>> {
        drop(log);
        let store = SledStore::open(&self.path()).expect("reopen store");
        // 0 = "whatever it was created with".
        Some(Arc::new(store.log("events", 0).expect("reopen log")))
    }
}

mod memory {
    use super::*;
    ballast::log_conformance_tests!(Memory);
}

mod sled {
    use super::*;
    ballast::log_conformance_tests!(Sled::new());

    #[test]
    fn a_log_keeps_its_partition_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        store.log("events", 4).expect("create");
        assert!(
            store.log("events", 6).is_err(),
            "cannot silently repartition"
        );
        assert_eq!(
            ballast::log::EventLog::partitions(&store.log("events", 0).expect("reopen")),
            4
        );
    }
}

struct Kafka {
    cfg: KafkaConfig,
    topic: std::sync::Mutex<String>,
}

fn kafka() -> Option<Kafka> {
    broker::bootstrap().map(|b| Kafka {
        cfg: KafkaConfig::new(b),
        topic: std::sync::Mutex::new(String::new()),
    })
}

#[async_trait]
impl Harness for Kafka {
    async fn fresh(&self, partitions: u32) -> Arc<dyn EventLog> {
        let topic = broker::unique_topic("ballast-conformance");
        ensure_topic(&self.cfg, &topic, partitions, 1, &[])
            .await
            .expect("create topic");
        *self.topic.lock().expect("lock") = topic.clone();
        Arc::new(KafkaLog::open(&self.cfg, &topic).await.expect("open log"))
    }
    async fn reopen(&self, log: Arc<dyn EventLog>) -> Option<Arc<dyn EventLog>> {
        drop(log);
        let topic = self.topic.lock().expect("lock").clone();
        Some(Arc::new(
            KafkaLog::open(&self.cfg, &topic).await.expect("reopen log"),
        ))
    }
}

mod kafka {
    use super::*;
    ballast::log_conformance_tests!(optional kafka());
}

/// The write path workers really use on Kafka: the transactional journal
/// (`kafka::journal::KafkaJournals`, one `transactional.id` per partition, a transaction per
/// round), read back with `read_committed` readers. Each append is one round: its records are
/// contiguous, and the commit marker after them leaves a gap the readers skip.
mod kafka_transactional {
    use super::*;
    use ballast::ids::{Offset, Partition};
    use ballast::kafka::Topics;
    use ballast::kafka::journal::KafkaJournals;
    use ballast::log::{LogError, Record, Stored, Tail};
    use ballast::runtime::RuntimeError;
    use ballast::runtime::journal::{Journal, Journals, Round};

    pub(super) struct JournalLog {
        reader: KafkaLog,
        journals: Vec<tokio::sync::Mutex<Box<dyn Journal>>>,
    }

    fn log_error(e: RuntimeError) -> LogError {
        match e {
            RuntimeError::Log(e) => e,
            other => LogError::storage(other, false),
        }
    }

    impl JournalLog {
        pub(super) async fn open(cfg: &KafkaConfig, topic: &str) -> JournalLog {
            let reader = KafkaLog::open(cfg, topic).await.expect("open reader");
            let journals = KafkaJournals {
                cfg: cfg.clone(),
                topics: Topics {
                    events: topic.to_string(),
                    ..Topics::new(topic)
                },
                group: "conformance".into(),
                transactional: true,
                outcome_partitions: 1,
                dead_letter_partitions: 1,
                escalation_partitions: 1,
                vault_partitions: 1,
                membership: None,
            };
            let mut opened = Vec::new();
            for p in 0..reader.partitions() {
                let j = journals
                    .open(Partition(p))
                    .await
                    .expect("open journal (init_transactions)");
                opened.push(tokio::sync::Mutex::new(j));
            }
            JournalLog {
                reader,
                journals: opened,
            }
        }
    }

    #[async_trait]
    impl EventLog for JournalLog {
        fn backend(&self) -> &'static str {
            "kafka-transactional"
        }
        fn partitions(&self) -> u32 {
            self.reader.partitions()
        }
        async fn append(
            &self,
            partition: Partition,
            records: Vec<Record>,
        ) -> Result<Offset, LogError> {
            let Some(journal) = self.journals.get(partition.0 as usize) else {
                return Err(LogError::UnknownPartition {
                    partition: partition.0,
                    partitions: self.partitions(),
                });
            };
            if records.is_empty() {
                return self.reader.end(partition).await;
            }
            let n = records.len() as u64;
            let round = Round {
                events: records,
                ..Round::default()
            };
            let end = journal
                .lock()
                .await
                .commit(partition, round)
                .await
                .map_err(log_error)?
                .expect("a round with events reports its end");
            // One producer's transaction on one partition is contiguous: it starts n before its end.
            Ok(Offset(end.0 - n))
        }
        async fn read(
            &self,
            partition: Partition,
            from: Offset,
            max: usize,
        ) -> Result<Vec<Stored>, LogError> {
            self.reader.read(partition, from, max).await
        }
        async fn end(&self, partition: Partition) -> Result<Offset, LogError> {
            self.reader.end(partition).await
        }
        async fn subscribe(
            &self,
            partition: Partition,
            from: Offset,
        ) -> Result<Box<dyn Tail>, LogError> {
            self.reader.subscribe(partition, from).await
        }
    }

    struct Transactional(Kafka);

    #[async_trait]
    impl Harness for Transactional {
        async fn fresh(&self, partitions: u32) -> Arc<dyn EventLog> {
            let topic = broker::unique_topic("ballast-conformance-txn");
            ensure_topic(&self.0.cfg, &topic, partitions, 1, &[])
                .await
                .expect("create topic");
            *self.0.topic.lock().expect("lock") = topic.clone();
            Arc::new(JournalLog::open(&self.0.cfg, &topic).await)
        }
        async fn reopen(&self, log: Arc<dyn EventLog>) -> Option<Arc<dyn EventLog>> {
            drop(log);
            let topic = self.0.topic.lock().expect("lock").clone();
            // The same transactional ids: opening fences the journals of the dropped log.
            Some(Arc::new(JournalLog::open(&self.0.cfg, &topic).await))
        }
        fn dense(&self) -> bool {
            false
        }
        fn reads_own_writes(&self) -> bool {
            false
        }
    }

    ballast::log_conformance_tests!(optional kafka().map(Transactional));

    /// What an aborted transaction wrote (a round whose commit failed) takes offsets but is
    /// never read, and what comes after it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aborted_rounds_are_never_read() {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        use std::time::Duration;
        let Some(k) = kafka() else { return };
        let topic = broker::unique_topic("ballast-conformance-abort");
        ensure_topic(&k.cfg, &topic, 1, 1, &[])
            .await
            .expect("create topic");
        let t = topic.clone();
        let cfg = k.cfg.clone();
        tokio::task::spawn_blocking(move || {
            let producer: BaseProducer = cfg
                .client()
                .set("transactional.id", format!("{t}-aborter"))
                .create()
                .expect("producer");
            let wait = Duration::from_secs(30);
            producer.init_transactions(wait).expect("init");
            producer.begin_transaction().expect("begin");
            for i in 0..3 {
                let v = format!("aborted-{i}");
                producer
                    .send(BaseRecord::to(&t).partition(0).key("k").payload(&v))
                    .expect("send");
            }
            producer.flush(wait).expect("flush");
            producer.abort_transaction(wait).expect("abort");
        })
        .await
        .expect("join");
        let log = JournalLog::open(&k.cfg, &topic).await;
        let p = Partition(0);
        let base = log
            .append(
                p,
                vec![
                    Record {
                        key: b"k".to_vec(),
                        value: b"kept-0".to_vec(),
                    },
                    Record {
                        key: b"k".to_vec(),
                        value: b"kept-1".to_vec(),
                    },
                ],
            )
            .await
            .expect("append");
        assert!(
            base.0 >= 4,
            "three aborted records and the abort marker come first"
        );
        // The round shows once the coordinator has written its commit marker, just after the
        // commit returned (the contract's visibility rule): wait for that, not for a timer.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.end(p).await.expect("end").0 < base.0 + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the round never showed"
            );
            tokio::task::yield_now().await;
        }
        for from in [0, 1, 3, base.0] {
            let got = log.read(p, Offset(from), 10).await.expect("read");
            let values: Vec<&[u8]> = got.iter().map(|s| s.value.as_slice()).collect();
            assert_eq!(values, vec![&b"kept-0"[..], b"kept-1"], "read from {from}");
            assert_eq!(got[0].offset, base);
        }
        let mut tail = log.subscribe(p, Offset(0)).await.expect("subscribe");
        let first = tokio::time::timeout(Duration::from_secs(10), tail.next_batch(10))
            .await
            .expect("tail")
            .expect("ok");
        assert_eq!(
            first.first().map(|s| s.offset),
            Some(base),
            "the tail skips them too"
        );
    }
}
