//! The projection follower of `serve`, embedded or a replica on Kafka: the projections catch up
//! as soon as new events are readable (`EventLog::wait_for_records`: sled's durable end in
//! memory, a Kafka consumer's fetch), so API reads find them current; the SLO and lag gauges
//! are refreshed every `refresh`, and `/readyz` says whether this process's reads are current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::event::codec::Codecs;
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, SledStore};
use crate::projection::{ProjectionError, Projections, outcomes::OutcomeView, slo};

/// The header `/readyz` reports the projections' lag in (events not folded yet).
pub const LAG_HEADER: &str = "x-ballast-projection-lag";

/// What `/readyz` answers from: caught up once, and (a replica) not further behind the log than
/// `max_lag` events.
#[derive(Clone)]
pub struct Readiness {
    caught_up: Arc<AtomicBool>,
    lag: Arc<AtomicU64>,
    max_lag: u64,
}

impl Readiness {
    pub fn new(caught_up: Arc<AtomicBool>, max_lag: u64) -> Self {
        Readiness {
            caught_up,
            lag: Arc::new(AtomicU64::new(0)),
            max_lag,
        }
    }

    /// The projections' lag in events, as last measured.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Acquire)
    }

    /// `Ok(())` when reads are current enough; else why not.
    pub fn check(&self) -> Result<(), String> {
        if !self.caught_up.load(Ordering::Acquire) {
            return Err("catching up".into());
        }
        let lag = self.lag.load(Ordering::Acquire);
        if lag > self.max_lag {
            return Err(format!(
                "the projections are {lag} events behind the log (readiness bound {})",
                self.max_lag
            ));
        }
        Ok(())
    }
}

/// Follows `events` until `stop` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    projections: &Projections,
    events: &dyn EventLog,
    codecs: &Codecs,
    store: &SledStore,
    slo_config: &slo::SloConfig,
    ready: Readiness,
    refresh: Duration,
    vault: Option<&crate::kafka::vault::KafkaVault>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let outcomes = OutcomeView::open(store)?;
    let mut gauges_due = std::time::Instant::now();
    // Events applied since the gauges were last set, by the follower or by API reads.
    let (mut applied, mut last) = (0, Vec::new());
    loop {
        // The lag is measured before catching up, when it is largest: measured after, it
        // would say ~0 however far behind the follower runs under load.
        let gauges = std::time::Instant::now() >= gauges_due;
        let lag = if gauges {
            Some(projections.behind(events).await?)
        } else {
            None
        };
        // A replica's vault first: a submission's keys are on the vault topic before its request
        // is written, so once the replica has read the topic, every turn it folds next has its
        // keys here, and views say `[REDACTED]`, not `[FORGOTTEN]`, for a user another replica
        // just tokenized.
        if let Some(v) = vault
            && let Err(e) = v.sync().await
        {
            tracing::warn!(error = %e, "vault replica: catching up failed; retrying");
        }
        projections.fresh(events, &codecs.events).await?;
        let now_at = projections.changes().borrow().clone();
        applied += now_at
            .iter()
            .zip(last.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| a.saturating_sub(*b))
            .sum::<u64>();
        last = now_at;
        if let Some(lag) = lag {
            ready.lag.store(lag, Ordering::Release);
            crate::telemetry::record::projections(std::mem::take(&mut applied), lag);
            let now = SystemClock.now_ms();
            let recent = outcomes.since(now.saturating_sub(slo_config.period_ms))?;
            crate::telemetry::record::slo(&slo::compute(&recent, now, slo_config));
            ready.caught_up.store(true, Ordering::Release);
            gauges_due = std::time::Instant::now() + refresh;
        }
        if *stop.borrow() {
            break;
        }
        // Woken as soon as any partition has events beyond what was applied; the gauges'
        // period bounds the wait.
        let mut arrivals: FuturesUnordered<_> = (0..events.partitions())
            .map(|p| {
                let at = last.get(p as usize).copied().unwrap_or(0);
                events.wait_for_records(Partition(p), Offset(at))
            })
            .collect();
        tokio::select! {
            arrived = arrivals.next() => {
                if let Some(Err(e)) = arrived {
                    tracing::warn!(error = %e, "projection follower cannot wait for events; polling");
                    tokio::time::sleep(refresh).await;
                }
            }
            _ = tokio::time::sleep(refresh) => {}
            _ = stop.changed() => {}
        }
    }
    ready.caught_up.store(false, Ordering::Release);
    Ok(())
}
