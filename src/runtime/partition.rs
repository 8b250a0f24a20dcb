//! The partition actor: the single writer of one partition of the turn log.
//!
//! It rebuilds its in-flight turns (snapshot + log tail), resumes them, then loops: take a batch
//! of inputs (effect results, timers, new requests), run `step` for each, append all decided
//! events in one durable batch, and only then dispatch the decided effects. Batching many turns
//! into one append is what lets group commit amortise the fsync.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::executor::{self, Completion, Msg};
use super::journal::{Held, Journal, Round};
use super::snapshot::{Dirty, SessionHistory, remember_session};
use super::state_store::DeadLetter;
use super::{Deps, RuntimeError, TurnFinished, WorkerConfig};
use crate::control::budget::{BudgetLimits, Ledger};
use crate::event::{Event, Payload};
use crate::guard::Breakers;
use crate::ids::{Offset, Partition, TurnId};
use crate::log::{Record, Stored};
use crate::turn::{Deadline, DecideCtx, Effect, Input, TurnState, step};

pub(crate) struct PartitionActor {
    partition: Partition,
    deps: Arc<Deps>,
    cfg: WorkerConfig,
    turns: HashMap<TurnId, TurnState>,
    /// Turns waiting only for a person, kept in the snapshot store rather than here (see
    /// `parking`): the session each holds, if any.
    parked: HashMap<TurnId, Option<Box<str>>>,
    accepted_at: HashMap<TurnId, Instant>,
    events_end: u64,
    /// Every request before this offset has been turned into events or a dead letter (and
    /// every command before it applied): where a restart reads the request log from.
    inbox_next: u64,
    /// Just past the last request-log record read (≥ `inbox_next`; more while a backlog waits).
    read_end: u64,
    /// Records read ahead while no slot was free, waiting for admission in log order.
    backlog: std::collections::VecDeque<Stored>,
    since_snapshot: u64,
    /// When the last snapshot was saved (with `since_snapshot`, what triggers the next).
    last_snapshot: Instant,
    /// Turns and sessions changed since the last snapshot: what the next one writes.
    dirty: Dirty,
    in_flight: usize,
    /// Turns with effects running, and how many: what admission counts.
    busy: HashMap<TurnId, u32>,
    tx: mpsc::UnboundedSender<Msg>,
    /// This partition's timers (deadlines, retry backoff) by due time on the deps' clock, one
    /// wake-up for all of them: a partition holding 100,000 turns waiting for people holds
    /// 100,000 entries here rather than 100,000 sleeping tasks, and a test that moves a manual
    /// clock fires them without sleeping.
    timers: std::collections::BTreeMap<(i64, u64), (TurnId, Wake)>,
    timer_seq: u64,
    /// Effects in flight. Owned here so that when this actor ends — drained, or failed and about
    /// to be restarted from the log — nothing it started keeps running beside its successor.
    effects: JoinSet<()>,
    journal: Box<dyn Journal>,
    /// Rounds in the journal's open transaction (`commit_interval_ms` > 0) and what they
    /// decided, released when it commits.
    held: Option<HeldRounds>,
    dead_letters: Vec<DeadLetter>,
    /// Misrouted requests to pass on to their routing partition with the next round.
    forwards: Vec<(Partition, Record)>,
    /// Vault records the tokens of the next round's events need (committed with them).
    vault_records: Vec<crate::vault::VaultRecord>,
    /// The user and tenant budget accounts of this partition (rebuilt from the log).
    ledger: Ledger,
    budgets: BudgetLimits,
    breakers: Breakers,
    /// The control configuration the budgets and guards were built from; a reload of the
    /// policy directory swaps it, and the next round rebuilds them.
    control_config: Arc<crate::control::ControlConfig>,
    guards: Arc<crate::guard::Guards>,
    /// Commands (reverse, label) for finished turns, waiting for their turn to be reloaded.
    reopen: Vec<crate::event::TurnCommand>,
    /// Each session's finished turns, for the turns that continue it.
    sessions: HashMap<String, SessionHistory>,
    /// The turn each session is running now, and those waiting their turn (arrival order):
    /// turns of one session run one after the other.
    session_running: HashMap<String, TurnId>,
    session_waiting: HashMap<String, std::collections::VecDeque<TurnId>>,
}

/// What a timer wakes a turn for. Smaller than an `Input` (a timer map holding a million
/// parked turns' deadlines pays for its values a million times).
pub(super) enum Wake {
    Retry { call_id: String, attempt: i32 },
    Deadline(Deadline),
}

impl From<Wake> for Input {
    fn from(w: Wake) -> Input {
        match w {
            Wake::Retry { call_id, attempt } => Input::RetryDue { call_id, attempt },
            Wake::Deadline(d) => d.into(),
        }
    }
}

pub(crate) async fn run_partition(
    deps: Arc<Deps>,
    partition: Partition,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut actor = PartitionActor::recover(deps, partition, cfg.clone(), tx).await?;
    actor.rebuild_sessions();
    let mut draining = *shutdown.borrow();
    let resumes: Vec<_> = actor.turns.keys().map(|t| (*t, Input::Resume)).collect();
    actor.process(resumes, draining).await?;
    let mut inbox = actor
        .deps
        .requests
        .subscribe(partition, Offset(actor.inbox_next))
        .await?;
    tracing::info!(%partition, inbox_next = actor.inbox_next, in_flight = actor.turns.len(), "consuming requests");
    actor
        .deps
        .stats
        .partitions_ready
        .fetch_add(1, Ordering::Relaxed);
    let commit_interval = Duration::from_millis(cfg.commit_interval_ms);
    let interval = Duration::from_millis(cfg.snapshot_interval_ms.max(1));
    let mut snapshot_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The wake-up for the earliest timer, re-armed when that changes.
    let mut alarm: Option<(i64, crate::clock::Sleep)> = None;
    loop {
        while actor.effects.try_join_next().is_some() {}
        let due = actor.timers.keys().next().map(|(at, _)| *at);
        if alarm.as_ref().map(|(at, _)| *at) != due {
            alarm = due.map(|at| (at, actor.deps.clock.sleep_until(at)));
        }
        if actor
            .held
            .as_ref()
            .is_some_and(|h| h.since.elapsed() >= commit_interval || h.events >= HELD_EVENTS_MAX)
        {
            actor.flush().await?;
        }
        if draining && actor.in_flight == 0 && actor.held.is_none() {
            break;
        }
        // Admission counts turns with work in flight only: a turn waiting for a person, a
        // timer or a retry holds no slot, so unanswered approvals cannot freeze a partition.
        let room = cfg
            .max_turns_per_partition
            .saturating_sub(actor.busy.len())
            .min(cfg.batch_max);
        let mut inputs = Vec::new();
        if room > 0 && !actor.backlog.is_empty() && !draining {
            // Slots freed up: admit what was read ahead, in log order, before reading more.
            let batch = actor.take_backlog(room);
            let deps = Arc::clone(&actor.deps);
            PartitionActor::settle_tenants(&deps, cfg.max_request_bytes, &batch).await?;
            actor.intake(batch, &mut inputs)?;
            actor.reopen_turns(&mut inputs).await?;
        } else {
            // With a free slot, read what can be admitted now; without one, read ahead (for
            // the commands among what waits) as far as the backlog's bound.
            let direct = room > 0;
            let budget = if direct {
                room
            } else {
                cfg.batch_max.saturating_sub(actor.backlog.len())
            };
            tokio::select! {
                biased;
                changed = shutdown.changed(), if !draining => {
                    if changed.is_err() || *shutdown.borrow() {
                        draining = true;
                    }
                }
                Some(msg) = rx.recv() => actor.accept(msg, &mut inputs),
                _ = async {
                    match alarm.as_mut() {
                        Some((_, sleep)) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => {
                    alarm = None;
                    actor.fire_timers(&mut inputs);
                }
                // A quiet partition still snapshots what the last burst left, so a restart
                // reads at most one interval's tail.
                _ = snapshot_tick.tick() => {
                    if actor.since_snapshot > 0 {
                        actor.snapshot().await?;
                    }
                }
                batch = inbox.next_batch(budget), if budget > 0 && !draining => {
                    let batch = batch?;
                    if direct {
                        let deps = Arc::clone(&actor.deps);
                        PartitionActor::settle_tenants(&deps, cfg.max_request_bytes, &batch).await?;
                        actor.intake(batch, &mut inputs)?;
                    } else {
                        actor.read_ahead(batch, &mut inputs);
                    }
                    actor.reopen_turns(&mut inputs).await?;
                }
                // Nothing else ready this instant: commit what the open transaction holds
                // (a group commit: rounds decided while the last commit ran share the next).
                _ = std::future::ready(()), if actor.held.is_some() => actor.flush().await?,
            }
        }
        while inputs.len() < cfg.batch_max {
            match rx.try_recv() {
                Ok(msg) => actor.accept(msg, &mut inputs),
                Err(_) => break,
            }
        }
        actor.process(inputs, draining).await?;
    }
    tracing::info!(%partition, inbox_next = actor.inbox_next, in_flight = actor.turns.len(), events_end = actor.events_end, "drained");
    actor.snapshot().await
}

mod durable;
mod intake;
mod parking;
mod recover;
mod sessions;

use durable::{HELD_EVENTS_MAX, HeldRounds};

impl PartitionActor {
    /// Reloads the finished turns that commands in `reopen` are for, and queues the commands.
    async fn reopen_turns(
        &mut self,
        inputs: &mut Vec<(TurnId, Input)>,
    ) -> Result<(), RuntimeError> {
        for command in std::mem::take(&mut self.reopen) {
            let turn = command.turn_id;
            if !self.holds(&turn) {
                let from = command.turn_offset.unwrap_or(0).max(0) as u64;
                match super::reload::load_turn(
                    &self.deps,
                    self.partition,
                    turn,
                    from,
                    self.events_end,
                )
                .await?
                {
                    Some(state) => {
                        self.turns.insert(turn, state);
                    }
                    None => {
                        tracing::warn!(partition = %self.partition, %turn, "command for a turn this partition does not hold; dropped");
                        continue;
                    }
                }
            }
            inputs.push((turn, Input::Command(command)));
        }
        Ok(())
    }

    fn accept(&mut self, msg: Msg, inputs: &mut Vec<(TurnId, Input)>) {
        match msg {
            Msg::Effect(turn, input, records) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.vault_records.extend(records);
                if let Entry::Occupied(mut o) = self.busy.entry(turn) {
                    *o.get_mut() -= 1;
                    if *o.get() == 0 {
                        o.remove();
                    }
                }
                inputs.push((turn, input));
            }
            Msg::SessionReady(turn, history) => inputs.push((turn, Input::SessionReady(history))),
        }
    }

    async fn process(
        &mut self,
        inputs: Vec<(TurnId, Input)>,
        draining: bool,
    ) -> Result<(), RuntimeError> {
        if inputs.is_empty()
            && self.dead_letters.is_empty()
            && self.forwards.is_empty()
            && self.vault_records.is_empty()
        {
            return Ok(());
        }
        self.unpark_for(&inputs)?;
        let deps = Arc::clone(&self.deps);
        let (events, effects) = self.decide(inputs, draining);
        let mut round = Round {
            dead_letters: std::mem::take(&mut self.dead_letters),
            forwards: std::mem::take(&mut self.forwards),
            vault: std::mem::take(&mut self.vault_records),
            ..Round::default()
        };
        let mut started = Vec::new();
        let mut approvals = 0u64;
        for e in &events {
            if matches!(e.payload, Payload::ApprovalRequested(_)) {
                approvals += 1;
            }
            round.events.push(Record {
                key: e.turn_id.key(),
                value: deps.codecs.events.encode(e)?,
            });
            if let Payload::TurnRequested(r) = &e.payload {
                started.push(e.turn_id);
                if let Some(o) = r.source_offset {
                    self.inbox_next = self.inbox_next.max(o as u64 + 1);
                }
            }
            super::records::publish(
                &mut round,
                e,
                self.turns.get(&e.turn_id),
                &deps.codecs,
                self.journal.publishes_outcomes(),
            )?;
        }
        round.inbox_next = Offset(self.inbox_next);
        if !round.is_empty() {
            let n = round.events.len() as u64;
            let dead = round.dead_letters.len() as u64;
            let started_n = started.len() as u64;
            let vault = if round.vault.is_empty() {
                Vec::new()
            } else {
                round.vault.clone()
            };
            let held = if self.cfg.commit_interval_ms > 0 {
                self.journal.hold(self.partition, round).await?
            } else {
                Held::Durable(self.journal.commit(self.partition, round).await?)
            };
            match held {
                Held::Durable(end) => {
                    if let Some(end) = end {
                        self.events_end = end.0;
                    }
                    if let Some(v) = &deps.vault
                        && !vault.is_empty()
                    {
                        v.committed(&vault)?;
                    }
                    deps.store.mark_known(&started)?;
                }
                Held::Pending => {
                    let held = self.held.get_or_insert_with(|| HeldRounds {
                        since: Instant::now(),
                        events: 0,
                        effects: Vec::new(),
                        started: Vec::new(),
                        vault: Vec::new(),
                    });
                    held.events += n as usize;
                    held.started.append(&mut started);
                    held.vault.extend(vault);
                }
            }
            let turns = &self.turns;
            crate::telemetry::record::round_committed(
                &events,
                dead,
                |e| turns.get(&e.turn_id),
                &deps.control.config().slo,
            );
            self.since_snapshot += n;
            deps.stats.events_appended.fetch_add(n, Ordering::Relaxed);
            deps.stats.appends.fetch_add(1, Ordering::Relaxed);
            deps.stats.dead_letters.fetch_add(dead, Ordering::Relaxed);
            deps.stats
                .approvals_requested
                .fetch_add(approvals, Ordering::Relaxed);
            deps.stats
                .turns_started
                .fetch_add(started_n, Ordering::Relaxed);
        }
        // Effects run only once the events deciding them are durable: behind any rounds still
        // held, in order.
        if let Some(held) = self.held.as_mut() {
            held.effects.extend(effects);
        } else {
            for effect in effects {
                self.dispatch(effect);
            }
        }
        if self.since_snapshot >= self.cfg.snapshot_every
            || (self.since_snapshot > 0
                && self.last_snapshot.elapsed().as_millis()
                    >= u128::from(self.cfg.snapshot_interval_ms))
        {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Runs `step` for each input in order: the decided events, and the effects to dispatch
    /// once they are durable.
    fn decide(
        &mut self,
        inputs: Vec<(TurnId, Input)>,
        draining: bool,
    ) -> (Vec<Event>, Vec<Effect>) {
        let deps = Arc::clone(&self.deps);
        self.follow_control_config();
        let now_ms = deps.clock.now_ms();
        let mut events: Vec<Event> = Vec::new();
        let mut effects: Vec<Effect> = Vec::new();
        for (turn, input) in inputs {
            // Results for turns that already finished (or were never accepted) are dropped.
            let Some(state) = self.turns.get_mut(&turn) else {
                continue;
            };
            let ctx = DecideCtx {
                now_ms,
                catalog: deps.exec.tools.catalog(),
                control: deps.control.as_ref(),
                limits: &deps.limits,
                budgets: &self.budgets,
                ledger: &self.ledger,
                guards: &self.guards,
                breakers: &self.breakers,
                draining,
            };
            let decision = step(state, input, &ctx);
            // The next turn's decision sees this one's reservations: one user's turns, decided
            // one after another here, cannot overspend together.
            for e in &decision.events {
                self.ledger.apply(e);
                self.breakers.apply(e);
            }
            if !decision.events.is_empty() {
                self.dirty.turns.insert(turn);
            }
            events.extend(decision.events);
            effects.extend(decision.effects);
        }
        (events, effects)
    }

    /// Picks up a reloaded control configuration: budgets, breaker settings and guards follow
    /// it from this round on (risk thresholds, routing and deadlines are read at each review).
    fn follow_control_config(&mut self) {
        let current = self.deps.control.config();
        if Arc::ptr_eq(&current, &self.control_config) {
            return;
        }
        self.budgets = current
            .budgets
            .for_partitions(self.deps.events.partitions());
        self.ledger = std::mem::take(&mut self.ledger).with_window(self.budgets.window_ms);
        self.breakers =
            std::mem::take(&mut self.breakers).with_config(current.guards.breaker.clone());
        self.guards = Arc::new(crate::guard::Guards::or_default(
            current.guards.clone(),
            self.deps.exec.tools.catalog(),
        ));
        tracing::info!(partition = %self.partition, "control configuration reloaded: budgets and guards follow it");
        self.control_config = current;
    }

    fn dispatch(&mut self, effect: Effect) {
        match effect {
            Effect::Finished {
                turn_id,
                tenant,
                outcome,
                latency_ms,
            } => {
                // A turn whose reversal began while its ending waited for a commit stays.
                let finished = self.turns.get(&turn_id).is_some_and(TurnState::is_terminal);
                if let Some(state) = finished.then(|| self.turns.remove(&turn_id)).flatten() {
                    let now = self.deps.clock.now_ms();
                    if let Some(key) = remember_session(&mut self.sessions, &state, now) {
                        self.dirty.sessions.insert(key);
                    }
                    self.release_session(&state);
                }
                let wall_latency_us = self
                    .accepted_at
                    .remove(&turn_id)
                    .map(|t| t.elapsed().as_micros() as u64);
                self.deps
                    .stats
                    .turns_finished
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(sink) = &self.deps.outcomes {
                    let _ = sink.send(TurnFinished {
                        turn_id,
                        tenant,
                        outcome,
                        latency_ms,
                        wall_latency_us,
                    });
                }
            }
            Effect::Schedule {
                turn_id,
                at_ms,
                call_id,
                attempt,
            } => self.set_timer(at_ms, turn_id, Wake::Retry { call_id, attempt }),
            Effect::ScheduleDeadline {
                turn_id,
                at_ms,
                approval_id,
            } => self.set_timer(
                at_ms,
                turn_id,
                Wake::Deadline(Deadline::Approval { approval_id }),
            ),
            Effect::ScheduleHandoffDeadline { turn_id, at_ms } => {
                self.set_timer(at_ms, turn_id, Wake::Deadline(Deadline::Handoff))
            }
            effect => {
                self.in_flight += 1;
                *self.busy.entry(effect.turn_id()).or_default() += 1;
                let completion = Completion::new(self.tx.clone(), &effect);
                let deps = Arc::clone(&self.deps);
                self.effects.spawn(async move {
                    let Ok(_permit) = deps.effect_slots.acquire().await else {
                        return;
                    };
                    if let Some((input, records)) =
                        executor::execute_at_edge(&deps.exec, deps.vault.as_deref(), effect).await
                    {
                        completion.send(input, records);
                    }
                });
            }
        }
    }

    fn set_timer(&mut self, at_ms: i64, turn: TurnId, wake: Wake) {
        self.timer_seq += 1;
        self.timers.insert((at_ms, self.timer_seq), (turn, wake));
    }

    /// Moves the timers now due (by the clock) into `inputs`, oldest first. A timer of a turn
    /// that moved on meanwhile is harmless: the state machine ignores a stale deadline.
    fn fire_timers(&mut self, inputs: &mut Vec<(TurnId, Input)>) {
        let now = self.deps.clock.now_ms();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (turn, wake) = entry.remove();
            inputs.push((turn, wake.into()));
        }
    }
}
