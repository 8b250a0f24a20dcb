//! A served demo says which of its turns were staged to go wrong. The demo workload stages
//! failures on purpose — an order that does not exist, a refund over the limit, a plan that
//! loops, a model that hallucinates a refund — so that every guard, policy and rung of the
//! ladder has something to show. Counted as service failures they would paint every SLO red.
//! Once each such turn ends, this labels it `deliberate_incident` (a recorded `OutcomeLabeled`,
//! operator `demo`, its scenario as the note): the dashboard shows the label, and the SLOs leave
//! the turn out (`projection::slo::DELIBERATE_INCIDENT`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::embedded::Embedded;
use crate::exec::scripted::WorkloadTurn;
use crate::ids::TurnId;
use crate::projection::outcomes::OutcomeView;
use crate::projection::slo::DELIBERATE_INCIDENT;
use crate::projection::turn_index::TurnIndex;

/// The staged turns of `workload`, by turn id, with their scenario.
pub fn staged(workload: &[WorkloadTurn]) -> BTreeMap<TurnId, String> {
    workload
        .iter()
        .filter(|t| super::workload::STAGED_INCIDENTS.contains(&t.scenario.as_str()))
        .map(|t| (t.turn_id, t.scenario.clone()))
        .collect()
}

/// Labels each staged turn once it has ended, until every one is labelled or `stop` turns true.
pub async fn run(emb: Embedded, staged: BTreeMap<TurnId, String>, mut stop: watch::Receiver<bool>) {
    let (index, outcomes) = match (TurnIndex::open(&emb.store), OutcomeView::open(&emb.store)) {
        (Ok(i), Ok(o)) => (i, o),
        _ => {
            tracing::warn!("demo: the staged incidents cannot be labelled (no projections)");
            return;
        }
    };
    // Sent by this process: not sent again while its command is on its way.
    let mut sent: HashSet<TurnId> = HashSet::new();
    loop {
        let mut open = 0;
        for (turn, scenario) in &staged {
            let Ok(Some(outcome)) = outcomes.get(*turn) else {
                open += 1;
                continue;
            };
            if outcome.labels.iter().any(|l| l == DELIBERATE_INCIDENT) || sent.contains(turn) {
                continue;
            }
            open += 1;
            let note = format!("staged by the demo workload: {scenario}");
            match emb
                .desk(&index)
                .label_turn(
                    *turn,
                    DELIBERATE_INCIDENT,
                    Some(note),
                    ("demo", SystemClock.now_ms()),
                )
                .await
            {
                Ok(_) => {
                    sent.insert(*turn);
                }
                Err(e) => tracing::debug!(%turn, error = %e, "demo: not labelled yet"),
            }
        }
        if open == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}
