//! The chat-completions wire format, as pure functions: the request body a model step
//! becomes — the conversation so far rendered as messages — and what a response body becomes.
//! Parsing never trusts the server: every field is optional until checked, and whatever cannot
//! become an answer is a `Malformed` error, not a panic.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::event::PlanStep;
use crate::exec::PlanRequest;
use crate::exec::catalog::{Catalog, ToolSpec};
use crate::exec::types::CallExchange;

/// The default system prompt (a planner's `system_prompt` replaces it). Its hash, with the tool
/// definitions, is recorded with every model step.
pub const SYSTEM_TEMPLATE: &str = "You are a customer-support agent acting for the user through tools. Call the tools you need; you will see each result before you decide what to do next. Take identifiers, amounts and addresses from the user's request, the context documents or earlier tool results only; never invent them. When you have what you need, answer the user in a few sentences without calling a tool, and cite the context documents you relied on as [doc:ID].";

const CONSTRAINED_NOTE: &str = "This is a constrained retry: an earlier answer to this step was rejected. Only read-only tools are offered; call the fewest that answer the request.";

/// The most documents, and characters of each, put into the prompt.
const MAX_DOCUMENTS: usize = 8;
const MAX_SNIPPET_CHARS: usize = 2_000;
/// Characters of one tool result fed back to the model; the rest is cut with a note.
const MAX_RESULT_CHARS: usize = 8_000;
/// More tool calls in one answer are refused as malformed.
pub const MAX_STEPS: usize = 32;

/// The catalog tools offered for a request: all of them, or the deterministic ones on a
/// constrained retry.
pub fn offered(catalog: &Catalog, constrained: bool) -> Vec<&ToolSpec> {
    catalog
        .iter()
        .filter(|t| !constrained || t.deterministic)
        .collect()
}

/// The OpenAI `tools` array: one function per catalog tool, its parameters the args schema.
pub fn tool_definitions(tools: &[&ToolSpec]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.args_schema,
                    }
                })
            })
            .collect(),
    )
}

/// `sha256:` of the system prompt, the constrained note and the catalog's tool definitions:
/// what, besides the conversation, shapes the model's answer.
pub fn template_hash(system: &str, catalog: &Catalog) -> String {
    let mut h = Sha256::new();
    h.update(system.as_bytes());
    h.update([0]);
    h.update(CONSTRAINED_NOTE.as_bytes());
    h.update([0]);
    let all: Vec<&ToolSpec> = catalog.iter().collect();
    h.update(tool_definitions(&all).to_string().as_bytes());
    let digest = h.finalize();
    format!(
        "sha256:{}",
        hex::encode(digest.get(..8).unwrap_or_default())
    )
}

/// The system message: the prompt, the constrained note on a retry, the context documents.
pub fn system_message(system: &str, request: &PlanRequest) -> String {
    let mut text = system.to_string();
    if request.constrained {
        text.push(' ');
        text.push_str(CONSTRAINED_NOTE);
    }
    let docs = &request.conversation.documents;
    if !docs.is_empty() {
        text.push_str("\n\nContext documents:\n");
        for d in docs.iter().take(MAX_DOCUMENTS) {
            let snippet: String = d.snippet.chars().take(MAX_SNIPPET_CHARS).collect();
            text.push_str(&format!(
                "[doc:{}] (v{}) {}: {}\n",
                d.id, d.version, d.title, snippet
            ));
        }
    }
    text
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_RESULT_CHARS {
        return text.to_string();
    }
    let kept: String = text.chars().take(MAX_RESULT_CHARS).collect();
    format!("{kept}… [cut at {MAX_RESULT_CHARS} characters]")
}

/// An assistant message asking for `calls`, and the tool messages answering them, in order.
fn exchange(content: Option<&str>, calls: &[CallExchange], out: &mut Vec<Value>) {
    if calls.is_empty() {
        if let Some(c) = content {
            out.push(json!({"role": "assistant", "content": c}));
        }
        return;
    }
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|c| {
            json!({
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.tool, "arguments": c.args_json},
            })
        })
        .collect();
    out.push(json!({"role": "assistant", "content": content, "tool_calls": tool_calls}));
    for c in calls {
        let text = match &c.result {
            Ok(result) => cut(result),
            Err(error) => format!("error: {}", cut(error)),
        };
        out.push(json!({"role": "tool", "tool_call_id": c.call_id, "content": text}));
    }
}

/// The conversation as chat messages: system; each earlier turn of the session (the user's
/// request, its tool calls and results, the reply); this turn's request; then each earlier
/// step of this turn as an assistant message with its tool calls and one tool message per
/// result, in the model's order.
pub fn messages(system: &str, request: &PlanRequest) -> Vec<Value> {
    let conv = &request.conversation;
    let mut out = vec![json!({"role": "system", "content": system_message(system, request)})];
    for (t, turn) in conv.session.iter().enumerate() {
        out.push(json!({"role": "user", "content": turn.request}));
        let calls: Vec<CallExchange> = turn
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| CallExchange {
                call_id: format!("s{t}c{i}"),
                tool: c.tool.clone(),
                args_json: c.args_json.clone(),
                result: Ok(c.result_json.clone()),
            })
            .collect();
        exchange(None, &calls, &mut out);
        if let Some(reply) = &turn.reply {
            out.push(json!({"role": "assistant", "content": reply}));
        }
    }
    out.push(json!({"role": "user", "content": conv.request}));
    for step in &conv.steps {
        exchange(step.content.as_deref(), &step.calls, &mut out);
    }
    out
}

/// `sha256:` of the messages as sent: recorded with the step, so an auditor can tell two
/// steps were asked the same thing.
pub fn messages_digest(messages: &[Value]) -> String {
    let bytes = serde_json::to_vec(messages).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// What the request body is built from besides the plan request.
pub struct BodyOptions<'a> {
    pub model: &'a str,
    pub system: &'a str,
    pub max_tokens: u32,
    pub temperature: f64,
    pub logprobs: bool,
}

/// The request body, and the digest of its messages.
pub fn request_body(
    request: &PlanRequest,
    catalog: &Catalog,
    opts: &BodyOptions<'_>,
) -> (Value, String) {
    let messages = messages(opts.system, request);
    let digest = messages_digest(&messages);
    let tools = offered(catalog, request.constrained);
    let mut body = Map::from_iter([
        ("model".to_string(), json!(opts.model)),
        ("messages".to_string(), json!(messages)),
        ("temperature".to_string(), json!(opts.temperature)),
        ("max_tokens".to_string(), json!(opts.max_tokens)),
    ]);
    if !tools.is_empty() {
        body.insert("tools".into(), tool_definitions(&tools));
        body.insert("tool_choice".into(), json!("auto"));
    }
    if opts.logprobs {
        body.insert("logprobs".into(), json!(true));
    }
    (Value::Object(body), digest)
}

/// A response turned into plan material.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The model the server says answered (often more precise than the one asked for).
    pub model: Option<String>,
    /// `system_fingerprint`, when the server gives one: the backend configuration.
    pub fingerprint: Option<String>,
    pub steps: Vec<PlanStep>,
    /// The assistant's text (the answer, when there are no tool calls).
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    /// exp(mean token logprob) when the server returned logprobs.
    pub confidence: Option<f64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
}

/// Why a response body could not become a plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("malformed completion: {0}")]
pub struct Malformed(pub String);

fn bad(message: impl Into<String>) -> Malformed {
    Malformed(message.into())
}

/// Parses a chat-completions response body.
pub fn parse_completion(body: &[u8]) -> Result<Completion, Malformed> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let root = value
        .as_object()
        .ok_or_else(|| bad("body is not a JSON object"))?;
    if let Some(err) = root.get("error").filter(|e| !e.is_null()) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        return Err(bad(format!("server error object: {message}")));
    }
    let choice = root
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("no choices"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("choice has no message object"))?;
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(64).collect::<String>());
    if finish_reason.as_deref() == Some("length") {
        return Err(bad("the answer was cut off at max_tokens"));
    }
    let steps = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => {
            if calls.len() > MAX_STEPS {
                return Err(bad(format!(
                    "{} tool calls (at most {MAX_STEPS})",
                    calls.len()
                )));
            }
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| parse_tool_call(i, c))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("tool_calls is not an array")),
    };
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if steps.is_empty() && content.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(bad("neither tool calls nor content"));
    }
    let usage = root.get("usage");
    let tokens = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
    };
    Ok(Completion {
        model: root
            .get("model")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(200).collect()),
        fingerprint: root
            .get("system_fingerprint")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(200).collect()),
        steps,
        content,
        finish_reason,
        confidence: confidence(choice),
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
    })
}

fn parse_tool_call(i: usize, call: &Value) -> Result<PlanStep, Malformed> {
    let function = call
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("tool call {i} has no function")))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 128)
        .ok_or_else(|| bad(format!("tool call {i} has no usable name")))?;
    // Servers send arguments as a JSON string (OpenAI) or, some, as an object.
    let args = match function.get("arguments") {
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
            bad(format!(
                "tool call {i} ({name}): arguments are not JSON: {e}"
            ))
        })?,
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => json!({}),
        Some(_) => {
            return Err(bad(format!(
                "tool call {i} ({name}): arguments of a wrong type"
            )));
        }
    };
    if !args.is_object() {
        return Err(bad(format!(
            "tool call {i} ({name}): arguments are not an object"
        )));
    }
    Ok(PlanStep {
        tool: name.to_string(),
        args_json: args.to_string(),
    })
}

/// exp(mean logprob) of the answer's tokens, in [0, 1]; None when there are none.
fn confidence(choice: &Value) -> Option<f64> {
    let tokens = choice.get("logprobs")?.get("content")?.as_array()?;
    let logprobs: Vec<f64> = tokens
        .iter()
        .filter_map(|t| t.get("logprob").and_then(Value::as_f64))
        .filter(|l| l.is_finite() && *l <= 0.0)
        .collect();
    if logprobs.is_empty() {
        return None;
    }
    let mean = logprobs.iter().sum::<f64>() / logprobs.len() as f64;
    Some(mean.exp().clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON built from the keys a completion has, so the parser's every branch is reached.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z{}\\[\\]\":,]{0,12}".prop_map(Value::from),
        ];
        let keys = prop::sample::select(vec![
            "choices",
            "message",
            "tool_calls",
            "function",
            "name",
            "arguments",
            "usage",
            "prompt_tokens",
            "logprobs",
            "content",
            "logprob",
            "finish_reason",
            "model",
            "error",
        ]);
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_completion_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_completion(&bytes);
        }

        #[test]
        fn any_completion_shaped_json_is_a_completion_or_an_error(v in arb_json()) {
            if let Ok(c) = parse_completion(v.to_string().as_bytes()) {
                prop_assert!(c.steps.len() <= MAX_STEPS);
                prop_assert!(c.confidence.is_none_or(|x| (0.0..=1.0).contains(&x)));
                for s in &c.steps {
                    prop_assert!(serde_json::from_str::<Value>(&s.args_json).is_ok_and(|a| a.is_object()));
                }
            }
        }
    }

    #[test]
    fn a_tool_calling_answer_becomes_steps_in_order() {
        let body = br#"{"id":"c1","model":"qwen2.5-7b","system_fingerprint":"fp_1",
          "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
          "content":null,"tool_calls":[
            {"id":"a","type":"function","function":{"name":"lookup_order","arguments":"{\"order_id\":\"A1234\"}"}},
            {"id":"b","type":"function","function":{"name":"send_email","arguments":{"to":"x"}}}]},
          "logprobs":{"content":[{"token":"a","logprob":-0.1},{"token":"b","logprob":-0.3}]}}],
          "usage":{"prompt_tokens":321,"completion_tokens":42}}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.steps.len(), 2);
        assert_eq!(c.steps[0].tool, "lookup_order");
        assert_eq!(c.steps[0].args_json, r#"{"order_id":"A1234"}"#);
        assert_eq!(c.steps[1].args_json, r#"{"to":"x"}"#);
        assert_eq!((c.input_tokens, c.output_tokens), (Some(321), Some(42)));
        assert_eq!(c.model.as_deref(), Some("qwen2.5-7b"));
        let conf = c.confidence.unwrap();
        assert!((conf - (-0.2f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn a_plain_answer_is_a_step_without_calls() {
        let c = parse_completion(
            br#"{"choices":[{"finish_reason":"stop","message":{"content":"Hello"}}]}"#,
        )
        .unwrap();
        assert!(c.steps.is_empty());
        assert_eq!(c.content.as_deref(), Some("Hello"));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.confidence, None);
        assert!(parse_completion(br#"{"choices":[{"message":{"content":"  "}}]}"#).is_err());
    }

    #[test]
    fn constrained_requests_offer_only_deterministic_tools() {
        let catalog = crate::exec::catalog::Catalog::new(vec![
            ToolSpec {
                name: "read".into(),
                deterministic: true,
                ..ToolSpec::default()
            },
            ToolSpec {
                name: "write".into(),
                ..ToolSpec::default()
            },
        ]);
        let all = offered(&catalog, false).len();
        let some = offered(&catalog, true);
        assert!(!some.is_empty() && some.len() < all);
        assert!(some.iter().all(|t| t.deterministic));
        assert!(template_hash(SYSTEM_TEMPLATE, &catalog).starts_with("sha256:"));
    }

    #[test]
    fn the_conversation_becomes_messages_with_tool_results_in_order() {
        use crate::event::{SessionCall, SessionTurn};
        use crate::exec::types::{Conversation, StepExchange};
        let request = PlanRequest {
            turn_id: crate::ids::TurnId::new_v7(),
            profile: "general".into(),
            constrained: false,
            attempt: 1,
            step: 1,
            tenant: "acme".into(),
            user_id: "u-1".into(),
            conversation: Conversation {
                session: vec![SessionTurn {
                    turn_id: "t0".into(),
                    request: "Where is A1001?".into(),
                    reply: Some("Shipped.".into()),
                    calls: vec![SessionCall {
                        tool: "lookup_order".into(),
                        args_json: r#"{"order_id":"A1001"}"#.into(),
                        result_json: r#"{"status":"shipped"}"#.into(),
                    }],
                }],
                documents: Vec::new(),
                request: "Refund it".into(),
                steps: vec![StepExchange {
                    content: None,
                    calls: vec![
                        CallExchange {
                            call_id: "c1".into(),
                            tool: "lookup_order".into(),
                            args_json: r#"{"order_id":"A1001"}"#.into(),
                            result: Ok(r#"{"amount_cents":4685}"#.into()),
                        },
                        CallExchange {
                            call_id: "c2".into(),
                            tool: "search_kb".into(),
                            args_json: r#"{"query":"refund"}"#.into(),
                            result: Err("HTTP 503".into()),
                        },
                    ],
                }],
            },
        };
        let m = messages(SYSTEM_TEMPLATE, &request);
        let roles: Vec<&str> = m.iter().filter_map(|x| x["role"].as_str()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "tool",
                "assistant",
                "user",
                "assistant",
                "tool",
                "tool"
            ]
        );
        assert_eq!(m[7]["tool_call_id"], "c1");
        assert_eq!(m[7]["content"], r#"{"amount_cents":4685}"#);
        assert_eq!(m[8]["content"], "error: HTTP 503");
        assert_eq!(m[6]["tool_calls"][1]["function"]["name"], "search_kb");
        let d1 = messages_digest(&m);
        assert!(d1.starts_with("sha256:"));
        assert_eq!(d1, messages_digest(&messages(SYSTEM_TEMPLATE, &request)));
    }
}
