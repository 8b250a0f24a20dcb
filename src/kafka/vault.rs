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
//!   as they apply, and the cleaner removes them from the topic's segments within the bound
//!   `vault_topic` sets — once the segment holding them rolls, which Kafka does only on an
//!   append: each replica appends a marker to a partition that got key tombstones, once the
//!   roll time has passed (`roll_due`).
//! - The replica keeps keys in the data dir's key file and values in sled (`SledVaultStore`),
//!   like the embedded vault: a key removed from sled would linger in its segments.
//! - A replica that has not caught up for half of `delete.retention.ms` may have missed a
//!   tombstone the cleaner has since removed: it reads the whole topic again and removes what
//!   it held that the topic no longer holds.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::ids::{Offset, Partition};
use crate::log::kafka::KafkaConfig;
use crate::log::{EventLog, KafkaLog, LogError, SledStore, Stored, partition_for};
use crate::vault::store::is_key;
use crate::vault::{
    SledVaultStore, VaultError, VaultRecord, VaultReplica, VaultStore, crypto, forget_records,
};

use super::Topics;
use super::vault_topic::{self, VaultCompaction};

/// The record a replica appends to make a partition's active segment roll: a tombstone for a
/// key that holds nothing (replicas skip it).
const ROLL_MARKER: &[u8] = b"r\0roll";
/// In the offsets tree: when the replica last reached the end of every partition.
const SYNCED_AT: &[u8] = b"synced_at";
/// In the offsets tree, `ROLL` + partition: when key tombstones were applied there.
const ROLL: &[u8] = b"roll\0";

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

/// Whether a replica must rebuild itself: it has applied something, and has not reached the
/// end of the topic for `stale_after_ms` (or cannot say when it last did).
fn stale(applied_any: bool, synced_at: Option<i64>, now_ms: i64, stale_after_ms: u64) -> bool {
    applied_any && synced_at.is_none_or(|t| now_ms.saturating_sub(t) >= stale_after_ms as i64)
}

/// Whether a partition whose key tombstones were applied at `at_ms` is due its roll marker:
/// past the roll time, with a margin for the broker's clock.
fn roll_is_due(at_ms: i64, now_ms: i64, roll_ms: u64) -> bool {
    let margin = 1_000 + roll_ms / 60;
    now_ms.saturating_sub(at_ms) >= roll_ms.saturating_add(margin) as i64
}

fn ms(v: &[u8]) -> Option<i64> {
    v.try_into().ok().map(i64::from_be_bytes)
}

fn digest(v: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// A replica read again from the start of the topic. Nothing is emptied first (a running
/// worker keeps reading what it holds): records are applied as usual, and at the end what the
/// replica held before and the topic no longer holds goes.
struct Rebuild {
    /// What the replica held when the rebuild began: id → a digest of its value.
    before: HashMap<Vec<u8>, u64>,
    /// Ids whose latest record in the topic is a value.
    live: std::collections::HashSet<Vec<u8>>,
    /// Tenant key records as a new replica has them (agreement starts over).
    keys: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Rebuild {
    fn start(local: &SledVaultStore) -> Result<Self, VaultError> {
        let mut before = HashMap::new();
        for id in local.keys(b"")? {
            if let Some(v) = local.get(&id)? {
                before.insert(id, digest(&v));
            }
        }
        Ok(Rebuild {
            before,
            live: Default::default(),
            keys: HashMap::new(),
        })
    }

    fn saw(&mut self, records: &[VaultRecord]) {
        for (k, v) in records {
            match v {
                Some(_) => self.live.insert(k.clone()),
                None => self.live.remove(k),
            };
        }
    }

    /// Deletions of what the replica held before, unchanged since, that the topic no longer
    /// holds (a record written meanwhile, by this worker's own rounds, stays).
    fn missed(self, local: &SledVaultStore) -> Result<Vec<VaultRecord>, VaultError> {
        let mut out = Vec::new();
        for (id, was) in self.before {
            if !self.live.contains(&id) && local.get(&id)?.is_some_and(|v| digest(&v) == was) {
                out.push((id, None));
            }
        }
        Ok(out)
    }
}

/// A replica of the vault topic in a data dir.
pub struct KafkaVault {
    log: KafkaLog,
    local: Arc<SledVaultStore>,
    /// The next offset to apply, per partition; when the replica last caught up; partitions
    /// owed a roll marker.
    offsets: sled::Tree,
    /// One catch-up at a time (they apply in partition order).
    applying: Mutex<()>,
    compaction: VaultCompaction,
    clock: Arc<dyn Clock>,
}

impl KafkaVault {
    /// The replica in the data dir `dir` (whose sled database `store` is). Its first `sync`
    /// reads the whole topic again if it is too stale to trust.
    pub async fn open(
        cfg: &KafkaConfig,
        topics: &Topics,
        store: &SledStore,
        dir: &std::path::Path,
    ) -> Result<Self, VaultError> {
        let log = KafkaLog::open(cfg, &topics.vault).await.map_err(log_err)?;
        let compaction = match vault_topic::effective(cfg, &topics.vault).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "vault topic: its compaction settings could not be read; assuming Ballast's");
                VaultCompaction::default()
            }
        };
        let v = KafkaVault {
            log,
            local: Arc::new(SledVaultStore::open(store, dir)?),
            offsets: store.tree("vault-offsets").map_err(log_err)?,
            applying: Mutex::new(()),
            compaction,
            clock: Arc::new(SystemClock),
        };
        Ok(v)
    }

    /// Whether this replica has been away too long to trust its offsets (see [`stale`]).
    fn is_stale(&self) -> Result<bool, VaultError> {
        let applied_any = (0..self.log.partitions()).any(|p| self.applied(Partition(p)) > 0);
        let synced_at = self.offsets.get(SYNCED_AT).map_err(log_err)?;
        let synced_at = synced_at.and_then(|v| ms(&v));
        let now = self.clock.now_ms();
        let stale = stale(
            applied_any,
            synced_at,
            now,
            self.compaction.stale_after_ms(),
        );
        if stale {
            tracing::warn!(
                last_caught_up_ms_ago = synced_at.map(|t| now - t),
                delete_retention_ms = self.compaction.delete_retention_ms,
                "vault replica: too long away to trust (a tombstone may have come and gone): \
                 reading the whole topic again, then removing what it no longer holds"
            );
        }
        Ok(stale)
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

    /// What applying `batch` (records of the topic, in order) does to the replica. During a
    /// rebuild, `fresh` holds the tenant key records as a new replica would have them, so the
    /// agreement on each tenant's key starts over rather than from what the replica held.
    fn plan(
        &self,
        batch: &[Stored],
        mut fresh: Option<&mut HashMap<Vec<u8>, Option<Vec<u8>>>>,
    ) -> Result<Vec<VaultRecord>, VaultError> {
        // Reads see this batch's earlier records.
        let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut out: Vec<VaultRecord> = Vec::new();
        for s in batch {
            let (key, value) = (&s.key, (!s.value.is_empty()).then(|| s.value.clone()));
            if key.starts_with(ROLL_MARKER) {
                continue;
            }
            let get = |overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
                       fresh: &Option<&mut HashMap<Vec<u8>, Option<Vec<u8>>>>,
                       id: &[u8]| {
                match (overlay.get(id), fresh) {
                    (Some(v), _) => Ok(v.clone()),
                    (None, Some(f)) if id.starts_with(b"k\0") => Ok(f.get(id).cloned().flatten()),
                    (None, _) => self.local.get(id),
                }
            };
            let mut records: Vec<VaultRecord> = vec![(key.clone(), value.clone())];
            if let Some(tenant_id) = proposal_of(key) {
                match &value {
                    // The first proposal applied (in partition order) is the tenant's key; the
                    // agreed proposal published again (re-wrapped by a master key rotation)
                    // replaces it.
                    Some(v) => {
                        let agreed = get(&overlay, &fresh, &tenant_id)?;
                        if agreed.is_none() || agreed == get(&overlay, &fresh, key)? {
                            records.push((tenant_id, Some(v.clone())));
                        }
                    }
                    // Withdrawing the agreed key (forgetting the tenant) removes it.
                    None => {
                        let current = get(&overlay, &fresh, key)?;
                        if current.is_some() && get(&overlay, &fresh, &tenant_id)? == current {
                            records.push((tenant_id, None));
                        }
                    }
                }
            }
            for (k, v) in &records {
                overlay.insert(k.clone(), v.clone());
                if let Some(f) = fresh.as_mut()
                    && k.starts_with(b"k\0")
                {
                    f.insert(k.clone(), v.clone());
                }
            }
            out.extend(records);
        }
        Ok(out)
    }

    /// Applies what the topic holds now, partition by partition. A replica away too long (a
    /// worker cut off from the broker too) reads it from the start instead, then removes what
    /// it held that the topic no longer does: the tombstones it missed.
    pub async fn sync(&self) -> Result<(), VaultError> {
        let _one = self.applying.lock().await;
        let mut rebuild = match self.is_stale()? {
            true => Some(Rebuild::start(self.local.as_ref())?),
            false => None,
        };
        for p in (0..self.log.partitions()).map(Partition) {
            let end = self.log.end(p).await.map_err(log_err)?.0;
            let mut next = match rebuild {
                Some(_) => 0,
                None => self.applied(p),
            };
            while next < end {
                let batch = self
                    .log
                    .read(p, Offset(next), 1024)
                    .await
                    .map_err(log_err)?;
                let Some(last) = batch.last() else { break };
                let last = last.offset.0;
                // One write for the batch: a forgotten tenant's many tombstones rewrite the
                // key file once, not once each.
                let records = self.plan(&batch, rebuild.as_mut().map(|r| &mut r.keys))?;
                self.local.apply(&records)?;
                if let Some(r) = rebuild.as_mut() {
                    r.saw(&records);
                }
                if batch.iter().any(|s| is_key(&s.key) && s.value.is_empty()) {
                    self.owe_roll(p)?;
                }
                next = last + 1;
                self.offsets
                    .insert(p.0.to_be_bytes(), &next.to_be_bytes())
                    .map_err(log_err)?;
            }
        }
        if let Some(r) = rebuild {
            let missed = r.missed(self.local.as_ref())?;
            self.local.apply(&missed)?;
            tracing::warn!(
                removed = missed.len(),
                "vault replica: read again from the topic; records it no longer holds removed"
            );
        }
        self.offsets
            .insert(SYNCED_AT, &self.clock.now_ms().to_be_bytes())
            .map_err(log_err)?;
        Ok(())
    }

    /// Notes that partition `p` received key tombstones now (unless it already owes a roll).
    fn owe_roll(&self, p: Partition) -> Result<(), VaultError> {
        let id = [ROLL, &p.0.to_be_bytes()].concat();
        let now = self.clock.now_ms().to_be_bytes();
        // Kept with the offsets (and flushed with them): a restart still owes it.
        let _ = self
            .offsets
            .compare_and_swap(id, None as Option<&[u8]>, Some(&now[..]))
            .map_err(log_err)?;
        Ok(())
    }

    /// Appends a roll marker to each partition whose key tombstones are older than the
    /// topic's roll time, so its segment rolls and the cleaner can remove the records they
    /// delete. Returns how many it appended.
    pub async fn roll_due(&self) -> Result<usize, VaultError> {
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        for kv in self.offsets.scan_prefix(ROLL) {
            let (k, v) = kv.map_err(log_err)?;
            let p = k
                .get(ROLL.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            if let (Some(p), Some(at)) = (p, ms(&v))
                && roll_is_due(at, now, self.compaction.roll_ms)
            {
                due.push((k, p));
            }
        }
        for (k, p) in &due {
            self.log
                .produce(Partition(*p), vec![(ROLL_MARKER.to_vec(), None)])
                .await
                .map_err(log_err)?;
            self.offsets.remove(k).map_err(log_err)?;
        }
        if !due.is_empty() {
            tracing::info!(
                partitions = due.len(),
                "vault topic: roll markers appended (forgotten keys' segments can now be cleaned)"
            );
        }
        Ok(due.len())
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
                        } else if let Err(e) = self.roll_due().await {
                            tracing::warn!(error = %e, "vault topic: appending a roll marker failed; retrying");
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
    /// Publishes records made outside a worker's transaction — the API's intake on a replica of
    /// `serve` — and applies them here once the brokers acknowledged them: a request written
    /// after this returns names only values the topic holds.
    pub async fn publish(&self, records: &[VaultRecord]) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        let n = self.log.partitions();
        let mut by_partition: std::collections::BTreeMap<u32, Vec<Keyed>> = Default::default();
        for (k, v) in records {
            by_partition
                .entry(partition_of(k, n).0)
                .or_default()
                .push((k.clone(), v.clone()));
        }
        for (p, keyed) in by_partition {
            self.log
                .produce(Partition(p), keyed)
                .await
                .map_err(log_err)?;
        }
        self.local.apply(records)?;
        Ok(())
    }

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
    fn a_replica_away_for_half_the_tombstones_lifetime_rebuilds() {
        let half_day = 43_200_000;
        assert!(
            !stale(false, None, 0, half_day),
            "a new replica reads from 0 anyway"
        );
        assert!(stale(true, None, 0, half_day), "an old data dir cannot say");
        assert!(!stale(
            true,
            Some(1_000),
            1_000 + half_day as i64 - 1,
            half_day
        ));
        assert!(stale(true, Some(1_000), 1_000 + half_day as i64, half_day));
    }

    #[test]
    fn a_roll_marker_is_due_once_the_roll_time_and_a_margin_have_passed() {
        let hour = 3_600_000;
        assert!(!roll_is_due(0, hour as i64, hour));
        assert!(!roll_is_due(0, hour as i64 + 60_000, hour));
        assert!(roll_is_due(0, hour as i64 + 61_000, hour));
        // Short rolls (tests) get a second's margin.
        assert!(!roll_is_due(5, 2_020, 1_000));
        assert!(roll_is_due(5, 2_021, 1_000));
    }

    #[test]
    fn a_rebuild_removes_what_the_topic_no_longer_holds_and_nothing_written_meanwhile() {
        let d = tempfile::tempdir().expect("tmp");
        let store = SledStore::open(d.path()).expect("sled");
        let local = SledVaultStore::open(&store, d.path()).expect("vault");
        let put = |id: &str, v: u8| (id.as_bytes().to_vec(), Some(vec![v; 60]));
        local
            .apply(&[
                put("u\0acme\0missed", 1),
                put("u\0acme\0live", 2),
                put("v\0acme\0missed\0[pii:email:x]", 3),
                put("u\0acme\0rewritten", 4),
            ])
            .expect("apply");
        let mut r = Rebuild::start(&local).expect("start");
        // The topic read again holds only `live`; `rewritten` gets a new value meanwhile (this
        // worker's own round), and `new` appears.
        r.saw(&[put("u\0acme\0live", 2)]);
        local
            .apply(&[put("u\0acme\0rewritten", 5), put("u\0acme\0new", 6)])
            .expect("apply");
        let missed = r.missed(&local).expect("missed");
        let mut ids: Vec<String> = missed
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).replace('\0', "/"))
            .collect();
        ids.sort();
        assert_eq!(ids, ["u/acme/missed", "v/acme/missed/[pii:email:x]"]);
    }

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
