//! Parking: turns that wait only for a person (an approval, a handoff) leave memory.
//!
//! A partition may hold a million turns waiting for people for a day. Their state is already
//! in the snapshot store once a snapshot has written it, so after each snapshot the actor drops
//! every such turn that has nothing in flight and keeps only its id, the session it holds and
//! one timer for its deadline. Whatever arrives for a parked turn — an operator's command, its
//! deadline, a reversal — reads it back from the store first (one key lookup), and it runs as
//! if it had never left; the next snapshot after it changes writes it and may park it again.
//! Recovery never loads parked turns at all (see `snapshot::load`): it arms their deadlines,
//! which is all a resume of such a turn would do (a property test in `turn` holds the two equal).

use super::{PartitionActor, Wake};
use crate::ids::TurnId;
use crate::runtime::RuntimeError;
use crate::runtime::snapshot::{self, ParkedTurn};
use crate::turn::Input;

impl PartitionActor {
    /// Whether this partition holds `turn` in flight, in memory or parked.
    pub(super) fn holds(&self, turn: &TurnId) -> bool {
        self.turns.contains_key(turn) || self.parked.contains_key(turn)
    }

    /// Records a parked turn and arms its deadline.
    pub(super) fn park(&mut self, p: ParkedTurn) {
        self.set_timer(p.wake_at_ms, p.turn, Wake::Deadline(p.deadline()));
        if self
            .parked
            .insert(p.turn, p.session.map(String::into_boxed_str))
            .is_none()
        {
            self.count_parked(1, 0);
        }
    }

    /// The workers' gauge of parked turns (shared by every partition: changes, not levels).
    fn count_parked(&self, parked: u64, unparked: u64) {
        let gauge = &self.deps.stats.parked_turns;
        gauge.fetch_add(parked, std::sync::atomic::Ordering::Relaxed);
        gauge.fetch_sub(unparked, std::sync::atomic::Ordering::Relaxed);
    }

    /// After a snapshot (every turn in memory is in the store as it is now): parks the turns
    /// that wait only for a person and have nothing running. Their deadline timers stay armed.
    pub(super) fn park_idle_turns(&mut self) {
        let idle: Vec<TurnId> = self
            .turns
            .iter()
            .filter(|(id, state)| !self.busy.contains_key(*id) && state.parked_deadline().is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut n = 0;
        for id in idle {
            if let Some(state) = self.turns.remove(&id) {
                let session = ParkedTurn::of(&state).and_then(|p| p.session);
                self.parked.insert(id, session.map(String::into_boxed_str));
                n += 1;
            }
        }
        self.count_parked(n, 0);
    }

    /// Reads back the parked turns `inputs` are for, so the round decides them in memory.
    pub(super) fn unpark_for(&mut self, inputs: &[(TurnId, Input)]) -> Result<(), RuntimeError> {
        if self.parked.is_empty() {
            return Ok(());
        }
        for (turn, _) in inputs {
            self.unpark(*turn)?;
        }
        Ok(())
    }

    /// Reads a parked turn back into memory (no-op for a turn that is not parked). A parked
    /// turn missing from the store is an error: its state would be lost.
    pub(super) fn unpark(&mut self, turn: TurnId) -> Result<bool, RuntimeError> {
        if !self.parked.contains_key(&turn) {
            return Ok(false);
        }
        let state = read_back(self.deps.store.as_ref(), self.partition, turn)?;
        self.parked.remove(&turn);
        self.turns.insert(turn, state);
        self.count_parked(0, 1);
        Ok(true)
    }
}

/// A parked turn's state from the snapshot store. Missing is an error, never a fresh turn:
/// its state would be lost.
pub(super) fn read_back(
    store: &dyn crate::runtime::state_store::StateStore,
    partition: crate::ids::Partition,
    turn: TurnId,
) -> Result<crate::turn::TurnState, RuntimeError> {
    snapshot::load_turn(store, partition, turn)?.ok_or_else(|| {
        RuntimeError::Snapshot(format!(
            "turn {turn} was parked but the snapshot store does not hold it"
        ))
    })
}

impl Drop for PartitionActor {
    /// A partition that ends (drained, or failed and restarted from the store) takes its
    /// parked turns out of the gauge; its successor counts them again as it recovers them.
    fn drop(&mut self) {
        self.count_parked(0, self.parked.len() as u64);
    }
}
