//! Recovering a partition actor: the latest snapshot (header, in-flight turns, sessions), then
//! the tail of the turn log after it, folded into the same state; the request log is read again
//! from `inbox_next`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::PartitionActor;
use crate::control::budget::Ledger;
use crate::event::Payload;
use crate::guard::Breakers;
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::runtime::executor::Msg;
use crate::runtime::snapshot::{self, Dirty, remember_session};
use crate::runtime::{Deps, RuntimeError, WorkerConfig};
use crate::turn::TurnState;

impl PartitionActor {
    pub(super) async fn recover(
        deps: Arc<Deps>,
        partition: Partition,
        cfg: WorkerConfig,
        tx: mpsc::UnboundedSender<Msg>,
    ) -> Result<Self, RuntimeError> {
        // Fence any previous owner first (Kafka: its open transaction is aborted), so the log
        // read below is stable and nobody else can still append to it.
        let journal = deps.journals.open(partition).await?;
        // A shared vault's replica holds every record the previous owner committed before the
        // turns it wrote them for are resumed here.
        if let Some(v) = &deps.vault {
            v.catch_up().await?;
        }
        let end = deps.events.end(partition).await?.0;
        let snapshot = match snapshot::load(deps.store.as_ref(), partition)? {
            None => None,
            Some(loaded) => match loaded {
                Ok(s) if s.header.events_end <= end => Some(s),
                Ok(s) => {
                    tracing::warn!(%partition, snapshot_end = s.header.events_end, log_end = end,
                        "snapshot is ahead of the log; rebuilding from offset 0");
                    None
                }
                Err(e) => {
                    tracing::warn!(%partition, error = %e, "snapshot not usable; rebuilding from offset 0");
                    None
                }
            },
        };
        let control_config = deps.control.config();
        let budgets = control_config
            .budgets
            .for_partitions(deps.events.partitions());
        let breaker_config = deps.guards.config.breaker.clone();
        let mut dirty = if snapshot.is_some() {
            Dirty::default()
        } else {
            Dirty::everything()
        };
        let mut parked: HashMap<TurnId, snapshot::ParkedTurn> = HashMap::new();
        let (mut turns, mut from, mut inbox_next, mut ledger, mut breakers, mut sessions) =
            match snapshot {
                Some(s) => (
                    {
                        parked.extend(s.parked.into_iter().map(|p| (p.turn, p)));
                        s.turns
                    },
                    s.header.events_end,
                    s.header.inbox_next,
                    s.header.ledger.with_window(budgets.window_ms),
                    s.header.breakers.with_config(breaker_config),
                    s.sessions,
                ),
                None => (
                    HashMap::new(),
                    0,
                    0,
                    Ledger::new(budgets.window_ms),
                    Breakers::new(breaker_config),
                    HashMap::new(),
                ),
            };
        // A waiting turn a snapshot of an earlier build stored as one to resume: the next
        // snapshot files it as waiting (then it parks).
        if !dirty.full {
            dirty.turns.extend(
                turns
                    .values()
                    .filter(|t| t.parked_deadline().is_some())
                    .map(|t| t.turn_id),
            );
        }
        let start = from;
        let mut known = Vec::new();
        let mut scan = Scan::new(deps.events.as_ref(), partition, Offset(from));
        while scan.position().0 < end {
            let Some(batch) = scan.next_chunk(4096).await? else {
                break;
            };
            from = scan.position().0;
            for stored in batch {
                let event = match deps.codecs.events.decode(&stored.value) {
                    Ok(e) => e,
                    Err(e) => {
                        deps.stats.corrupt_events.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%partition, offset = %stored.offset, error = %e, "undecodable event skipped");
                        continue;
                    }
                };
                ledger.apply(&event);
                breakers.apply(&event);
                dirty.turns.insert(event.turn_id);
                // A turn parked in the snapshot that moved after it: read back, then folded.
                if parked.remove(&event.turn_id).is_some() {
                    let state =
                        super::parking::read_back(deps.store.as_ref(), partition, event.turn_id)?;
                    turns.insert(event.turn_id, state);
                }
                let state = match turns.entry(event.turn_id) {
                    Entry::Occupied(o) => o.into_mut(),
                    // A finished turn reopened for its reversal: reload it up to this event.
                    Entry::Vacant(v) if matches!(&event.payload, Payload::ReversalRequested(_)) => {
                        let Payload::ReversalRequested(r) = &event.payload else {
                            continue;
                        };
                        let from = r.turn_first_offset.max(0) as u64;
                        match crate::runtime::reload::load_turn(
                            &deps,
                            partition,
                            event.turn_id,
                            from,
                            stored.offset.0,
                        )
                        .await?
                        {
                            Some(state) => v.insert(state),
                            None => continue,
                        }
                    }
                    // Later events of a turn that finished before the snapshot: nothing to resume.
                    Entry::Vacant(_) if event.seq != 0 => continue,
                    Entry::Vacant(v) => v.insert(TurnState::new(event.turn_id)),
                };
                if let Err(e) = state.apply(&event) {
                    tracing::error!(%partition, offset = %stored.offset, error = %e, "event does not apply");
                }
                if let Payload::TurnRequested(r) = &event.payload {
                    known.push(event.turn_id);
                    if let Some(o) = r.source_offset {
                        inbox_next = inbox_next.max(o as u64 + 1);
                    }
                }
                if state.is_terminal() {
                    if matches!(event.payload, Payload::TurnCompleted(_))
                        && let Some(key) = remember_session(&mut sessions, state, event.at_ms)
                    {
                        dirty.sessions.insert(key);
                    }
                    turns.remove(&event.turn_id);
                }
            }
        }
        deps.store.mark_known(&known)?;
        let guards = Arc::clone(&deps.guards);

        deps.stats
            .replayed_events
            .fetch_add(from - start, Ordering::Relaxed);
        deps.stats
            .resumed_turns
            .fetch_add((turns.len() + parked.len()) as u64, Ordering::Relaxed);
        tracing::info!(pid = std::process::id(), %partition, snapshot_end = start, log_end = from, in_flight = turns.len(), parked = parked.len(), "partition recovered");
        let mut actor = PartitionActor {
            partition,
            deps,
            cfg,
            turns,
            parked: HashMap::new(),
            accepted_at: HashMap::new(),
            events_end: from,
            inbox_next,
            read_end: inbox_next,
            backlog: std::collections::VecDeque::new(),
            since_snapshot: from - start,
            last_snapshot: Instant::now(),
            dirty,
            in_flight: 0,
            busy: HashMap::new(),
            tx,
            timers: std::collections::BTreeMap::new(),
            timer_seq: 0,
            effects: JoinSet::new(),
            journal,
            held: None,
            dead_letters: Vec::new(),
            forwards: Vec::new(),
            vault_records: Vec::new(),
            ledger,
            budgets,
            breakers,
            guards,
            control_config,
            reopen: Vec::new(),
            sessions,
            session_running: HashMap::new(),
            session_waiting: HashMap::new(),
        };
        // Parked turns are not resumed: their deadlines are armed, which is all a resume does.
        for p in parked.into_values() {
            actor.park(p);
        }
        Ok(actor)
    }
}
