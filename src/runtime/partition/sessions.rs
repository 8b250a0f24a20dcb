//! Sessions inside a partition: a session's turns run one after the other (a follow-up waits
//! for the answer it follows up on). Which turn runs each session and which wait is memory
//! only, rebuilt after recovery from the turns in flight.

use super::PartitionActor;
use crate::ids::TurnId;
use crate::runtime::executor::Msg;
use crate::runtime::snapshot::session_key;
use crate::turn::TurnState;

impl PartitionActor {
    /// Makes `turn` the running turn of session `key` and returns its history, or queues it
    /// behind the turn already running (`None`: it waits).
    pub(super) fn claim_session(
        &mut self,
        key: String,
        turn: TurnId,
    ) -> Option<Vec<crate::event::SessionTurn>> {
        let busy = self
            .session_running
            .get(&key)
            .is_some_and(|t| *t != turn && self.holds(t));
        if busy {
            self.session_waiting.entry(key).or_default().push_back(turn);
            return None;
        }
        let history = self
            .sessions
            .get(&key)
            .map(|h| h.turns.iter().cloned().collect())
            .unwrap_or_default();
        self.session_running.insert(key, turn);
        Some(history)
    }

    /// A turn finished: the next turn waiting in its session (if any) goes on.
    pub(super) fn release_session(&mut self, state: &TurnState) {
        let Some(s) = &state.session_id else { return };
        let key = session_key(&state.tenant, &state.user_id, s);
        if self.session_running.get(&key) != Some(&state.turn_id) {
            return;
        }
        self.session_running.remove(&key);
        let next = loop {
            match self
                .session_waiting
                .get_mut(&key)
                .and_then(|q| q.pop_front())
            {
                Some(t) if self.holds(&t) => break Some(t),
                Some(_) => continue,
                None => break None,
            }
        };
        if self.session_waiting.get(&key).is_some_and(|q| q.is_empty()) {
            self.session_waiting.remove(&key);
        }
        if let Some(next) = next
            && let Some(history) = self.claim_session(key, next)
        {
            let _ = self.tx.send(Msg::SessionReady(next, history));
        }
    }

    /// After recovery: which turn runs each session (one already routed, else the oldest
    /// waiting), which wait, and a wake-up for a session's turn that may now go on.
    pub(super) fn rebuild_sessions(&mut self) {
        let mut in_flight: Vec<&TurnState> = self
            .turns
            .values()
            .filter(|t| t.session_id.is_some())
            .collect();
        in_flight.sort_by_key(|t| (t.requested_at_ms, t.turn_id));
        let mut waiting: Vec<(String, TurnId)> = Vec::new();
        for t in in_flight {
            let Some(s) = &t.session_id else { continue };
            let key = session_key(&t.tenant, &t.user_id, s);
            if t.route.is_some() {
                self.session_running.insert(key, t.turn_id);
            } else {
                waiting.push((key, t.turn_id));
            }
        }
        // A parked turn waits for a person in the middle of its run: its session is taken.
        for (turn, session) in &self.parked {
            if let Some(key) = session {
                self.session_running.insert(key.to_string(), *turn);
            }
        }
        for (key, turn) in waiting {
            self.session_waiting.entry(key).or_default().push_back(turn);
        }
        let free: Vec<String> = self
            .session_waiting
            .keys()
            .filter(|k| !self.session_running.contains_key(*k))
            .cloned()
            .collect();
        for key in free {
            let next = self
                .session_waiting
                .get_mut(&key)
                .and_then(|q| q.pop_front());
            if let Some(next) = next
                && let Some(history) = self.claim_session(key, next)
            {
                let _ = self.tx.send(Msg::SessionReady(next, history));
            }
        }
    }
}
