//! Errors as RFC 9457 problem details (`application/problem+json`). A problem never carries
//! another tenant's data: "not found" is the answer for a turn that exists elsewhere too.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Seconds to wait before retrying (rate limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Extension members (RFC 9457 §3.2), boxed: most problems have none.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub extra: Option<Box<Extra>>,
}

/// A problem's extension members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Extra {
    /// The claim a request may not assert (`role:NAME` or a scope), on a 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The largest value accepted, when a request asked for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The turn a conflicting request names (it exists with other content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("https://ballast.dev/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
            extra: None,
        }
    }
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }
    pub fn with_claim(mut self, claim: String) -> Self {
        self.extra().claim = Some(claim);
        self
    }
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.extra().limit = Some(limit);
        self
    }
    pub fn with_turn(mut self, turn_id: String) -> Self {
        self.extra().turn_id = Some(turn_id);
        self
    }
    /// A request over a limit: 400 with the limit in the problem.
    pub fn over_limit(detail: impl Into<String>, limit: u64) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "over-limit", detail).with_limit(limit)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
    pub fn too_many(retry_after: u64) -> Self {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "this tenant's request rate is over its limit",
        );
        p.retry_after = Some(retry_after);
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<crate::operator::OperatorError> for Problem {
    fn from(e: crate::operator::OperatorError) -> Self {
        use crate::operator::OperatorError as E;
        match &e {
            E::UnknownTurn(_) => Problem::not_found(e.to_string()),
            E::NotWaiting { .. } => Problem::conflict(e.to_string()),
            _ if e.is_retryable() => Problem::unavailable(e.to_string()),
            _ => Problem::internal(e.to_string()),
        }
    }
}

impl From<crate::log::LogError> for Problem {
    fn from(e: crate::log::LogError) -> Self {
        if e.is_retryable() {
            Problem::unavailable(e.to_string())
        } else {
            Problem::internal(e.to_string())
        }
    }
}

impl From<crate::projection::ProjectionError> for Problem {
    fn from(e: crate::projection::ProjectionError) -> Self {
        Problem::internal(e.to_string())
    }
}
