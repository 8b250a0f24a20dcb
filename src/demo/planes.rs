//! The demo domain's planes: the scripted planner over a data dir's workload file, the demo
//! tools, and the demo policies (or a policy directory). Only `ballast demo`, `ballast drill`
//! and the commands that serve or settle a demo data dir use these; a configured deployment's
//! planes come from `config::build`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::control::{CedarControlPlane, ControlError, ControlPlane, PolicyWatcher};
use crate::demo::tools::EffectsJournal;
use crate::exec::scripted::{WorkloadError, WorkloadTurn, read_workload};
use crate::settle::Planes;

#[derive(Debug, thiserror::Error)]
pub enum PlanesError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("effects journal: {0}")]
    Journal(std::io::Error),
}

pub fn demo_planes(
    data_dir: &Path,
    policies: Option<&Path>,
    service_latency_ms: u64,
) -> Result<Planes, PlanesError> {
    let path = data_dir.join("workload.jsonl");
    let workload = if path.exists() {
        read_workload(&path)?
    } else {
        Vec::new()
    };
    demo_planes_from(
        &workload,
        &data_dir.join("effects.jsonl"),
        policies,
        service_latency_ms,
    )
}

/// How long a person has to answer a served demo's approvals and handoffs: `ballast demo`
/// lets them expire within seconds so a run finishes, but someone opening the dashboard of a
/// served demo needs minutes.
pub const SERVED_APPROVAL_TTL_MS: i64 = 15 * 60 * 1000;
pub const SERVED_HANDOFF_TTL_MS: i64 = 30 * 60 * 1000;

/// The demo planes `ballast serve` runs a demo data dir with: the built-in policies with
/// deadlines a person can meet (a policy directory given explicitly is used as written).
pub fn served_demo_planes(
    data_dir: &Path,
    policies: Option<&Path>,
    service_latency_ms: u64,
) -> Result<Planes, PlanesError> {
    let path = data_dir.join("workload.jsonl");
    let workload = if path.exists() {
        read_workload(&path)?
    } else {
        Vec::new()
    };
    planes_with(
        &workload,
        &data_dir.join("effects.jsonl"),
        policies,
        service_latency_ms,
        |c| {
            c.approval_ttl_ms = SERVED_APPROVAL_TTL_MS;
            c.guards.handoff_ttl_ms = SERVED_HANDOFF_TTL_MS;
        },
    )
}

/// The demo domain over `workload`, journaling side effects to `effects`.
pub fn demo_planes_from(
    workload: &[WorkloadTurn],
    effects: &Path,
    policies: Option<&Path>,
    service_latency_ms: u64,
) -> Result<Planes, PlanesError> {
    planes_with(workload, effects, policies, service_latency_ms, |_| {})
}

fn planes_with(
    workload: &[WorkloadTurn],
    effects: &Path,
    policies: Option<&Path>,
    service_latency_ms: u64,
    adjust_demo: impl FnOnce(&mut crate::control::ControlConfig),
) -> Result<Planes, PlanesError> {
    let journal = EffectsJournal::open(effects).map_err(PlanesError::Journal)?;
    let exec = crate::demo::plane(workload, journal, service_latency_ms);
    let catalog = exec.tools.catalog().clone();
    let (control, watcher) = control_plane(policies, catalog, adjust_demo)?;
    Ok(Planes {
        exec,
        control,
        watcher,
    })
}

/// The policies of `policies` (reloaded on change), or the built-in demo policies with their
/// configuration adjusted by `adjust_demo`.
pub fn control_plane(
    policies: Option<&Path>,
    catalog: crate::exec::catalog::Catalog,
    adjust_demo: impl FnOnce(&mut crate::control::ControlConfig),
) -> Result<(Arc<dyn ControlPlane>, Option<PolicyWatcher>), ControlError> {
    Ok(match policies {
        Some(dir) => {
            let plane = Arc::new(CedarControlPlane::load(dir, catalog)?);
            let watcher = PolicyWatcher::spawn(Arc::clone(&plane), Duration::from_secs(1));
            (plane, Some(watcher))
        }
        None => (
            Arc::new(crate::demo::operator::demo_control_with(
                catalog,
                adjust_demo,
            )?),
            None,
        ),
    })
}
