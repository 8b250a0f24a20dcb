//! Phase `Retrieving`: the turn asked for documents and waits for them.

use crate::event::{ContextRetrieved, GuardCheckpoint, Payload};

use super::decide::Builder;
use super::effect::Effect;
use super::guarding::At;
use super::input::{ExecFailure, Retrieval};

impl Builder<'_, '_> {
    pub(super) fn retrieve(&mut self) {
        if self.ctx.draining {
            return;
        }
        self.effect(Effect::Retrieve {
            turn_id: self.state.turn_id,
            query: self.state.text.clone(),
            tenant: self.state.tenant.clone(),
            user_id: self.state.user_id.clone(),
        });
    }

    /// `(Retrieving, Retrieved)`: records the documents (stale ones dropped; a failure degrades
    /// to none) and asks the model for step 0 — unless the sources contradict each other.
    pub(super) fn on_retrieved(&mut self, result: Result<Retrieval, ExecFailure>) {
        let query = self.state.text.clone();
        let mut contradiction = None;
        let payload = match result {
            Ok(r) => {
                let (documents, c) = self.guard_context(r.documents);
                contradiction = c;
                ContextRetrieved {
                    query: r.query,
                    documents,
                    latency_ms: r.latency_ms,
                    error: None,
                }
            }
            // Degrade, don't fail: the planner sees no context and can say so.
            Err(f) => ContextRetrieved {
                query,
                documents: Vec::new(),
                latency_ms: f.latency_ms,
                error: Some(f.message),
            },
        };
        self.emit(Payload::ContextRetrieved(payload));
        self.flush_trips(At::new(GuardCheckpoint::PostTool));
        match contradiction {
            // Acting on disagreeing sources is how small errors become actions.
            Some(t) => {
                self.trip(At::new(GuardCheckpoint::PostTool), t);
            }
            None => self.plan(),
        }
    }
}
