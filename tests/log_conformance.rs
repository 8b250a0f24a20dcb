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
