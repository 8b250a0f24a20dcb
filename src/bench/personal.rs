//! `ballast bench --vault`: what the vault costs a turn. The same five-step turns, carrying
//! personal values (the user id is an e-mail address; the text holds a phone number and an
//! IBAN; the model puts the e-mail address in every call's arguments; the tools echo their
//! arguments back), run twice in the same process: without a vault (values redacted, the
//! pre-vault behaviour) and with one (tokenized before the request is written, revealed at the
//! execution plane's edge, sealed again in every model answer and tool result).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::{BenchReport, NoContext, STEPS, run_on};
use crate::demo::run::DemoError;
use crate::event::{PlanStep, TurnRequest};
use crate::exec::catalog::{Impact, ToolSpec};
use crate::exec::{ExecutionPlane, PlanRequest, Planner, Tool, ToolError, Toolbox};
use crate::ids::TurnId;
use crate::turn::{ExecFailure, Planned, ToolInvocation};

pub struct PersonalBenchReport {
    pub plain: BenchReport,
    pub vault: BenchReport,
}

impl PersonalBenchReport {
    /// Wall time the vault adds to each turn at this load (throughput terms), in µs.
    pub fn added_us_per_turn(&self) -> f64 {
        let per_turn = |r: &BenchReport| 1e6 / r.turns_per_sec().max(1e-9);
        per_turn(&self.vault) - per_turn(&self.plain)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, r) in [("plain", &self.plain), ("vault", &self.vault)] {
            for line in r.render().lines() {
                out.push_str(&format!("{name}.{line}\n"));
            }
        }
        out.push_str(&format!(
            "tokenize_us_per_request={:.1}\nvault_added_us_per_turn={:.1}\nvault_ratio={:.3}\n",
            self.vault.tokenize_us_per_request.unwrap_or(0.0),
            self.added_us_per_turn(),
            self.vault.turns_per_sec() / self.plain.turns_per_sec().max(1e-9),
        ));
        out
    }
}

pub async fn run(
    turns: usize,
    partitions: u32,
    in_flight: usize,
) -> Result<PersonalBenchReport, DemoError> {
    // The baseline first, then the vault: a warm page cache favours the second run, if anything.
    let plain = run_on(requests(turns), plane(), partitions, in_flight, None).await?;
    let master = crate::vault::crypto::random_key();
    let vault = run_on(
        requests(turns),
        plane(),
        partitions,
        in_flight,
        Some(master),
    )
    .await?;
    Ok(PersonalBenchReport { plain, vault })
}

/// Requests from 100 users, each naming an e-mail address, a phone number and an IBAN.
fn requests(turns: usize) -> Vec<TurnRequest> {
    (0..turns)
        .map(|i| {
            let u = i % 100;
            TurnRequest {
                turn_id: TurnId::from_parts(
                    1_767_225_600_000 + i as u64,
                    (i as u128).to_be_bytes()[6..].try_into().unwrap_or([0; 10]),
                ),
                tenant: "bench".into(),
                user_id: format!("user{u}@example.com"),
                text: format!(
                    "send the statement to user{u}@example.com, call +44 20 7946 {:04} \
                     if needed, refunds go to DE89 3704 0044 0532 0130 00",
                    u
                ),
                channel: "bench".into(),
                attributes: BTreeMap::from([("email".into(), format!("user{u}@example.com"))]),
                submitted_at_ms: 0,
                session_id: None,
            }
        })
        .collect()
}

fn plane() -> ExecutionPlane {
    ExecutionPlane {
        retriever: Arc::new(NoContext),
        planner: Arc::new(EchoingPlanner),
        tools: Toolbox::new(
            (0..STEPS)
                .map(|i| {
                    Arc::new(EchoTool(ToolSpec {
                        name: format!("step{i}"),
                        description: "echoes its arguments".into(),
                        args_schema: json!({"type": "object"}),
                        result_schema: json!({"type": "object"}),
                        impact: Impact::Low,
                        idempotent: true,
                        timeout_ms: 1_000,
                        ..ToolSpec::default()
                    })) as Arc<dyn Tool>
                })
                .collect(),
        ),
    }
}

/// Five calls, each addressed to the e-mail address of the request (whatever the model is
/// shown: the cleartext with a vault, `[REDACTED:email]` without), then an answer naming it.
struct EchoingPlanner;

#[async_trait]
impl Planner for EchoingPlanner {
    async fn plan(&self, r: &PlanRequest) -> Result<Planned, ExecFailure> {
        let to = r
            .conversation
            .request
            .split([' ', ','])
            .find(|w| w.contains('@') || w.starts_with("[REDACTED"))
            .unwrap_or("nobody")
            .to_string();
        let first = r.conversation.steps.is_empty();
        Ok(Planned {
            model_version: "1".into(),
            prompt_template_hash: "0".into(),
            steps: if first {
                (0..STEPS)
                    .map(|i| PlanStep {
                        tool: format!("step{i}"),
                        args_json: json!({"n": i, "to": to}).to_string(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            confidence: 0.9,
            input_tokens: 100,
            output_tokens: 20,
            content: (!first).then(|| format!("sent to {to}")),
            finish_reason: Some(if first { "tool_calls" } else { "stop" }.into()),
            ..Planned::empty("bench")
        })
    }
}

struct EchoTool(ToolSpec);

#[async_trait]
impl Tool for EchoTool {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }
    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        let args: serde_json::Value = serde_json::from_str(&call.args_json).unwrap_or_default();
        Ok(json!({"ok": true, "echo": args}))
    }
}
