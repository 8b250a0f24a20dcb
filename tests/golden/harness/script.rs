//! The steps a history is made of — what a producer, an operator and time do to the turns —
//! and the driver that plays them against a worker on a data dir, one at a time.
//!
//! After each step the driver waits until the turns rest: each one finished, waiting for a
//! person, waiting for a timer, or queued behind its session's running turn. Turns waiting for
//! a retry's timer then get it (the clock moves on by [`RETRY_STEP`]), until only people are
//! waited for. Time moves only while nothing runs, so every event's time is the same from one
//! run to the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ballast::clock::{Clock, ManualClock};
use ballast::embedded::Embedded;
use ballast::event::{
    ApprovalDecision, CommandAction, Event, HandoffAcceptance, HandoffResolution, LabelTurn,
    ReverseTurn, TurnCommand, TurnRequest,
};
use ballast::exec::scripted::WorkloadTurn;
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::EventLog;
use ballast::turn::{CompensationStatus, Phase, TurnState};
use serde::{Deserialize, Serialize};

use super::world::{self, Hangs, Running};

/// How far the clock moves for a retry: past any backoff (`turn::backoff_ms`: at most 2 s and
/// a quarter of it as jitter).
pub const RETRY_STEP: i64 = 2_500;
/// Longest wait for a step's effect before the history is declared stuck.
const STUCK: Duration = Duration::from_secs(20);

/// One thing that happens to the turns of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Step {
    /// A producer submits a workload turn's request.
    Submit {
        turn: TurnId,
        #[serde(default, skip_serializing_if = "Until::is_default")]
        until: Until,
    },
    /// An operator answers or acts on a turn (command ids and times are the script's own).
    Command {
        turn: TurnId,
        action: Action,
        #[serde(default, skip_serializing_if = "Until::is_default")]
        until: Until,
    },
    /// Time passes (deadlines expire).
    Advance {
        ms: i64,
        turn: TurnId,
        /// The event the time's passing makes `turn` record.
        until: String,
    },
    /// Waits for what a turn does by itself (after a restart: a resumed call, a command the
    /// worker reads from the request log).
    Await { turn: TurnId, until: String },
    /// Calls of `tool` never answer from now on (recording only: a crash needs one in flight).
    Hang { tool: String },
    /// The worker stops: drained, or crashed (calls in flight stay unanswered in the log).
    Stop { crash: bool },
    /// The recorded history ends here; what follows runs on its logs after a restart.
    Cut,
}

/// What an operator does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    Deny,
    Accept,
    Resolve,
    Reverse,
    Label(String),
}

impl Action {
    /// The event a turn records when the command is applied.
    fn applied(&self) -> &'static str {
        match self {
            Action::Approve => "ApprovalGranted",
            Action::Deny => "ApprovalDenied",
            Action::Accept => "HandoffAccepted",
            Action::Resolve => "HandoffResolved",
            Action::Reverse => "ReversalRequested",
            Action::Label(_) => "OutcomeLabeled",
        }
    }
}

/// What a step waits for before the next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// Its event is recorded, then every turn rests.
    #[default]
    Rest,
    /// This event is recorded (a call left hanging never rests).
    Event(String),
    /// Nothing: the command waits in the request log (no worker runs).
    Nothing,
}

impl Until {
    fn is_default(&self) -> bool {
        *self == Until::Rest
    }
}

/// Plays steps against a data dir.
pub struct Driver<'a> {
    pub emb: &'a Embedded,
    pub clock: Arc<ManualClock>,
    pub hangs: Arc<Hangs>,
    pub workload: Vec<WorkloadTurn>,
    running: Option<Running>,
    commands: u32,
}

impl<'a> Driver<'a> {
    pub fn new(emb: &'a Embedded, clock: Arc<ManualClock>, workload: Vec<WorkloadTurn>) -> Self {
        Driver {
            emb,
            clock,
            hangs: Arc::new(Hangs::default()),
            workload,
            running: None,
            commands: 0,
        }
    }

    /// Starts a worker and waits until every partition has recovered and consumes requests.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let running = world::start(self.emb, &self.workload, &self.clock, &self.hangs)?;
        let deadline = Instant::now() + STUCK;
        while running.ready() < u64::from(self.emb.partitions()) {
            if Instant::now() > deadline {
                bail!("the worker did not recover its partitions");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.running = Some(running);
        Ok(())
    }

    pub async fn stop(&mut self, crash: bool) -> anyhow::Result<()> {
        let running = self.running.take().context("no worker runs")?;
        if crash {
            running.crash().await;
        } else {
            running.stop().await?;
        }
        Ok(())
    }

    pub async fn play(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Submit { turn, until } => {
                let t = self.workload_turn(*turn)?;
                let request = TurnRequest {
                    turn_id: t.turn_id,
                    tenant: t.tenant.clone(),
                    user_id: t.user_id.clone(),
                    text: t.text.clone(),
                    channel: "chat".into(),
                    attributes: t.attributes.clone(),
                    submitted_at_ms: self.clock.now_ms(),
                    session_id: t.session_id.clone(),
                };
                let before = self.count(*turn, "TurnRequested").await?;
                ballast::submit::submit(
                    self.emb.requests.as_ref(),
                    &self.emb.codecs.requests,
                    &[request],
                )
                .await?;
                self.wait(*turn, until, "TurnRequested", before).await
            }
            Step::Command {
                turn,
                action,
                until,
            } => {
                let before = self.count(*turn, action.applied()).await?;
                self.command(*turn, action).await?;
                self.wait(*turn, until, action.applied(), before).await
            }
            Step::Advance { ms, turn, until } => {
                let before = self.count(*turn, until).await?;
                self.clock.advance(*ms);
                self.wait(*turn, &Until::Rest, until, before).await
            }
            Step::Await { turn, until } => self.wait(*turn, &Until::Rest, until, 0).await,
            Step::Hang { tool } => {
                self.hangs.add(tool);
                Ok(())
            }
            Step::Stop { crash } => self.stop(*crash).await,
            Step::Cut => Ok(()),
        }
    }

    fn workload_turn(&self, turn: TurnId) -> anyhow::Result<&WorkloadTurn> {
        self.workload
            .iter()
            .find(|t| t.turn_id == turn)
            .with_context(|| format!("turn {turn} is not in the history's workload"))
    }

    /// Waits as `until` says: for the step's event (`kind`, one more than `before`), then for
    /// every turn to rest.
    async fn wait(
        &self,
        turn: TurnId,
        until: &Until,
        kind: &str,
        before: usize,
    ) -> anyhow::Result<()> {
        let (kind, settle) = match until {
            Until::Nothing => return Ok(()),
            Until::Rest => (kind, true),
            Until::Event(k) => (k.as_str(), false),
        };
        let deadline = Instant::now() + STUCK;
        while self.count(turn, kind).await? <= before {
            if Instant::now() > deadline {
                bail!(
                    "turn {turn} never recorded {kind}: {:?}",
                    kinds(&self.turn_events(turn).await?)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if settle {
            self.settle().await?;
        }
        Ok(())
    }

    /// Waits until every turn rests; turns waiting for a retry get it, until only people (or
    /// nothing) are waited for.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STUCK;
        loop {
            let states = self.states().await?;
            let rests: Vec<Rest> = states.iter().map(|s| rest(s, &states)).collect();
            if rests.iter().all(|r| *r != Rest::Busy) {
                let timed: Vec<(TurnId, usize)> = states
                    .iter()
                    .zip(&rests)
                    .filter(|(_, r)| **r == Rest::Timer)
                    .map(|(s, _)| (s.turn_id, s.next_seq as usize))
                    .collect();
                if timed.is_empty() {
                    return Ok(());
                }
                // Every turn is still: time may move. Then wait for a timed turn to go on.
                self.clock.advance(RETRY_STEP);
                loop {
                    let mut moved = false;
                    for (t, n) in &timed {
                        moved |= self.turn_events(*t).await?.len() > *n;
                    }
                    if moved {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("no timer fired after the clock moved: {timed:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                continue;
            }
            if Instant::now() > deadline {
                let busy: Vec<String> = states
                    .iter()
                    .zip(&rests)
                    .filter(|(_, r)| **r == Rest::Busy)
                    .map(|(s, _)| format!("{} in {:?}", s.turn_id, s.phase()))
                    .collect();
                bail!("turns never came to rest: {busy:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Turns the worker holds parked, once the turns waiting for a person have had time to
    /// park (a snapshot follows each round); 0 at once when none waits for a person.
    pub async fn parked_soon(&self) -> u64 {
        let Some(running) = &self.running else {
            return 0;
        };
        let waiting = self.states().await.is_ok_and(|states| {
            states.iter().any(|s| {
                matches!(
                    s.phase(),
                    Phase::AwaitingApproval { .. } | Phase::AwaitingHandoff
                )
            })
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        while waiting && running.parked() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.parked()
    }

    /// Every event of every partition, with where it is.
    pub async fn log(&self) -> anyhow::Result<Vec<(Partition, Offset, Event)>> {
        let mut out = Vec::new();
        for p in (0..self.emb.partitions()).map(Partition) {
            for s in self.emb.events.read(p, Offset::ZERO, usize::MAX).await? {
                out.push((p, s.offset, self.emb.codecs.events.decode(&s.value)?));
            }
        }
        Ok(out)
    }

    async fn turn_events(&self, turn: TurnId) -> anyhow::Result<Vec<Event>> {
        Ok(self
            .log()
            .await?
            .into_iter()
            .filter(|(_, _, e)| e.turn_id == turn)
            .map(|(_, _, e)| e)
            .collect())
    }

    async fn count(&self, turn: TurnId, kind: &str) -> anyhow::Result<usize> {
        Ok(self
            .turn_events(turn)
            .await?
            .iter()
            .filter(|e| e.kind() == kind)
            .count())
    }

    /// Every turn of the log, replayed.
    async fn states(&self) -> anyhow::Result<Vec<TurnState>> {
        let mut turns: Vec<(TurnId, Vec<Event>)> = Vec::new();
        for (_, _, e) in self.log().await? {
            match turns.iter_mut().find(|(t, _)| *t == e.turn_id) {
                Some((_, events)) => events.push(e),
                None => turns.push((e.turn_id, vec![e])),
            }
        }
        turns
            .into_iter()
            .map(|(t, events)| Ok(TurnState::replay(t, &events)?))
            .collect()
    }

    /// Sends an operator's command to the turn's partition, as `Desk` would (with the script's
    /// own command id, so a re-recording writes the same bytes).
    async fn command(&mut self, turn: TurnId, action: &Action) -> anyhow::Result<()> {
        let log = self.log().await?;
        let (partition, first) = log
            .iter()
            .find(|(_, _, e)| e.turn_id == turn)
            .map(|(p, o, _)| (*p, *o))
            .with_context(|| format!("turn {turn} is not in the log"))?;
        let events: Vec<Event> = log
            .into_iter()
            .filter(|(_, _, e)| e.turn_id == turn)
            .map(|(_, _, e)| e)
            .collect();
        let state = TurnState::replay(turn, &events)?;
        let action = match action {
            Action::Approve | Action::Deny => {
                let Phase::AwaitingApproval { index } = state.phase() else {
                    bail!("turn {turn} waits for no approval: {:?}", state.phase());
                };
                let approval_id = state
                    .approval_for(index)
                    .map(|a| a.approval_id.clone())
                    .unwrap_or_default();
                CommandAction::ApprovalDecision(ApprovalDecision {
                    approval_id,
                    granted: *action == Action::Approve,
                    reason: Some("checked with the customer".into()),
                })
            }
            Action::Accept => CommandAction::HandoffAccept(HandoffAcceptance { note: None }),
            Action::Resolve => CommandAction::HandoffResolve(HandoffResolution {
                resolution: "called the customer and settled it".into(),
            }),
            Action::Reverse => CommandAction::Reverse(ReverseTurn {
                reason: Some("charged back by the bank".into()),
            }),
            Action::Label(label) => CommandAction::Label(LabelTurn {
                label: label.clone(),
                note: Some("found in review".into()),
            }),
        };
        self.commands += 1;
        let command = TurnCommand {
            command_id: format!("golden-{turn}-{}", self.commands),
            turn_id: turn,
            tenant: state.tenant.clone(),
            operator: "ops-golden".into(),
            issued_at_ms: self.clock.now_ms(),
            action,
            turn_offset: Some(first.0 as i64),
        };
        ballast::operator::send_to(
            self.emb.requests.as_ref(),
            &self.emb.codecs,
            partition,
            &command,
        )
        .await?;
        Ok(())
    }
}

/// Where a turn stands, for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rest {
    /// Something of it runs, or is about to.
    Busy,
    /// Waits for a timer (a retry's backoff).
    Timer,
    /// Waits for a person, its session's running turn, or nothing (finished).
    Still,
}

fn rest(s: &TurnState, all: &[TurnState]) -> Rest {
    match s.phase() {
        Phase::Done(_) => match &s.reversal {
            Some(r) if !r.done => {
                let status = |want: fn(&CompensationStatus) -> bool| {
                    r.compensations.iter().any(|c| want(&c.status))
                };
                if status(|c| *c == CompensationStatus::Running) {
                    Rest::Busy
                } else if status(|c| *c == CompensationStatus::Failed { retryable: true }) {
                    Rest::Timer
                } else {
                    Rest::Busy
                }
            }
            _ => Rest::Still,
        },
        Phase::AwaitingApproval { .. } | Phase::AwaitingHandoff => Rest::Still,
        Phase::AwaitingRetry { .. } => Rest::Timer,
        Phase::Routing if queued_in_session(s, all) => Rest::Still,
        _ => Rest::Busy,
    }
}

/// A session's turn waiting for the one running the session to finish.
fn queued_in_session(s: &TurnState, all: &[TurnState]) -> bool {
    s.session_id.is_some()
        && all.iter().any(|o| {
            o.turn_id != s.turn_id
                && o.session_id == s.session_id
                && o.user_id == s.user_id
                && o.tenant == s.tenant
                && o.route.is_some()
                && !matches!(o.phase(), Phase::Done(_))
        })
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}
