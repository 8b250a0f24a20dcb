//! What a view shows: masked by default (`[REDACTED:kind]`, `[FORGOTTEN:kind]`); cleartext on
//! `?reveal=true&reason=…` for a caller allowed to see it — an auditor (any turn of its tenant)
//! or an operator (a turn waiting for a person: the arguments it is asked to approve, the case
//! it is handed). The reveal is recorded before anything is shown. `GET /v1/reveals` lists them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Caller, Role};
use super::authn::{Admins, Auditors, Authed};
use super::problem::Problem;
use super::{AppState, Body, Q};
use crate::event::Event;
use crate::ids::TurnId;
use crate::vault::Vault;
use crate::vault::reveal::{self, Reveal};
use crate::vault::view::{self, Masker};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevealQuery {
    /// Show cleartext (auditors; operators for turns waiting for a person). Recorded.
    pub reveal: Option<bool>,
    /// Why (required with reveal=true; kept in the reveals log).
    pub reason: Option<String>,
}

/// How an answer shows personal values.
pub(crate) enum Shown<'a> {
    Masked(Masker<'a>),
    Revealed(Arc<Vault>),
}

impl Shown<'_> {
    /// The events of one turn.
    pub fn events(&mut self, events: &mut [Event]) {
        match self {
            Shown::Masked(m) => m.events(events),
            Shown::Revealed(v) => view::reveal_events(v, events),
        }
    }

    /// A text of `user_token`'s turn.
    pub fn text(&mut self, tenant: &str, user_token: &str, text: &str) -> String {
        match self {
            Shown::Masked(m) => m.text(tenant, user_token, text),
            Shown::Revealed(v) => v.detokenize_text(tenant, user_token, text),
        }
    }
}

/// The masked view, for answers that never reveal.
pub(crate) fn masked(state: &AppState) -> Masker<'_> {
    Masker::new(Some(state.logs.vault_store.as_ref()))
}

fn may_reveal(caller: &Caller, waiting: bool) -> Result<(), Problem> {
    let has = |r: Role| caller.roles.contains(&r) || caller.roles.contains(&Role::Admin);
    if has(Role::Auditor) || (waiting && has(Role::Operator)) {
        return Ok(());
    }
    Err(Problem::forbidden(if has(Role::Operator) {
        "an operator may reveal only a turn waiting for a person (an approval or a handoff)"
    } else {
        "revealing needs the auditor role (or operator, for a turn waiting for a person)"
    }))
}

/// Decides how `turns` (each with whether it waits for a person) are shown to `caller`; with
/// `reveal=true`, checks the right, records one reveal per turn and only then says `Revealed`.
pub(crate) async fn shown<'a>(
    state: &'a AppState,
    caller: &Caller,
    q: &RevealQuery,
    turns: &[(TurnId, bool)],
    surface: &str,
) -> Result<Shown<'a>, Problem> {
    if q.reveal != Some(true) {
        return Ok(Shown::Masked(masked(state)));
    }
    for (_, waiting) in turns {
        may_reveal(caller, *waiting)?;
    }
    let vault = state
        .vault
        .clone()
        .ok_or_else(|| Problem::unavailable("this server holds no vault key: nothing to reveal"))?;
    let roles = caller
        .roles
        .iter()
        .map(|r| r.as_str().to_string())
        .collect::<Vec<_>>();
    let now = state.clock.now_ms();
    let reveals = turns
        .iter()
        .map(|(t, _)| {
            Reveal::new(
                *t,
                &caller.tenant,
                &caller.name,
                roles.clone(),
                surface,
                q.reason.as_deref(),
                now,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    reveal::record(state.logs.reveals.as_ref(), &reveals)
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(
        who = %caller.name, tenant = %caller.tenant, surface, turns = reveals.len(),
        "cleartext revealed (recorded in the reveals log)"
    );
    Ok(Shown::Revealed(vault))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevealsQuery {
    /// Reveals at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many, oldest first (default 1000, at most 10000).
    pub limit: Option<usize>,
}

/// Most reveals one answer lists.
pub const MAX_REVEALS: usize = 10_000;

#[utoipa::path(get, path = "/v1/reveals", tag = "operations", params(RevealsQuery),
    responses((status = 200, body = Vec<Reveal>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn reveals(
    Authed(caller, _): Authed<Auditors>,
    State(state): State<Arc<AppState>>,
    Q(q): Q<RevealsQuery>,
) -> Result<Json<Vec<Reveal>>, Problem> {
    let limit = q.limit.unwrap_or(1000);
    if limit > MAX_REVEALS {
        return Err(Problem::over_limit(
            format!("limit {limit}"),
            MAX_REVEALS as u64,
        ));
    }
    Ok(Json(
        reveal::list(
            state.logs.reveals.as_ref(),
            &caller.tenant,
            q.since_ms.unwrap_or(i64::MIN),
            limit,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetBody {
    /// The user to forget: their id as submitted, or their token (`[pii:user:…]`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Forget every user of the caller's tenant (instead of `user_id`).
    #[serde(default)]
    pub all_users: bool,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    pub tenant: String,
    /// Keys destroyed (the tenant's and users').
    pub keys: usize,
    /// Sealed values destroyed.
    pub values: usize,
}

#[utoipa::path(post, path = "/v1/admin/forget", tag = "operations", request_body = ForgetBody,
    responses((status = 200, body = Forgotten), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
/// Destroys the vault keys of one user (or of every user) of the caller's tenant: their values
/// can never be read again, and views show `[FORGOTTEN:kind]`. Admins only.
pub async fn forget(
    Authed(caller, _): Authed<Admins>,
    State(state): State<Arc<AppState>>,
    Body(body): Body<ForgetBody>,
) -> Result<Json<Forgotten>, Problem> {
    let user = match (&body.user_id, body.all_users) {
        (Some(u), false) if !u.trim().is_empty() && u.len() <= 256 => Some(u.as_str()),
        (None, true) => None,
        _ => {
            return Err(Problem::bad_request(
                "name one `user_id` (1 to 256 characters), or set `all_users: true` for the whole tenant",
            ));
        }
    };
    let vault = state
        .vault
        .clone()
        .ok_or_else(|| Problem::unavailable("this server holds no vault"))?;
    let removed = vault
        .forget(&caller.tenant, user)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let keys = removed
        .iter()
        .filter(|(k, _)| k.starts_with(b"k\0") || k.starts_with(b"u\0"))
        .count();
    tracing::warn!(who = %caller.name, tenant = %caller.tenant, whole_tenant = user.is_none(), keys,
        values = removed.len() - keys, "vault keys destroyed (forget)");
    Ok(Json(Forgotten {
        tenant: caller.tenant.clone(),
        keys,
        values: removed.len() - keys,
    }))
}
