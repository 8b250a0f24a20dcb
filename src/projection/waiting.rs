//! The operator queue: turns waiting for a person — an approval, or a human handoff — folded
//! from the turn log like every projection, so `GET /v1/queue`, `GET /v1/handoffs` and
//! `ballast handoff list` read rows instead of replaying every running turn on each request.
//!
//! Rows: `f`+turn → what the fold keeps of a turn (the seq its next event carries, the approval
//! it waits for, its handoff, how it ended), kept once the turn ends so a duplicate or a late
//! event changes nothing and a listed handoff still says who accepted it; `w`+tenant+turn → the
//! queue entry of a turn waiting now, so one tenant's queue, oldest first (turn ids are
//! time-ordered), is one prefix scan.
//!
//! What counts as waiting follows `TurnState::phase()`: `AwaitingHandoff` while a human handoff
//! is raised and not resolved (before anything else), `AwaitingApproval` while an approval is
//! pending. It is folded from the events that move those two, not from the whole state: a
//! waiting turn costs a few hundred bytes here, not its state. `tests/golden.rs` holds the fold
//! equal to the phase after every event of every recorded history.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{At, Projection, ProjectionError, storage_error};
use crate::event::{Checkpoint, EscalationRung, Event, Outcome, Payload};
use crate::ids::TurnId;
use crate::log::{LogError, SledStore};

const NAME: &str = "waiting";
const FOLD: u8 = b'f';
const WAITING: u8 = b'w';

/// What a waiting turn waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingKind {
    Approval,
    Handoff,
}

impl WaitingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingKind::Approval => "approval",
            WaitingKind::Handoff => "handoff",
        }
    }
}

/// A turn waiting for a person, as recorded (personal values still tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitingTurn {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub kind: WaitingKind,
    pub reason: String,
    /// An approval's call.
    pub approval_id: Option<String>,
    pub tool: Option<String>,
    pub args_json: Option<String>,
    pub risk_score: Option<f64>,
    pub deadline_ms: Option<i64>,
    /// A handoff taken by an operator who has not resolved it yet.
    pub accepted_by: Option<String>,
    /// An approval: the provenance recorded with the pre-tool review that asked for it
    /// (`guard::provenance::CallProvenance` as JSON), explained when shown.
    pub provenance_json: Option<String>,
}

/// A pending approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Approval {
    approval_id: String,
    tool: String,
    args_json: String,
    reason: String,
    risk_score: f64,
    deadline_ms: i64,
    provenance_json: Option<String>,
}

/// A human handoff: raised, maybe accepted, maybe resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Handoff {
    reason: String,
    deadline_ms: Option<i64>,
    accepted_by: Option<String>,
    resolved: bool,
}

/// What the fold keeps of one turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Fold {
    tenant: String,
    user_id: String,
    /// The seq the next event carries: a lower one is a duplicate.
    next: i64,
    /// The provenance of the latest pre-tool review, taken along by the approval it asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pre_tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handoff: Option<Handoff>,
    /// How the turn ended (then reversed, if it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

impl Fold {
    fn new(event: &Event, user_id: &str) -> Self {
        Fold {
            tenant: event.tenant.clone(),
            user_id: user_id.to_string(),
            next: 0,
            pre_tool: None,
            approval: None,
            handoff: None,
            outcome: None,
        }
    }

    fn apply(&mut self, event: &Event) {
        if event.seq < self.next {
            return;
        }
        self.next = event.seq + 1;
        match &event.payload {
            Payload::PolicyEvaluated(p) if p.checkpoint == Checkpoint::PreTool => {
                self.pre_tool = p.provenance_json.clone();
            }
            Payload::ApprovalRequested(a) => {
                self.approval = Some(Approval {
                    approval_id: a.approval_id.clone(),
                    tool: a.tool.clone(),
                    args_json: a.args_json.clone(),
                    reason: a.reason.clone(),
                    risk_score: a.risk_score,
                    deadline_ms: a.deadline_ms,
                    provenance_json: self.pre_tool.clone(),
                })
            }
            Payload::ApprovalGranted(x) | Payload::ApprovalDenied(x) => {
                self.settle_approval(&x.approval_id)
            }
            Payload::ApprovalExpired(x) => self.settle_approval(&x.approval_id),
            Payload::EscalationRaised(r) if r.rung == EscalationRung::HumanHandoff => {
                self.handoff = Some(Handoff {
                    reason: r.reason.clone(),
                    deadline_ms: r.deadline_ms,
                    accepted_by: None,
                    resolved: false,
                })
            }
            Payload::HandoffAccepted(h) => {
                if let Some(handoff) = self.handoff.as_mut() {
                    handoff.accepted_by = Some(h.operator.clone());
                }
            }
            Payload::HandoffResolved(_) => {
                if let Some(handoff) = self.handoff.as_mut() {
                    handoff.resolved = true;
                }
            }
            Payload::TurnCompleted(c) => {
                self.outcome = Some(c.outcome);
                // Nothing is asked of a finished turn: keep only what a handoff listing shows.
                self.pre_tool = None;
                self.approval = None;
            }
            Payload::TurnReversed(_) if self.outcome.is_some() => {
                self.outcome = Some(Outcome::Reversed)
            }
            _ => {}
        }
    }

    fn settle_approval(&mut self, id: &str) {
        if self.approval.as_ref().is_some_and(|a| a.approval_id == id) {
            self.approval = None;
        }
    }

    /// What the turn waits for now, if anything: a raised handoff first (a resolved one waits
    /// for nothing more), then a pending approval.
    fn waiting(&self, turn_id: TurnId) -> Option<WaitingTurn> {
        if self.outcome.is_some() {
            return None;
        }
        let entry = |kind, reason: &str| WaitingTurn {
            turn_id,
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            kind,
            reason: reason.to_string(),
            approval_id: None,
            tool: None,
            args_json: None,
            risk_score: None,
            deadline_ms: None,
            accepted_by: None,
            provenance_json: None,
        };
        if let Some(h) = &self.handoff {
            return (!h.resolved).then(|| WaitingTurn {
                deadline_ms: h.deadline_ms,
                accepted_by: h.accepted_by.clone(),
                ..entry(WaitingKind::Handoff, &h.reason)
            });
        }
        self.approval.as_ref().map(|a| WaitingTurn {
            approval_id: Some(a.approval_id.clone()),
            tool: Some(a.tool.clone()),
            args_json: Some(a.args_json.clone()),
            risk_score: Some(a.risk_score),
            deadline_ms: Some(a.deadline_ms),
            provenance_json: a.provenance_json.clone(),
            ..entry(WaitingKind::Approval, &a.reason)
        })
    }
}

/// What a turn waits for after `events` (its own, oldest first, starting with its request), as
/// this projection folds them: `None` when nothing, or when the first is not a request.
pub fn waiting_after<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<WaitingTurn> {
    let mut events = events.into_iter();
    let first = events.next()?;
    let Payload::TurnRequested(r) = &first.payload else {
        return None;
    };
    let mut fold = Fold::new(first, &r.user_id);
    fold.apply(first);
    for e in events {
        fold.apply(e);
    }
    fold.waiting(first.turn_id)
}

/// Where a handed-off turn stands, for a listing of handoffs.
#[derive(Clone, Debug, PartialEq)]
pub struct HandoffStatus {
    /// Still waiting for a person.
    pub open: bool,
    pub accepted_by: Option<String>,
    /// How the turn ended, once it has.
    pub outcome: Option<Outcome>,
}

pub struct WaitingView {
    tree: sled::Tree,
}

fn fold_key(t: &TurnId) -> Vec<u8> {
    let mut k = vec![FOLD];
    k.extend_from_slice(t.0.as_bytes());
    k
}

fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = vec![WAITING];
    k.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
    k.extend_from_slice(tenant.as_bytes());
    k
}

fn waiting_key(tenant: &str, t: &TurnId) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(t.0.as_bytes());
    k
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| storage_error(NAME, e))
}

impl WaitingView {
    pub fn open(store: &SledStore) -> Result<Self, LogError> {
        Ok(WaitingView {
            tree: super::open_tree(store, NAME)?,
        })
    }

    /// The tenant's waiting turns, oldest first, at most `limit`.
    pub fn queue(&self, tenant: &str, limit: usize) -> Result<Vec<WaitingTurn>, ProjectionError> {
        self.scan(&tenant_prefix(tenant), limit)
    }

    /// Every tenant's waiting turns (by tenant, then oldest first), at most `limit`.
    pub fn all(&self, limit: usize) -> Result<Vec<WaitingTurn>, ProjectionError> {
        self.scan(&[WAITING], limit)
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<WaitingTurn>, ProjectionError> {
        self.tree
            .scan_prefix(prefix)
            .take(limit)
            .map(|item| {
                let (_, v) = item.map_err(|e| storage_error(NAME, e))?;
                json(&v)
            })
            .collect()
    }

    /// Where a turn's handoff stands; `None` for a turn this view never saw handed off.
    pub fn handoff(&self, turn: TurnId) -> Result<Option<HandoffStatus>, ProjectionError> {
        let Some(fold) = self.load(turn)? else {
            return Ok(None);
        };
        let open = fold
            .waiting(turn)
            .is_some_and(|w| w.kind == WaitingKind::Handoff);
        Ok(fold.handoff.map(|h| HandoffStatus {
            open,
            accepted_by: h.accepted_by,
            outcome: fold.outcome,
        }))
    }

    fn load(&self, turn: TurnId) -> Result<Option<Fold>, ProjectionError> {
        self.tree
            .get(fold_key(&turn))
            .map_err(|e| storage_error(NAME, e))?
            .map(|v| json(&v))
            .transpose()
    }
}

impl Projection for WaitingView {
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
        // Per turn touched: its fold, and whether it waited before this chunk.
        let mut touched: HashMap<TurnId, (Option<Fold>, bool)> = HashMap::new();
        for (_, event) in events {
            let (fold, _) = match touched.get_mut(&event.turn_id) {
                Some(t) => t,
                None => {
                    let fold = self.load(event.turn_id)?;
                    let waited = fold
                        .as_ref()
                        .is_some_and(|f| f.waiting(event.turn_id).is_some());
                    touched.entry(event.turn_id).or_insert((fold, waited))
                }
            };
            match (fold.as_mut(), &event.payload) {
                (Some(f), _) => f.apply(event),
                (None, Payload::TurnRequested(r)) => {
                    let mut f = Fold::new(event, &r.user_id);
                    f.apply(event);
                    *fold = Some(f);
                }
                // A turn whose start this view never saw: nothing to attach the event to.
                (None, _) => {}
            }
        }
        for (turn, (fold, waited)) in touched {
            let Some(fold) = fold else { continue };
            let key = waiting_key(&fold.tenant, &turn);
            match fold.waiting(turn) {
                Some(w) => batch.insert(
                    key,
                    serde_json::to_vec(&w).map_err(|e| storage_error(NAME, e))?,
                ),
                None if waited => batch.remove(key),
                None => {}
            }
            let row = serde_json::to_vec(&fold).map_err(|e| storage_error(NAME, e))?;
            batch.insert(fold_key(&turn), row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
