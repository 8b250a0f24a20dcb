//! Operations routes: who am I, the escalation queue (approvals and handoffs waiting for a
//! person), handoff answers, SLOs and their series, outcome records.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::authn::{Anyone, Auditors, Authed, Operators, Watchers};
use super::problem::Problem;
use super::reveal::{RevealQuery, Shown, shown};
use super::turns::{CommandSent, own_turn};
use super::{AppState, Body, P, Q};
use crate::ids::TurnId;
use crate::projection::slo;
use crate::projection::waiting::WaitingTurn;

#[utoipa::path(get, path = "/v1/me", tag = "operations",
    responses((status = 200, body = Caller), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn me(Authed(caller, _): Authed<Anyone>) -> Result<Json<Caller>, Problem> {
    Ok(Json(caller))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Waiting {
    pub turn_id: String,
    pub user_id: String,
    /// approval or handoff
    pub kind: String,
    pub reason: String,
    pub tool: Option<String>,
    pub args_json: Option<String>,
    pub risk_score: Option<f64>,
    pub deadline_ms: Option<i64>,
    pub accepted_by: Option<String>,
    /// An approval: where each argument value came from ("recipient: … from read_inbox output
    /// (untrusted), not from the user; amount: 850 from the user's request").
    pub provenance: Option<String>,
}

#[utoipa::path(get, path = "/v1/queue", tag = "operations", params(RevealQuery),
    responses((status = 200, body = Vec<Waiting>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn queue(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<RevealQuery>,
) -> Result<Json<Vec<Waiting>>, Problem> {
    let found = waiting(&state, &caller).await?;
    let turns: Vec<(TurnId, bool)> = found.iter().map(|w| (w.turn, true)).collect();
    let mut shown = shown(&state, &caller, &q, &turns, "queue").await?;
    Ok(Json(
        found.into_iter().map(|w| w.show(&mut shown)).collect(),
    ))
}

/// A waiting turn before it is shown (its values still tokens).
struct Found {
    turn: TurnId,
    tenant: String,
    user: String,
    waiting: Waiting,
}

impl Found {
    fn show(self, shown: &mut Shown<'_>) -> Waiting {
        let mut w = self.waiting;
        let mut f = |s: &str| shown.text(&self.tenant, &self.user, s);
        w.user_id = f(&self.user);
        w.reason = f(&w.reason);
        w.args_json = w.args_json.as_deref().map(&mut f);
        w.provenance = w.provenance.as_deref().map(&mut f);
        w
    }
}

/// Most entries the queue answers with (oldest first).
pub const MAX_QUEUE: usize = 1000;

/// The caller's tenant's waiting turns, oldest first, from the `waiting` projection.
async fn waiting(state: &AppState, caller: &Caller) -> Result<Vec<Found>, Problem> {
    state.fresh().await?;
    Ok(state
        .waiting
        .queue(&caller.tenant, MAX_QUEUE)?
        .into_iter()
        .map(found)
        .collect())
}

fn found(w: WaitingTurn) -> Found {
    Found {
        turn: w.turn_id,
        tenant: w.tenant,
        user: w.user_id.clone(),
        waiting: Waiting {
            turn_id: w.turn_id.to_string(),
            user_id: w.user_id,
            kind: w.kind.as_str().into(),
            reason: w.reason,
            tool: w.tool,
            args_json: w.args_json,
            risk_score: w.risk_score,
            deadline_ms: w.deadline_ms,
            accepted_by: w.accepted_by,
            provenance: w.provenance_json.as_deref().and_then(explain),
        },
    }
}

/// The provenance recorded with the pre-tool review that asked for an approval, explained for
/// a person.
fn explain(provenance_json: &str) -> Option<String> {
    let prov: crate::guard::provenance::CallProvenance =
        serde_json::from_str(provenance_json).ok()?;
    Some(prov.explain())
}

#[utoipa::path(get, path = "/v1/handoffs", tag = "operations",
    responses((status = 200, body = Vec<Waiting>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn handoffs(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Waiting>>, Problem> {
    let all = waiting(&state, &caller).await?;
    let mut masked = Shown::Masked(super::reveal::masked(&state));
    Ok(Json(
        all.into_iter()
            .filter(|w| w.waiting.kind == "handoff")
            .map(|w| w.show(&mut masked))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// What the operator did.
    pub resolution: String,
}

async fn answer_handoff(
    caller: Caller,
    state: Arc<AppState>,
    id: String,
    resolution: Option<String>,
) -> Result<Json<CommandSent>, Problem> {
    let entry = own_turn(&state, &caller.tenant, &id).await?;
    let cmd = state
        .desk()
        .answer_handoff(
            entry.turn_id,
            resolution,
            (&caller.name, state.clock.now_ms()),
        )
        .await?;
    Ok(Json(CommandSent {
        turn_id: entry.turn_id.to_string(),
        command_id: Some(cmd.command_id),
        status: "sent".into(),
    }))
}

#[utoipa::path(post, path = "/v1/handoffs/{id}/accept", tag = "operations", params(("id" = String, Path, description = "turn id")),
    responses((status = 200, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn accept(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
) -> Result<Json<CommandSent>, Problem> {
    answer_handoff(caller, state, id, None).await
}

#[utoipa::path(post, path = "/v1/handoffs/{id}/resolve", tag = "operations", params(("id" = String, Path, description = "turn id")),
    request_body = Resolution, responses((status = 200, body = CommandSent), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn resolve(
    Authed(caller, _): Authed<Operators>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    Body(body): Body<Resolution>,
) -> Result<Json<CommandSent>, Problem> {
    if body.resolution.trim().is_empty() {
        return Err(Problem::bad_request("say what was done"));
    }
    answer_handoff(caller, state, id, Some(body.resolution)).await
}

/// The caller's tenant's outcome records over the SLO period.
fn tenant_outcomes(
    state: &AppState,
    tenant: &str,
    now: i64,
) -> Result<Vec<crate::event::TurnOutcome>, Problem> {
    Ok(state
        .outcomes
        .since(now.saturating_sub(state.slo.period_ms))?
        .into_iter()
        .filter(|o| o.tenant == tenant)
        .collect())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SloTable {
    pub tenant: String,
    pub turns: usize,
    #[schema(value_type = Vec<Object>)]
    pub slis: Vec<slo::Sli>,
    pub tool_error_rate: f64,
    pub cost_per_turn_micros: f64,
    pub now_ms: i64,
}

#[utoipa::path(get, path = "/v1/slo", tag = "operations",
    responses((status = 200, body = SloTable), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn slo(
    Authed(caller, _): Authed<Watchers>,
    State(state): State<Arc<AppState>>,
) -> Result<Json<SloTable>, Problem> {
    state.fresh().await?;
    let now = state.clock.now_ms();
    let outcomes = tenant_outcomes(&state, &caller.tenant, now)?;
    let slis = slo::compute(&outcomes, now, &state.slo);
    let (rate, cost) = slo::tool_error_rate_and_cost(&outcomes, now, &state.slo);
    Ok(Json(SloTable {
        tenant: caller.tenant,
        turns: outcomes.len(),
        slis,
        tool_error_rate: rate,
        cost_per_turn_micros: cost,
        now_ms: now,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Bucket width in ms (default 60000; at least 1000, at most the SLO period).
    pub bucket_ms: Option<i64>,
    /// How far back in ms (default 3600000; at least one bucket, at most the SLO period, and at
    /// most 1440 buckets).
    pub window_ms: Option<i64>,
}

/// Most points one series answers with (a day of minutes).
pub const MAX_SERIES_POINTS: i64 = 1440;
/// Narrowest bucket of a series.
pub const MIN_BUCKET_MS: i64 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoint {
    pub at_ms: i64,
    /// SLI name → share of good events in the bucket (absent when it had none).
    #[schema(value_type = Object)]
    pub values: std::collections::BTreeMap<String, f64>,
    pub turns: u64,
}

/// Buckets covering a window (the last one may be partial): a day of minutes is 1,440.
fn series_points(window: i64, bucket: i64) -> i64 {
    (window + bucket - 1) / bucket.max(1)
}

/// The series' bucket and window, checked: every answer is at most `MAX_SERIES_POINTS` points.
fn series_shape(q: &SeriesQuery, period_ms: i64) -> Result<(i64, i64), Problem> {
    let bucket = q.bucket_ms.unwrap_or(60_000);
    let window = q.window_ms.unwrap_or(3_600_000.min(period_ms));
    if !(MIN_BUCKET_MS..=period_ms).contains(&bucket) {
        return Err(Problem::bad_request(format!(
            "bucket_ms must be between {MIN_BUCKET_MS} and the SLO period ({period_ms})"
        ))
        .with_limit(period_ms.max(0) as u64));
    }
    if !(bucket..=period_ms).contains(&window) {
        return Err(Problem::bad_request(format!(
            "window_ms must be between bucket_ms ({bucket}) and the SLO period ({period_ms})"
        ))
        .with_limit(period_ms.max(0) as u64));
    }
    let points = series_points(window, bucket);
    if points > MAX_SERIES_POINTS {
        return Err(Problem::over_limit(
            format!(
                "window_ms / bucket_ms asks for {points} points; widen bucket_ms to at least {}",
                (window + MAX_SERIES_POINTS - 1) / MAX_SERIES_POINTS
            ),
            MAX_SERIES_POINTS as u64,
        ));
    }
    Ok((bucket, window))
}

#[utoipa::path(get, path = "/v1/slo/series", tag = "operations", params(SeriesQuery),
    responses((status = 200, body = Vec<SeriesPoint>), (status = 400, body = Problem, description = "a bucket or window out of bounds, or more than 1440 points"),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn slo_series(
    Authed(caller, _): Authed<Watchers>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<SeriesQuery>,
) -> Result<Json<Vec<SeriesPoint>>, Problem> {
    let (bucket, window) = series_shape(&q, state.slo.period_ms)?;
    state.fresh().await?;
    let now = state.clock.now_ms();
    let from = now - window;
    let n = series_points(window, bucket).max(1) as usize;
    // Per bucket: turns, and (good, counted) per objective.
    type Counts = std::collections::BTreeMap<&'static str, (u64, u64)>;
    let mut buckets: Vec<(u64, Counts)> = vec![Default::default(); n];
    for o in tenant_outcomes(&state, &caller.tenant, now)? {
        if o.completed_at_ms <= from {
            continue;
        }
        let i = (((o.completed_at_ms - from) / bucket).max(0) as usize).min(n - 1);
        let Some((turns, counts)) = buckets.get_mut(i) else {
            continue;
        };
        *turns += 1;
        for (name, good) in slo::classify(&o, &state.slo) {
            if let Some(good) = good {
                let c = counts.entry(name).or_default();
                c.0 += u64::from(good);
                c.1 += 1;
            }
        }
    }
    Ok(Json(
        buckets
            .into_iter()
            .enumerate()
            .map(|(i, (t, c))| SeriesPoint {
                at_ms: from + i as i64 * bucket,
                values: c
                    .into_iter()
                    .map(|(k, (g, n))| (k.to_string(), g as f64 / n as f64))
                    .collect(),
                turns: t,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutcomesQuery {
    /// Completed after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many, oldest first (default 1000, at most 10000).
    pub limit: Option<usize>,
}

/// Most outcome records one answer holds.
pub const MAX_OUTCOMES: usize = 10_000;

#[utoipa::path(get, path = "/v1/outcomes", tag = "operations", params(OutcomesQuery),
    responses((status = 200, description = "TurnOutcome records (schemas/turn_outcome.avsc) as JSON", body = Vec<Object>),
        (status = 401, body = Problem), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn outcomes(
    Authed(caller, _): Authed<Auditors>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<OutcomesQuery>,
) -> Result<Json<Vec<serde_json::Value>>, Problem> {
    let limit = q.limit.unwrap_or(1000);
    if limit > MAX_OUTCOMES {
        return Err(Problem::over_limit(
            format!("limit {limit}"),
            MAX_OUTCOMES as u64,
        ));
    }
    state.fresh().await?;
    let mut masker = super::reveal::masked(&state);
    Ok(Json(
        state
            .outcomes
            .since(q.since_ms.unwrap_or(i64::MIN))?
            .into_iter()
            .filter(|o| o.tenant == caller.tenant)
            .take(limit)
            .filter_map(|mut o| {
                masker.outcome(&mut o);
                serde_json::to_value(o).ok()
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub session_id: String,
    /// The session's turns, oldest first (the caller's tenant only), with their replies.
    pub turns: Vec<super::turns::TurnView>,
}

/// Most turns a session answer lists.
pub const MAX_SESSION_TURNS: usize = 1000;

#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "turns", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "no turn of this tenant is in the session")),
    security(("bearer" = [])))]
pub async fn session(
    Authed(caller, _): Authed<Anyone>,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
) -> Result<Json<SessionView>, Problem> {
    if id.is_empty() || id.len() > 128 {
        return Err(Problem::bad_request("a session id is 1 to 128 characters"));
    }
    // Sessions are recorded by their token (a session id is personal data like a user id).
    let recorded = match &state.vault {
        Some(v) => v
            .session_token(&caller.tenant, &id)
            .map_err(|e| Problem::unavailable(e.to_string()))?,
        None => Some(id.clone()),
    };
    state.fresh().await?;
    let mut turns: Vec<_> = match &recorded {
        Some(token) => state
            .index
            .all()?
            .into_iter()
            .filter(|e| e.tenant == caller.tenant && e.session_id.as_deref() == Some(token))
            .collect(),
        None => Vec::new(),
    };
    if turns.is_empty() {
        return Err(Problem::not_found(format!("no session {id:?}")));
    }
    turns.sort_by_key(|e| (e.requested_at_ms, e.turn_id));
    turns.truncate(MAX_SESSION_TURNS);
    // Shown as every view shows a personal value (the caller knows the id it asked for).
    let shown = match (&recorded, turns.first()) {
        (Some(token), Some(first)) => {
            super::reveal::masked(&state).text(&first.tenant, &first.user_id, token)
        }
        _ => id,
    };
    Ok(Json(SessionView {
        session_id: shown,
        turns: turns
            .into_iter()
            .map(|e| super::turns::view(&state, e))
            .collect(),
    }))
}
