//! The HTTP API of `ballast serve` (axum): submit turns; read turns, traces, audit chains,
//! outcomes and SLOs; answer approvals and handoffs; reverse and label turns. Every route
//! authenticates a bearer token (`auth`), applies the tenant's rate limit (`rate`), checks the
//! caller's roles, and only ever shows the caller's tenant. Errors are problem details
//! (`problem`); request bodies are limited in size; `/openapi.json` is generated from the
//! handlers' annotations (utoipa), not written by hand.

pub mod auth;
mod dashboard;
mod ops;
pub mod problem;
pub mod rate;
mod turns;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::clock::Clock;
use crate::embedded::Embedded;
use crate::projection::Projections;
use crate::projection::outcomes::OutcomeView;
use crate::projection::slo::SloConfig;
use crate::projection::turn_index::TurnIndex;

use auth::{AuthConfig, Caller, Role};
use problem::Problem;
use rate::RateLimiter;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub emb: Embedded,
    pub projections: Projections,
    pub index: TurnIndex,
    pub outcomes: OutcomeView,
    pub auth: AuthConfig,
    pub rate: RateLimiter,
    pub slo: SloConfig,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    /// Authenticates the caller, spends one request of its tenant's rate, checks its roles.
    pub fn caller(&self, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, Problem> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = auth::authenticate(&self.auth, header)?;
        self.rate.take(&caller.tenant).map_err(Problem::too_many)?;
        caller.require(roles)?;
        Ok(caller)
    }

    /// Reads after this see every event appended before it.
    pub async fn fresh(&self) -> Result<(), Problem> {
        self.projections
            .catch_up(self.emb.events.as_ref(), &self.emb.codecs.events, &|_| {})
            .await?;
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ballast",
        description = "Submit agent turns, read their traces, audit chains, outcomes and SLOs, and answer approvals and handoffs. Every call needs a bearer token carrying a tenant and roles.",
        version = "1"
    ),
    paths(
        turns::submit,
        turns::list,
        turns::get_turn,
        turns::trace,
        turns::audit,
        turns::approve,
        turns::deny,
        turns::reverse,
        turns::label,
        ops::me,
        ops::queue,
        ops::handoffs,
        ops::accept,
        ops::resolve,
        ops::slo,
        ops::slo_series,
        ops::outcomes,
    ),
    components(schemas(Problem, Caller, Role)),
    modifiers(&BearerAuth),
    tags((name = "turns"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes, the dashboard and `/openapi.json`.
pub fn router(state: Arc<AppState>) -> Router {
    let doc = ApiDoc::openapi();
    Router::new()
        .route("/v1/turns", post(turns::submit).get(turns::list))
        .route("/v1/turns/{id}", get(turns::get_turn))
        .route("/v1/turns/{id}/trace", get(turns::trace))
        .route("/v1/turns/{id}/audit", get(turns::audit))
        .route("/v1/turns/{id}/approve", post(turns::approve))
        .route("/v1/turns/{id}/deny", post(turns::deny))
        .route("/v1/turns/{id}/reverse", post(turns::reverse))
        .route("/v1/turns/{id}/labels", post(turns::label))
        .route("/v1/me", get(ops::me))
        .route("/v1/queue", get(ops::queue))
        .route("/v1/handoffs", get(ops::handoffs))
        .route("/v1/handoffs/{id}/accept", post(ops::accept))
        .route("/v1/handoffs/{id}/resolve", post(ops::resolve))
        .route("/v1/slo", get(ops::slo))
        .route("/v1/slo/series", get(ops::slo_series))
        .route("/v1/outcomes", get(ops::outcomes))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .merge(dashboard::router())
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A JSON body whose rejections (malformed, too large, wrong type) are problem details.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "invalid-body",
                rejection.body_text(),
            )),
        }
    }
}
