//! The turn index: one entry per turn (status, outcome, latency, where its events start).
//! Entries and the per-partition checkpoint are written in one sled batch, so a crash never
//! applies an event twice or skips one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::codec::AvroCodec;
use crate::event::{Event, Outcome, Payload};
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::log::{EventLog, LogError, SledStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    Running,
    Terminal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnEntry {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub partition: u32,
    pub first_offset: u64,
    pub requested_at_ms: i64,
    pub status: TurnStatus,
    pub outcome: Option<Outcome>,
    pub latency_ms: Option<i64>,
    pub events: u64,
}

pub struct TurnIndex {
    tree: sled::Tree,
}

const ENTRY: u8 = b't';
const CHECKPOINT: u8 = b'c';

fn entry_key(t: &TurnId) -> Vec<u8> {
    let mut k = vec![ENTRY];
    k.extend_from_slice(t.0.as_bytes());
    k
}

fn checkpoint_key(p: Partition) -> Vec<u8> {
    let mut k = vec![CHECKPOINT];
    k.extend_from_slice(&p.0.to_be_bytes());
    k
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::storage(e, false)
}

impl TurnIndex {
    pub fn open(store: &SledStore) -> Result<Self, LogError> {
        Ok(TurnIndex {
            tree: store.tree("projection/turn_index")?,
        })
    }

    pub fn checkpoint(&self, p: Partition) -> Result<Offset, LogError> {
        Ok(self
            .tree
            .get(checkpoint_key(p))
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(|b| Offset(u64::from_be_bytes(b)))
            .unwrap_or_default())
    }

    /// Applies every event after the stored checkpoints; returns how many it applied.
    pub async fn catch_up(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
    ) -> Result<u64, LogError> {
        let mut applied = 0;
        for p in (0..log.partitions()).map(Partition) {
            let mut scan = Scan::new(log, p, self.checkpoint(p)?);
            while let Some(batch) = scan.next_chunk(4096).await? {
                let next = scan.position();
                let mut touched: HashMap<TurnId, TurnEntry> = HashMap::new();
                for stored in &batch {
                    let Ok(event) = codec.decode(&stored.value) else {
                        continue;
                    };
                    let entry = match touched.remove(&event.turn_id) {
                        Some(e) => Some(e),
                        None => self.get(event.turn_id)?,
                    };
                    if let Some(e) = apply(entry, &event, p, stored.offset) {
                        touched.insert(event.turn_id, e);
                    }
                    applied += 1;
                }
                let mut write = sled::Batch::default();
                for (id, e) in &touched {
                    write.insert(entry_key(id), serde_json::to_vec(e).map_err(storage)?);
                }
                write.insert(checkpoint_key(p), &next.0.to_be_bytes());
                self.tree.apply_batch(write).map_err(storage)?;
            }
        }
        Ok(applied)
    }

    pub fn get(&self, turn: TurnId) -> Result<Option<TurnEntry>, LogError> {
        self.tree
            .get(entry_key(&turn))
            .map_err(storage)?
            .map(|v| serde_json::from_slice(&v).map_err(storage))
            .transpose()
    }

    /// Every turn, oldest first (turn ids are time-ordered).
    pub fn all(&self) -> Result<Vec<TurnEntry>, LogError> {
        self.tree
            .scan_prefix([ENTRY])
            .map(|item| {
                let (_, v) = item.map_err(storage)?;
                serde_json::from_slice(&v).map_err(storage)
            })
            .collect()
    }
}

fn apply(
    entry: Option<TurnEntry>,
    event: &Event,
    p: Partition,
    offset: Offset,
) -> Option<TurnEntry> {
    let mut entry = match (entry, &event.payload) {
        (Some(e), _) => e,
        (None, Payload::TurnRequested(r)) => TurnEntry {
            turn_id: event.turn_id,
            tenant: event.tenant.clone(),
            user_id: r.user_id.clone(),
            partition: p.0,
            first_offset: offset.0,
            requested_at_ms: event.at_ms,
            status: TurnStatus::Running,
            outcome: None,
            latency_ms: None,
            events: 0,
        },
        // A turn whose start this index never saw: nothing to attach the event to.
        (None, _) => return None,
    };
    entry.events += 1;
    if let Payload::TurnCompleted(c) = &event.payload {
        entry.status = TurnStatus::Terminal;
        entry.outcome = Some(c.outcome);
        entry.latency_ms = Some(c.latency_ms);
    }
    Some(entry)
}
