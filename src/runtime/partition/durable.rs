//! Making a partition's decisions durable beyond the round: rounds held in an open Kafka
//! transaction (released, effects and all, when it commits) and incremental snapshots (which
//! describe committed events only, so they flush first).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::PartitionActor;
use crate::ids::TurnId;
use crate::runtime::RuntimeError;
use crate::runtime::snapshot;
use crate::turn::Effect;

/// Events held in one open transaction at most: past this it commits whatever the interval.
pub(super) const HELD_EVENTS_MAX: usize = 8192;

/// What rounds held in an open transaction decided: released in order once it commits.
pub(super) struct HeldRounds {
    pub(super) since: Instant,
    pub(super) events: usize,
    pub(super) effects: Vec<Effect>,
    pub(super) started: Vec<TurnId>,
    pub(super) vault: Vec<crate::vault::VaultRecord>,
}

impl PartitionActor {
    /// Commits the rounds held in the journal's open transaction, then releases what they
    /// decided, in order.
    pub(super) async fn flush(&mut self) -> Result<(), RuntimeError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        if let Some(end) = self.journal.flush(self.partition).await? {
            self.events_end = end.0;
        }
        if let Some(v) = &self.deps.vault
            && !held.vault.is_empty()
        {
            v.committed(&held.vault)?;
        }
        self.deps.store.mark_known(&held.started)?;
        for effect in held.effects {
            self.dispatch(effect);
        }
        Ok(())
    }

    pub(super) async fn snapshot(&mut self) -> Result<(), RuntimeError> {
        // A snapshot describes committed events only.
        self.flush().await?;
        let started = Instant::now();
        // Timers of turns that finished before they were due would otherwise wait until then.
        let (turns, parked) = (&self.turns, &self.parked);
        self.timers
            .retain(|_, (turn, _)| turns.contains_key(turn) || parked.contains_key(turn));
        // Sessions nobody continued for a day are forgotten: their turns stay in the log.
        let idle_before = self.deps.clock.now_ms() - self.cfg.session_ttl_ms;
        let dirty = &mut self.dirty;
        self.sessions.retain(|key, h| {
            let keep = h.last_ms >= idle_before;
            if !keep {
                dirty.sessions.insert(key.clone());
            }
            keep
        });
        let header = snapshot::SnapshotHeader {
            version: snapshot::SNAPSHOT_VERSION,
            events_end: self.events_end,
            inbox_next: self.inbox_next,
            ledger: self.ledger.clone(),
            breakers: self.breakers.clone(),
        };
        let delta = self
            .dirty
            .take_delta(&header, &self.turns, &self.sessions)
            .map_err(|e| RuntimeError::Snapshot(e.to_string()))?;
        self.deps.store.save_snapshot(self.partition, delta).await?;
        // Every turn in memory is now in the store as it is: those waiting for a person go.
        self.park_idle_turns();
        self.since_snapshot = 0;
        self.last_snapshot = Instant::now();
        self.deps.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        self.deps
            .stats
            .snapshot_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }
}
