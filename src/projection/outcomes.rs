//! The outcome records, folded from the turn log: the same `TurnOutcome` a worker publishes when
//! a turn finishes (both come from `TurnState::outcome_record`), rebuilt from events alone. The
//! SLOs are computed from this view, so anything appended to a finished turn later (a late label
//! from a reviewer) moves them, and a rebuild reproduces them exactly.
//!
//! Rows: `s`+turn → the state of a running turn; `o`+completed_at+turn → its outcome record once
//! it finishes (so a time range is a key range); `t`+turn → that `o` key.

use std::collections::HashMap;

use super::{At, Projection, ProjectionError, storage_error};
use crate::event::{Event, Payload, TurnOutcome};
use crate::ids::TurnId;
use crate::log::{LogError, SledStore};
use crate::turn::TurnState;

const NAME: &str = "outcomes";
const RUNNING: u8 = b's';
const OUTCOME: u8 = b'o';
const BY_TURN: u8 = b't';

pub struct OutcomeView {
    tree: sled::Tree,
}

fn turn_key(tag: u8, t: &TurnId) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(t.0.as_bytes());
    k
}

/// Times sort as unsigned big-endian once shifted by 2^63.
fn time_prefix(at_ms: i64) -> Vec<u8> {
    let mut k = vec![OUTCOME];
    k.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn outcome_key(at_ms: i64, t: &TurnId) -> Vec<u8> {
    let mut k = time_prefix(at_ms);
    k.extend_from_slice(t.0.as_bytes());
    k
}

enum Slot {
    /// No row yet, and not a TurnRequested: an event of a turn whose start we never saw.
    Unknown,
    Running(Box<TurnState>),
    Done {
        key: Vec<u8>,
        record: Box<TurnOutcome>,
        /// Finished within this chunk: its running row goes, its outcome rows appear.
        fresh: bool,
    },
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| storage_error(NAME, e))
}

impl OutcomeView {
    pub fn open(store: &SledStore) -> Result<Self, LogError> {
        Ok(OutcomeView {
            tree: super::open_tree(store, NAME)?,
        })
    }

    /// Outcome records of turns that completed after `from_ms`, in completion order.
    pub fn since(&self, from_ms: i64) -> Result<Vec<TurnOutcome>, ProjectionError> {
        let start = time_prefix(from_ms.saturating_add(1));
        self.tree
            .range(start..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(k, _)| k.first() == Some(&OUTCOME))
            })
            .map(|item| {
                let (_, v) = item.map_err(|e| storage_error(NAME, e))?;
                json(&v)
            })
            .collect()
    }

    /// Every outcome record, in completion order.
    pub fn all(&self) -> Result<Vec<TurnOutcome>, ProjectionError> {
        self.since(i64::MIN)
    }

    pub fn get(&self, turn: TurnId) -> Result<Option<TurnOutcome>, ProjectionError> {
        let Some(key) = self
            .tree
            .get(turn_key(BY_TURN, &turn))
            .map_err(|e| storage_error(NAME, e))?
        else {
            return Ok(None);
        };
        self.tree
            .get(key)
            .map_err(|e| storage_error(NAME, e))?
            .map(|v| json(&v))
            .transpose()
    }

    fn load(&self, turn: TurnId) -> Result<Slot, ProjectionError> {
        let get = |k: Vec<u8>| self.tree.get(k).map_err(|e| storage_error(NAME, e));
        if let Some(v) = get(turn_key(RUNNING, &turn))? {
            return Ok(Slot::Running(Box::new(json(&v)?)));
        }
        if let Some(key) = get(turn_key(BY_TURN, &turn))? {
            if let Some(v) = get(key.to_vec())? {
                return Ok(Slot::Done {
                    key: key.to_vec(),
                    record: Box::new(json(&v)?),
                    fresh: false,
                });
            }
        }
        Ok(Slot::Unknown)
    }
}

fn fold(slot: Slot, event: &Event) -> Slot {
    match slot {
        Slot::Unknown => match &event.payload {
            Payload::TurnRequested(_) => fold(
                Slot::Running(Box::new(TurnState::new(event.turn_id))),
                event,
            ),
            _ => Slot::Unknown,
        },
        Slot::Running(mut state) => {
            if let Err(e) = state.apply(event) {
                tracing::warn!(turn = %event.turn_id, error = %e, "outcome projection skipped an event");
                return Slot::Running(state);
            }
            if let Payload::TurnCompleted(c) = &event.payload {
                if let Some(record) = state.outcome_record(&c.reason) {
                    return Slot::Done {
                        key: outcome_key(record.completed_at_ms, &event.turn_id),
                        record: Box::new(record),
                        fresh: true,
                    };
                }
            }
            Slot::Running(state)
        }
        Slot::Done {
            key,
            mut record,
            fresh,
        } => {
            // Facts after the end: a reversal, a late label (duplicates change nothing).
            if event.seq >= record.events {
                record.events = event.seq + 1;
                match &event.payload {
                    Payload::TurnReversed(r) => {
                        record.outcome = crate::event::Outcome::Reversed;
                        record.reason = crate::turn::reversed_reason(
                            r.compensated.len(),
                            r.failed.len(),
                            r.not_reversible.len(),
                        );
                    }
                    Payload::OutcomeLabeled(l) => record.labels.push(l.label.clone()),
                    _ => {}
                }
            }
            Slot::Done { key, record, fresh }
        }
    }
}

impl Projection for OutcomeView {
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
        let mut slots: HashMap<TurnId, Slot> = HashMap::new();
        for (_, event) in events {
            let slot = match slots.remove(&event.turn_id) {
                Some(s) => s,
                None => self.load(event.turn_id)?,
            };
            slots.insert(event.turn_id, fold(slot, event));
        }
        for (turn, slot) in slots {
            match slot {
                Slot::Unknown => {}
                Slot::Running(state) => {
                    let row = serde_json::to_vec(&state).map_err(|e| storage_error(NAME, e))?;
                    batch.insert(turn_key(RUNNING, &turn), row);
                }
                Slot::Done { key, record, fresh } => {
                    if fresh {
                        batch.remove(turn_key(RUNNING, &turn));
                        batch.insert(turn_key(BY_TURN, &turn), key.clone());
                    }
                    let row = serde_json::to_vec(&record).map_err(|e| storage_error(NAME, e))?;
                    batch.insert(key, row);
                }
            }
        }
        Ok(())
    }
}
