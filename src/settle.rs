//! Running one partition of an embedded data dir until a given turn settles: how `ballast
//! reverse` and `ballast label` apply their command at once when no worker is running (sled
//! holds one process per data dir). Killed mid-way, the next run recovers the partition from the
//! log and finishes the work.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::control::{CedarControlPlane, ControlError, ControlPlane, PolicyWatcher};
use crate::demo::tools::EffectsJournal;
use crate::embedded::Embedded;
use crate::exec::ExecutionPlane;
use crate::exec::scripted::{WorkloadError, WorkloadTurn, read_workload};
use crate::ids::{Partition, TurnId};
use crate::runtime::{RuntimeError, Worker, WorkerConfig};

#[derive(Debug, thiserror::Error)]
pub enum PlanesError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("effects journal: {0}")]
    Journal(std::io::Error),
}

/// The execution and control planes of an embedded data dir: the demo domain driven by the
/// dir's workload file, and the policies of `policies` (reloaded on change) or the demo's.
pub struct Planes {
    pub exec: ExecutionPlane,
    pub control: Arc<dyn ControlPlane>,
    pub watcher: Option<PolicyWatcher>,
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

/// The demo domain over `workload`, journaling side effects to `effects`.
pub fn demo_planes_from(
    workload: &[WorkloadTurn],
    effects: &Path,
    policies: Option<&Path>,
    service_latency_ms: u64,
) -> Result<Planes, PlanesError> {
    let journal = EffectsJournal::open(effects).map_err(PlanesError::Journal)?;
    let exec = crate::demo::plane(workload, journal, service_latency_ms);
    let catalog = exec.tools.catalog().clone();
    let (control, watcher) = control_plane(policies, catalog, |_| {})?;
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

/// Runs `partition` until `turn` settles (its worker reports it finished) or `timeout` passes;
/// returns whether it settled.
pub async fn run_until_settled(
    emb: &Embedded,
    planes: Planes,
    partition: Partition,
    turn: TurnId,
    timeout: Duration,
) -> Result<bool, RuntimeError> {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let mut deps = emb.deps(planes.exec, planes.control).with_outcomes(out_tx);
    // Compensations get real values back: the master key from the environment, else the data
    // dir's development key when it has one.
    let dev = emb.dir.join(crate::vault::DEV_KEY_FILE);
    if let Ok((master, _)) =
        crate::vault::Vault::resolve_master(None, dev.exists().then_some(emb.dir.as_path()))
    {
        deps = deps.with_vault(emb.vault(master, crate::guard::Redactor::builtin()));
    }
    let worker = Worker::new(deps, WorkerConfig::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { worker.run(vec![partition], stop_rx).await });
    let settled = tokio::time::timeout(timeout, async {
        while let Some(f) = out_rx.recv().await {
            if f.turn_id == turn {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    stop_tx.send_replace(true);
    task.await
        .map_err(|e| RuntimeError::Task(e.to_string()))??;
    Ok(settled)
}
