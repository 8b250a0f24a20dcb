//! What operators do to running turns: read a turn back from the log, and answer its approval.
//! Commands travel on the request log to the turn's partition, so they are durable on return and
//! the worker that owns the turn (now, or after a restart) applies them in order.

use crate::event::codec::{CodecError, Codecs};
use crate::event::{ApprovalDecision, CommandAction, Event, TurnCommand};
use crate::ids::{Offset, Partition, TurnId, routing_key};
use crate::log::{EventLog, LogError, Record, Scan};
use crate::projection::turn_index::TurnIndex;
use crate::turn::{ApplyError, Phase, TurnState};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("turn {0} is not in the log")]
    UnknownTurn(TurnId),
    #[error("turn {turn} is not waiting for an approval (it is {phase})")]
    NotWaiting { turn: TurnId, phase: String },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl OperatorError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, OperatorError::Log(e) if e.is_retryable())
    }
}

/// A turn's events with their offsets, found through the turn index (caught up by the caller).
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

fn phase_name(phase: &Phase) -> String {
    match phase {
        Phase::Done(o) => format!("finished: {}", o.as_str()),
        other => format!("{other:?}"),
    }
}

/// Grants or denies the approval a turn waits for. Checks the turn is waiting, then appends the
/// command to the turn's request partition; returns the command sent.
#[allow(clippy::too_many_arguments)]
pub async fn answer_approval(
    events: &dyn EventLog,
    requests: &dyn EventLog,
    codecs: &Codecs,
    index: &TurnIndex,
    turn: TurnId,
    granted: bool,
    operator: &str,
    reason: Option<String>,
    now_ms: i64,
) -> Result<TurnCommand, OperatorError> {
    let (_, recorded) = read_turn(events, codecs, index, turn)
        .await?
        .ok_or(OperatorError::UnknownTurn(turn))?;
    let state = TurnState::replay(turn, recorded.iter().map(|(_, e)| e))?;
    let phase = state.phase();
    let Phase::AwaitingApproval { index: step } = phase else {
        return Err(OperatorError::NotWaiting {
            turn,
            phase: phase_name(&phase),
        });
    };
    let approval_id = state
        .approval_for(step)
        .map(|a| a.approval_id.clone())
        .unwrap_or_default();
    let command = TurnCommand {
        command_id: uuid::Uuid::now_v7().to_string(),
        turn_id: turn,
        tenant: state.tenant.clone(),
        operator: operator.to_string(),
        issued_at_ms: now_ms,
        action: CommandAction::ApprovalDecision(ApprovalDecision {
            approval_id,
            granted,
            reason,
        }),
    };
    send(requests, codecs, &state.user_id, &command).await?;
    Ok(command)
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
    let value = codecs.commands.encode(command)?;
    requests
        .append(partition, vec![Record { key, value }])
        .await?;
    Ok(())
}
