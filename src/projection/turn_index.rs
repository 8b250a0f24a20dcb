//! The turn index: one entry per turn (status, outcome, latency, where its events start).
//! A [`Projection`]: entries and the per-partition checkpoint are written in one sled batch.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{At, Projection, ProjectionError};
use crate::event::codec::AvroCodec;
use crate::event::{Event, Outcome, Payload};
use crate::ids::{Offset, Partition, TurnId};
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
    /// Events applied; also the seq the next one carries (a lower seq is a duplicate).
    pub events: u64,
    /// The session the turn continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

pub struct TurnIndex {
    tree: sled::Tree,
}

const NAME: &str = "turn_index";
const ENTRY: u8 = b't';

fn entry_key(t: &TurnId) -> Vec<u8> {
    let mut k = vec![ENTRY];
    k.extend_from_slice(t.0.as_bytes());
    k
}

impl TurnIndex {
    pub fn open(store: &SledStore) -> Result<Self, LogError> {
        Ok(TurnIndex {
            tree: super::open_tree(store, NAME)?,
        })
    }

    pub fn checkpoint(&self, p: Partition) -> Result<Offset, LogError> {
        super::checkpoint(&self.tree, p)
    }

    /// Applies every event after the stored checkpoints (this projection alone); returns how
    /// many records it read.
    pub async fn catch_up(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
    ) -> Result<u64, ProjectionError> {
        let me = TurnIndex {
            tree: self.tree.clone(),
        };
        let set = super::Projections::new(vec![std::sync::Arc::new(me)]);
        Ok(set.catch_up(log, codec, &|_| {}).await?.read)
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

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::storage(e, false)
}

impl Projection for TurnIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn apply_chunk(
        &self,
        events: &[(At, Event)],
        batch: &mut sled::Batch,
    ) -> Result<(), ProjectionError> {
        let mut touched: HashMap<TurnId, Option<TurnEntry>> = HashMap::new();
        for (at, event) in events {
            let entry = match touched.remove(&event.turn_id) {
                Some(e) => e,
                None => self.get(event.turn_id)?,
            };
            touched.insert(event.turn_id, apply(entry, event, at.partition, at.offset));
        }
        for (id, e) in touched {
            if let Some(e) = e {
                let row = serde_json::to_vec(&e).map_err(|e| super::storage_error(NAME, e))?;
                batch.insert(entry_key(&id), row);
            }
        }
        Ok(())
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
            session_id: r.session_id.clone(),
        },
        // A turn whose start this index never saw: nothing to attach the event to.
        (None, _) => return None,
    };
    if event.seq < entry.events as i64 {
        return Some(entry);
    }
    entry.events = event.seq as u64 + 1;
    if let Payload::TurnCompleted(c) = &event.payload {
        entry.status = TurnStatus::Terminal;
        entry.outcome = Some(c.outcome);
        entry.latency_ms = Some(c.latency_ms);
    }
    Some(entry)
}
