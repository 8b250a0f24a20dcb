//! In-memory backend for tests: durable means "in this process's memory".

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use super::tail::{ReadDurable, WatchTail};
use super::{EventLog, LogError, Record, Result, Stored, Tail, partition_entry};
use crate::ids::{Offset, Partition};

struct Part {
    records: RwLock<Vec<Record>>,
    end: watch::Sender<u64>,
}

struct Inner {
    parts: Vec<Part>,
}

#[derive(Clone)]
pub struct MemoryLog {
    inner: Arc<Inner>,
}

impl MemoryLog {
    pub fn new(partitions: u32) -> Self {
        let parts = (0..partitions.max(1))
            .map(|_| Part {
                records: RwLock::new(Vec::new()),
                end: watch::Sender::new(0),
            })
            .collect();
        MemoryLog {
            inner: Arc::new(Inner { parts }),
        }
    }

    fn part(&self, p: Partition) -> Result<&Part> {
        partition_entry(&self.inner.parts, p)
    }
}

fn poisoned() -> LogError {
    LogError::storage("memory log lock poisoned", false)
}

impl ReadDurable for Inner {
    fn read_durable(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>> {
        let part = partition_entry(&self.parts, partition)?;
        let records = part.records.read().map_err(|_| poisoned())?;
        Ok(records
            .iter()
            .enumerate()
            .skip(from.0 as usize)
            .take(max)
            .map(|(k, r)| Stored {
                offset: Offset(k as u64),
                key: r.key.clone(),
                value: r.value.clone(),
            })
            .collect())
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn partitions(&self) -> u32 {
        self.inner.parts.len() as u32
    }

    async fn append(&self, partition: Partition, records: Vec<Record>) -> Result<Offset> {
        let part = self.part(partition)?;
        let mut stored = part.records.write().map_err(|_| poisoned())?;
        let base = stored.len() as u64;
        if records.is_empty() {
            return Ok(Offset(base));
        }
        stored.extend(records);
        part.end.send_replace(stored.len() as u64);
        Ok(Offset(base))
    }

    async fn read(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>> {
        self.inner.read_durable(partition, from, max)
    }

    async fn end(&self, partition: Partition) -> Result<Offset> {
        Ok(Offset(*self.part(partition)?.end.borrow()))
    }

    async fn subscribe(&self, partition: Partition, from: Offset) -> Result<Box<dyn Tail>> {
        let part = self.part(partition)?;
        Ok(Box::new(WatchTail {
            source: Arc::clone(&self.inner) as Arc<dyn ReadDurable>,
            partition,
            position: from,
            durable_end: part.end.subscribe(),
        }))
    }
}
