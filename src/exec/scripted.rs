//! A deterministic model driven by a workload file, so demo and test runs are reproducible.
//!
//! The workload file is JSON lines, one [`WorkloadTurn`] per line: the request a producer sends
//! and the tool calls the "model" will make for it. It plays the turn's loop as a model would:
//! each step it looks at the conversation it is sent, asks for the next calls of its script —
//! filling `{{tool.field}}` placeholders from the results it has seen (this turn's first, then
//! the session's) — and once every call has a result, writes the answer from those results.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{PlanRequest, Planner};
use crate::event::PlanStep;
use crate::exec::types::{Conversation, ExecFailure, Planned};
use crate::ids::TurnId;

/// The calls the scripted model makes in one turn, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Tool calls; a string argument `{{tool.field}}` is replaced by that field of the latest
    /// result of `tool` the model has seen.
    pub steps: Vec<PlanStep>,
    pub confidence: f64,
    /// How many calls each model step asks for at once (default: one per step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<usize>,
}

/// One turn of a workload: the request and its script.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadTurn {
    pub turn_id: TurnId,
    pub tenant: String,
    pub user_id: String,
    pub text: String,
    pub scenario: String,
    pub script: Script,
    /// Request attributes (e.g. `class` for routing, `roles`, `scopes`).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The session the turn continues (its follow-ups see it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read workload {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("workload {path} line {line}: {source}")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

pub fn read_workload(path: &Path) -> Result<Vec<WorkloadTurn>, WorkloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| WorkloadError::Parse {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Writes the workload atomically (temp file + rename), so a crash never leaves half a file.
pub fn write_workload(path: &Path, turns: &[WorkloadTurn]) -> Result<(), WorkloadError> {
    let io = |source| WorkloadError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut out = String::with_capacity(turns.len() * 256);
    for t in turns {
        // Serializing plain data cannot fail.
        out.push_str(&serde_json::to_string(t).unwrap_or_default());
        out.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, out).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub const SCRIPTED_MODEL: &str = "ballast-scripted";
const TEMPLATE: &str =
    "You are a support agent. Context:\n{documents}\nRequest: {text}\nPlan tool calls as JSON.";

/// Hash of the prompt template, recorded in every PlanProposed (FNV-1a, hex).
pub fn template_hash(template: &str) -> String {
    let h = template.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

pub struct ScriptedPlanner {
    scripts: HashMap<TurnId, Script>,
    /// Simulated model latency.
    latency: Duration,
    template_hash: String,
}

impl ScriptedPlanner {
    pub fn new(turns: &[WorkloadTurn], latency: Duration) -> Arc<Self> {
        Arc::new(ScriptedPlanner {
            scripts: turns
                .iter()
                .map(|t| (t.turn_id, t.script.clone()))
                .collect(),
            latency,
            template_hash: template_hash(TEMPLATE),
        })
    }
}

/// The plan for a request no workload scripted (one submitted over the API): look up the order
/// it names (`A1001`-style ids), else search the knowledge base with its text.
pub fn fallback_script(text: &str) -> Script {
    let order = text.split(|c: char| !c.is_ascii_alphanumeric()).find(|w| {
        w.len() == 5
            && w.starts_with(|c: char| c.is_ascii_uppercase())
            && w[1..].bytes().all(|b| b.is_ascii_digit())
    });
    let step = match order {
        Some(id) => crate::event::PlanStep {
            tool: "lookup_order".into(),
            args_json: serde_json::json!({ "order_id": id }).to_string(),
        },
        None => crate::event::PlanStep {
            tool: "search_kb".into(),
            args_json: serde_json::json!({ "query": text.chars().take(200).collect::<String>() })
                .to_string(),
        },
    };
    Script {
        steps: vec![step],
        confidence: 0.9,
        batch: Vec::new(),
    }
}

/// The calls of the script that the step after `done` calls asks for.
fn next_batch(script: &Script, done: usize) -> &[PlanStep] {
    let mut start = 0;
    let mut k = 0;
    while start < script.steps.len() {
        let size = script.batch.get(k).copied().unwrap_or(1).max(1);
        if done < start + size {
            let end = (start + size).min(script.steps.len());
            return script.steps.get(done..end).unwrap_or(&[]);
        }
        start += size;
        k += 1;
    }
    &[]
}

/// The latest result of `tool` in the conversation: this turn's calls first, then the
/// session's, newest first.
fn latest_result(conv: &Conversation, tool: &str) -> Option<serde_json::Value> {
    let here = conv
        .calls()
        .filter(|c| c.tool == tool)
        .filter_map(|c| c.result.as_ref().ok())
        .last()
        .cloned();
    let earlier = || {
        conv.session
            .iter()
            .rev()
            .flat_map(|t| t.calls.iter().rev())
            .find(|c| c.tool == tool)
            .map(|c| c.result_json.clone())
    };
    here.or_else(earlier)
        .and_then(|r| serde_json::from_str(&r).ok())
}

/// Arguments with every `{{tool.field.sub}}` string replaced by the value it names (kept as
/// written when nothing the model has seen holds it).
pub fn fill_templates(args_json: &str, conv: &Conversation) -> String {
    let Ok(mut args) = serde_json::from_str::<serde_json::Value>(args_json) else {
        return args_json.to_string();
    };
    if let Some(obj) = args.as_object_mut() {
        for v in obj.values_mut() {
            let Some(reference) = v
                .as_str()
                .and_then(|s| s.strip_prefix("{{"))
                .and_then(|s| s.strip_suffix("}}"))
            else {
                continue;
            };
            let mut parts = reference.split('.');
            let Some(tool) = parts.next() else { continue };
            let found = latest_result(conv, tool).and_then(|mut value| {
                for p in parts {
                    value = value.get(p)?.clone();
                }
                Some(value)
            });
            if let Some(found) = found {
                *v = found;
            }
        }
    }
    args.to_string()
}

/// Rough token count: what a tokenizer would give for English text, within a factor of two.
pub fn approx_tokens(text: &str) -> i64 {
    (text.len() as i64 / 4).max(1)
}

/// Approximate tokens of everything the conversation holds.
fn conversation_tokens(conv: &Conversation) -> i64 {
    let docs: i64 = conv
        .documents
        .iter()
        .map(|d| approx_tokens(&d.snippet))
        .sum();
    let session: i64 = conv
        .session
        .iter()
        .map(|t| {
            approx_tokens(&t.request)
                + t.reply.as_deref().map_or(0, approx_tokens)
                + t.calls
                    .iter()
                    .map(|c| approx_tokens(&c.args_json) + approx_tokens(&c.result_json))
                    .sum::<i64>()
        })
        .sum();
    let steps: i64 = conv
        .calls()
        .map(|c| {
            approx_tokens(&c.args_json)
                + match &c.result {
                    Ok(r) | Err(r) => approx_tokens(r),
                }
        })
        .sum();
    approx_tokens(TEMPLATE) + approx_tokens(&conv.request) + docs + session + steps
}

#[async_trait]
impl Planner for ScriptedPlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure> {
        let started = std::time::Instant::now();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let conv = &request.conversation;
        let fallback;
        let script = match self.scripts.get(&request.turn_id) {
            Some(s) => s,
            None => {
                fallback = fallback_script(&conv.request);
                &fallback
            }
        };
        // The model reads what came back: calls already answered are not asked again, and
        // placeholders take the values the results hold.
        let done = conv.calls().count();
        let calls: Vec<PlanStep> = next_batch(script, done)
            .iter()
            .map(|s| PlanStep {
                tool: s.tool.clone(),
                args_json: fill_templates(&s.args_json, conv),
            })
            .collect();
        let (content, finish_reason) = if calls.is_empty() {
            let results: Vec<(String, String)> = conv
                .calls()
                .filter_map(|c| c.result.as_ref().ok().map(|r| (c.tool.clone(), r.clone())))
                .collect();
            let (text, cited) = super::synth::template_reply(&conv.documents, &results);
            let marks: String = cited.iter().map(|id| format!(" [doc:{id}]")).collect();
            (Some(format!("{text}{marks}")), "stop")
        } else {
            (None, "tool_calls")
        };
        let output: i64 = calls
            .iter()
            .map(|s| approx_tokens(&s.args_json) + approx_tokens(&s.tool))
            .sum::<i64>()
            + content.as_deref().map_or(0, approx_tokens);
        // The profile names the "model" so that routing shows in every recorded step.
        let model = match request.profile.as_str() {
            "" | "general" => SCRIPTED_MODEL.to_string(),
            profile => format!("{SCRIPTED_MODEL}-{profile}"),
        };
        Ok(Planned {
            model,
            model_version: "1".into(),
            prompt_template_hash: self.template_hash.clone(),
            steps: calls,
            confidence: script.confidence,
            input_tokens: conversation_tokens(conv),
            output_tokens: output.max(1),
            latency_ms: started.elapsed().as_millis() as i64,
            content,
            finish_reason: Some(finish_reason.into()),
            system_fingerprint: None,
            messages_digest: None,
        })
    }
}
