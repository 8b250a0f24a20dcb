//! Where sealed values and wrapped keys rest: a sled tree in the data dir (embedded), or — on
//! Kafka — a local copy of the compacted vault topic the journal writes in the same
//! transaction as the events that reference them. Records are `(key, Some(bytes))` to put and
//! `(key, None)` to delete (a tombstone on Kafka).

use std::collections::BTreeMap;
use std::sync::Mutex;

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

/// The embedded vault: the data dir's `vault` tree.
pub struct SledVaultStore {
    tree: sled::Tree,
}

impl SledVaultStore {
    pub fn open(store: &crate::log::SledStore) -> Result<Self, StoreError> {
        let tree = store.tree("vault").map_err(|e| StoreError(e.to_string()))?;
        Ok(SledVaultStore { tree })
    }
}

impl VaultStore for SledVaultStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError(e.to_string()))
    }

    fn apply(&self, records: &[VaultRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in records {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StoreError(e.to_string()))?;
        // Values must be durable before the events that name them: the same fsync the log
        // uses (sled flushes the whole database).
        self.tree.flush().map_err(|e| StoreError(e.to_string()))?;
        Ok(())
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| StoreError(e.to_string())))
            .collect()
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
