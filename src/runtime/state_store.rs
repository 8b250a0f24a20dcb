//! Worker state beside the log: partition snapshots, the set of turn ids already started (so a
//! request submitted twice starts one turn) and dead letters. Everything here can be rebuilt from
//! the log; it exists so a restart does not have to.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// One save of a partition's snapshot: the header, entries written or replaced, entries
/// deleted; with `replace`, every entry stored before is dropped first. Applied atomically.
#[derive(Clone, Debug, Default)]
pub struct SnapshotDelta {
    pub header: Vec<u8>,
    pub put: Vec<(Vec<u8>, Vec<u8>)>,
    pub delete: Vec<Vec<u8>>,
    pub replace: bool,
}

impl SnapshotDelta {
    /// A snapshot of a header alone, replacing whatever was stored.
    pub fn replace_with(header: Vec<u8>) -> Self {
        SnapshotDelta {
            header,
            replace: true,
            ..SnapshotDelta::default()
        }
    }
}

#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The header of the partition's snapshot (None: there is none).
    fn snapshot_header(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError>;
    /// Passes each entry of the partition's snapshot whose key starts with `prefix` to
    /// `each`, one at a time, in key order (a snapshot of 100,000 waiting turns is never held
    /// twice in memory, and entries under other prefixes are not read at all).
    fn snapshot_entries(
        &self,
        partition: Partition,
        prefix: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError>;
    /// One entry of the partition's snapshot (None: not there): a turn parked out of memory,
    /// read back when something arrives for it.
    fn snapshot_entry(
        &self,
        partition: Partition,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies `delta` atomically (a crash leaves the previous snapshot or this one, never a
    /// mix); durable on return.
    async fn save_snapshot(
        &self,
        partition: Partition,
        delta: SnapshotDelta,
    ) -> Result<(), StoreError>;
    fn is_known(&self, turn: TurnId) -> Result<bool, StoreError>;
    /// Need not be durable: recovery marks again every turn requested after the last snapshot.
    fn mark_known(&self, turns: &[TurnId]) -> Result<(), StoreError>;
    fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError>;
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
}

/// A snapshot held in memory: the header and the entries by key.
type MemorySnapshot = (Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>);

#[derive(Default)]
pub struct MemoryStateStore {
    snapshots: Mutex<HashMap<Partition, MemorySnapshot>>,
    known: Mutex<HashSet<TurnId>>,
    dead: Mutex<Vec<DeadLetter>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError("lock poisoned".into())
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn snapshot_header(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .map_err(poisoned)?
            .get(&partition)
            .map(|(header, _)| header.clone()))
    }
    fn snapshot_entries(
        &self,
        partition: Partition,
        prefix: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        if let Some((_, entries)) = self.snapshots.lock().map_err(poisoned)?.get(&partition) {
            for (k, v) in entries.range(prefix.to_vec()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                each(k, v);
            }
        }
        Ok(())
    }
    fn snapshot_entry(
        &self,
        partition: Partition,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .map_err(poisoned)?
            .get(&partition)
            .and_then(|(_, entries)| entries.get(key).cloned()))
    }
    async fn save_snapshot(
        &self,
        partition: Partition,
        delta: SnapshotDelta,
    ) -> Result<(), StoreError> {
        let mut all = self.snapshots.lock().map_err(poisoned)?;
        let (header, entries) = all.entry(partition).or_default();
        if delta.replace {
            entries.clear();
        }
        for k in delta.delete {
            entries.remove(&k);
        }
        entries.extend(delta.put);
        *header = delta.header;
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

/// Snapshot keys: the partition, then 0 for the header or 1 and the entry's own key, so one
/// prefix scan reads a partition's entries. (Snapshots before version 4 were one value under
/// the bare partition key; a replacing save removes it.)
fn snapshot_key(p: Partition, entry: Option<&[u8]>) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + entry.map_or(0, <[u8]>::len));
    k.extend_from_slice(&p.0.to_be_bytes());
    match entry {
        None => k.push(0),
        Some(e) => {
            k.push(1);
            k.extend_from_slice(e);
        }
    }
    k
}

fn dead_key(p: Partition, o: Offset) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&p.0.to_be_bytes());
    k[4..].copy_from_slice(&o.0.to_be_bytes());
    k
}

#[async_trait]
impl StateStore for SledStateStore {
    fn snapshot_header(&self, partition: Partition) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .get(snapshot_key(partition, None))
            .map_err(StoreError::from_display)?
            .map(|v| v.to_vec()))
    }
    fn snapshot_entries(
        &self,
        partition: Partition,
        entry_prefix: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let prefix = snapshot_key(partition, Some(&[]));
        for item in self
            .snapshots
            .scan_prefix(snapshot_key(partition, Some(entry_prefix)))
        {
            let (k, v) = item.map_err(StoreError::from_display)?;
            if let Some(entry) = k.strip_prefix(prefix.as_slice()) {
                each(entry, &v);
            }
        }
        Ok(())
    }
    fn snapshot_entry(
        &self,
        partition: Partition,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .get(snapshot_key(partition, Some(key)))
            .map_err(StoreError::from_display)?
            .map(|v| v.to_vec()))
    }
    async fn save_snapshot(
        &self,
        partition: Partition,
        delta: SnapshotDelta,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if delta.replace {
            batch.remove(&partition.0.to_be_bytes()[..]);
            for item in self
                .snapshots
                .scan_prefix(snapshot_key(partition, Some(&[])))
                .keys()
            {
                batch.remove(item.map_err(StoreError::from_display)?);
            }
        }
        for k in &delta.delete {
            batch.remove(snapshot_key(partition, Some(k)));
        }
        for (k, v) in delta.put {
            batch.insert(snapshot_key(partition, Some(&k)), v);
        }
        batch.insert(snapshot_key(partition, None), delta.header);
        self.snapshots
            .apply_batch(batch)
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
            // The key: partition (4 bytes) and offset (8); the value: the reason's length (4),
            // the reason, the payload.
            let Ok::<[u8; 12], _>([p0, p1, p2, p3, o @ ..]) = k.as_ref().try_into() else {
                continue;
            };
            let Some((n, rest)) = v.split_first_chunk::<4>() else {
                continue;
            };
            let Some((reason, payload)) = rest.split_at_checked(u32::from_be_bytes(*n) as usize)
            else {
                continue;
            };
            out.push(DeadLetter {
                partition: Partition(u32::from_be_bytes([p0, p1, p2, p3])),
                offset: Offset(u64::from_be_bytes(o)),
                reason: String::from_utf8_lossy(reason).into_owned(),
                payload: payload.to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(header: &[u8], put: &[(&[u8], &[u8])], delete: &[&[u8]]) -> SnapshotDelta {
        SnapshotDelta {
            header: header.to_vec(),
            put: put.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            delete: delete.iter().map(|k| k.to_vec()).collect(),
            replace: false,
        }
    }

    fn entries(store: &dyn StateStore, p: Partition) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .snapshot_entries(p, &[], &mut |k, v| out.push((k.to_vec(), v.to_vec())))
            .expect("entries");
        out.sort();
        out
    }

    fn entries_under(store: &dyn StateStore, p: Partition, prefix: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        store
            .snapshot_entries(p, prefix, &mut |k, _| out.push(k.to_vec()))
            .expect("entries");
        out
    }

    async fn deltas_apply_in_order(store: &dyn StateStore) {
        let p = Partition(1);
        assert_eq!(store.snapshot_header(p).expect("load"), None);
        let mut first = delta(b"h1", &[(b"ta", b"1"), (b"tb", b"2")], &[]);
        first.replace = true;
        store.save_snapshot(p, first).await.expect("save");
        store
            .save_snapshot(p, delta(b"h2", &[(b"ta", b"3"), (b"sc", b"4")], &[b"tb"]))
            .await
            .expect("save");
        // Another partition's entries stay apart.
        store
            .save_snapshot(Partition(2), delta(b"x", &[(b"ta", b"9")], &[]))
            .await
            .expect("save");
        assert_eq!(
            store.snapshot_header(p).expect("load"),
            Some(b"h2".to_vec())
        );
        assert_eq!(
            entries(store, p),
            vec![
                (b"sc".to_vec(), b"4".to_vec()),
                (b"ta".to_vec(), b"3".to_vec())
            ]
        );
        // A prefix reads its entries only; one entry is read by its key.
        assert_eq!(entries_under(store, p, b"t"), vec![b"ta".to_vec()]);
        assert_eq!(entries_under(store, p, b"s"), vec![b"sc".to_vec()]);
        assert!(entries_under(store, p, b"w").is_empty());
        assert_eq!(
            store.snapshot_entry(p, b"ta").expect("entry"),
            Some(b"3".to_vec())
        );
        assert_eq!(store.snapshot_entry(p, b"tb").expect("entry"), None);
        store
            .save_snapshot(p, SnapshotDelta::replace_with(b"h3".to_vec()))
            .await
            .expect("save");
        assert_eq!(
            store.snapshot_header(p).expect("load"),
            Some(b"h3".to_vec())
        );
        assert!(entries(store, p).is_empty());
        assert_eq!(entries(store, Partition(2)).len(), 1);
    }

    #[tokio::test]
    async fn memory_and_sled_snapshots_apply_deltas_the_same_way() {
        deltas_apply_in_order(&MemoryStateStore::default()).await;
        let dir = tempfile::tempdir().expect("dir");
        let store = SledStore::open(dir.path()).expect("sled");
        deltas_apply_in_order(&SledStateStore::open(&store).expect("state")).await;
    }
}
