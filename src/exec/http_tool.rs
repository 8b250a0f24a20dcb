//! Tools that call an HTTP endpoint, declared in the catalog (`"http": {...}` on a tool spec).
//!
//! The call's idempotency key goes in a header (`Idempotency-Key` unless the entry names
//! another), so the server can recognise a retry the runtime makes after a timeout or a crash:
//! every attempt of one call carries the same key. Errors are classified here, where their
//! meaning is known: a refused connection, 429 and 503 mean the request did nothing, so they are
//! retryable; a timeout, a 5xx or a broken response may follow an effect, so they are retryable
//! only for idempotent tools and otherwise "outcome unknown" (the ladder hands those to a
//! person). A 2xx body must be a JSON object; whether it matches the result schema is the
//! post-tool guard's check, the same for every tool, so schema drift is a recorded guard trip.

use std::time::Duration;

use async_trait::async_trait;

use serde_json::Value;

use super::catalog::ToolSpec;
use super::{Tool, ToolError};
use crate::event::ToolFailureKind;
use crate::exec::types::ToolInvocation;

pub use super::catalog::HttpEndpoint;

pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A catalog entry that cannot become a working HTTP tool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpToolError {
    #[error("tool {tool}: no http endpoint in its catalog entry")]
    NoEndpoint { tool: String },
    #[error("tool {tool}: method {method:?} is not GET, POST, PUT, PATCH or DELETE")]
    Method { tool: String, method: String },
    #[error("tool {tool}: url {url:?}: {message}")]
    Url {
        tool: String,
        url: String,
        message: String,
    },
    #[error("tool {tool}: header {header}: environment variable {var} is not set")]
    MissingEnv {
        tool: String,
        header: String,
        var: String,
    },
    #[error("tool {tool}: header {header}: {message}")]
    Header {
        tool: String,
        header: String,
        message: String,
    },
}

pub struct HttpTool {
    spec: ToolSpec,
    method: reqwest::Method,
    url: String,
    headers: reqwest::header::HeaderMap,
    idempotency_header: reqwest::header::HeaderName,
    client: reqwest::Client,
    max_response_bytes: usize,
}

/// `${VAR}` references in `value`, resolved by `env`.
pub(crate) fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "unclosed ${".to_string())?;
        let var = &after[..end];
        out.push_str(&env(var).ok_or_else(|| var.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{name}` placeholders of a URL template.
pub fn placeholders(url: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    names
}

impl HttpTool {
    /// Builds the tool from its catalog entry; `env` resolves `${VAR}` in headers.
    pub fn new(
        spec: ToolSpec,
        client: reqwest::Client,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, HttpToolError> {
        let tool = spec.name.clone();
        let endpoint = spec
            .http
            .clone()
            .ok_or_else(|| HttpToolError::NoEndpoint { tool: tool.clone() })?;
        if endpoint
            .max_response_bytes
            .is_some_and(|n| !(1..=crate::exec::body::MAX_RESPONSE_CAP).contains(&n))
        {
            return Err(HttpToolError::Url {
                tool,
                url: endpoint.url.clone(),
                message: format!(
                    "max_response_bytes must be between 1 and {}",
                    crate::exec::body::MAX_RESPONSE_CAP
                ),
            });
        }
        let method_name = endpoint
            .method
            .as_deref()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let method = match method_name.as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            _ => {
                return Err(HttpToolError::Method {
                    tool,
                    method: method_name,
                });
            }
        };
        let url_error = |message: String| HttpToolError::Url {
            tool: tool.clone(),
            url: endpoint.url.clone(),
            message,
        };
        // The template must be a URL once its placeholders are filled.
        let mut probe = endpoint.url.clone();
        for name in placeholders(&endpoint.url) {
            probe = probe.replace(&format!("{{{name}}}"), "x");
        }
        let parsed = reqwest::Url::parse(&probe).map_err(|e| url_error(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(url_error("scheme must be http or https".into()));
        }
        let properties = spec.args_schema.get("properties");
        if let Some(missing) = placeholders(&endpoint.url)
            .into_iter()
            .find(|p| properties.and_then(|props| props.get(p)).is_none())
        {
            return Err(url_error(format!(
                "placeholder {{{missing}}} is not an argument of the tool"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let header_error = |message: String| HttpToolError::Header {
                tool: tool.clone(),
                header: name.clone(),
                message,
            };
            let value = expand(value, env).map_err(|var| {
                if var.starts_with("unclosed") {
                    header_error(var)
                } else {
                    HttpToolError::MissingEnv {
                        tool: tool.clone(),
                        header: name.clone(),
                        var,
                    }
                }
            })?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| header_error(e.to_string()))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| header_error(e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let idem = endpoint
            .idempotency_header
            .as_deref()
            .unwrap_or(DEFAULT_IDEMPOTENCY_HEADER);
        let idempotency_header =
            reqwest::header::HeaderName::from_bytes(idem.as_bytes()).map_err(|e| {
                HttpToolError::Header {
                    tool: tool.clone(),
                    header: idem.to_string(),
                    message: e.to_string(),
                }
            })?;
        Ok(HttpTool {
            max_response_bytes: endpoint
                .max_response_bytes
                .unwrap_or(crate::exec::body::DEFAULT_MAX_RESPONSE_BYTES),
            url: endpoint.url,
            method,
            headers,
            idempotency_header,
            client,
            spec,
        })
    }

    fn has_body(&self) -> bool {
        !matches!(self.method, reqwest::Method::GET | reqwest::Method::DELETE)
    }

    /// An error after the request may have reached the server: safe to retry only when the
    /// tool is idempotent (the server deduplicates by key); otherwise the effect is unknown.
    fn maybe_acted(&self, message: String, kind: ToolFailureKind) -> ToolError {
        if self.spec.idempotent {
            ToolError {
                message,
                retryable: true,
                kind,
            }
        } else {
            ToolError {
                message,
                retryable: false,
                kind: ToolFailureKind::OutcomeUnknown,
            }
        }
    }

    fn request(&self, call: &ToolInvocation) -> Result<reqwest::RequestBuilder, ToolError> {
        let args: Value = serde_json::from_str(&call.args_json)
            .map_err(|e| ToolError::terminal(format!("arguments are not JSON: {e}")))?;
        let fields = args
            .as_object()
            .ok_or_else(|| ToolError::terminal("arguments are not an object"))?;
        let mut url = self.url.clone();
        let used = placeholders(&self.url);
        for name in &used {
            let value = match fields.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => {
                    return Err(ToolError::terminal(format!(
                        "argument {name} (in the URL) is missing or not a scalar"
                    )));
                }
            };
            let encoded: String = url_escape(&value);
            url = url.replace(&format!("{{{name}}}"), &encoded);
        }
        let mut req = self
            .client
            .request(self.method.clone(), &url)
            .headers(self.headers.clone())
            .header(&self.idempotency_header, &call.idempotency_key)
            .timeout(Duration::from_millis(self.spec.timeout_ms.max(1)));
        if self.has_body() {
            req = req.json(&args);
        } else {
            let query: Vec<(String, String)> = fields
                .iter()
                .filter(|(k, _)| !used.contains(k))
                .map(|(k, v)| match v {
                    Value::String(s) => (k.clone(), s.clone()),
                    other => (k.clone(), other.to_string()),
                })
                .collect();
            req = req.query(&query);
        }
        Ok(req)
    }
}

fn url_escape(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, call: &ToolInvocation) -> Result<Value, ToolError> {
        let resp = match self.request(call)?.send().await {
            Ok(r) => r,
            // Not connected: the request never left, whatever the tool.
            Err(e) if e.is_connect() => {
                return Err(ToolError::retryable(format!("cannot connect: {e}")));
            }
            Err(e) if e.is_timeout() => {
                return Err(self.maybe_acted(
                    format!("no answer within {} ms", self.spec.timeout_ms),
                    ToolFailureKind::Timeout,
                ));
            }
            Err(e) => return Err(self.maybe_acted(e.to_string(), ToolFailureKind::Error)),
        };
        let status = resp.status().as_u16();
        let body = match crate::exec::body::read_capped(resp, self.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => {
                return Err(self.maybe_acted(format!("HTTP {status}: {e}"), ToolFailureKind::Error));
            }
        };
        let excerpt = || {
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        };
        match status {
            200..=299 => {}
            // The server says it did not act: 408 and 429 ask to come back, 503 is down, 409 is
            // an in-flight request with the same idempotency key.
            408 | 409 | 429 | 503 => {
                return Err(ToolError::retryable(format!(
                    "HTTP {status}: {}",
                    excerpt()
                )));
            }
            500..=599 => {
                return Err(self.maybe_acted(
                    format!("HTTP {status}: {}", excerpt()),
                    ToolFailureKind::Error,
                ));
            }
            _ => return Err(ToolError::terminal(format!("HTTP {status}: {}", excerpt()))),
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            self.maybe_acted(
                format!("HTTP {status}: body is not JSON ({e}): {}", excerpt()),
                ToolFailureKind::Error,
            )
        })?;
        if !value.is_object() {
            return Err(ToolError::terminal(format!(
                "HTTP {status}: body is not a JSON object: {}",
                excerpt()
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, headers: &[(&str, &str)]) -> ToolSpec {
        ToolSpec {
            name: "lookup_order".into(),
            args_schema: serde_json::json!({"type":"object","properties":{"order_id":{"type":"string"}}}),
            http: Some(HttpEndpoint {
                method: Some("get".into()),
                url: url.into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                idempotency_header: None,
                max_response_bytes: None,
            }),
            ..ToolSpec::default()
        }
    }

    fn env(var: &str) -> Option<String> {
        (var == "ORDERS_TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn catalog_entries_are_checked_when_the_tool_is_built() {
        let client = reqwest::Client::new();
        let ok = HttpTool::new(
            spec(
                "http://127.0.0.1:1/orders/{order_id}",
                &[("Authorization", "Bearer ${ORDERS_TOKEN}")],
            ),
            client.clone(),
            &env,
        );
        assert!(ok.is_ok());
        let missing = HttpTool::new(
            spec("http://x/{order_id}", &[("Authorization", "${NOPE}")]),
            client.clone(),
            &env,
        );
        assert!(matches!(missing, Err(HttpToolError::MissingEnv { var, .. }) if var == "NOPE"));
        let bad_placeholder = HttpTool::new(spec("http://x/{customer}", &[]), client.clone(), &env);
        assert!(matches!(bad_placeholder, Err(HttpToolError::Url { .. })));
        let bad_scheme = HttpTool::new(spec("ftp://x/{order_id}", &[]), client, &env);
        assert!(matches!(bad_scheme, Err(HttpToolError::Url { .. })));
    }

    #[test]
    fn placeholders_and_escaping() {
        assert_eq!(placeholders("http://h/{a}/x/{b}?q=1"), vec!["a", "b"]);
        assert_eq!(url_escape("A 12/é"), "A%2012%2F%C3%A9");
        assert_eq!(
            expand("Bearer ${ORDERS_TOKEN}!", &env).unwrap(),
            "Bearer s3cret!"
        );
    }
}
