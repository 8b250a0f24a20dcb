//! The demo domain (customer support) and the `ballast demo` workload.

pub mod annotate;
pub mod kb;
pub mod operator;
pub mod planes;
pub mod run;
pub mod tools;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use crate::exec::scripted::{ScriptedPlanner, WorkloadTurn};
use crate::exec::{ExecutionPlane, Toolbox};

/// The demo's execution plane: the knowledge-base retriever, the scripted planner for
/// `workload` (it writes its answers from the tool results), the demo tools journaling into `journal`.
/// `latency_ms` bounds each simulated service call.
pub fn plane(
    workload: &[WorkloadTurn],
    journal: Arc<tools::EffectsJournal>,
    latency_ms: u64,
) -> ExecutionPlane {
    ExecutionPlane {
        retriever: Arc::new(kb::KbRetriever::new(Duration::from_millis(
            latency_ms.min(1),
        ))),
        planner: ScriptedPlanner::new(workload, Duration::from_millis(latency_ms / 2)),
        tools: Toolbox::new(tools::demo_tools(journal, latency_ms)),
    }
}
