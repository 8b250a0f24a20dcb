//! What operators do to turns: read a turn back from the log, answer its approval or handoff,
//! reverse it or label it once it has finished.
//! Commands travel on the request log to the turn's partition, so they are durable on return and
//! the worker that owns the turn (now, or after a restart) applies them in order.

use crate::event::codec::{CodecError, Codecs};
use crate::event::{
    ApprovalDecision, CommandAction, Event, Handoff, HandoffAcceptance, HandoffResolution,
    LabelTurn, ReverseTurn, TurnCommand,
};
use crate::ids::{Offset, Partition, TurnId, routing_key};
use crate::log::{EventLog, LogError, Record, Scan};
use crate::projection::turn_index::TurnIndex;
use crate::projection::waiting::WaitingView;
use crate::turn::{ApplyError, Phase, TurnState};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("turn {0} is not in the log")]
    UnknownTurn(TurnId),
    #[error("turn {turn} is not waiting for {what} (it is {phase})")]
    NotWaiting {
        turn: TurnId,
        what: &'static str,
        phase: String,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
}

impl OperatorError {
    pub fn is_retryable(&self) -> bool {
        match self {
            OperatorError::Log(e) => e.is_retryable(),
            OperatorError::Projection(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Where operators act from: the turn log (read back through the turn index, caught up by
/// whoever built the desk) and the request log the commands go to. The API and the CLI build
/// one over either backend and share every check below.
#[derive(Clone, Copy)]
pub struct Desk<'a> {
    pub events: &'a dyn EventLog,
    pub requests: &'a dyn EventLog,
    pub codecs: &'a Codecs,
    pub index: &'a TurnIndex,
}

fn phase_name(phase: &Phase) -> String {
    match phase {
        Phase::Done(o) => format!("finished: {}", o.as_str()),
        other => format!("{other:?}"),
    }
}

/// Where a reversal stands after `request_reversal`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reversal {
    /// The command is on its way to the turn's worker.
    Requested(TurnCommand),
    /// A reversal began earlier and has not finished (a worker stopped mid-way): running the
    /// turn's partition resumes it.
    InProgress,
    /// The turn is reversed already; nothing more happens.
    Done,
}

/// A published handoff and where its turn is now.
#[derive(Clone, Debug)]
pub struct HandoffView {
    pub handoff: Handoff,
    pub open: bool,
    pub accepted_by: Option<String>,
    pub outcome: Option<String>,
}

/// A turn's events with their offsets, found through the turn index (caught up by the
/// caller); `None` when the index does not know the turn. Reading needs no request log, so
/// read-only views (trace, audit, the OTLP feed) call this without a [`Desk`].
pub async fn read_turn(
    log: &dyn EventLog,
    codecs: &Codecs,
    index: &TurnIndex,
    turn: TurnId,
) -> Result<Option<(Partition, Vec<(Offset, Event)>)>, OperatorError> {
    let Some(entry) = index.get(turn)? else {
        return Ok(None);
    };
    let partition = Partition(entry.partition);
    let key = turn.key();
    let mut scan = Scan::new(log, partition, Offset(entry.first_offset));
    let mut events = Vec::new();
    while let Some(batch) = scan.next_chunk(4096).await? {
        for s in batch.into_iter().filter(|s| s.key == key) {
            events.push((s.offset, codecs.events.decode(&s.value)?));
        }
    }
    Ok(Some((partition, events)))
}

impl Desk<'_> {
    /// [`read_turn`] on this desk's log.
    pub async fn read_turn(
        &self,
        turn: TurnId,
    ) -> Result<Option<(Partition, Vec<(Offset, Event)>)>, OperatorError> {
        read_turn(self.events, self.codecs, self.index, turn).await
    }

    /// Grants or denies the approval a turn waits for. Checks the turn is waiting, then appends
    /// the command to the turn's request partition; returns the command sent.
    pub async fn answer_approval(
        &self,
        turn: TurnId,
        granted: bool,
        reason: Option<String>,
        (operator, now_ms): (&str, i64),
    ) -> Result<TurnCommand, OperatorError> {
        let (partition, state) = self.current(turn).await?;
        let phase = state.phase();
        let Phase::AwaitingApproval { index: step } = phase else {
            return Err(OperatorError::NotWaiting {
                turn,
                what: "an approval",
                phase: phase_name(&phase),
            });
        };
        let approval_id = state
            .approval_for(step)
            .map(|a| a.approval_id.clone())
            .unwrap_or_default();
        let action = CommandAction::ApprovalDecision(ApprovalDecision {
            approval_id,
            granted,
            reason,
        });
        self.issue((partition, &state), (operator, now_ms), action, None)
            .await
    }

    /// Accepts (`resolution` None) or resolves a handed-off turn. Checks the turn is waiting
    /// for a person first.
    pub async fn answer_handoff(
        &self,
        turn: TurnId,
        resolution: Option<String>,
        (operator, now_ms): (&str, i64),
    ) -> Result<TurnCommand, OperatorError> {
        let (partition, state) = self.current(turn).await?;
        let phase = state.phase();
        if phase != Phase::AwaitingHandoff {
            return Err(OperatorError::NotWaiting {
                turn,
                what: "a human handoff",
                phase: phase_name(&phase),
            });
        }
        let action = match resolution {
            Some(resolution) => CommandAction::HandoffResolve(HandoffResolution { resolution }),
            None => CommandAction::HandoffAccept(HandoffAcceptance { note: None }),
        };
        self.issue((partition, &state), (operator, now_ms), action, None)
            .await
    }

    /// Asks for a finished turn's completed calls to be compensated. A turn still running is
    /// refused; one reversed (or being reversed) already gets no second command.
    pub async fn request_reversal(
        &self,
        turn: TurnId,
        reason: Option<String>,
        (operator, now_ms): (&str, i64),
    ) -> Result<Reversal, OperatorError> {
        let (partition, state) = self
            .finished(turn, "its end before it can be reversed")
            .await?;
        match &state.reversal {
            Some(r) if r.done => return Ok(Reversal::Done),
            Some(_) => return Ok(Reversal::InProgress),
            None => {}
        }
        let offset = self.first_offset(turn)?;
        let action = CommandAction::Reverse(ReverseTurn { reason });
        let command = self
            .issue((partition, &state), (operator, now_ms), action, offset)
            .await?;
        Ok(Reversal::Requested(command))
    }

    /// Appends a late label to a finished turn (e.g. `hallucination_with_action` from a review).
    pub async fn label_turn(
        &self,
        turn: TurnId,
        label: &str,
        note: Option<String>,
        (operator, now_ms): (&str, i64),
    ) -> Result<TurnCommand, OperatorError> {
        let (partition, state) = self
            .finished(turn, "its end before it can be labeled")
            .await?;
        let offset = self.first_offset(turn)?;
        let action = CommandAction::Label(LabelTurn {
            label: label.to_string(),
            note,
        });
        self.issue((partition, &state), (operator, now_ms), action, offset)
            .await
    }

    /// Every handoff on `escalations`, with where its turn stands now as the `waiting`
    /// projection has it (caught up by the caller): no turn is read back.
    pub async fn handoffs(
        &self,
        escalations: &dyn EventLog,
        waiting: &WaitingView,
    ) -> Result<Vec<HandoffView>, OperatorError> {
        let mut out = Vec::new();
        for p in (0..escalations.partitions()).map(Partition) {
            let mut scan = Scan::new(escalations, p, Offset::ZERO);
            while let Some(batch) = scan.next_chunk(1024).await? {
                for s in batch {
                    let handoff = self.codecs.handoffs.decode(&s.value)?;
                    let status = waiting
                        .handoff(handoff.turn_id)?
                        .ok_or(OperatorError::UnknownTurn(handoff.turn_id))?;
                    out.push(HandoffView {
                        open: status.open,
                        accepted_by: status.accepted_by,
                        outcome: status.outcome.map(|o| o.as_str().to_string()),
                        handoff,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The turn as recorded now, refused (`what` it waits for) unless it has finished.
    async fn finished(
        &self,
        turn: TurnId,
        what: &'static str,
    ) -> Result<(Partition, TurnState), OperatorError> {
        let (partition, state) = self.current(turn).await?;
        if state.outcome.is_none() {
            return Err(OperatorError::NotWaiting {
                turn,
                what,
                phase: phase_name(&state.phase()),
            });
        }
        Ok((partition, state))
    }

    fn first_offset(&self, turn: TurnId) -> Result<Option<i64>, OperatorError> {
        Ok(self.index.get(turn)?.map(|e| e.first_offset as i64))
    }

    /// The turn as recorded now.
    async fn current(&self, turn: TurnId) -> Result<(Partition, TurnState), OperatorError> {
        let (partition, recorded) = self
            .read_turn(turn)
            .await?
            .ok_or(OperatorError::UnknownTurn(turn))?;
        Ok((
            partition,
            TurnState::replay(turn, recorded.iter().map(|(_, e)| e))?,
        ))
    }

    /// Sends `action` for the turn, by `operator` at `now_ms`.
    async fn issue(
        &self,
        (partition, state): (Partition, &TurnState),
        (operator, now_ms): (&str, i64),
        action: CommandAction,
        turn_offset: Option<i64>,
    ) -> Result<TurnCommand, OperatorError> {
        let command = TurnCommand {
            turn_offset,
            command_id: uuid::Uuid::now_v7().to_string(),
            turn_id: state.turn_id,
            tenant: state.tenant.clone(),
            operator: operator.to_string(),
            issued_at_ms: now_ms,
            action,
        };
        // To the partition the turn lives in: its user id may be a token, routed by the raw id.
        send_to(self.requests, self.codecs, partition, &command).await?;
        Ok(command)
    }
}

/// Appends a command to the request partition of its turn's user.
pub async fn send(
    requests: &dyn EventLog,
    codecs: &Codecs,
    user_id: &str,
    command: &TurnCommand,
) -> Result<(), OperatorError> {
    let key = routing_key(&command.tenant, user_id);
    let partition = requests.partition_for(&key);
    send_to(requests, codecs, partition, command).await
}

/// Appends a command to request partition `partition` (the partition of the turn's events).
pub async fn send_to(
    requests: &dyn EventLog,
    codecs: &Codecs,
    partition: Partition,
    command: &TurnCommand,
) -> Result<(), OperatorError> {
    let key = command.turn_id.key();
    let value = codecs.commands.encode(command)?;
    requests
        .append(partition, vec![Record { key, value }])
        .await?;
    Ok(())
}
