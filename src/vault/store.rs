//! Where sealed values and wrapped keys rest: in the data dir (embedded), or — on Kafka — in a
//! local copy of the compacted vault topic the journal writes in the same transaction as the
//! events that reference them. Records are `(key, Some(bytes))` to put and `(key, None)` to
//! delete (a tombstone on Kafka).
//!
//! In a data dir, sealed values go to the sled tree `vault` and keys (`k\0…`, `u\0…`) to the
//! key file (`keyfile`): sled keeps removed records in its segments, so a key removed there
//! would not be gone; a sealed value whose keys are gone is noise wherever it lingers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::keyfile::{KeyFile, KeyFileError};

/// One change to the vault.
pub type VaultRecord = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, thiserror::Error)]
#[error("vault storage: {0}")]
pub struct StoreError(pub String);

pub trait VaultStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies the records in order; durable when it returns.
    fn apply(&self, records: &[VaultRecord]) -> Result<(), StoreError>;
    /// Keys starting with `prefix`.
    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError>;
}

impl From<KeyFileError> for StoreError {
    fn from(e: KeyFileError) -> Self {
        StoreError(e.to_string())
    }
}

fn sled_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Whether a record is a key (tenant `k\0…` or user `u\0…`) rather than a sealed value.
pub fn is_key(id: &[u8]) -> bool {
    id.starts_with(b"k\0") || id.starts_with(b"u\0")
}

/// The vault of a data dir: sealed values in its `vault` tree, keys in its key file.
pub struct SledVaultStore {
    tree: sled::Tree,
    keys: Arc<KeyFile>,
}

impl SledVaultStore {
    /// The vault of the data dir `dir`, whose sled database `store` is. Keys an earlier
    /// version kept in the tree move to the key file (their old copies stay in sled's segment
    /// files until sled reuses the space: `ballast forget --compact` rewrites the database).
    pub fn open(store: &crate::log::SledStore, dir: &Path) -> Result<Self, StoreError> {
        let tree = store.tree("vault").map_err(sled_err)?;
        let keys = KeyFile::open(dir)?;
        let vault = SledVaultStore { tree, keys };
        vault.migrate()?;
        Ok(vault)
    }

    /// The key file (tests and `forget` report on it).
    pub fn key_file(&self) -> &Arc<KeyFile> {
        &self.keys
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut legacy = Vec::new();
        for prefix in [b"k\0".as_slice(), b"u\0"] {
            for kv in self.tree.scan_prefix(prefix) {
                let (k, v) = kv.map_err(sled_err)?;
                legacy.push((k.to_vec(), v.to_vec()));
            }
        }
        if legacy.is_empty() {
            return Ok(());
        }
        // Into the key file first (a crash in between moves them again; one already there is
        // the newer copy and stays), then out of the tree.
        let missing: Vec<VaultRecord> = legacy
            .iter()
            .filter(|(k, _)| self.keys.get(k).is_none())
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        self.keys.apply(&missing)?;
        let mut batch = sled::Batch::default();
        for (k, _) in &legacy {
            batch.remove(k.as_slice());
        }
        self.tree.apply_batch(batch).map_err(sled_err)?;
        self.tree.flush().map_err(sled_err)?;
        tracing::warn!(
            keys = legacy.len(),
            "vault: keys moved out of sled into the data dir's key file (vault-keys/); their \
             old copies stay in sled's files until sled reuses the space: run `ballast forget \
             --compact --data-dir DIR` with its process stopped to rewrite the database (a Kafka \
             replica's data dir: delete it instead, and it is read again from the topic)"
        );
        Ok(())
    }
}

impl VaultStore for SledVaultStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if is_key(key) {
            return Ok(self.keys.get(key));
        }
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(sled_err)
    }

    fn apply(&self, records: &[VaultRecord]) -> Result<(), StoreError> {
        let (keys, values): (Vec<&VaultRecord>, Vec<&VaultRecord>) =
            records.iter().partition(|(k, _)| is_key(k));
        // Keys first: a value is never durable without the key that opens it.
        if !keys.is_empty() {
            let keys: Vec<VaultRecord> = keys.into_iter().cloned().collect();
            self.keys.apply(&keys)?;
        }
        if values.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in values {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        self.tree.apply_batch(batch).map_err(sled_err)?;
        // Values must be durable before the events that name them: the same fsync the log
        // uses (sled flushes the whole database).
        self.tree.flush().map_err(sled_err)?;
        Ok(())
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = self.keys.keys(prefix);
        for k in self.tree.scan_prefix(prefix).keys() {
            out.push(k.map_err(sled_err)?.to_vec());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A vault in memory (tests, benches).
#[derive(Default)]
pub struct MemoryVaultStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl VaultStore for MemoryVaultStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.lock().map_err(|e| StoreError(e.to_string()))?;
        Ok(map.get(key).cloned())
    }

    fn apply(&self, records: &[VaultRecord]) -> Result<(), StoreError> {
        let mut map = self.map.lock().map_err(|e| StoreError(e.to_string()))?;
        for (k, v) in records {
            match v {
                Some(v) => map.insert(k.clone(), v.clone()),
                None => map.remove(k),
            };
        }
        Ok(())
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let map = self.map.lock().map_err(|e| StoreError(e.to_string()))?;
        Ok(map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
