//! Worker state beside the log: partition snapshots, the set of turn ids already started (so a
//! request submitted twice starts one turn) and dead letters. Everything here can be rebuilt from
//! the log; it exists so a restart does not have to.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ids::{Offset, Partition, TurnId};
use crate::log::SledStore;

#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn from_display(e: impl std::fmt::Display) -> Self {
        StoreError(e.to_string())
    }
}

/// A record the worker could not accept, with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub partition: Partition,
    pub offset: Offset,
    pub reason: String,
    pub payload: Vec<u8>,
}

#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    fn load_snapshot(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError>;
    /// Durable on return.
    async fn save_snapshot(&self, partition: Partition, bytes: Vec<u8>) -> Result<(), StoreError>;
    fn is_known(&self, turn: TurnId) -> Result<bool, StoreError>;
    /// Need not be durable: recovery marks again every turn requested after the last snapshot.
    fn mark_known(&self, turns: &[TurnId]) -> Result<(), StoreError>;
    fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError>;
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
}

#[derive(Default)]
pub struct MemoryStateStore {
    snapshots: Mutex<HashMap<Partition, Vec<u8>>>,
    known: Mutex<HashSet<TurnId>>,
    dead: Mutex<Vec<DeadLetter>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError("lock poisoned".into())
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn load_snapshot(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .map_err(poisoned)?
            .get(&partition)
            .cloned())
    }
    async fn save_snapshot(&self, partition: Partition, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.snapshots
            .lock()
            .map_err(poisoned)?
            .insert(partition, bytes);
        Ok(())
    }
    fn is_known(&self, turn: TurnId) -> Result<bool, StoreError> {
        Ok(self.known.lock().map_err(poisoned)?.contains(&turn))
    }
    fn mark_known(&self, turns: &[TurnId]) -> Result<(), StoreError> {
        self.known
            .lock()
            .map_err(poisoned)?
            .extend(turns.iter().copied());
        Ok(())
    }
    fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let mut dead = self.dead.lock().map_err(poisoned)?;
        if !dead
            .iter()
            .any(|d| d.partition == letter.partition && d.offset == letter.offset)
        {
            dead.push(letter);
        }
        Ok(())
    }
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self.dead.lock().map_err(poisoned)?.clone())
    }
}

/// The sled tree of turn ids a worker has started (their `TurnRequested` is in the log).
pub const KNOWN_TURNS_TREE: &str = "state/known_turns";

/// The embedded store: three sled trees in the data directory's database.
pub struct SledStateStore {
    store: SledStore,
    snapshots: sled::Tree,
    known: sled::Tree,
    dead: sled::Tree,
}

impl SledStateStore {
    pub fn open(store: &SledStore) -> Result<Self, StoreError> {
        let tree = |n: &str| store.tree(n).map_err(StoreError::from_display);
        Ok(SledStateStore {
            store: store.clone(),
            snapshots: tree("state/snapshots")?,
            known: tree(KNOWN_TURNS_TREE)?,
            dead: tree("state/dead_letters")?,
        })
    }
}

fn dead_key(p: Partition, o: Offset) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&p.0.to_be_bytes());
    k[4..].copy_from_slice(&o.0.to_be_bytes());
    k
}

#[async_trait]
impl StateStore for SledStateStore {
    fn load_snapshot(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .get(partition.0.to_be_bytes())
            .map_err(StoreError::from_display)?
            .map(|v| v.to_vec()))
    }
    async fn save_snapshot(&self, partition: Partition, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.snapshots
            .insert(partition.0.to_be_bytes(), bytes)
            .map_err(StoreError::from_display)?;
        self.store.flush().await.map_err(StoreError::from_display)
    }
    fn is_known(&self, turn: TurnId) -> Result<bool, StoreError> {
        self.known
            .contains_key(turn.0.as_bytes())
            .map_err(StoreError::from_display)
    }
    fn mark_known(&self, turns: &[TurnId]) -> Result<(), StoreError> {
        if turns.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for t in turns {
            batch.insert(t.0.as_bytes(), &[]);
        }
        self.known
            .apply_batch(batch)
            .map_err(StoreError::from_display)
    }
    fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(4 + letter.reason.len() + letter.payload.len());
        v.extend_from_slice(&(letter.reason.len() as u32).to_be_bytes());
        v.extend_from_slice(letter.reason.as_bytes());
        v.extend_from_slice(&letter.payload);
        self.dead
            .insert(dead_key(letter.partition, letter.offset), v)
            .map_err(StoreError::from_display)?;
        Ok(())
    }
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for item in self.dead.iter() {
            let (k, v) = item.map_err(StoreError::from_display)?;
            if k.len() != 12 || v.len() < 4 {
                continue;
            }
            let p = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            let mut o = [0u8; 8];
            o.copy_from_slice(&k[4..12]);
            let n = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
            let Some(reason) = v.get(4..4 + n) else {
                continue;
            };
            out.push(DeadLetter {
                partition: Partition(p),
                offset: Offset(u64::from_be_bytes(o)),
                reason: String::from_utf8_lossy(reason).into_owned(),
                payload: v[4 + n..].to_vec(),
            });
        }
        Ok(out)
    }
}
