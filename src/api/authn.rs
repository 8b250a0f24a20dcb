//! Authentication before anything else is read. A middleware on every `/v1` route checks the
//! bearer token — after the client address's failed-authentication budget, before the path,
//! query or body is parsed — so an unauthenticated caller learns nothing about the API beyond
//! 401 (or 429 once it has guessed too often). The caller it finds is put in the request's
//! extensions; [`Authed`] takes it from there and checks the route's roles, also before any
//! other extractor runs.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{self, Caller, Role};
use super::problem::Problem;

/// Authenticates every request it wraps; see the module docs.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let config = state.auth.current();
    if let Err(wait) = state.failures.check_failures(&config.rate, &addr) {
        crate::telemetry::record::api_auth_refused("locked_out");
        let mut p = Problem::too_many(wait);
        p.detail = "too many failed authentications from this address".into();
        return p.into_response();
    }
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match auth::authenticate(&config, header) {
        Ok(c) => c,
        Err(p) => {
            state.failures.failed(&config.rate, &addr);
            crate::telemetry::record::api_auth_refused("unauthenticated");
            return p.into_response();
        }
    };
    if let Err(wait) = state.rate.take(&config.rate, &caller.tenant) {
        return Problem::too_many(wait).into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
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
