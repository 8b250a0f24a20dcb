//! What a round publishes beside its events: a handoff record for each turn handed to a person
//! (the escalations log, which operators' tools read) and an outcome record for each turn that
//! finished, was reversed or was labelled (the outcomes log), both built from the turn's state
//! once the round's decisions are applied to it. Published records are views: personal values
//! leave as `[REDACTED:kind]` (an operator reveals a turn through the API, and that is recorded).

use super::RuntimeError;
use super::journal::Round;
use crate::event::codec::Codecs;
use crate::event::{EscalationRaised, EscalationRung, Event, Handoff, Payload, TurnOutcome};
use crate::log::Record;
use crate::turn::TurnState;
use crate::vault::view::{Masker, redact_all};

/// Adds to `round` what `event` publishes, given its turn's state after the round (`None`: a
/// turn this partition no longer holds, which publishes nothing). Outcome records only when
/// the journal publishes them (`publishes_outcomes`).
pub(super) fn publish(
    round: &mut Round,
    event: &Event,
    state: Option<&TurnState>,
    codecs: &Codecs,
    publishes_outcomes: bool,
) -> Result<(), RuntimeError> {
    let Some(state) = state else {
        return Ok(());
    };
    match &event.payload {
        Payload::EscalationRaised(r) if r.rung == EscalationRung::HumanHandoff => {
            round.escalations.push(Record {
                key: event.turn_id.key(),
                value: codecs.handoffs.encode(&handoff(event, r, state)?)?,
            });
        }
        // A reversal or a late label publishes the turn's record again (same key).
        Payload::TurnCompleted(_) | Payload::TurnReversed(_) | Payload::OutcomeLabeled(_)
            if publishes_outcomes =>
        {
            if let Some(outcome) = outcome(state) {
                round.outcomes.push(Record {
                    key: event.turn_id.key(),
                    value: codecs.outcomes.encode(&outcome)?,
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// The handoff record of a turn handed to a person by `raised`: who and why, the rungs it
/// climbed, and its trace up to the handoff, redacted.
pub(super) fn handoff(
    event: &Event,
    raised: &EscalationRaised,
    state: &TurnState,
) -> Result<Handoff, RuntimeError> {
    let trace =
        crate::turn::handoff_trace(state).map_err(|e| RuntimeError::Snapshot(e.to_string()))?;
    Ok(Handoff {
        turn_id: event.turn_id,
        tenant: event.tenant.clone(),
        user_id: redact_all(&state.user_id),
        reason: redact_all(&raised.reason),
        call_id: raised.call_id.clone(),
        raised_at_ms: event.at_ms,
        deadline_ms: raised.deadline_ms.unwrap_or(i64::MAX),
        rungs: state
            .escalations
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        trace_json: redact_all(&trace),
        trace_version: crate::turn::HANDOFF_TRACE_VERSION,
    })
}

/// The outcome record of a finished turn, masked; `None` while it runs.
pub(super) fn outcome(state: &TurnState) -> Option<TurnOutcome> {
    let mut outcome = state.outcome_record(&state.reason)?;
    Masker::new(None).outcome(&mut outcome);
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::codec::SchemaRegistry;
    use crate::event::fixtures::every_event;
    use crate::ids::TurnId;

    fn codecs() -> Codecs {
        Codecs::new(SchemaRegistry::new()).expect("codecs")
    }

    /// A turn's state after the fixtures' events up to (not including) the first of `kind`,
    /// and that event.
    fn state_before(kind: &str) -> (TurnState, Event) {
        let turn = TurnId::from_parts(1_767_225_600_000, [9; 10]);
        let events = every_event(turn);
        let at = events
            .iter()
            .position(|e| e.kind() == kind)
            .expect("the fixtures hold every kind");
        let mut state = TurnState::new(turn);
        for e in &events[..at] {
            // The fixtures are one of each kind, not a coherent turn: facts that do not fit
            // are counted as anomalies, never refused.
            let _ = state.apply(e);
        }
        (state, events[at].clone())
    }

    #[test]
    fn a_human_handoff_publishes_a_redacted_handoff_record() {
        // Recorded values are tokens already (the vault's, at the edge): the record shows none.
        let email = crate::vault::token::format("email", &[7; 8]);
        let (mut state, mut event) = state_before("EscalationRaised");
        state.user_id = email.clone();
        let Payload::EscalationRaised(r) = &mut event.payload else {
            unreachable!("found by kind")
        };
        r.rung = EscalationRung::HumanHandoff;
        r.reason = format!("customer {email} asks for a manager");
        let mut round = Round::default();
        publish(&mut round, &event, Some(&state), &codecs(), false).expect("publish");
        assert_eq!(round.escalations.len(), 1);
        assert!(round.outcomes.is_empty());
        let h = codecs()
            .handoffs
            .decode(&round.escalations[0].value)
            .expect("decodes");
        assert_eq!(h.turn_id, event.turn_id);
        assert_eq!(h.raised_at_ms, event.at_ms);
        assert_eq!(h.user_id, "[REDACTED:email]");
        assert_eq!(h.reason, "customer [REDACTED:email] asks for a manager");
        assert_eq!(h.trace_version, crate::turn::HANDOFF_TRACE_VERSION);
    }

    #[test]
    fn other_rungs_and_unheld_turns_publish_nothing() {
        let (state, mut event) = state_before("EscalationRaised");
        if let Payload::EscalationRaised(r) = &mut event.payload {
            r.rung = EscalationRung::Specialist;
        }
        let mut round = Round::default();
        publish(&mut round, &event, Some(&state), &codecs(), true).expect("publish");
        let mut handed = event.clone();
        if let Payload::EscalationRaised(r) = &mut handed.payload {
            r.rung = EscalationRung::HumanHandoff;
        }
        publish(&mut round, &handed, None, &codecs(), true).expect("publish");
        assert!(round.is_empty());
    }

    #[test]
    fn a_finished_turn_publishes_its_outcome_when_the_journal_does() {
        let (mut state, event) = state_before("TurnCompleted");
        state.apply(&event).expect("applies");
        let mut round = Round::default();
        publish(&mut round, &event, Some(&state), &codecs(), false).expect("publish");
        assert!(round.outcomes.is_empty(), "this journal publishes none");
        publish(&mut round, &event, Some(&state), &codecs(), true).expect("publish");
        assert_eq!(round.outcomes.len(), 1);
        let o = codecs()
            .outcomes
            .decode(&round.outcomes[0].value)
            .expect("decodes");
        assert_eq!(Some(o), outcome(&state));
    }
}
