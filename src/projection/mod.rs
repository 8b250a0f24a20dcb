//! Read models built from the turn log. Each projection owns a sled tree holding its rows and,
//! per partition, the offset it has applied up to; the runner writes a chunk's rows and the new
//! checkpoint in one sled batch, so a crash never applies an event twice or skips one, and a
//! rebuild from offset 0 gives the same tree as the live one (`digest` proves it).
//!
//! Projections see events in partition order, may see an event twice (Kafka's idempotent
//! producer, a retried append) and must ignore the second copy: every row keeps the turn's next
//! seq for that.

mod catch_up;
pub mod outcomes;
pub mod slo;
pub mod turn_index;
pub mod waiting;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::event::codec::AvroCodec;
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, LogError, SledStore};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("projection {projection}: {message}")]
    Storage {
        projection: &'static str,
        message: String,
    },
}

impl ProjectionError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ProjectionError::Log(e) => e.is_retryable(),
            ProjectionError::Storage { .. } => false,
        }
    }
}

/// Where an event sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub partition: Partition,
    pub offset: Offset,
}

/// A read model folded from the turn log.
pub trait Projection: Send + Sync {
    /// Stable name; its tree is `projections/<name>`.
    fn name(&self) -> &'static str;
    fn tree(&self) -> &sled::Tree;
    /// Folds a chunk of one partition's events (in log order) into `batch`. Rows are read from
    /// `tree()`, which holds everything before the chunk; the runner applies the batch together
    /// with the checkpoint.
    fn apply_chunk(
        &self,
        events: &[(At, Event)],
        batch: &mut sled::Batch,
    ) -> Result<(), ProjectionError>;
}

/// Row keys start with a projection's own tag byte; checkpoints use this one.
const CHECKPOINT: u8 = 0;

fn checkpoint_key(p: Partition) -> [u8; 5] {
    let mut k = [CHECKPOINT; 5];
    k[1..].copy_from_slice(&p.0.to_be_bytes());
    k
}

pub(crate) fn open_tree(store: &SledStore, name: &str) -> Result<sled::Tree, LogError> {
    store.tree(&format!("projections/{name}"))
}

/// The offset before which a projection has applied every event of `p`.
pub fn checkpoint(tree: &sled::Tree, p: Partition) -> Result<Offset, LogError> {
    Ok(tree
        .get(checkpoint_key(p))
        .map_err(|e| LogError::storage(e, false))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(|b| Offset(u64::from_be_bytes(b)))
        .unwrap_or_default())
}

pub(crate) fn storage_error(
    projection: &'static str,
    e: impl std::fmt::Display,
) -> ProjectionError {
    ProjectionError::Storage {
        projection,
        message: e.to_string(),
    }
}

/// What one catch-up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Log records read.
    pub read: u64,
    /// Records that did not decode as events (counted, never fatal: the log is the truth and a
    /// corrupt record cannot be folded).
    pub undecodable: u64,
}

/// Several projections driven together over one log: each chunk is read and decoded once.
#[derive(Clone)]
pub struct Projections {
    items: Vec<Arc<dyn Projection>>,
    /// One catch-up at a time per set (clones share it): two would fold the same chunk.
    running: Arc<tokio::sync::Mutex<()>>,
    /// Per partition, the log offset every projection has applied up to, as of the last
    /// catch-up in this process (empty before the first): readers compare it with the log's
    /// ends without touching the store, and wait on it for news.
    reached: Arc<tokio::sync::watch::Sender<Vec<u64>>>,
}

impl Projections {
    pub fn new(items: Vec<Arc<dyn Projection>>) -> Self {
        Projections {
            items,
            running: Arc::new(tokio::sync::Mutex::new(())),
            reached: Arc::new(tokio::sync::watch::Sender::new(Vec::new())),
        }
    }

    /// Changes each time a catch-up has applied something (or a first catch-up finished).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Vec<u64>> {
        self.reached.subscribe()
    }

    /// Whether the projections have applied every record below `ends` (per partition).
    fn covers(&self, ends: &[u64]) -> bool {
        let reached = self.reached.borrow();
        reached.len() == ends.len() && reached.iter().zip(ends).all(|(r, e)| r >= e)
    }

    /// Returns once the projections have applied every event durable when it was called.
    /// Cheap when they have (the log's ends against `reached`, nothing read); otherwise the
    /// first caller catches up for everyone waiting, and the others find themselves covered
    /// when it is done (one catch-up serves a crowd of readers, the way a group commit does).
    pub async fn fresh(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
    ) -> Result<(), ProjectionError> {
        let mut ends = Vec::with_capacity(log.partitions() as usize);
        for p in (0..log.partitions()).map(Partition) {
            ends.push(log.end(p).await?.0);
        }
        if self.covers(&ends) {
            return Ok(());
        }
        let _one = self.running.lock().await;
        if self.covers(&ends) {
            return Ok(());
        }
        self.catch_up_locked(log, codec, &|_| {}).await?;
        Ok(())
    }

    /// Every projection Ballast keeps on a data dir: the turn index, the outcome records and
    /// the operator queue.
    pub fn standard(store: &SledStore) -> Result<Self, LogError> {
        Ok(Projections::new(vec![
            Arc::new(turn_index::TurnIndex::open(store)?),
            Arc::new(outcomes::OutcomeView::open(store)?),
            Arc::new(waiting::WaitingView::open(store)?),
        ]))
    }

    pub fn items(&self) -> &[Arc<dyn Projection>] {
        &self.items
    }

    /// Records in the log that the projections have not applied yet (what a rebuild or a
    /// catch-up will read), for progress bars.
    pub async fn behind(&self, log: &dyn EventLog) -> Result<u64, LogError> {
        let mut n = 0;
        for p in (0..log.partitions()).map(Partition) {
            let end = log.end(p).await?;
            n += end.0.saturating_sub(self.low_water(p)?.0);
        }
        Ok(n)
    }

    fn low_water(&self, p: Partition) -> Result<Offset, LogError> {
        let mut low: Option<Offset> = None;
        for item in &self.items {
            let c = checkpoint(item.tree(), p)?;
            low = Some(low.map_or(c, |l| l.min(c)));
        }
        Ok(low.unwrap_or_default())
    }

    /// Applies every event after each projection's checkpoint. `progress` is told how many
    /// records each chunk read.
    pub async fn catch_up(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<CatchUp, ProjectionError> {
        let _one = self.running.lock().await;
        self.catch_up_locked(log, codec, progress).await
    }

    /// Forgets everything, so the next catch-up rebuilds from offset 0.
    pub fn reset(&self) -> Result<(), ProjectionError> {
        self.reached.send_replace(Vec::new());
        for item in &self.items {
            item.tree()
                .clear()
                .map_err(|e| storage_error(item.name(), e))?;
        }
        Ok(())
    }

    /// `(name, sha256)` of each projection's rows and checkpoints, in key order.
    pub fn digests(&self) -> Result<Vec<(&'static str, String)>, ProjectionError> {
        self.items
            .iter()
            .map(|item| Ok((item.name(), tree_digest(item.name(), item.tree())?)))
            .collect()
    }

    /// One digest over every projection.
    pub fn digest(&self) -> Result<String, ProjectionError> {
        let mut h = Sha256::new();
        for (name, d) in self.digests()? {
            h.update(name.as_bytes());
            h.update(d.as_bytes());
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }
}

fn tree_digest(name: &'static str, tree: &sled::Tree) -> Result<String, ProjectionError> {
    let mut h = Sha256::new();
    for item in tree.iter() {
        let (k, v) = item.map_err(|e| storage_error(name, e))?;
        h.update((k.len() as u64).to_be_bytes());
        h.update(&k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(&v);
    }
    Ok(hex::encode(h.finalize()))
}
