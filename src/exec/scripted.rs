//! A deterministic planner driven by a workload file, so demo and test runs are reproducible.
//!
//! The workload file is JSON lines, one [`WorkloadTurn`] per line: the request a producer sends
//! and the plan the "model" will propose for it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{PlanRequest, Planner};
use crate::event::PlanStep;
use crate::ids::TurnId;
use crate::turn::{ExecFailure, Planned};

/// The plan the scripted model proposes for one turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Script {
    pub steps: Vec<PlanStep>,
    pub confidence: f64,
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
    }
}

/// Rough token count: what a tokenizer would give for English text, within a factor of two.
pub fn approx_tokens(text: &str) -> i64 {
    (text.len() as i64 / 4).max(1)
}

#[async_trait]
impl Planner for ScriptedPlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure> {
        let started = std::time::Instant::now();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let fallback;
        let script = match self.scripts.get(&request.turn_id) {
            Some(s) => s,
            None => {
                fallback = fallback_script(&request.text);
                &fallback
            }
        };
        let context: usize = request.documents.iter().map(|d| d.snippet.len()).sum();
        let output: usize = script
            .steps
            .iter()
            .map(|s| s.args_json.len() + s.tool.len())
            .sum();
        // The profile names the "model" so that routing shows in every recorded plan.
        let model = match request.profile.as_str() {
            "" | "general" => SCRIPTED_MODEL.to_string(),
            profile => format!("{SCRIPTED_MODEL}-{profile}"),
        };
        Ok(Planned {
            model,
            model_version: "1".into(),
            prompt_template_hash: self.template_hash.clone(),
            steps: script.steps.clone(),
            confidence: script.confidence,
            input_tokens: approx_tokens(TEMPLATE)
                + approx_tokens(&request.text)
                + (context as i64 / 4),
            output_tokens: (output as i64 / 4).max(1),
            latency_ms: started.elapsed().as_millis() as i64,
        })
    }
}
