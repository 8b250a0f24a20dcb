//! Phases `New` and `Routing`: the request starts the turn; a session's follow-up waits for
//! the turn before it (`SessionReady`). See `table.rs` for what each phase accepts.

use crate::event::{
    GuardCheckpoint, GuardVerdict, Payload, SessionTurn, TurnRequest, TurnRequested,
};
use crate::guard::Trip;

use super::decide::Builder;
use super::guarding::At;

impl Builder<'_, '_> {
    /// `(New, Request)`: records the request (redacted) and routes it — unless another turn of
    /// its session still runs (`session` is `None`): then it waits for `SessionReady`.
    pub(super) fn on_request(
        &mut self,
        request: TurnRequest,
        source_offset: Option<i64>,
        session: Option<Vec<SessionTurn>>,
    ) {
        if request.turn_id != self.state.turn_id {
            return;
        }
        let waiting = request.session_id.is_some() && session.is_none();
        self.session = session.unwrap_or_default();
        self.state.tenant = request.tenant.clone();
        // PII never reaches the log: the request is recorded redacted.
        let (text, found) = self.ctx.guards.redactor.redact(&request.text);
        let found = super::guarding::pii_kinds(found, &text);
        if !found.is_empty() {
            let mut kinds = found.clone();
            kinds.sort();
            kinds.dedup();
            self.pending_trips.push(Trip::new(
                "redaction",
                "redaction.pii",
                GuardVerdict::Modify,
                format!(
                    "{} redaction(s) in the request: {}",
                    found.len(),
                    kinds.join(", ")
                ),
            ));
        }
        self.emit(Payload::TurnRequested(TurnRequested {
            user_id: request.user_id,
            text,
            channel: request.channel,
            attributes: request.attributes,
            submitted_at_ms: request.submitted_at_ms,
            source_offset,
            session_id: request.session_id,
        }));
        self.flush_trips(At::new(GuardCheckpoint::Intake));
        // Turns of one session run one after the other: a follow-up waits for the
        // answer it follows up on.
        if !waiting {
            self.route();
        }
    }

    /// `(Routing, SessionReady)`: the turn before this one in its session finished.
    pub(super) fn on_session_ready(&mut self, turns: Vec<SessionTurn>) {
        self.session = turns;
        self.route();
    }
}
