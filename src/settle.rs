//! Running one partition of an embedded data dir until a given turn settles: how `ballast
//! reverse` and `ballast label` apply their command at once when no worker is running (sled
//! holds one process per data dir). Killed mid-way, the next run recovers the partition from the
//! log and finishes the work.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::control::{ControlPlane, PolicyWatcher};
use crate::embedded::Embedded;
use crate::exec::ExecutionPlane;
use crate::ids::{Partition, TurnId};
use crate::runtime::{RuntimeError, Worker, WorkerConfig};

/// The execution and control planes a worker runs (`config::build` makes them from a
/// configuration, `demo::planes` for the demo domain).
pub struct Planes {
    pub exec: ExecutionPlane,
    pub control: Arc<dyn ControlPlane>,
    pub watcher: Option<PolicyWatcher>,
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
    // Compensations get real values back: the master key from the environment, else a
    // development key when one exists and opens this data dir's tenant keys.
    let dev = crate::vault::Vault::existing_dev_key(&emb.dir);
    if let Ok((master, _)) =
        crate::vault::Vault::resolve_master(None, dev.is_some().then_some(emb.dir.as_path()))
    {
        let vault = emb.vault(master, crate::guard::Redactor::builtin());
        if vault.opens_all() {
            deps = deps.with_vault(vault);
        }
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
