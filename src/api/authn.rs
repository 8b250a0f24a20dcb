//! Authentication before anything else is read. A middleware on every `/v1` route checks the
//! bearer token before the path, query or body is parsed, so an unauthenticated caller learns
//! nothing about the API beyond 401 — or 429 once its address has failed too often: only
//! failures are throttled per address, so a valid token is served whatever else its address
//! sent (behind a proxy, one client guessing must not lock the others out). An authenticated
//! request marks its connection trusted (`telemetry::server` protects its slot); a body
//! announced over the limit is refused with 413 at once, before a byte of it is read. The
//! caller it finds, and the credential, are put in the request's extensions; [`Authed`] takes
//! the caller from there and checks the route's roles, also before any other extractor runs.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{self, Caller, Role};
use super::problem::Problem;
use super::{AppState, MAX_BODY_BYTES};
use crate::telemetry::server::ConnectionTrust;

/// Authenticates every request it wraps; see the module docs.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let config = state.auth.current();
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let connection = req.extensions().get::<ConnectionTrust>().cloned();
    let (caller, credential) = match auth::authenticate(&config, header) {
        Ok(found) => found,
        Err(p) => {
            if let Some(c) = &connection {
                c.distrust();
            }
            let addr = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into());
            if let Err(wait) = state.failures.failed(&config.rate, &addr) {
                crate::telemetry::record::api_auth_refused("locked_out");
                let mut p = Problem::too_many(wait);
                p.detail = "too many failed authentications from this address".into();
                return p.into_response();
            }
            crate::telemetry::record::api_auth_refused("unauthenticated");
            return p.into_response();
        }
    };
    if let Some(c) = &connection {
        c.trust();
    }
    if let Err(wait) = state.rate.take(&config.rate, &caller.tenant) {
        return Problem::too_many(wait).into_response();
    }
    if let Some(len) = announced_length(req.headers())
        && len > MAX_BODY_BYTES as u64
    {
        return too_large(len);
    }
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(credential);
    next.run(req).await
}

/// The body length a request announces (`Content-Length`; hyper has refused conflicting or
/// malformed ones already).
fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// 413 for a body announced over the limit, without reading it; the connection closes after
/// the answer (the body would otherwise have to be read past to reach the next request).
fn too_large(len: u64) -> Response {
    crate::telemetry::record::api_rejected("limits");
    let mut r = Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("the body is {len} bytes"),
    )
    .with_limit(MAX_BODY_BYTES as u64)
    .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The credential the request authenticated with (after [`Authed`]).
impl<S: Send + Sync> FromRequestParts<S> for auth::Credential {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<auth::Credential>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("a bearer token is required"))
    }
}

/// The roles a route accepts (admin holds all of them).
pub trait Roles: Send + Sync {
    const ROLES: &'static [Role];
}

/// The authenticated caller, holding one of `R`'s roles. Put it first among a handler's
/// arguments: extractors run in order, so the roles are checked before the query or body.
pub struct Authed<R: Roles>(pub Caller, pub PhantomData<R>);

impl<R: Roles, S: Send + Sync> FromRequestParts<S> for Authed<R> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
        caller.require(R::ROLES)?;
        Ok(Authed(caller, PhantomData))
    }
}

macro_rules! roles {
    ($($name:ident = [$($role:ident),+];)+) => {$(
        pub struct $name;
        impl Roles for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),+];
        }
    )+};
}

roles! {
    Anyone = [Submitter, Operator, Auditor];
    Submitters = [Submitter];
    Operators = [Operator];
    Auditors = [Auditor];
    Watchers = [Operator, Auditor];
    Admins = [Admin];
}
