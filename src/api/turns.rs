//! Turn routes: submit, list, read (turn, trace, audit chain), approve / deny, reverse, label.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::authn::{Anyone, Authed, Operators, Submitters, Watchers};
use super::problem::Problem;
use super::reveal::{RevealQuery, shown};
use super::{AppState, Body, P, Q};
use crate::event::Event;
use crate::ids::{Partition, TurnId};
use crate::projection::turn_index::{TurnEntry, TurnStatus};
use crate::turn::{Phase, TurnState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTurn {
    /// The end user the agent acts for (with the tenant, the routing key).
    pub user_id: String,
    pub text: String,
    #[serde(default)]
    pub channel: Option<String>,
    /// Request attributes: `roles`, `scopes` (comma-separated), `class`, …
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// A UUID v7 chosen by the caller, to make a retried submission idempotent.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// The conversation this turn continues: the model sees its earlier turns (requests,
    /// replies, tool calls and results). Up to 128 characters; one user's.
    #[serde(default)]
    pub session_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    pub turn_id: String,
    pub tenant: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnView {
    pub turn_id: String,
    pub tenant: String,
    pub user_id: String,
    /// running or terminal
    pub status: String,
    pub outcome: Option<String>,
    pub latency_ms: Option<i64>,
    pub requested_at_ms: i64,
    pub events: u64,
    /// The reply the user got — the model's final answer — once the turn is terminal (absent
    /// when it ended without one: denied, failed, handed to a person).
    pub reply: Option<String>,
    /// The session the turn continues.
    pub session_id: Option<String>,
    /// Model steps the turn's loop took.
    pub steps: Option<i64>,
    /// The outcome record (tokens, cost, rung, policy version, labels) once finished.
    #[schema(value_type = Option<Object>)]
    pub record: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only turns with this outcome.
    pub outcome: Option<String>,
    /// running or terminal.
    pub status: Option<String>,
    /// Requested at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Requested at or before (ms since the epoch).
    pub until_ms: Option<i64>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Most turns one list answers.
pub const MAX_LIST: usize = 1000;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelBody {
    /// e.g. hallucination_with_action, incorrect, correct
    pub label: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandSent {
    pub turn_id: String,
    pub command_id: Option<String>,
    /// What happens next ("sent", "already reversed", "reversal in progress").
    pub status: String,
}

pub(super) fn parse_id(id: &str) -> Result<TurnId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a turn id (UUID)")))
}

/// The caller's tenant's turn, or 404 (also for another tenant's turn: nothing leaks).
pub(crate) async fn own_turn(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<TurnEntry, Problem> {
    let turn = parse_id(id)?;
    state.fresh().await?;
    match state.index.get(turn)? {
        Some(e) if e.tenant == tenant => Ok(e),
        _ => Err(Problem::not_found(format!("no turn {turn}"))),
    }
}

pub(crate) fn view(state: &AppState, e: TurnEntry) -> TurnView {
    let mut masker = super::reveal::masked(state);
    let record = state
        .outcomes
        .get(e.turn_id)
        .ok()
        .flatten()
        .and_then(|mut o| {
            masker.outcome(&mut o);
            serde_json::to_value(o).ok()
        });
    let session_id = e
        .session_id
        .as_deref()
        .map(|s| masker.text(&e.tenant, &e.user_id, s));
    TurnView {
        turn_id: e.turn_id.to_string(),
        user_id: masker.user(&e.tenant, &e.user_id),
        tenant: e.tenant,
        status: match e.status {
            TurnStatus::Running => "running".into(),
            TurnStatus::Terminal => "terminal".into(),
        },
        outcome: record
            .as_ref()
            .and_then(|r| r["outcome"].as_str().map(str::to_owned))
            .or(e.outcome.map(|o| o.as_str().to_string())),
        latency_ms: e.latency_ms,
        requested_at_ms: e.requested_at_ms,
        events: e.events,
        reply: record
            .as_ref()
            .and_then(|r| r["reply"].as_str().map(str::to_owned)),
        steps: record.as_ref().and_then(|r| r["steps"].as_i64()),
        session_id,
        record,
    }
}

#[utoipa::path(post, path = "/v1/turns", tag = "turns", request_body = SubmitTurn,
    params(super::stream::SubmitQuery),
    responses((status = 202, body = Submitted), (status = 200, body = TurnView, description = "with wait_ms: the turn finished in time"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem, description = "a role the token lacks, or a claim (`roles`, `scopes`) it may not grant"),
        (status = 409, body = Problem, description = "the turn id exists with other content"),
        (status = 413, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit(
    Authed(caller, _): Authed<Submitters>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<super::stream::SubmitQuery>,
    Body(body): Body<SubmitTurn>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let tenant = caller.tenant.clone();
    let (status, submitted) = super::admit::accept(caller, &state, body).await?;
    if let Some(wait_ms) = q.wait_ms
        && let Ok(turn) = submitted.turn_id.parse::<TurnId>()
        && let Some(done) = super::stream::finished_within(&state, &tenant, turn, wait_ms).await?
    {
        return Ok((StatusCode::OK, Json(done)).into_response());
    }
    Ok((status, Json(submitted)).into_response())
}

#[utoipa::path(get, path = "/v1/turns", tag = "turns", params(ListQuery),
    responses((status = 200, body = Vec<TurnView>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    Authed(caller, _): Authed<Anyone>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<TurnView>>, Problem> {
    let limit = q.limit.unwrap_or(100);
    if limit > MAX_LIST {
        return Err(Problem::over_limit(
            format!("limit {limit}"),
            MAX_LIST as u64,
        ));
    }
    state.fresh().await?;
    let mut out = Vec::new();
    for e in state.index.all()?.into_iter().rev() {
        if e.tenant != caller.tenant
            || q.since_ms.is_some_and(|s| e.requested_at_ms < s)
            || q.until_ms.is_some_and(|u| e.requested_at_ms > u)
        {
            continue;
        }
        let v = view(&state, e);
        if q.status.as_deref().is_some_and(|s| s != v.status)
            || q.outcome
                .as_deref()
                .is_some_and(|o| v.outcome.as_deref() != Some(o))
        {
            continue;
        }
        out.push(v);
        if out.len() >= limit {
            break;
        }
    }
    Ok(Json(out))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Wait up to this many milliseconds (at most 60000) for a turn submitted a moment ago —
    /// here or through another replica — to show here, instead of 404 at once: how a client
    /// reads its own writes on any replica.
    pub wait_ms: Option<u64>,
}

#[utoipa::path(get, path = "/v1/turns/{id}", tag = "turns", params(("id" = String, Path, description = "turn id"), ReadQuery),
    responses((status = 200, body = TurnView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_turn(
    Authed(caller, _): Authed<Anyone>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Q(q): Q<ReadQuery>,
) -> Result<Json<TurnView>, Problem> {
    let entry = match q.wait_ms {
        Some(ms) => {
            let within = std::time::Duration::from_millis(ms.min(super::stream::MAX_WAIT_MS));
            super::stream::appearing_within(&state, &caller.tenant, &id, within).await?
        }
        None => own_turn(&state, &caller.tenant, &id).await?,
    };
    Ok(Json(view(&state, entry)))
}

async fn events(state: &AppState, entry: &TurnEntry) -> Result<Vec<(u64, Event)>, Problem> {
    let found = state.desk().read_turn(entry.turn_id).await?;
    Ok(found
        .map(|(_, e)| e.into_iter().map(|(o, e)| (o.0, e)).collect())
        .unwrap_or_default())
}

#[utoipa::path(get, path = "/v1/turns/{id}/trace", tag = "turns", params(("id" = String, Path, description = "turn id"), RevealQuery),
    responses((status = 200, description = "the turn's events with OpenTelemetry GenAI attributes", body = Vec<Object>),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn trace(
    Authed(caller, _): Authed<Watchers>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Q(q): Q<RevealQuery>,
) -> Result<Json<Vec<serde_json::Value>>, Problem> {
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let p = Partition(entry.partition);
    let (offsets, mut events): (Vec<u64>, Vec<Event>) =
        events(&state, &entry).await?.into_iter().unzip();
    shown(
        &state,
        &caller,
        &q,
        &[(entry.turn_id, waits(&events))],
        "trace",
    )
    .await?
    .events(&mut events);
    Ok(Json(
        offsets
            .iter()
            .zip(&events)
            .map(|(o, e)| e.trace_entry(p.0, *o))
            .collect(),
    ))
}

/// Whether a turn (its events) waits for a person: an approval or a handoff.
pub(crate) fn waits(events: &[Event]) -> bool {
    let Some(first) = events.first() else {
        return false;
    };
    TurnState::replay(first.turn_id, events.iter()).is_ok_and(|s| {
        matches!(
            s.phase(),
            Phase::AwaitingApproval { .. } | Phase::AwaitingHandoff
        )
    })
}

#[utoipa::path(get, path = "/v1/turns/{id}/audit", tag = "turns", params(("id" = String, Path, description = "turn id"), RevealQuery),
    responses((status = 200, description = "for each side effect, the chain of facts that caused it", body = Object),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn audit(
    Authed(caller, _): Authed<Watchers>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Q(q): Q<RevealQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let mut events: Vec<Event> = events(&state, &entry)
        .await?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    shown(
        &state,
        &caller,
        &q,
        &[(entry.turn_id, waits(&events))],
        "audit",
    )
    .await?
    .events(&mut events);
    let audit = crate::audit::audit(&events).ok_or_else(|| Problem::not_found("no events"))?;
    serde_json::to_value(audit)
        .map(Json)
        .map_err(|e| Problem::internal(e.to_string()))
}

async fn answer(
    caller: crate::api::auth::Caller,
    state: Arc<AppState>,
    id: String,
    reason: Option<String>,
    granted: bool,
) -> Result<Json<CommandSent>, Problem> {
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let cmd = state
        .desk()
        .answer_approval(
            entry.turn_id,
            granted,
            reason,
            (&caller.name, state.clock.now_ms()),
        )
        .await?;
    Ok(Json(CommandSent {
        turn_id: entry.turn_id.to_string(),
        command_id: Some(cmd.command_id),
        status: "sent".into(),
    }))
}

#[utoipa::path(post, path = "/v1/turns/{id}/approve", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = Reason, responses((status = 200, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "not waiting for an approval")),
    security(("bearer" = [])))]
pub async fn approve(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Body(body): Body<Reason>,
) -> Result<Json<CommandSent>, Problem> {
    answer(caller, state, id, body.reason, true).await
}

#[utoipa::path(post, path = "/v1/turns/{id}/deny", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = Reason, responses((status = 200, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "not waiting for an approval")),
    security(("bearer" = [])))]
pub async fn deny(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Body(body): Body<Reason>,
) -> Result<Json<CommandSent>, Problem> {
    answer(caller, state, id, body.reason, false).await
}

#[utoipa::path(post, path = "/v1/turns/{id}/reverse", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = Reason, responses((status = 202, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "the turn has not finished")),
    security(("bearer" = [])))]
pub async fn reverse(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Body(body): Body<Reason>,
) -> Result<(StatusCode, Json<CommandSent>), Problem> {
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let r = state
        .desk()
        .request_reversal(
            entry.turn_id,
            body.reason,
            (&caller.name, state.clock.now_ms()),
        )
        .await?;
    let (command_id, status) = match r {
        crate::operator::Reversal::Requested(c) => (Some(c.command_id), "sent"),
        crate::operator::Reversal::InProgress => (None, "reversal in progress"),
        crate::operator::Reversal::Done => (None, "already reversed"),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandSent {
            turn_id: entry.turn_id.to_string(),
            command_id,
            status: status.into(),
        }),
    ))
}

#[utoipa::path(post, path = "/v1/turns/{id}/labels", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = LabelBody, responses((status = 202, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "the turn has not finished")),
    security(("bearer" = [])))]
pub async fn label(
    Authed(caller, _): Authed<Watchers>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Body(body): Body<LabelBody>,
) -> Result<(StatusCode, Json<CommandSent>), Problem> {
    if body.label.trim().is_empty() || body.label.len() > 64 {
        return Err(Problem::bad_request("a label is 1 to 64 characters"));
    }
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let cmd = state
        .desk()
        .label_turn(
            entry.turn_id,
            body.label.trim(),
            body.note,
            (&caller.name, state.clock.now_ms()),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandSent {
            turn_id: entry.turn_id.to_string(),
            command_id: Some(cmd.command_id),
            status: "sent".into(),
        }),
    ))
}
