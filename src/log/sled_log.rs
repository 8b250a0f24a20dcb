//! The embedded default: one sled database per data directory, one tree per log partition.
//!
//! Durability uses group commit. An appender inserts its batch under the partition's lock, takes
//! a ticket from a global counter, and waits until the flusher thread has fsynced past its ticket.
//! One `Db::flush` covers every batch inserted before it began, so concurrent appenders (all
//! partitions, all logs of the store) share one fsync. Because tickets are taken under the
//! partition lock, ticket order within a partition is offset order: once a ticket is flushed,
//! every lower offset of that partition is durable too, and the appender can publish its end.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::watch;

use super::tail::{ReadDurable, WatchTail};
use super::{EventLog, LogError, Record, Result, Stored, Tail, partition_entry};
use crate::ids::{Offset, Partition};

/// What the flusher has made durable: every ticket `<= generation`, unless it failed.
#[derive(Clone, Debug, Default)]
struct Flushed {
    generation: u64,
    failure: Option<Arc<str>>,
}

struct GroupCommit {
    db: sled::Db,
    issued: AtomicU64,
    wanted: Mutex<(u64, bool)>,
    wake: Condvar,
    flushed: watch::Sender<Flushed>,
}

impl GroupCommit {
    fn run(self: Arc<Self>) {
        loop {
            {
                let Ok(mut wanted) = self.wanted.lock() else {
                    return;
                };
                loop {
                    let done = self.flushed.borrow().generation;
                    if wanted.0 > done {
                        break;
                    }
                    if wanted.1 {
                        return;
                    }
                    wanted = match self.wake.wait(wanted) {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                }
            }
            // Everything inserted before this load is covered by the flush below.
            let generation = self.issued.load(Ordering::SeqCst);
            match self.db.flush() {
                Ok(_) => {
                    self.flushed.send_modify(|f| f.generation = generation);
                }
                Err(e) => {
                    let failure: Arc<str> = Arc::from(e.to_string());
                    self.flushed.send_modify(|f| f.failure = Some(failure));
                    return;
                }
            }
        }
    }

    async fn durable(&self, ticket: u64) -> Result<()> {
        if let Ok(mut w) = self.wanted.lock() {
            if w.1 {
                return Err(LogError::Closed);
            }
            w.0 = w.0.max(ticket);
        }
        self.wake.notify_one();
        let mut rx = self.flushed.subscribe();
        let state = rx
            .wait_for(|f| f.generation >= ticket || f.failure.is_some())
            .await
            .map_err(|_| LogError::Closed)?;
        match &state.failure {
            Some(f) if state.generation < ticket => Err(LogError::storage(f, false)),
            _ => Ok(()),
        }
    }
}

struct StoreInner {
    db: sled::Db,
    gc: Arc<GroupCommit>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        if let Ok(mut w) = self.gc.wanted.lock() {
            w.1 = true;
        }
        self.gc.wake.notify_all();
        if let Ok(mut h) = self.flusher.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
        let _ = self.db.flush();
    }
}

/// One sled database with its group-commit flusher; logs, snapshots and read models share it.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<StoreInner>,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(256 * 1024 * 1024)
            .flush_every_ms(None)
            .open()
            .map_err(|e| LogError::storage(format!("open {}: {e}", dir.display()), false))?;
        let gc = Arc::new(GroupCommit {
            db: db.clone(),
            issued: AtomicU64::new(0),
            wanted: Mutex::new((0, false)),
            wake: Condvar::new(),
            flushed: watch::Sender::new(Flushed::default()),
        });
        let runner = Arc::clone(&gc);
        let flusher = std::thread::Builder::new()
            .name("ballast-sled-flush".into())
            .spawn(move || runner.run())
            .map_err(|e| LogError::storage(e, false))?;
        Ok(SledStore {
            inner: Arc::new(StoreInner {
                db,
                gc,
                flusher: Mutex::new(Some(flusher)),
            }),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.inner
            .db
            .open_tree(name)
            .map_err(|e| LogError::storage(e, false))
    }

    /// Makes every write made so far durable (shares the group-commit flush).
    pub async fn flush(&self) -> Result<()> {
        let ticket = self.inner.gc.issued.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.gc.durable(ticket).await
    }

    /// Opens (or creates) the partitioned log `name` in this store.
    pub fn log(&self, name: &str, partitions: u32) -> Result<SledLog> {
        let meta = self.tree("meta")?;
        let key = format!("log/{name}/partitions");
        let existing = meta
            .get(&key)
            .map_err(|e| LogError::storage(e, false))?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes);
        let partitions = match existing {
            Some(n) if n != partitions && partitions != 0 => {
                return Err(LogError::PartitionMismatch {
                    name: name.into(),
                    existing: n,
                    requested: partitions,
                });
            }
            Some(n) => n,
            None => {
                let n = partitions.max(1);
                meta.insert(&key, &n.to_be_bytes())
                    .map_err(|e| LogError::storage(e, false))?;
                n
            }
        };
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let tree = self.tree(&format!("log/{name}/{p:05}"))?;
            let end = match tree.last().map_err(|e| LogError::storage(e, false))? {
                Some((k, _)) => offset_from_key(&k).map(|o| o + 1).unwrap_or(0),
                None => 0,
            };
            parts.push(SledPart {
                tree,
                next: Mutex::new(end),
                durable: watch::Sender::new(end),
            });
        }
        Ok(SledLog {
            store: self.clone(),
            inner: Arc::new(LogInner { parts, partitions }),
        })
    }
}

struct SledPart {
    tree: sled::Tree,
    /// Next offset to assign; the lock orders inserts and tickets.
    next: Mutex<u64>,
    durable: watch::Sender<u64>,
}

struct LogInner {
    parts: Vec<SledPart>,
    partitions: u32,
}

/// A partitioned log stored in a [`SledStore`].
#[derive(Clone)]
pub struct SledLog {
    store: SledStore,
    inner: Arc<LogInner>,
}

fn offset_from_key(k: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes)
}

fn encode_record(r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + r.key.len() + r.value.len());
    v.extend_from_slice(&(r.key.len() as u32).to_be_bytes());
    v.extend_from_slice(&r.key);
    v.extend_from_slice(&r.value);
    v
}

fn decode_record(p: Partition, offset: Offset, raw: &[u8]) -> Result<Stored> {
    let corrupt = |reason: &str| LogError::Corrupt {
        partition: p,
        offset,
        reason: reason.into(),
    };
    let (len_bytes, rest) = raw
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("shorter than its length prefix"))?;
    let klen = u32::from_be_bytes(*len_bytes) as usize;
    let (key, value) = rest
        .split_at_checked(klen)
        .ok_or_else(|| corrupt("key longer than the record"))?;
    Ok(Stored {
        offset,
        key: key.to_vec(),
        value: value.to_vec(),
    })
}

impl LogInner {
    fn part(&self, p: Partition) -> Result<&SledPart> {
        partition_entry(&self.parts, p)
    }
}

impl ReadDurable for LogInner {
    fn read_durable(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>> {
        let part = self.part(partition)?;
        let end = *part.durable.borrow();
        if from.0 >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(max.min((end - from.0) as usize));
        for item in part.tree.range(from.0.to_be_bytes()..end.to_be_bytes()) {
            let (k, v) = item.map_err(|e| LogError::storage(e, true))?;
            let offset = Offset(offset_from_key(&k).ok_or_else(|| LogError::Corrupt {
                partition,
                offset: from,
                reason: "key is not an offset".into(),
            })?);
            out.push(decode_record(partition, offset, &v)?);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl EventLog for SledLog {
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    async fn append(&self, partition: Partition, records: Vec<Record>) -> Result<Offset> {
        let part = self.inner.part(partition)?;
        let n = records.len() as u64;
        let (base, ticket) = {
            let mut next = part
                .next
                .lock()
                .map_err(|_| LogError::storage("partition lock poisoned", false))?;
            let base = *next;
            if n == 0 {
                return Ok(Offset(*part.durable.borrow()));
            }
            let mut batch = sled::Batch::default();
            for (i, r) in records.iter().enumerate() {
                batch.insert(&(base + i as u64).to_be_bytes(), encode_record(r));
            }
            part.tree
                .apply_batch(batch)
                .map_err(|e| LogError::storage(e, true))?;
            *next = base + n;
            let ticket = self.store.inner.gc.issued.fetch_add(1, Ordering::SeqCst) + 1;
            (base, ticket)
        };
        self.store.inner.gc.durable(ticket).await?;
        part.durable.send_if_modified(|end| {
            if base + n > *end {
                *end = base + n;
                true
            } else {
                false
            }
        });
        Ok(Offset(base))
    }

    async fn read(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>> {
        self.inner.read_durable(partition, from, max)
    }

    async fn end(&self, partition: Partition) -> Result<Offset> {
        Ok(Offset(*self.inner.part(partition)?.durable.borrow()))
    }

    async fn wait_for_records(&self, partition: Partition, from: Offset) -> Result<()> {
        let mut end = self.inner.part(partition)?.durable.subscribe();
        end.wait_for(|e| *e > from.0)
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(())
    }

    async fn subscribe(&self, partition: Partition, from: Offset) -> Result<Box<dyn Tail>> {
        let part = self.inner.part(partition)?;
        Ok(Box::new(WatchTail {
            source: Arc::clone(&self.inner) as Arc<dyn ReadDurable>,
            partition,
            position: from,
            durable_end: part.durable.subscribe(),
        }))
    }
}
