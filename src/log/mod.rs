//! The event log: partitioned, ordered, durable.
//!
//! ```text
//!  partition p:   [0][1][2] … [n-1] | n
//!                  ^ offset 0         ^ end(): the offset the next appended record will get
//! ```
//!
//! # Contract (every backend; checked by the conformance suite, `log::conformance`, feature `test-util`)
//! - A log has a fixed number of partitions, `0..partitions()`. Records are routed by the caller:
//!   [`EventLog::partition_for`] maps a key to a partition the same way for every backend (Kafka's
//!   murmur2), so all events of one turn land in one partition.
//! - `append(p, batch)` appends the batch in order and returns the offset of its first record. It
//!   MUST return `Ok` only once every record of the batch is durable. An append that did not
//!   return `Ok` leaves at most a prefix of its batch (memory and sled: nothing; Kafka without
//!   transactions: possibly a prefix). Batches appended from one process never interleave.
//! - Offsets increase per partition and are never reused. Memory and sled (and Kafka topics
//!   without transactional writers) keep them dense: a batch of `n` records appended at `base`
//!   occupies `base..base+n`. Kafka transaction markers may leave gaps, which readers skip.
//! - `read(p, from, max)` returns up to `max` records with offsets `>= from`, in offset order,
//!   only records that are durable, and an empty vector at the end of the partition.
//! - Visibility: memory, sled and Kafka without transactions show a record to `read`, `end` and
//!   tails as soon as its `append` returned. Transactional Kafka writers (the worker's journal,
//!   `kafka::journal`) show a round once the coordinator has written its commit markers, just
//!   after the commit returns; until then `end` (the last stable offset) and reads stop before it.
//!   Aborted records are never shown. The suite runs against that journal too, with these rules.
//! - `subscribe(p, from)` yields every record at or after `from`, in order, waiting for new ones.
//! - `wait_for_records(p, from)` returns once a record at or after `from` is readable.
//! - An empty batch appends nothing and returns the current end.
//! - An unknown partition is a terminal error, never a panic.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod kafka;
mod memory;
mod partitioner;
mod sled_log;
mod tail;

use async_trait::async_trait;

pub use kafka::{KafkaConfig, KafkaLog};
pub use memory::MemoryLog;
pub use partitioner::{murmur2, partition_for};
pub use sled_log::{SledLog, SledStore};
pub use tail::Tail;

use crate::ids::{Offset, Partition};

/// A keyed record as the log stores it; the log never interprets the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A record read back, with its offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub offset: Offset,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("partition {partition} does not exist (the log has {partitions})")]
    UnknownPartition { partition: u32, partitions: u32 },
    #[error("log {name} was created with {existing} partitions, not {requested}")]
    PartitionMismatch {
        name: String,
        existing: u32,
        requested: u32,
    },
    #[error("record at {partition}:{offset} is corrupt: {reason}")]
    Corrupt {
        partition: Partition,
        offset: Offset,
        reason: String,
    },
    #[error("storage failure: {message}")]
    Storage { message: String, retryable: bool },
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    pub fn storage(e: impl std::fmt::Display, retryable: bool) -> Self {
        LogError::Storage {
            message: e.to_string(),
            retryable,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LogError::Storage {
                retryable: true,
                ..
            }
        )
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Human-readable backend name, for messages and metrics labels.
    fn backend(&self) -> &'static str;

    fn partitions(&self) -> u32;

    /// The partition that owns `key`: Kafka's default (murmur2) partitioning.
    fn partition_for(&self, key: &[u8]) -> Partition {
        partition_for(key, self.partitions())
    }

    /// Appends `records` to `partition` atomically; returns the first record's offset once durable.
    async fn append(&self, partition: Partition, records: Vec<Record>) -> Result<Offset>;

    /// Up to `max` durable records at or after `from`.
    async fn read(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>>;

    /// The offset the next appended record of `partition` will get.
    async fn end(&self, partition: Partition) -> Result<Offset>;

    /// A cursor that yields every record from `from` on and waits for new ones.
    async fn subscribe(&self, partition: Partition, from: Offset) -> Result<Box<dyn Tail>>;

    /// Returns once a record at or after `from` is readable (at once if one is). For followers
    /// that only need to know *that* something arrived: sled answers from its durable end in
    /// memory; the default waits on a tail for one record.
    async fn wait_for_records(&self, partition: Partition, from: Offset) -> Result<()> {
        let mut tail = self.subscribe(partition, from).await?;
        tail.next_batch(1).await?;
        Ok(())
    }
}

/// Reads one partition from an offset onwards, a chunk at a time, until a read comes back empty.
pub struct Scan<'a> {
    log: &'a dyn EventLog,
    partition: Partition,
    next: Offset,
}

impl<'a> Scan<'a> {
    pub fn new(log: &'a dyn EventLog, partition: Partition, from: Offset) -> Self {
        Scan {
            log,
            partition,
            next: from,
        }
    }

    /// The next chunk of up to `max` records; `None` at the end of the partition.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<Stored>>> {
        let batch = self.log.read(self.partition, self.next, max).await?;
        match batch.last() {
            None => Ok(None),
            Some(last) => {
                self.next = last.offset.next();
                Ok(Some(batch))
            }
        }
    }

    /// The offset the next chunk starts at.
    pub fn position(&self) -> Offset {
        self.next
    }
}

/// The entry for `partition` in a list of one per partition, or `UnknownPartition`.
pub(crate) fn partition_entry<T>(entries: &[T], partition: Partition) -> Result<&T> {
    entries
        .get(partition.0 as usize)
        .ok_or(LogError::UnknownPartition {
            partition: partition.0,
            partitions: entries.len() as u32,
        })
}

pub(crate) fn check_partition(partition: Partition, partitions: u32) -> Result<usize> {
    if partition.0 < partitions {
        Ok(partition.0 as usize)
    } else {
        Err(LogError::UnknownPartition {
            partition: partition.0,
            partitions,
        })
    }
}
