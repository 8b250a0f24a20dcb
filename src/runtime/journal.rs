//! Where a partition actor makes a round durable. One round = the events it decided, the outcome
//! records of turns that finished, the dead letters it set aside, and how far it consumed the
//! request log. A journal commits them together — atomically where the backend can (Kafka
//! transactions), in order where it cannot (sled: events, then the rest).

use std::sync::Arc;

use async_trait::async_trait;

use super::RuntimeError;
use super::state_store::{DeadLetter, StateStore};
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, Record};

#[derive(Debug, Default)]
pub struct Round {
    pub events: Vec<Record>,
    /// Encoded `TurnOutcome`s, keyed by turn id.
    pub outcomes: Vec<Record>,
    pub dead_letters: Vec<DeadLetter>,
    /// Encoded `Handoff`s of turns handed to a person, keyed by turn id.
    pub escalations: Vec<Record>,
    /// Request records that arrived on the wrong request-log partition, to append to theirs.
    pub forwards: Vec<(Partition, Record)>,
    /// Sealed values and wrapped keys the round's tokens need: durable before (embedded) or
    /// with (Kafka) the events that reference them.
    pub vault: Vec<crate::vault::VaultRecord>,
    /// Every request before this offset has been turned into events or a dead letter.
    pub inbox_next: Offset,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.outcomes.is_empty()
            && self.dead_letters.is_empty()
            && self.escalations.is_empty()
            && self.forwards.is_empty()
            && self.vault.is_empty()
    }
}

/// One partition's journal, owned by its actor.
#[async_trait]
pub trait Journal: Send {
    /// Makes the round durable. Returns the turn-log offset just past its last event (`None`
    /// when it had no events).
    async fn commit(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError>;

    /// Adds the round to an open transaction where the backend has one (Kafka), without waiting
    /// for it to be durable: [`Journal::flush`] commits every round held since the last flush,
    /// and a crash before it loses them all (nothing they decided has been released). Elsewhere
    /// the same as `commit`.
    async fn hold(&mut self, partition: Partition, round: Round) -> Result<Held, RuntimeError> {
        Ok(Held::Durable(self.commit(partition, round).await?))
    }

    /// Makes every held round durable; the turn-log offset just past their last event.
    async fn flush(&mut self, _partition: Partition) -> Result<Option<Offset>, RuntimeError> {
        Ok(None)
    }

    /// Whether committed outcome records go anywhere (if not, the actor skips building them).
    fn publishes_outcomes(&self) -> bool;
}

/// What [`Journal::hold`] did with a round.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Durable now; the turn-log end after it, if it had events.
    Durable(Option<Offset>),
    /// In an open transaction, durable at the next flush.
    Pending,
}

/// Opens a partition's journal when an actor takes the partition over. For Kafka this is where
/// a previous owner of the partition is fenced.
#[async_trait]
pub trait Journals: Send + Sync + 'static {
    async fn open(&self, partition: Partition) -> Result<Box<dyn Journal>, RuntimeError>;
}

/// The journal over plain [`EventLog`]s (memory, sled): events to the turn log, outcomes to an
/// optional outcome log, dead letters to the state store.
pub struct LogJournals {
    pub events: Arc<dyn EventLog>,
    pub outcomes: Option<Arc<dyn EventLog>>,
    /// Where handoffs are published (the sled `escalations` log when embedded).
    pub escalations: Option<Arc<dyn EventLog>>,
    /// The request log, where misrouted requests are passed on to their partition.
    pub requests: Option<Arc<dyn EventLog>>,
    pub store: Arc<dyn StateStore>,
    /// Where vault records go (the data dir's vault tree).
    pub vault: Option<Arc<dyn crate::vault::VaultStore>>,
}

struct LogJournal {
    events: Arc<dyn EventLog>,
    outcomes: Option<Arc<dyn EventLog>>,
    escalations: Option<Arc<dyn EventLog>>,
    requests: Option<Arc<dyn EventLog>>,
    store: Arc<dyn StateStore>,
    vault: Option<Arc<dyn crate::vault::VaultStore>>,
}

#[async_trait]
impl Journals for LogJournals {
    async fn open(&self, _partition: Partition) -> Result<Box<dyn Journal>, RuntimeError> {
        Ok(Box::new(LogJournal {
            events: Arc::clone(&self.events),
            outcomes: self.outcomes.clone(),
            escalations: self.escalations.clone(),
            requests: self.requests.clone(),
            store: Arc::clone(&self.store),
            vault: self.vault.clone(),
        }))
    }
}

#[async_trait]
impl Journal for LogJournal {
    async fn commit(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError> {
        // The vault first: a token in a durable event always has its value (a crash between
        // leaves values no event names yet, which the next round writes again, identically).
        if !round.vault.is_empty() {
            match &self.vault {
                Some(v) => v.apply(&round.vault).map_err(|e| {
                    RuntimeError::Store(super::state_store::StoreError::from_display(e))
                })?,
                None => {
                    return Err(RuntimeError::Snapshot(
                        "vault records but no vault store to keep them".into(),
                    ));
                }
            }
        }
        // Forwards first: a crash after them and before the events re-forwards on recovery, and
        // the home partition drops the second copy by turn id.
        if let Some(log) = &self.requests {
            for (p, r) in round.forwards {
                log.append(p, vec![r]).await?;
            }
        }
        let n = round.events.len() as u64;
        let end = if n > 0 {
            Some(self.events.append(partition, round.events).await?.plus(n))
        } else {
            None
        };
        if let Some(log) = &self.outcomes {
            for r in round.outcomes {
                let p = log.partition_for(&r.key);
                log.append(p, vec![r]).await?;
            }
        }
        if let Some(log) = &self.escalations {
            for r in round.escalations {
                let p = log.partition_for(&r.key);
                log.append(p, vec![r]).await?;
            }
        }
        for d in round.dead_letters {
            self.store.dead_letter(d)?;
        }
        Ok(end)
    }

    fn publishes_outcomes(&self) -> bool {
        self.outcomes.is_some()
    }
}
