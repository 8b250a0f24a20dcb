//! Turn routes: submit, list, read (turn, trace, audit chain), approve / deny, reverse, label.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Role;
use super::problem::Problem;
use super::{AppState, Body};
use crate::event::{Event, TurnRequest};
use crate::ids::{Partition, TurnId};
use crate::projection::turn_index::{TurnEntry, TurnStatus};

const READERS: [Role; 3] = [Role::Submitter, Role::Operator, Role::Auditor];

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
    /// The outcome record (tokens, cost, rung, policy version, labels) once finished.
    #[schema(value_type = Option<Object>)]
    pub record: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
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

fn parse_id(id: &str) -> Result<TurnId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a turn id (UUID)")))
}

/// The caller's tenant's turn, or 404 (also for another tenant's turn: nothing leaks).
pub(super) async fn own_turn(
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

fn view(state: &AppState, e: TurnEntry) -> TurnView {
    let record = state
        .outcomes
        .get(e.turn_id)
        .ok()
        .flatten()
        .and_then(|o| serde_json::to_value(o).ok());
    TurnView {
        turn_id: e.turn_id.to_string(),
        tenant: e.tenant,
        user_id: e.user_id,
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
        record,
    }
}

#[utoipa::path(post, path = "/v1/turns", tag = "turns", request_body = SubmitTurn,
    responses((status = 202, body = Submitted), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 413, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Body(body): Body<SubmitTurn>,
) -> Result<(StatusCode, Json<Submitted>), Problem> {
    let caller = state.caller(&headers, &[Role::Submitter])?;
    if body.user_id.trim().is_empty() || body.text.trim().is_empty() {
        return Err(Problem::bad_request("user_id and text must not be empty"));
    }
    let turn_id = match body.turn_id.as_deref() {
        Some(id) => parse_id(id)?,
        None => TurnId::new_v7(),
    };
    let request = TurnRequest {
        turn_id,
        tenant: caller.tenant.clone(),
        user_id: body.user_id,
        text: body.text,
        channel: body.channel.unwrap_or_else(|| "api".into()),
        attributes: body.attributes,
        submitted_at_ms: state.clock.now_ms(),
    };
    crate::submit::submit(
        state.emb.requests.as_ref(),
        &state.emb.codecs.requests,
        &[request],
    )
    .await
    .map_err(|e| Problem::unavailable(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Submitted {
            turn_id: turn_id.to_string(),
            tenant: caller.tenant,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/turns", tag = "turns", params(ListQuery),
    responses((status = 200, body = Vec<TurnView>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<TurnView>>, Problem> {
    let caller = state.caller(&headers, &READERS)?;
    state.fresh().await?;
    let limit = q.limit.unwrap_or(100).min(1000);
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

#[utoipa::path(get, path = "/v1/turns/{id}", tag = "turns", params(("id" = String, Path, description = "turn id")),
    responses((status = 200, body = TurnView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_turn(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TurnView>, Problem> {
    let caller = state.caller(&headers, &READERS)?;
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    Ok(Json(view(&state, entry)))
}

async fn events(state: &AppState, entry: &TurnEntry) -> Result<Vec<(u64, Event)>, Problem> {
    let found = crate::operator::read_turn(
        state.emb.events.as_ref(),
        &state.emb.codecs,
        &state.index,
        entry.turn_id,
    )
    .await?;
    Ok(found
        .map(|(_, e)| e.into_iter().map(|(o, e)| (o.0, e)).collect())
        .unwrap_or_default())
}

#[utoipa::path(get, path = "/v1/turns/{id}/trace", tag = "turns", params(("id" = String, Path, description = "turn id")),
    responses((status = 200, description = "the turn's events with OpenTelemetry GenAI attributes", body = Vec<Object>),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn trace(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, Problem> {
    let caller = state.caller(&headers, &[Role::Operator, Role::Auditor])?;
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let p = Partition(entry.partition);
    Ok(Json(
        events(&state, &entry)
            .await?
            .iter()
            .map(|(o, e)| e.trace_entry(p.0, *o))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/turns/{id}/audit", tag = "turns", params(("id" = String, Path, description = "turn id")),
    responses((status = 200, description = "for each side effect, the chain of facts that caused it", body = Object),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let caller = state.caller(&headers, &[Role::Auditor, Role::Operator])?;
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let events: Vec<Event> = events(&state, &entry)
        .await?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let audit = crate::audit::audit(&events).ok_or_else(|| Problem::not_found("no events"))?;
    serde_json::to_value(audit)
        .map(Json)
        .map_err(|e| Problem::internal(e.to_string()))
}

async fn answer(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    reason: Option<String>,
    granted: bool,
) -> Result<Json<CommandSent>, Problem> {
    let caller = state.caller(&headers, &[Role::Operator])?;
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let cmd = crate::operator::answer_approval(
        state.emb.events.as_ref(),
        state.emb.requests.as_ref(),
        &state.emb.codecs,
        &state.index,
        entry.turn_id,
        granted,
        &caller.name,
        reason,
        state.clock.now_ms(),
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
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<Reason>,
) -> Result<Json<CommandSent>, Problem> {
    answer(state, headers, id, body.reason, true).await
}

#[utoipa::path(post, path = "/v1/turns/{id}/deny", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = Reason, responses((status = 200, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "not waiting for an approval")),
    security(("bearer" = [])))]
pub async fn deny(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<Reason>,
) -> Result<Json<CommandSent>, Problem> {
    answer(state, headers, id, body.reason, false).await
}

#[utoipa::path(post, path = "/v1/turns/{id}/reverse", tag = "turns", params(("id" = String, Path, description = "turn id")),
    request_body = Reason, responses((status = 202, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "the turn has not finished")),
    security(("bearer" = [])))]
pub async fn reverse(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<Reason>,
) -> Result<(StatusCode, Json<CommandSent>), Problem> {
    let caller = state.caller(&headers, &[Role::Operator])?;
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let r = crate::operator::request_reversal(
        state.emb.events.as_ref(),
        state.emb.requests.as_ref(),
        &state.emb.codecs,
        &state.index,
        entry.turn_id,
        body.reason,
        &caller.name,
        state.clock.now_ms(),
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
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<LabelBody>,
) -> Result<(StatusCode, Json<CommandSent>), Problem> {
    let caller = state.caller(&headers, &[Role::Auditor, Role::Operator])?;
    if body.label.trim().is_empty() || body.label.len() > 64 {
        return Err(Problem::bad_request("a label is 1 to 64 characters"));
    }
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let cmd = crate::operator::label_turn(
        state.emb.events.as_ref(),
        state.emb.requests.as_ref(),
        &state.emb.codecs,
        &state.index,
        entry.turn_id,
        body.label.trim(),
        body.note,
        &caller.name,
        state.clock.now_ms(),
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
