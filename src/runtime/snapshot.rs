//! Partition snapshots, written incrementally.
//!
//! A snapshot is a small header (offsets, budget ledger, breakers) plus one entry per in-flight
//! turn and one per remembered session. Each save writes the header and only the entries that
//! changed since the last save (and deletes those that ended), in one atomic batch: a partition
//! holding 100,000 turns waiting for people pays for the few turns that moved, not for all of
//! them, so snapshots can be frequent and recovery reads a short tail of the log.
//!
//! Entry keys start with a tag: `t` a turn to resume, `s` a session, and for a turn that waits
//! only for a person (see `partition/parking.rs`) two entries, `w` its state and `p` a small
//! index record (deadline, session). Recovery reads `t`, `s` and `p` and never `w`: a million
//! waiting turns cost a million index records to recover, and each state is read back only
//! when something arrives for its turn.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::state_store::{SnapshotDelta, StateStore, StoreError};
use crate::control::budget::Ledger;
use crate::guard::Breakers;
use crate::ids::{Partition, TurnId};
use crate::turn::{Deadline, TurnState};

/// Bumped when the header or an entry changes shape; an older snapshot is ignored (recovery
/// then reads the log from offset 0, which is always correct).
pub const SNAPSHOT_VERSION: u32 = 4;

/// Earlier turns kept per session (the profile's token budget trims further).
pub const SESSION_TURNS: usize = 50;

const TURN_TAG: u8 = b't';
const SESSION_TAG: u8 = b's';
const WAITING_TAG: u8 = b'w';
const PARKED_TAG: u8 = b'p';

/// The finished turns of one session, oldest first: what a follow-up turn is shown.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionHistory {
    pub turns: VecDeque<crate::event::SessionTurn>,
    /// When a turn of the session last finished (idle sessions are forgotten).
    pub last_ms: i64,
}

/// Sessions belong to one user: the key keeps another user's turns out of them.
pub fn session_key(tenant: &str, user_id: &str, session_id: &str) -> String {
    format!("{tenant}\u{1f}{user_id}\u{1f}{session_id}")
}

/// What a snapshot header holds: everything but the turns and sessions.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub version: u32,
    /// Every event before this offset is reflected in the snapshot.
    pub events_end: u64,
    /// The next request-log offset to consume.
    pub inbox_next: u64,
    /// The budget window accounts as of `events_end`.
    #[serde(default)]
    pub ledger: Ledger,
    /// The per-tool circuit breakers as of `events_end`.
    #[serde(default)]
    pub breakers: Breakers,
}

/// A snapshot read back: the header, the turns not yet terminal and the sessions.
pub struct Loaded {
    pub header: SnapshotHeader,
    /// The turns to hold in memory and resume.
    pub turns: HashMap<TurnId, TurnState>,
    /// The turns waiting only for a person: left in the store, their deadlines armed.
    pub parked: Vec<ParkedTurn>,
    pub sessions: HashMap<String, SessionHistory>,
}

/// A turn that waits only for a person, kept in the snapshot store instead of memory: what a
/// partition needs until something arrives for it (its deadline, and the session it holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedTurn {
    pub turn: TurnId,
    pub wake_at_ms: i64,
    /// The approval whose deadline wakes the turn, or [`PARKED_HANDOFF`] for a handoff's (the
    /// stored shape: snapshots already hold it).
    pub approval_id: String,
    pub session: Option<String>,
}

/// How a parked entry names a handoff's deadline (approval ids are derived and never equal it).
pub const PARKED_HANDOFF: &str = "handoff";

impl ParkedTurn {
    /// `Some` when `state` waits only for a person (see [`TurnState::parked_deadline`]).
    pub fn of(state: &TurnState) -> Option<ParkedTurn> {
        let (wake_at_ms, deadline) = state.parked_deadline()?;
        let approval_id = match deadline {
            Deadline::Approval { approval_id } => approval_id,
            Deadline::Handoff => PARKED_HANDOFF.to_string(),
        };
        Some(ParkedTurn {
            turn: state.turn_id,
            wake_at_ms,
            approval_id,
            session: state
                .session_id
                .as_deref()
                .map(|s| session_key(&state.tenant, &state.user_id, s)),
        })
    }
}

impl ParkedTurn {
    /// The deadline that wakes the turn.
    pub fn deadline(&self) -> Deadline {
        if self.approval_id == PARKED_HANDOFF {
            Deadline::Handoff
        } else {
            Deadline::Approval {
                approval_id: self.approval_id.clone(),
            }
        }
    }
}

/// A turn's state in the partition's snapshot, read back (None: the snapshot has none).
pub fn load_turn(
    store: &dyn StateStore,
    partition: Partition,
    turn: TurnId,
) -> Result<Option<TurnState>, StoreError> {
    let json = match store.snapshot_entry(partition, &turn_key(WAITING_TAG, &turn))? {
        Some(json) => json,
        None => match store.snapshot_entry(partition, &turn_key(TURN_TAG, &turn))? {
            Some(json) => json,
            None => return Ok(None),
        },
    };
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| StoreError(format!("turn entry {turn}: {e}")))
}

/// Reads a partition's snapshot: `Ok(None)` when there is none, `Ok(Some(Err(why)))` when it
/// cannot be used (recovery then starts over from offset 0). Turns waiting only for a person
/// come back as their index records alone: their states are not read.
pub fn load(
    store: &dyn StateStore,
    partition: Partition,
) -> Result<Option<Result<Loaded, String>>, StoreError> {
    let Some(header) = store.snapshot_header(partition)? else {
        return Ok(None);
    };
    let header: SnapshotHeader = match serde_json::from_slice(&header) {
        Ok(h) => h,
        Err(e) => return Ok(Some(Err(format!("header: {e}")))),
    };
    if header.version != SNAPSHOT_VERSION {
        return Ok(Some(Err(format!(
            "version {} (this build writes {SNAPSHOT_VERSION})",
            header.version
        ))));
    }
    let mut turns = HashMap::new();
    let mut parked = Vec::new();
    let mut sessions = HashMap::new();
    let mut broken: Option<String> = None;
    store.snapshot_entries(
        partition,
        &[TURN_TAG],
        &mut |_, value| match serde_json::from_slice::<TurnState>(value) {
            Ok(state) => {
                turns.insert(state.turn_id, state);
            }
            Err(e) => broken = broken.take().or(Some(format!("turn entry: {e}"))),
        },
    )?;
    store.snapshot_entries(
        partition,
        &[PARKED_TAG],
        &mut |_, value| match serde_json::from_slice::<ParkedTurn>(value) {
            Ok(p) => parked.push(p),
            Err(e) => broken = broken.take().or(Some(format!("parked entry: {e}"))),
        },
    )?;
    store.snapshot_entries(partition, &[SESSION_TAG], &mut |key, value| match (
        std::str::from_utf8(key.get(1..).unwrap_or_default()),
        serde_json::from_slice::<SessionHistory>(value),
    ) {
        (Ok(name), Ok(history)) => {
            sessions.insert(name.to_owned(), history);
        }
        (Err(_), _) => {
            broken = broken
                .take()
                .or(Some("session entry: key is not UTF-8".into()));
        }
        (_, Err(e)) => broken = broken.take().or(Some(format!("session entry: {e}"))),
    })?;
    Ok(Some(match broken {
        Some(why) => Err(why),
        None => Ok(Loaded {
            header,
            turns,
            parked,
            sessions,
        }),
    }))
}

fn turn_key(tag: u8, turn: &TurnId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(tag);
    k.extend_from_slice(turn.0.as_bytes());
    k
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries that store `state`: a turn to resume (`t`), or a waiting one (`w` and `p`).
fn turn_entries(state: &TurnState) -> Result<Entries, serde_json::Error> {
    let id = &state.turn_id;
    Ok(match ParkedTurn::of(state) {
        None => vec![(turn_key(TURN_TAG, id), serde_json::to_vec(state)?)],
        Some(p) => vec![
            (turn_key(WAITING_TAG, id), serde_json::to_vec(state)?),
            (turn_key(PARKED_TAG, id), serde_json::to_vec(&p)?),
        ],
    })
}

fn session_entry_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(SESSION_TAG);
    k.extend_from_slice(name.as_bytes());
    k
}

/// What changed since the last save. `full` (no usable snapshot is stored) writes everything
/// and drops whatever the store held for the partition.
#[derive(Debug, Default)]
pub struct Dirty {
    pub full: bool,
    pub turns: HashSet<TurnId>,
    pub sessions: HashSet<String>,
}

impl Dirty {
    pub fn everything() -> Self {
        Dirty {
            full: true,
            ..Dirty::default()
        }
    }

    /// The delta to store: the header, the changed entries present now, deletions for the
    /// changed entries that are gone. Resets the record of changes.
    pub fn take_delta(
        &mut self,
        header: &SnapshotHeader,
        turns: &HashMap<TurnId, TurnState>,
        sessions: &HashMap<String, SessionHistory>,
    ) -> Result<SnapshotDelta, serde_json::Error> {
        let mut delta = SnapshotDelta {
            header: serde_json::to_vec(header)?,
            replace: self.full,
            ..SnapshotDelta::default()
        };
        if self.full {
            for state in turns.values() {
                delta.put.extend(turn_entries(state)?);
            }
            for (name, history) in sessions {
                delta
                    .put
                    .push((session_entry_key(name), serde_json::to_vec(history)?));
            }
        } else {
            // A dirty turn is in memory (parking happens only right after a save, and a
            // parked turn is read back before anything changes it): one that is not, ended.
            for id in &self.turns {
                let put = match turns.get(id) {
                    Some(state) => turn_entries(state)?,
                    None => Vec::new(),
                };
                for tag in [TURN_TAG, WAITING_TAG, PARKED_TAG] {
                    let key = turn_key(tag, id);
                    if !put.iter().any(|(k, _)| *k == key) {
                        delta.delete.push(key);
                    }
                }
                delta.put.extend(put);
            }
            for name in &self.sessions {
                match sessions.get(name) {
                    Some(h) => delta
                        .put
                        .push((session_entry_key(name), serde_json::to_vec(h)?)),
                    None => delta.delete.push(session_entry_key(name)),
                }
            }
        }
        *self = Dirty::default();
        Ok(delta)
    }
}

/// Adds a finished turn of a session to that session's history; returns the session's key
/// when it changed.
pub fn remember_session(
    sessions: &mut HashMap<String, SessionHistory>,
    state: &TurnState,
    now: i64,
) -> Option<String> {
    let session_id = state.session_id.as_ref()?;
    let key = session_key(&state.tenant, &state.user_id, session_id);
    let history = sessions.entry(key.clone()).or_default();
    // A finished turn reloaded for a reversal or a label finishes again: once is enough.
    let id = state.turn_id.to_string();
    if history.turns.iter().any(|t| t.turn_id == id) {
        return None;
    }
    history
        .turns
        .push_back(crate::turn::conversation::as_session_turn(state));
    while history.turns.len() > SESSION_TURNS {
        history.turns.pop_front();
    }
    history.last_ms = now;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::state_store::MemoryStateStore;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            version: SNAPSHOT_VERSION,
            events_end: 7,
            inbox_next: 3,
            ledger: Ledger::default(),
            breakers: Breakers::default(),
        }
    }

    fn loaded(store: &MemoryStateStore) -> Loaded {
        load(store, Partition(0))
            .expect("store")
            .expect("stored")
            .expect("usable")
    }

    #[tokio::test]
    async fn a_delta_writes_only_what_changed_and_deletes_what_ended() {
        let store = MemoryStateStore::default();
        let ids: Vec<TurnId> = (0..3).map(|_| TurnId::new_v7()).collect();
        let mut turns: HashMap<TurnId, TurnState> =
            ids.iter().map(|id| (*id, TurnState::new(*id))).collect();
        let sessions = HashMap::new();
        let mut dirty = Dirty::everything();
        let full = dirty
            .take_delta(&header(), &turns, &sessions)
            .expect("delta");
        assert!(full.replace);
        assert_eq!(full.put.len(), 3);
        store.save_snapshot(Partition(0), full).await.expect("save");

        // One turn moved, one ended; the third is untouched and not rewritten.
        turns.get_mut(&ids[0]).expect("turn").next_seq = 5;
        turns.remove(&ids[1]);
        dirty.turns.extend([ids[0], ids[1]]);
        let delta = dirty
            .take_delta(&header(), &turns, &sessions)
            .expect("delta");
        assert!(!delta.replace);
        assert_eq!(delta.put.len(), 1, "only the turn that moved is written");
        let ended = |tag| delta.delete.contains(&turn_key(tag, &ids[1]));
        assert!(ended(TURN_TAG) && ended(WAITING_TAG) && ended(PARKED_TAG));
        assert!(
            !delta
                .delete
                .iter()
                .any(|k| k.ends_with(ids[2].0.as_bytes()))
        );
        store
            .save_snapshot(Partition(0), delta)
            .await
            .expect("save");
        let got = loaded(&store);
        assert_eq!(got.turns.len(), 2);
        assert_eq!(got.turns[&ids[0]].next_seq, 5);
        assert!(got.turns.contains_key(&ids[2]));
        assert_eq!(got.header.events_end, 7);
        assert!(dirty.turns.is_empty(), "changes are reset after a save");
    }

    #[tokio::test]
    async fn another_version_or_a_broken_entry_is_refused() {
        let refused =
            |store: &MemoryStateStore| matches!(load(store, Partition(0)), Ok(Some(Err(_))));
        let store = MemoryStateStore::default();
        assert!(matches!(load(&store, Partition(0)), Ok(None)));
        let mut h = header();
        h.version = 3;
        let delta = SnapshotDelta::replace_with(serde_json::to_vec(&h).expect("json"));
        store
            .save_snapshot(Partition(0), delta)
            .await
            .expect("save");
        assert!(refused(&store));
        let mut delta = SnapshotDelta::replace_with(serde_json::to_vec(&header()).expect("json"));
        delta.put.push((vec![TURN_TAG, 1], b"{".to_vec()));
        store
            .save_snapshot(Partition(0), delta)
            .await
            .expect("save");
        assert!(refused(&store));
        let delta = SnapshotDelta::replace_with(b"not a snapshot".to_vec());
        store
            .save_snapshot(Partition(0), delta)
            .await
            .expect("save");
        assert!(refused(&store));
    }
}

#[cfg(test)]
mod parked_tests {
    use super::*;

    /// Each deadline wakes its own input; entries stored before the split (a handoff's named
    /// `"handoff"`) still wake a handoff deadline.
    #[test]
    fn a_parked_entry_names_its_deadline_kind() {
        let turn = TurnId::from_parts(1_700_000_000_000, [4; 10]);
        let stored = |approval_id: &str| {
            let json = format!(
                r#"{{"turn":"{turn}","wake_at_ms":5,"approval_id":"{approval_id}","session":null}}"#
            );
            serde_json::from_str::<ParkedTurn>(&json).expect("reads")
        };
        assert_eq!(stored("handoff").deadline(), Deadline::Handoff);
        assert_eq!(
            stored("appr-1").deadline(),
            Deadline::Approval {
                approval_id: "appr-1".into()
            }
        );
    }
}
