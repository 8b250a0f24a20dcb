//! `POST /v1/turns` past its handler: the submission admitted through the one door
//! (`admission::admit`), claimed under its turn id, its vault records sealed, its request
//! appended — a 202 only once the request is durable (`submissions`).

use axum::http::StatusCode;

use super::AppState;
use super::problem::Problem;
use super::submissions::{self, Claim};
use super::turns::{SubmitTurn, Submitted, parse_id};
use crate::admission::{self, AdmitError, Door, Seen};
use crate::event::TurnRequest;
use crate::ids::TurnId;

/// Admits a submission (`admission::admit`, the door every request goes through) and appends
/// its request once, however often it is retried; see `submissions` for why a 202 means durable.
pub(super) async fn accept(
    caller: super::auth::Caller,
    state: &AppState,
    body: SubmitTurn,
) -> Result<(StatusCode, Submitted), Problem> {
    let turn_id = match body.turn_id.as_deref() {
        Some(id) => parse_id(id)?,
        None => TurnId::new_v7(),
    };
    // Routed by the raw user id, as producers route theirs; the log holds its token.
    let routing = crate::ids::routing_key(&caller.tenant, &body.user_id);
    let partition = state.logs.requests.partition_for(&routing);
    let request = TurnRequest {
        turn_id,
        tenant: caller.tenant.clone(),
        user_id: body.user_id,
        text: body.text,
        channel: body.channel.unwrap_or_else(|| "api".into()),
        attributes: body.attributes,
        submitted_at_ms: state.clock.now_ms(),
        session_id: body.session_id,
    };
    // Back-pressure: a partition the workers are far behind on takes no new turns for now.
    if let Some((backlog, wait)) = state.backlog.as_ref().and_then(|b| b.over(partition)) {
        crate::telemetry::record::api_rejected("backlog");
        let mut p = Problem::unavailable(format!(
            "the workers are {backlog} requests behind on this user's partition; retry later"
        ));
        p.retry_after = Some(wait);
        return Err(p);
    }
    // A shared vault agrees on the tenant's key with every worker before sealing under it.
    if let Some(v) = &state.vault {
        v.ensure_tenant(&caller.tenant)
            .await
            .map_err(|e| Problem::unavailable(e.to_string()))?;
    }
    let grants = caller.claims();
    let door = Door {
        grants: Some(&grants),
        vault: state.vault.as_deref(),
    };
    let submitted = || Submitted {
        turn_id: turn_id.to_string(),
        tenant: caller.tenant.clone(),
    };
    let deadline = tokio::time::Instant::now() + submissions::IN_FLIGHT_WAIT;
    let admitted = loop {
        // The end before claiming: if this submission's request is written, it is at or past it.
        let from = state
            .logs
            .requests
            .end(partition)
            .await
            .map_err(|e| Problem::unavailable(e.to_string()))?;
        let mut waiting = None;
        let admitted = admission::admit(&door, request.clone(), &mut |r| {
            match state
                .submissions
                .claim(r, partition, from)
                .map_err(|e| AdmitError::Dedup(e.to_string()))?
            {
                Claim::Seen(seen) => Ok(seen),
                Claim::InFlight(n) => {
                    waiting = Some(n);
                    Ok(Seen::Pending)
                }
                // An id taken by a turn that did not come through this API (a producer, the demo).
                Claim::Mine if known_turn(state, r.turn_id) => {
                    state.submissions.release(r.turn_id);
                    Ok(Seen::Different)
                }
                Claim::Mine => Ok(Seen::New),
            }
        })
        .map_err(|e| refused(&caller, e))?;
        match (admitted.seen, waiting) {
            (Seen::Pending, Some(n)) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(Problem::unavailable(format!(
                        "turn {turn_id} is being submitted by another request; retry"
                    ))
                    .with_turn(turn_id.to_string()));
                }
                // Short waits: a wake-up sent before this one listens is not missed for long.
                let wait = (deadline - now).min(std::time::Duration::from_millis(50));
                let _ = tokio::time::timeout(wait, n.notified()).await;
            }
            _ => break admitted,
        }
    };
    match admitted.seen {
        // A retry of a submission already durable: the same answer, nothing appended twice.
        Seen::Same => return Ok((StatusCode::ACCEPTED, submitted())),
        Seen::Different | Seen::Pending => {
            crate::telemetry::record::api_rejected("conflict");
            return Err(Problem::conflict(format!(
                "turn {turn_id} exists with other content; submit new content under a new turn id"
            ))
            .with_turn(turn_id.to_string()));
        }
        Seen::New => {}
    }
    let request = admitted.request;
    // Personal values never reach the request log: their values sealed in the vault first.
    let sealed = match (&state.vault_publish, &state.vault) {
        (Some(log), _) => log.publish(&admitted.records).await,
        (None, Some(v)) => v.persist(&admitted.records).map_err(|e| e.to_string()),
        (None, None) => Ok(()),
    };
    if let Err(e) = sealed {
        state.submissions.release(turn_id);
        return Err(Problem::unavailable(e));
    }
    if let Err(e) = crate::submit::submit_to(
        state.logs.requests.as_ref(),
        &state.logs.codecs.requests,
        partition,
        &request,
    )
    .await
    {
        // Not written: a retry must be free to submit it again.
        state.submissions.release(turn_id);
        return Err(Problem::unavailable(e.to_string()));
    }
    // Durable (the append returned after the group commit): the claim is settled. Were this
    // lost in a crash, the restart finds the request in the log and settles it the same way.
    if let Err(e) = state.submissions.commit(&request) {
        tracing::warn!(%turn_id, error = %e, "submission durable; its claim settles at the next start");
    }
    if let Some(b) = &state.backlog {
        b.submitted(partition);
    }
    Ok((StatusCode::ACCEPTED, submitted()))
}

fn known_turn(state: &AppState, turn: TurnId) -> bool {
    state.logs.started(turn)
}

/// A refused admission as the API answers it.
fn refused(caller: &super::auth::Caller, e: AdmitError) -> Problem {
    match e {
        AdmitError::Refused(r) => {
            crate::telemetry::record::api_rejected(r.label());
            match (&r, r.limit(), r.claim()) {
                (_, _, Some(claim)) => {
                    Problem::forbidden(format!("{r} (token {:?})", caller.name)).with_claim(claim)
                }
                (_, Some(limit), _) => Problem::over_limit(r.to_string(), limit),
                _ => Problem::bad_request(r.to_string()),
            }
        }
        e => Problem::unavailable(e.to_string()),
    }
}
