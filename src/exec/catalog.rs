//! The tool catalog: what each tool is, as data the control plane and state machine can read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How much damage a wrong call can do.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Reads only.
    #[default]
    None,
    Low,
    Medium,
    High,
}

impl Impact {
    /// The risk contribution of the impact level alone, in [0, 1].
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Low => "low",
            Impact::Medium => "medium",
            Impact::High => "high",
        }
    }

    pub fn level(self) -> i64 {
        self as i64
    }

    pub fn base_risk(self) -> f64 {
        match self {
            Impact::None => 0.0,
            Impact::Low => 0.2,
            Impact::Medium => 0.5,
            Impact::High => 0.8,
        }
    }
}

/// An argument feature that raises a call's risk: `arg` (a number) above `above` adds `add`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgThreshold {
    pub arg: String,
    pub above: i64,
    pub add: f64,
}

/// A numeric field of a result that must lie within bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericRange {
    pub field: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// Post-tool anomaly checks a result must pass beyond its schema.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultChecks {
    pub max_bytes: Option<usize>,
    pub required: Vec<String>,
    pub ranges: Vec<NumericRange>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub args_schema: serde_json::Value,
    /// JSON Schema of the result object.
    pub result_schema: serde_json::Value,
    /// Scopes the calling user must hold.
    pub auth_scopes: Vec<String>,
    pub impact: Impact,
    /// Safe to run again with the same idempotency key when an earlier attempt's outcome is unknown.
    pub idempotent: bool,
    /// The tool that undoes this one, if any.
    #[serde(default)]
    pub compensation: Option<String>,
    pub timeout_ms: u64,
    /// Argument thresholds that raise the risk score (see `control::risk`).
    #[serde(default)]
    pub risk_thresholds: Vec<ArgThreshold>,
    /// What one call costs, in micro-units of currency; reserved from the budgets before it runs.
    #[serde(default)]
    pub cost_micros: i64,
    /// Free-form labels policies can match (`resource.tags.contains("payments")`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Arguments that must be grounded in the turn (request, context, earlier results): a value
    /// found nowhere is a hallucination, and the call is blocked.
    #[serde(default)]
    pub key_args: Vec<String>,
    /// Same arguments, same answer, no side effect: allowed on a constrained retry.
    #[serde(default)]
    pub deterministic: bool,
    #[serde(default)]
    pub result_checks: ResultChecks,
    /// Where an HTTP tool's endpoint is (see `exec::http_tool`); None for in-process tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEndpoint>,
    /// Whether values in this tool's output may be acted on as if the user had given them.
    /// Unset: untrusted for HTTP (and other external) tools, trusted for in-process ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
    /// Arguments that send money, data or invitations somewhere (recipient, IBAN, URL, …):
    /// their values must come from the user or a trusted tool (`provenance.untrusted_sink`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<String>,
    /// The tool reads private data (an inbox, a statement, files): its values must not leave
    /// through a sink the user did not choose (`provenance.exfiltration`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive_output: bool,
    /// Fields of a trusted tool's result that whoever could write there wrote (a message's
    /// body, a channel's topic, a file's content): JSON pointers where `*` matches any array
    /// index or object key (`/messages/*/body`). Their values are untrusted content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted_fields: Vec<String>,
}

/// How a catalog tool reaches its endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    /// GET, POST, PUT, PATCH or DELETE (default POST).
    #[serde(default)]
    pub method: Option<String>,
    /// `{arg}` is replaced by that argument, percent-encoded. GET and DELETE send the other
    /// arguments as the query string; the other methods send all arguments as a JSON body.
    pub url: String,
    /// Header values may name environment variables as `${VAR}`, resolved when the tool is built.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// A larger response body fails the call (default 1 MiB).
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

/// Whether a tool's output is trusted (see [`ToolSpec::trust`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    Trusted,
    Untrusted,
}

impl ToolSpec {
    /// Whether values from this tool's output are vouched for.
    pub fn trusted(&self) -> bool {
        match self.trust {
            Some(t) => t == Trust::Trusted,
            None => self.http.is_none(),
        }
    }

    /// Whether the result field at `path` (its keys and indexes from the root) is trusted: the
    /// tool is, and no `untrusted_fields` pattern covers the field or an ancestor of it.
    pub fn field_trusted(&self, path: &[String]) -> bool {
        self.trusted()
            && !self
                .untrusted_fields
                .iter()
                .any(|p| field_pattern_covers(p, path))
    }
}

/// `pattern` is a JSON pointer (RFC 6901) whose segments may be `*`.
pub fn valid_field_pattern(pattern: &str) -> bool {
    pattern.starts_with('/') && pattern.len() <= 512
}

/// Whether the pointer pattern names `path` or one of its ancestors: `/messages/*/body` covers
/// `["messages", "3", "body"]` and everything inside it.
pub fn field_pattern_covers(pattern: &str, path: &[String]) -> bool {
    let Some(rest) = pattern.strip_prefix('/') else {
        return false;
    };
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    segments.len() <= path.len() && segments.iter().zip(path).all(|(p, k)| p == "*" || p == k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_field_patterns_cover_their_fields_and_what_is_inside() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(field_pattern_covers(
            "/messages/*/body",
            &path(&["messages", "3", "body"])
        ));
        assert!(field_pattern_covers(
            "/content",
            &path(&["content", "lines", "0"])
        ));
        assert!(!field_pattern_covers(
            "/messages/*/body",
            &path(&["messages", "3", "sender"])
        ));
        assert!(!field_pattern_covers(
            "/messages/*/body",
            &path(&["messages"])
        ));
        assert!(field_pattern_covers("/a~1b/*", &path(&["a/b", "x"])));
        let spec = ToolSpec {
            trust: Some(Trust::Trusted),
            untrusted_fields: vec!["/channels/*/topic".into()],
            ..ToolSpec::default()
        };
        assert!(spec.field_trusted(&path(&["channels", "0", "name"])));
        assert!(!spec.field_trusted(&path(&["channels", "0", "topic"])));
        assert!(valid_field_pattern("/x") && !valid_field_pattern("x/y"));
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    tools: BTreeMap<String, ToolSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Catalog {
    /// Reads a catalog file: a JSON array of tool specs.
    pub fn load(path: &std::path::Path) -> Result<Self, CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::from_json(&text).map_err(invalid)
    }

    /// Parses a JSON array of tool specs; the error names the line and column.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let specs: Vec<ToolSpec> = serde_json::from_str(text)
            .map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))?;
        Ok(Catalog::new(specs))
    }

    pub fn new(specs: impl IntoIterator<Item = ToolSpec>) -> Self {
        Catalog {
            tools: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}
