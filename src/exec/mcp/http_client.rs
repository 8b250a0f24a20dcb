//! The HTTP client of streamable-HTTP MCP servers, reading every body with a cap: rmcp's own
//! reqwest client reads a JSON answer whole and lets an SSE event grow without limit. This is
//! the same exchange (rmcp's `StreamableHttpClient` for reqwest), with a JSON or error body
//! refused past the cap and an SSE stream cut at the first event over it; either trips the
//! connection's [`Tripwire`], so the calls waiting on it fail at once with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest_mcp::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use super::bounded::{Tripwire, over_cap};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    #[error(transparent)]
    Request(#[from] reqwest_mcp::Error),
    /// A body or event over the cap: not read further.
    #[error("{0}")]
    TooLarge(String),
}

type Failed = StreamableHttpError<HttpFailure>;

/// reqwest with a cap on each message, for one connection (its tripwire).
#[derive(Clone)]
pub struct CappedHttp {
    client: reqwest_mcp::Client,
    cap: usize,
    tripwire: Tripwire,
}

impl CappedHttp {
    pub fn new(client: reqwest_mcp::Client, cap: usize, tripwire: Tripwire) -> Self {
        CappedHttp {
            client,
            cap,
            tripwire,
        }
    }

    fn too_large(&self) -> Failed {
        let reason = over_cap(self.cap);
        self.tripwire.trip(reason.clone());
        StreamableHttpError::Client(HttpFailure::TooLarge(reason))
    }

    /// The whole body, refused as soon as it passes the cap (a declared length over it before
    /// anything is read).
    async fn body(&self, mut response: reqwest_mcp::Response) -> Result<Vec<u8>, Failed> {
        if response
            .content_length()
            .is_some_and(|n| n > self.cap as u64)
        {
            return Err(self.too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(client)? {
            if out.len() + chunk.len() > self.cap {
                return Err(self.too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The response's events, the stream ending in an error at the first event over the cap.
    fn events(&self, response: reqwest_mcp::Response) -> BoxStream<'static, Result<Sse, SseError>> {
        let state = (response, EventSize::new(self.cap), self.clone(), false);
        let bytes = futures_util::stream::unfold(state, |(mut r, mut size, me, done)| async move {
            if done {
                return None;
            }
            match r.chunk().await {
                Ok(Some(chunk)) if size.feed(&chunk) => Some((Ok(chunk), (r, size, me, false))),
                Ok(Some(_)) => {
                    let StreamableHttpError::Client(e) = me.too_large() else {
                        return None;
                    };
                    Some((Err(e), (r, size, me, true)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(HttpFailure::Request(e)), (r, size, me, true))),
            }
        });
        SseStream::from_bytes_stream(bytes).boxed()
    }
}

fn client(e: reqwest_mcp::Error) -> Failed {
    StreamableHttpError::Client(HttpFailure::Request(e))
}

fn content_type(response: &reqwest_mcp::Response) -> Option<String> {
    response
        .headers()
        .get(CONTENT_TYPE)
        .map(|ct| String::from_utf8_lossy(ct.as_bytes()).to_string())
}

fn with_headers(
    mut request: reqwest_mcp::RequestBuilder,
    auth: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
) -> reqwest_mcp::RequestBuilder {
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

/// The size of the SSE event being received: bytes since the last blank line (an event's end),
/// line ends not counted.
struct EventSize {
    cap: usize,
    size: usize,
    /// The last byte was a line end (`\n`, or `\r` whose `\n` may follow).
    line_start: bool,
    last_cr: bool,
}

impl EventSize {
    fn new(cap: usize) -> Self {
        EventSize {
            cap,
            size: 0,
            line_start: true,
            last_cr: false,
        }
    }

    /// Counts `bytes`; false once the event passes the cap.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.last_cr => self.last_cr = false,
                b'\n' | b'\r' => {
                    if self.line_start {
                        // A blank line: the event ended.
                        self.size = 0;
                    }
                    self.line_start = true;
                    self.last_cr = b == b'\r';
                }
                _ => {
                    self.line_start = false;
                    self.last_cr = false;
                    self.size += 1;
                    if self.size > self.cap {
                        return false;
                    }
                }
            }
        }
        true
    }
}

impl StreamableHttpClient for CappedHttp {
    type Error = HttpFailure;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failed> {
        let mut request = self.client.post(uri.as_ref()).header(
            ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        request = with_headers(request, auth, headers);
        if let Some(id) = &session_id {
            request = request.header(HEADER_SESSION_ID, id.as_ref());
        }
        let response = request.json(&message).send().await.map_err(client)?;
        let status = response.status();
        if matches!(
            status,
            reqwest_mcp::StatusCode::ACCEPTED | reqwest_mcp::StatusCode::NO_CONTENT
        ) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == reqwest_mcp::StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let ct = content_type(&response);
        let session = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Some servers answer a notification with an empty 200 rather than 202.
        if status.is_success()
            && response.content_length() == Some(0)
            && !matches!(message, JsonRpcMessage::Request(_))
        {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        let is = |mime: &str| ct.as_deref().is_some_and(|c| c.starts_with(mime));
        if !status.is_success() {
            let body = self.body(response).await?;
            // A JSON-RPC error is the server's answer, not a transport failure.
            if is(JSON_MIME_TYPE)
                && let Ok(error @ JsonRpcMessage::Error(_)) =
                    serde_json::from_slice::<ServerJsonRpcMessage>(&body)
            {
                return Ok(StreamableHttpPostResponse::Json(error, session));
            }
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!("HTTP {status}: {excerpt}").into(),
            ));
        }
        if is(EVENT_STREAM_MIME_TYPE) {
            return Ok(StreamableHttpPostResponse::Sse(
                self.events(response),
                session,
            ));
        }
        if is(JSON_MIME_TYPE) {
            let body = self.body(response).await?;
            // As rmcp: a body that is no message (a 200 to a notification) counts as accepted.
            return Ok(
                match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                    Ok(m) => StreamableHttpPostResponse::Json(m, session),
                    Err(e) => {
                        tracing::debug!(error = %e, "mcp answer is not a message: accepted");
                        StreamableHttpPostResponse::Accepted
                    }
                },
            );
        }
        Err(StreamableHttpError::UnexpectedContentType(ct))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failed> {
        let request = with_headers(self.client.delete(uri.as_ref()), auth, headers)
            .header(HEADER_SESSION_ID, session_id.as_ref());
        let response = request.send().await.map_err(client)?;
        if response.status() == reqwest_mcp::StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        response.error_for_status().map_err(client)?;
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        last_event_id: Option<String>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failed> {
        let mut request = self
            .client
            .get(uri.as_ref())
            .header(
                ACCEPT,
                format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
            )
            .header(HEADER_SESSION_ID, session_id.as_ref());
        if let Some(id) = last_event_id {
            request = request.header(HEADER_LAST_EVENT_ID, id);
        }
        let response = with_headers(request, auth, headers)
            .send()
            .await
            .map_err(client)?;
        if response.status() == reqwest_mcp::StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        let response = response.error_for_status().map_err(client)?;
        match content_type(&response) {
            Some(ct)
                if ct.starts_with(EVENT_STREAM_MIME_TYPE) || ct.starts_with(JSON_MIME_TYPE) =>
            {
                Ok(self.events(response))
            }
            other => Err(StreamableHttpError::UnexpectedContentType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_counted_up_to_its_blank_line() {
        let mut size = EventSize::new(10);
        assert!(size.feed(b"data: 1234\n\n"));
        assert!(size.feed(b"data: 1234\r\n\r\n"), "CRLF line ends");
        assert!(size.feed(b"data: 12\n"));
        assert!(size.feed(b"\n"), "a blank line split across chunks");
        assert!(size.feed(b"data:"));
        assert!(size.feed(b" 1234"), "exactly the cap");
        assert!(!size.feed(b"5"), "one byte over");
        let mut lines = EventSize::new(20);
        assert!(lines.feed(b"data: 1\ndata: 2\n"));
        assert!(!lines.feed(b"data: 3\n"), "an event's lines add up");
    }
}
