//! The vault on Kafka: the compacted `PREFIX.vault` topic is the shared copy, and each
//! process keeps a replica in its data dir's `vault` tree, applying the topic in order.
//!
//! - Values and user keys travel in the transaction of the round whose events use them
//!   (`journal.rs`), partitioned by tenant. All turns of a user run in one partition, so only
//!   one worker ever writes a user's key.
//! - A tenant's key decides its tokens, so every worker must use the same one. A worker that
//!   meets a tenant it has no key for proposes one (`k\0TENANT\0CANDIDATE`) in the tenant's
//!   partition; the first proposal in partition order wins, and every replica, applying the
//!   partition in order, picks the same. A losing proposal is withdrawn (a tombstone).
//! - Forgetting publishes tombstones for the keys and values (`forget`); replicas delete them
//!   as they apply, and the cleaner removes them from the topic's segments.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::ids::{Offset, Partition};
use crate::log::kafka::KafkaConfig;
use crate::log::{EventLog, KafkaLog, LogError, SledStore, partition_for};
use crate::vault::{
    SledVaultStore, VaultError, VaultRecord, VaultReplica, VaultStore, crypto, forget_records,
};

use super::Topics;

/// A record for the vault topic: key and value, or key and tombstone.
type Keyed = (Vec<u8>, Option<Vec<u8>>);

/// The tenant a vault record id belongs to (`X\0TENANT…`).
fn tenant_of(id: &[u8]) -> &[u8] {
    let rest = id.get(2..).unwrap_or_default();
    // Up to the first NUL, or all of it.
    rest.split(|b| *b == 0).next().unwrap_or(rest)
}

/// A proposed tenant key id (`k\0TENANT\0CANDIDATE`) → the tenant key id (`k\0TENANT`).
fn proposal_of(id: &[u8]) -> Option<Vec<u8>> {
    if !id.starts_with(b"k\0") {
        return None;
    }
    let (key, candidate) = id.split_at_checked(2 + tenant_of(id).len())?;
    (!candidate.is_empty()).then(|| key.to_vec())
}

/// The topic partition of a vault record: its tenant's.
pub fn partition_of(id: &[u8], partitions: u32) -> Partition {
    partition_for(tenant_of(id), partitions)
}

fn log_err(e: impl std::fmt::Display) -> VaultError {
    VaultError::Replica(e.to_string())
}

/// A replica of the vault topic in a data dir.
pub struct KafkaVault {
    log: KafkaLog,
    local: Arc<SledVaultStore>,
    /// The next offset to apply, per partition.
    offsets: sled::Tree,
    /// One catch-up at a time (they apply in partition order).
    applying: Mutex<()>,
}

impl KafkaVault {
    /// The replica in the data dir `dir` (whose sled database `store` is).
    pub async fn open(
        cfg: &KafkaConfig,
        topics: &Topics,
        store: &SledStore,
        dir: &std::path::Path,
    ) -> Result<Self, VaultError> {
        let log = KafkaLog::open(cfg, &topics.vault).await.map_err(log_err)?;
        Ok(KafkaVault {
            log,
            local: Arc::new(SledVaultStore::open(store, dir)?),
            offsets: store.tree("vault-offsets").map_err(log_err)?,
            applying: Mutex::new(()),
        })
    }

    pub fn partitions(&self) -> u32 {
        self.log.partitions()
    }

    /// The local replica (what a `Vault` reads).
    pub fn local(&self) -> Arc<SledVaultStore> {
        Arc::clone(&self.local)
    }

    fn applied(&self, p: Partition) -> u64 {
        self.offsets
            .get(p.0.to_be_bytes())
            .ok()
            .flatten()
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0)
    }

    /// Applies one record of the topic to the replica.
    fn apply_one(&self, key: &[u8], value: &[u8]) -> Result<(), VaultError> {
        let value = (!value.is_empty()).then(|| value.to_vec());
        let Some(tenant_id) = proposal_of(key) else {
            self.local.apply(&[(key.to_vec(), value)])?;
            return Ok(());
        };
        let mut records: Vec<VaultRecord> = vec![(key.to_vec(), value.clone())];
        match value {
            // The first proposal applied (in partition order) is the tenant's key; the agreed
            // proposal published again (re-wrapped by a master key rotation) replaces it.
            Some(v) => {
                let agreed = self.local.get(&tenant_id)?;
                if agreed.is_none() || agreed == self.local.get(key)? {
                    records.push((tenant_id, Some(v)));
                }
            }
            // Withdrawing the agreed key (forgetting the tenant) removes it.
            None => {
                let current = self.local.get(key)?;
                if current.is_some() && self.local.get(&tenant_id)? == current {
                    records.push((tenant_id, None));
                }
            }
        }
        self.local.apply(&records)?;
        Ok(())
    }

    /// Applies what the topic holds now, partition by partition.
    pub async fn sync(&self) -> Result<(), VaultError> {
        let _one = self.applying.lock().await;
        for p in (0..self.log.partitions()).map(Partition) {
            let end = self.log.end(p).await.map_err(log_err)?.0;
            let mut next = self.applied(p);
            while next < end {
                let batch = self
                    .log
                    .read(p, Offset(next), 1024)
                    .await
                    .map_err(log_err)?;
                let Some(last) = batch.last() else { break };
                let last = last.offset.0;
                for s in &batch {
                    self.apply_one(&s.key, &s.value)?;
                }
                next = last + 1;
                self.offsets
                    .insert(p.0.to_be_bytes(), &next.to_be_bytes())
                    .map_err(log_err)?;
            }
        }
        Ok(())
    }

    /// Applies the topic every `every` until `shutdown` (other workers' writes and forgets).
    pub fn spawn_tail(
        self: Arc<Self>,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(every) => {
                        if let Err(e) = self.sync().await {
                            tracing::warn!(error = %e, "vault replica: catching up failed; retrying");
                        }
                    }
                }
            }
        })
    }

    /// Publishes tombstones for a tenant's (or one user's) keys and values, then applies them
    /// here. Returns what was removed.
    pub async fn forget(
        &self,
        tenant: &str,
        user_code: Option<&str>,
    ) -> Result<Vec<VaultRecord>, VaultError> {
        self.sync().await?;
        let records = forget_records(self.local.as_ref(), tenant, user_code)?;
        let n = self.log.partitions();
        let mut by_partition: std::collections::BTreeMap<u32, Vec<Keyed>> = Default::default();
        for (k, _) in &records {
            // `k\0TENANT` is the replica's copy of the agreed proposal: not in the topic.
            if k.starts_with(b"k\0") && proposal_of(k).is_none() {
                continue;
            }
            by_partition
                .entry(partition_of(k, n).0)
                .or_default()
                .push((k.clone(), None));
        }
        for (p, tombstones) in by_partition {
            self.log
                .produce(Partition(p), tombstones)
                .await
                .map_err(log_err)?;
        }
        self.sync().await?;
        // The agreed key's copy goes with its proposal; anything left (a proposal applied
        // after the tombstones were read) is removed here too.
        self.local.apply(&records)?;
        Ok(records)
    }
}

impl KafkaVault {
    /// Re-wraps every tenant key proposal in the topic from `old` to `new` (see
    /// [`crate::vault::rotate`]) and publishes them; every replica, this one first, replaces
    /// its agreed copy as it applies them. Workers must be stopped: a running one holds `old`.
    pub async fn rotate(&self, old: &crypto::Key, new: &crypto::Key) -> Result<usize, VaultError> {
        self.sync().await?;
        let records = crate::vault::rotate::rewrap_records(self.local.as_ref(), old, new)?;
        let n = self.log.partitions();
        let mut by_partition: std::collections::BTreeMap<u32, Vec<Keyed>> = Default::default();
        let mut published = 0;
        for (k, v) in records {
            // The agreed copy `k\0TENANT` is the replica's own, not in the topic.
            if proposal_of(&k).is_none() {
                continue;
            }
            published += 1;
            by_partition
                .entry(partition_of(&k, n).0)
                .or_default()
                .push((k, v));
        }
        for (p, records) in by_partition {
            self.log
                .produce(Partition(p), records)
                .await
                .map_err(log_err)?;
        }
        self.sync().await?;
        Ok(published)
    }
}

#[async_trait]
impl VaultReplica for KafkaVault {
    async fn catch_up(&self) -> Result<(), VaultError> {
        self.sync().await
    }

    async fn settle_tenant(&self, tenant: &str, wrapped: Vec<u8>) -> Result<(), VaultError> {
        let mut id = crate::vault::tenant_key_id(tenant);
        let tenant_id = id.clone();
        id.push(0);
        id.extend_from_slice(hex::encode(&crypto::random_key()[..8]).as_bytes());
        let p = partition_of(&id, self.log.partitions());
        self.log
            .produce(p, vec![(id.clone(), Some(wrapped.clone()))])
            .await
            .map_err(log_err)?;
        // Our proposal is in the topic now, so catching up applies it (or an earlier one).
        self.sync().await?;
        if self.local.get(&tenant_id)?.as_deref() != Some(&wrapped[..]) {
            // Another worker's proposal came first: withdraw ours.
            self.log
                .produce(p, vec![(id, None)])
                .await
                .map_err(log_err)?;
        }
        tracing::info!(tenant, "vault: tenant key agreed");
        Ok(())
    }
}

/// Brings `local` (a data dir's vault tree) up to the topic: the CLI's way in.
pub async fn open_synced(
    cfg: &KafkaConfig,
    topics: &Topics,
    store: &SledStore,
    dir: &std::path::Path,
) -> Result<KafkaVault, VaultError> {
    let v = KafkaVault::open(cfg, topics, store, dir).await?;
    v.sync().await?;
    Ok(v)
}

impl From<LogError> for VaultError {
    fn from(e: LogError) -> Self {
        VaultError::Replica(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_name_their_tenant_and_proposals_their_key() {
        assert_eq!(tenant_of(b"k\0acme"), b"acme");
        assert_eq!(tenant_of(b"v\0acme\0user\0tok"), b"acme");
        assert_eq!(proposal_of(b"k\0acme\0c1"), Some(b"k\0acme".to_vec()));
        assert_eq!(proposal_of(b"k\0acme"), None);
        assert_eq!(proposal_of(b"u\0acme\0x"), None);
        assert_eq!(
            partition_of(b"k\0acme\0c1", 8),
            partition_of(b"v\0acme\0u\0t", 8)
        );
    }
}
