//! Scripted turns for the in-process worker tests: `n` users asking for a refund, each planned
//! as `steps` calls of one tool, and their requests.

use std::collections::BTreeMap;

use ballast::event::{PlanStep, TurnRequest};
use ballast::exec::scripted::{Script, WorkloadTurn};
use ballast::ids::TurnId;
use serde_json::json;

pub fn workload(n: usize, tool: &str, steps: usize, confidence: f64) -> Vec<WorkloadTurn> {
    (0..n)
        .map(|i| WorkloadTurn {
            turn_id: TurnId::from_parts(1_767_225_600_000 + i as u64, [i as u8; 10]),
            tenant: "acme".into(),
            user_id: format!("u{i}"),
            text: "refund my order please".into(),
            scenario: "test".into(),
            script: Script {
                steps: (0..steps)
                    .map(|k| PlanStep {
                        tool: tool.into(),
                        args_json: json!({"k": k}).to_string(),
                    })
                    .collect(),
                confidence,
                batch: Vec::new(),
            },
            attributes: BTreeMap::new(),
            session_id: None,
        })
        .collect()
}

pub fn requests(w: &[WorkloadTurn]) -> Vec<TurnRequest> {
    w.iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "test".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
            session_id: None,
        })
        .collect()
}
