//! What an MCP server says, turned into Ballast's terms — pure functions, no I/O.
//!
//! A listed tool becomes a catalog entry: its `inputSchema` the argument schema, its
//! `outputSchema` the result schema, and its annotations the catalog's judgement of it. MCP's own
//! defaults apply where a server leaves an annotation out (the spec's: not read-only, destructive,
//! not idempotent, open world), so a tool that says nothing is treated as the most dangerous kind.
//! Annotations are the server's claims; a `[tools.NAME]` override (see `exec::overrides`) is the
//! deployment's, and wins.
//!
//! A call's answer becomes a result object or a classified error, as HTTP tools do: a protocol
//! error that says the request was refused is terminal, one that may follow an effect is retryable
//! only for idempotent tools and otherwise "outcome unknown".

use rmcp::model::{CallToolResult, ErrorCode, Tool};
use serde_json::{Map, Value, json};

use super::McpServerConfig;
use crate::event::ToolFailureKind;
use crate::exec::ToolError;
use crate::exec::catalog::{Impact, ToolSpec, Trust};

/// The longest tool name an MCP server may give (the spec's SHOULD, 128, and ours).
const MAX_TOOL_NAME: usize = 128;
/// A longer description is cut: it goes into every model request.
const MAX_DESCRIPTION: usize = 4096;

/// The catalog name of `tool` on server `server`.
pub fn catalog_name(server: &str, tool: &str) -> String {
    format!("{server}_{tool}")
}

/// A listed tool as a catalog entry of `server` (before overrides).
pub fn spec_for(server: &McpServerConfig, tool: &Tool) -> Result<ToolSpec, String> {
    let name = tool.name.as_ref();
    if name.is_empty()
        || name.len() > MAX_TOOL_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "tool name {:?} is not 1-{MAX_TOOL_NAME} of A-Z a-z 0-9 _ - .",
            name.chars().take(160).collect::<String>()
        ));
    }
    let args_schema = Value::Object((*tool.input_schema).clone());
    if args_schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!("tool {name}: inputSchema is not of type object"));
    }
    let result_schema = tool.output_schema.as_ref().map_or_else(
        || json!({"type": "object"}),
        |s| Value::Object((**s).clone()),
    );
    let a = tool.annotations.clone().unwrap_or_default();
    let read_only = a.read_only_hint.unwrap_or(false);
    // The spec's defaults: destructive and open world unless the server says otherwise.
    let destructive = !read_only && a.destructive_hint.unwrap_or(true);
    let open_world = a.open_world_hint.unwrap_or(true);
    let impact = if read_only {
        Impact::None
    } else if destructive {
        Impact::High
    } else {
        Impact::Low
    };
    let mut description: String = tool
        .description
        .as_deref()
        .or(tool.title.as_deref())
        .or(a.title.as_deref())
        .unwrap_or("")
        .chars()
        .take(MAX_DESCRIPTION)
        .collect();
    if description.is_empty() {
        description = format!("{name} (from MCP server {})", server.name);
    }
    Ok(ToolSpec {
        name: catalog_name(&server.name, name),
        description,
        args_schema,
        result_schema,
        auth_scopes: Vec::new(),
        impact,
        idempotent: read_only || a.idempotent_hint.unwrap_or(false),
        compensation: None,
        timeout_ms: server.timeout_ms,
        risk_thresholds: Vec::new(),
        cost_micros: 0,
        tags: vec!["mcp".into(), format!("mcp:{}", server.name)],
        key_args: Vec::new(),
        // Same arguments, same answer: only a read of a closed world can promise that.
        deterministic: read_only && !open_world,
        result_checks: Default::default(),
        http: None,
        trust: Some(if open_world {
            Trust::Untrusted
        } else {
            Trust::Trusted
        }),
        sinks: Vec::new(),
        sensitive_output: false,
        untrusted_fields: Vec::new(),
    })
}

/// A successful `tools/call` answer as the result object the post-tool guards check:
/// `structuredContent` when it is an object, else a text block that holds a JSON object, else
/// `{"content": text}` with the text blocks joined. `isError` answers are errors the model may
/// read and act on (the tool ran and refused): terminal, never retried blindly.
pub fn result_of(answer: CallToolResult, max_bytes: usize) -> Result<Value, ToolError> {
    let texts: Vec<String> = answer
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    let joined = texts.join("\n");
    if answer.is_error == Some(true) {
        let excerpt: String = joined.chars().take(500).collect();
        return Err(ToolError::terminal(format!(
            "tool reported an error: {excerpt}"
        )));
    }
    let value = match answer.structured_content {
        Some(v @ Value::Object(_)) => v,
        _ => match texts.as_slice() {
            [one] => match serde_json::from_str::<Value>(one) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({ "content": joined }),
            },
            _ => json!({ "content": joined }),
        },
    };
    let size = serde_json::to_vec(&value).map_or(usize::MAX, |b| b.len());
    if size > max_bytes {
        return Err(ToolError::terminal(format!(
            "result of {size} bytes is over the server's max_result_bytes ({max_bytes})"
        )));
    }
    Ok(value)
}

/// Where a failed exchange leaves the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the server: safe to try again.
    NotSent,
    /// The server refused it before acting (bad arguments, unknown tool, …).
    Refused,
    /// It may have acted: no answer in time, the connection broke, an internal error.
    MaybeActed(ToolFailureKind),
}

/// A JSON-RPC error code from the server, classified.
pub fn classify_code(code: ErrorCode) -> Failure {
    if code == ErrorCode::INTERNAL_ERROR {
        Failure::MaybeActed(ToolFailureKind::Error)
    } else {
        // Parse errors, invalid requests or params, unknown methods and tools, resource not
        // found: the server says it did not act on this request.
        Failure::Refused
    }
}

/// The error a failure of `spec`'s call becomes.
pub fn tool_error(spec: &ToolSpec, failure: Failure, message: String) -> ToolError {
    match failure {
        Failure::NotSent => ToolError::retryable(message),
        Failure::Refused => ToolError::terminal(message),
        Failure::MaybeActed(kind) if spec.idempotent => ToolError {
            message,
            retryable: true,
            kind,
        },
        Failure::MaybeActed(_) => ToolError {
            message,
            retryable: false,
            kind: ToolFailureKind::OutcomeUnknown,
        },
    }
}

/// The `_meta` of a call: its idempotency key (the same on every attempt of one call) and the
/// attempt number, so a server can recognise a retry.
pub fn call_meta(idempotency_key: &str, attempt: i32) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert(
        IDEMPOTENCY_META.into(),
        Value::String(idempotency_key.into()),
    );
    meta.insert(ATTEMPT_META.into(), Value::from(attempt));
    meta
}

/// The `_meta` key that carries a call's idempotency key.
pub const IDEMPOTENCY_META: &str = "ballast/idempotency-key";
/// The `_meta` key that carries the attempt number (1, 2, …).
pub const ATTEMPT_META: &str = "ballast/attempt";

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> McpServerConfig {
        McpServerConfig::stdio("files", vec!["x".into()])
    }

    fn tool(v: Value) -> Tool {
        serde_json::from_value(v).expect("tool")
    }

    #[test]
    fn annotations_map_onto_the_catalog() {
        let read = spec_for(
            &server(),
            &tool(json!({"name": "read_file", "description": "Reads a file.",
                "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "annotations": {"readOnlyHint": true, "openWorldHint": false}})),
        )
        .expect("spec");
        assert_eq!(read.name, "files_read_file");
        assert_eq!(read.impact, Impact::None);
        assert!(read.idempotent && read.deterministic && read.trusted());
        assert_eq!(read.result_schema, json!({"type": "object"}));

        // Nothing said: the spec's defaults, the most careful reading.
        let bare = spec_for(
            &server(),
            &tool(json!({"name": "delete", "inputSchema": {"type": "object"}})),
        )
        .expect("spec");
        assert_eq!(bare.impact, Impact::High);
        assert!(!bare.idempotent && !bare.deterministic && !bare.trusted());
        assert!(bare.description.contains("files"));

        let additive = spec_for(
            &server(),
            &tool(json!({"name": "append", "inputSchema": {"type": "object"},
                "outputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "annotations": {"destructiveHint": false, "idempotentHint": true}})),
        )
        .expect("spec");
        assert_eq!(additive.impact, Impact::Low);
        assert!(additive.idempotent);
        assert_eq!(additive.result_schema["properties"]["n"]["type"], "integer");
    }

    #[test]
    fn bad_tools_are_refused() {
        for bad in [
            json!({"name": "", "inputSchema": {"type": "object"}}),
            json!({"name": "a b", "inputSchema": {"type": "object"}}),
            json!({"name": "x".repeat(200), "inputSchema": {"type": "object"}}),
            json!({"name": "arr", "inputSchema": {"type": "array"}}),
        ] {
            assert!(spec_for(&server(), &tool(bad)).is_err());
        }
    }

    #[test]
    fn answers_become_objects_or_errors() {
        let answer = |v: Value| -> CallToolResult { serde_json::from_value(v).expect("result") };
        let structured = answer(json!({"content": [], "structuredContent": {"ok": true}}));
        assert_eq!(
            result_of(structured, 1024).expect("ok"),
            json!({"ok": true})
        );
        let text_json = answer(json!({"content": [{"type": "text", "text": "{\"n\": 2}"}]}));
        assert_eq!(result_of(text_json, 1024).expect("ok"), json!({"n": 2}));
        let text = answer(json!({"content": [{"type": "text", "text": "a"},
            {"type": "text", "text": "b"}]}));
        assert_eq!(
            result_of(text, 1024).expect("ok"),
            json!({"content": "a\nb"})
        );
        let failed = answer(
            json!({"content": [{"type": "text", "text": "no such file"}],
            "isError": true}),
        );
        let e = result_of(failed, 1024).expect_err("error");
        assert!(!e.retryable && e.message.contains("no such file"));
        let big = answer(json!({"content": [{"type": "text", "text": "x".repeat(100)}]}));
        assert!(result_of(big, 50).is_err());
    }

    #[test]
    fn failures_follow_the_http_mapping() {
        let mut spec = spec_for(
            &server(),
            &tool(json!({"name": "pay", "inputSchema": {"type": "object"}})),
        )
        .expect("spec");
        assert!(tool_error(&spec, Failure::NotSent, "x".into()).retryable);
        assert!(!tool_error(&spec, classify_code(ErrorCode::INVALID_PARAMS), "x".into()).retryable);
        let unknown = tool_error(&spec, classify_code(ErrorCode::INTERNAL_ERROR), "x".into());
        assert_eq!(unknown.kind, ToolFailureKind::OutcomeUnknown);
        spec.idempotent = true;
        let again = tool_error(
            &spec,
            Failure::MaybeActed(ToolFailureKind::Timeout),
            "x".into(),
        );
        assert!(again.retryable && again.kind == ToolFailureKind::Timeout);
        let meta = call_meta("k-1", 2);
        assert_eq!(meta[IDEMPOTENCY_META], "k-1");
        assert_eq!(meta[ATTEMPT_META], 2);
    }
}
