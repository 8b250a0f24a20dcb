//! The HTTP API of `ballast serve` (axum): submit turns; read turns, traces, audit chains,
//! outcomes and SLOs; answer approvals and handoffs; reverse and label turns. Every `/v1` route
//! authenticates a bearer token before anything else of the request is read (`authn`), applies
//! the tenant's rate limit (`rate`), checks the caller's roles, and only ever shows the caller's
//! tenant. Errors — also malformed queries and bodies, unknown routes and methods, and handler
//! panics — are problem details (`problem`); bodies and responses are bounded;
//! `/openapi.json` is generated from the handlers' annotations (utoipa), not written by hand.

mod admit;
pub mod auth;
pub mod authn;
mod dashboard;
mod ops;
pub mod problem;
pub mod rate;
mod reveal;
mod stream;
pub mod submissions;
mod turns;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::clock::Clock;
use crate::embedded::Embedded;
use crate::event::codec::Codecs;
use crate::log::EventLog;
use crate::projection::Projections;
use crate::projection::outcomes::OutcomeView;
use crate::projection::slo::SloConfig;
use crate::projection::turn_index::TurnIndex;

use auth::{AuthStore, Caller, Role};
use problem::Problem;
use rate::RateLimiter;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the API reads and writes, on either backend: the logs (embedded sled logs, or Kafka
/// topics) and a local sled store for this process's read models and submission claims (the
/// data dir itself when embedded; a replica's cache on Kafka).
#[derive(Clone)]
pub struct Logs {
    pub store: crate::log::SledStore,
    pub events: Arc<dyn EventLog>,
    pub requests: Arc<dyn EventLog>,
    pub reveals: Arc<dyn EventLog>,
    pub codecs: Codecs,
    pub vault_store: Arc<dyn crate::vault::VaultStore>,
    /// Embedded: the worker's started-turn set (the same process). On Kafka the workers keep
    /// theirs elsewhere, so a replica has none.
    pub known: Option<sled::Tree>,
}

impl Logs {
    /// Whether a worker has started `turn` (so its id is taken), where this process can tell.
    pub fn started(&self, turn: crate::ids::TurnId) -> bool {
        self.known
            .as_ref()
            .and_then(|t| t.contains_key(turn.0.as_bytes()).ok())
            .unwrap_or(false)
    }

    /// Where operator commands are checked and sent from (the caller catches `index` up).
    pub fn desk<'a>(&'a self, index: &'a TurnIndex) -> crate::operator::Desk<'a> {
        crate::operator::Desk {
            events: self.events.as_ref(),
            requests: self.requests.as_ref(),
            codecs: &self.codecs,
            index,
        }
    }
}

impl From<Embedded> for Logs {
    fn from(emb: Embedded) -> Logs {
        Logs {
            known: emb
                .store
                .tree(crate::runtime::state_store::KNOWN_TURNS_TREE)
                .ok(),
            store: emb.store.clone(),
            events: emb.events.clone(),
            requests: emb.requests.clone(),
            reveals: emb.reveals.clone(),
            codecs: emb.codecs.clone(),
            vault_store: emb.vault_store.clone(),
        }
    }
}

/// How far behind the workers are, per request partition (Kafka: the worker group's committed
/// offsets against the topic's end). The API refuses new turns on a partition whose backlog is
/// over the bound instead of producing without limit.
pub trait Backlog: Send + Sync {
    /// `Some(seconds to wait)` when `partition` is over the bound.
    fn over(&self, partition: crate::ids::Partition) -> Option<(u64, u64)>;
    /// A request was just written to `partition`: counted at once, so the bound holds between
    /// measurements too (up to what other replicas wrote since the last one).
    fn submitted(&self, _partition: crate::ids::Partition) {}
}

/// Where the vault records of a submission go before its request is written, when the vault is
/// shared through a log (Kafka: produced to `PREFIX.vault` and acknowledged).
#[async_trait::async_trait]
pub trait VaultPublish: Send + Sync {
    async fn publish(&self, records: &[crate::vault::VaultRecord]) -> Result<(), String>;
}

pub struct AppState {
    pub logs: Logs,
    /// Reads answer from the projections as the follower keeps them (a replica on Kafka, where
    /// asking every partition's end per request would cost a broker round trip each); `false`:
    /// each read catches the projections up first (embedded: read-your-writes).
    pub follower_reads: bool,
    /// The workers' backlog, where the deployment can measure it.
    pub backlog: Option<Arc<dyn Backlog>>,
    /// The shared vault's log, where there is one.
    pub vault_publish: Option<Arc<dyn VaultPublish>>,
    pub projections: Projections,
    pub index: TurnIndex,
    pub outcomes: OutcomeView,
    /// The operator queue (a projection in `projections`, like the two above).
    pub waiting: crate::projection::waiting::WaitingView,
    /// The tokens, re-read when the auth file changes.
    pub auth: Arc<AuthStore>,
    /// Requests per tenant.
    pub rate: RateLimiter,
    /// Failed authentications per client address.
    pub failures: RateLimiter,
    pub slo: SloConfig,
    pub clock: Arc<dyn Clock>,
    /// Each turn id submitted here → a digest of its request, so a retried submission is
    /// idempotent and a different request under the same id is a conflict.
    pub submissions: submissions::Submissions,
    /// Requests are tokenized before they are written; views are masked; reveals read it.
    pub vault: Option<Arc<crate::vault::Vault>>,
}

impl AppState {
    /// Where operator commands are checked and sent from (the caller catches the index up).
    pub fn desk(&self) -> crate::operator::Desk<'_> {
        self.logs.desk(&self.index)
    }

    pub fn new(
        logs: impl Into<Logs>,
        projections: Projections,
        auth: Arc<AuthStore>,
        slo: SloConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::projection::ProjectionError> {
        let logs: Logs = logs.into();
        Ok(AppState {
            index: TurnIndex::open(&logs.store)?,
            outcomes: OutcomeView::open(&logs.store)?,
            waiting: crate::projection::waiting::WaitingView::open(&logs.store)?,
            submissions: submissions::Submissions::open(&logs.store).map_err(|e| {
                crate::projection::ProjectionError::Storage {
                    projection: "api_submissions",
                    message: e.to_string(),
                }
            })?,
            rate: RateLimiter::new(Arc::clone(&clock)),
            failures: RateLimiter::new(Arc::clone(&clock)),
            logs,
            projections,
            auth,
            slo,
            clock,
            vault: None,
            follower_reads: false,
            backlog: None,
            vault_publish: None,
        })
    }

    pub fn with_vault(mut self, vault: Arc<crate::vault::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Reads after this see every event appended before it.
    /// Cheap when `serve`'s follower has caught the projections up already (it watches the
    /// log's ends); otherwise waits for (or does) the one catch-up that covers every reader.
    pub async fn fresh(&self) -> Result<(), Problem> {
        if self.follower_reads {
            return Ok(());
        }
        self.projections
            .fresh(self.logs.events.as_ref(), &self.logs.codecs.events)
            .await?;
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ballast",
        description = "Submit agent turns, read their traces, audit chains, outcomes and SLOs, and answer approvals and handoffs. Every call needs a bearer token carrying a tenant and roles. Personal values show as [REDACTED:kind] (or [FORGOTTEN:kind]); auditors, and operators for turns waiting for them, may ask for cleartext with ?reveal=true&reason=..., which is recorded (GET /v1/reveals).",
        version = "1"
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
    // Routes and the OpenAPI document come from the same handler annotations: one list.
    let (v1, doc) = OpenApiRouter::<Arc<AppState>>::with_openapi(ApiDoc::openapi())
        .routes(routes!(turns::submit, turns::list))
        .routes(routes!(turns::get_turn))
        .routes(routes!(turns::trace))
        .routes(routes!(stream::events))
        .routes(routes!(turns::audit))
        .routes(routes!(turns::approve))
        .routes(routes!(turns::deny))
        .routes(routes!(turns::reverse))
        .routes(routes!(turns::label))
        .routes(routes!(ops::me))
        .routes(routes!(ops::queue))
        .routes(routes!(ops::handoffs))
        .routes(routes!(ops::accept))
        .routes(routes!(ops::resolve))
        .routes(routes!(ops::slo))
        .routes(routes!(ops::slo_series))
        .routes(routes!(ops::outcomes))
        .routes(routes!(ops::session))
        .routes(routes!(reveal::reveals))
        .routes(routes!(reveal::forget))
        .split_for_parts();
    let v1 = v1
        // Unknown paths and methods under /v1 answer only after authentication, too.
        .route("/v1/{*rest}", axum::routing::any(no_route))
        .method_not_allowed_fallback(no_method)
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authn::authenticate,
        ));
    Router::new()
        .merge(v1)
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .merge(dashboard::router())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn no_route() -> Problem {
    Problem::not_found("no such route")
}

async fn no_method() -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method",
    )
}

/// A handler panic is a bug: the caller gets a 500 problem (never a dropped connection), the
/// panic is counted and logged, and the server goes on.
fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %what, "API handler panicked");
    crate::telemetry::record::api_panic();
    Problem::internal("the server failed to answer this request; it has been logged")
        .into_response()
}

/// A query string whose rejections are problem details (400), like bodies'.
pub struct Q<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Q(v)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "invalid-query",
                rejection.body_text(),
            )),
        }
    }
}

/// A path parameter whose rejections are problem details.
pub struct P<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(P(v)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "invalid-path",
                rejection.body_text(),
            )),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_panic_is_a_500_problem_not_a_dropped_connection() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let v: Vec<u8> = Vec::new();
                    // An out-of-bounds index: the kind of bug the layer is for.
                    #[allow(clippy::indexing_slicing)]
                    let x = v[usize::from(v.is_empty())];
                    x.to_string()
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let resp = app
            .oneshot(
                axum::http::Request::builder()
                    .uri("/boom")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        assert_eq!(resp.status(), 500);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
}
