//! `ballast reverse` and `ballast label`: commands for finished turns. Embedded, the command
//! runs the turn's partition until the turn settles (kill it mid-way and run it again: the
//! reversal resumes from the log); on Kafka the worker owning the partition applies it and this
//! waits until the turn log shows it.

use std::time::{Duration, Instant};

use clap::Args;

use ballast::clock::{Clock, SystemClock};
use ballast::event::{Event, Payload};
use ballast::ids::{Partition, TurnId};
use ballast::operator::Reversal;

#[derive(Debug, Args)]
pub struct ReverseArgs {
    /// The finished turn's id.
    turn_id: TurnId,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// Why, recorded in ReversalRequested.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    common: LateArgs,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The finished turn's id.
    turn_id: TurnId,
    /// The label, e.g. hallucination_with_action (counted by the SLOs), incorrect, correct.
    label: String,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// A note kept with the label.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    common: LateArgs,
}

#[derive(Debug, Args)]
struct LateArgs {
    /// Who acts, recorded in the event (default: $BALLAST_OPERATOR, else $USER).
    #[arg(long)]
    operator: Option<String>,
    /// Policy directory of the embedded worker run (default: the built-in demo policies).
    #[arg(long)]
    policies: Option<std::path::PathBuf>,
    /// Upper bound of each simulated service call of the demo tools, in milliseconds.
    #[arg(long, default_value_t = 4)]
    service_latency_ms: u64,
    /// How long to wait for the turn to settle.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// The result as JSON.
    #[arg(long)]
    json: bool,
}

fn operator(a: &LateArgs) -> String {
    super::operator_name(&a.operator)
}

type Target = super::desk::OpenDesk;

async fn open(log: &super::LogArgs) -> anyhow::Result<Target> {
    super::desk::open(log, "is `ballast serve` running on it? use its API instead").await
}

/// Applies the command just sent: runs the partition (embedded) or waits for the worker
/// (Kafka) until `done` holds for the turn's events.
async fn settle(
    t: &Target,
    a: &LateArgs,
    dir: &std::path::Path,
    turn: TurnId,
    done: impl Fn(&[Event]) -> bool,
) -> anyhow::Result<Vec<Event>> {
    let timeout = Duration::from_secs(a.timeout_s);
    let read = || async {
        super::catch_up_index_of(dir, t.events.as_ref(), &t.codecs, &t.index).await?;
        let (_, events) = t
            .desk()
            .read_turn(turn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("turn {turn} not found"))?;
        anyhow::Ok(events.into_iter().map(|(_, e)| e).collect::<Vec<_>>())
    };
    if let Some(emb) = &t.embedded {
        let entry = t
            .index
            .get(turn)?
            .ok_or_else(|| anyhow::anyhow!("turn {turn} not found"))?;
        let planes =
            ballast::demo::planes::demo_planes(dir, a.policies.as_deref(), a.service_latency_ms)?;
        ballast::settle::run_until_settled(emb, planes, Partition(entry.partition), turn, timeout)
            .await?;
        return read().await;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let events = read().await?;
        if done(&events) || Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn reverse(a: ReverseArgs) -> anyhow::Result<()> {
    let t = open(&a.log).await?;
    let who = operator(&a.common);
    let state = t
        .desk()
        .request_reversal(a.turn_id, a.reason.clone(), (&who, SystemClock.now_ms()))
        .await?;
    let reversed = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e.payload, Payload::TurnReversed(_)))
    };
    let events = match state {
        Reversal::Done => {
            let events = settle_read_only(&t, a.turn_id).await?;
            if !a.common.json {
                super::emit("already reversed; nothing more to do\n")?;
            }
            events
        }
        Reversal::Requested(_) | Reversal::InProgress => {
            settle(&t, &a.common, &a.log.data_dir, a.turn_id, reversed).await?
        }
    };
    if !reversed(&events) {
        anyhow::bail!(
            "turn {} is not reversed yet (the worker has not applied the command)",
            a.turn_id
        );
    }
    report(&events, a.common.json, |p| {
        matches!(
            p,
            Payload::ReversalRequested(_)
                | Payload::CompensationStarted(_)
                | Payload::CompensationCompleted(_)
                | Payload::CompensationFailed(_)
                | Payload::TurnReversed(_)
        )
    })
}

pub async fn label(a: LabelArgs) -> anyhow::Result<()> {
    let t = open(&a.log).await?;
    let who = operator(&a.common);
    let cmd = t
        .desk()
        .label_turn(
            a.turn_id,
            &a.label,
            a.note.clone(),
            (&who, SystemClock.now_ms()),
        )
        .await?;
    let id = cmd.command_id.clone();
    let labeled = move |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(&e.payload, Payload::OutcomeLabeled(l) if l.command_id == id))
    };
    let events = settle(&t, &a.common, &a.log.data_dir, a.turn_id, labeled.clone()).await?;
    if !labeled(&events) {
        anyhow::bail!(
            "turn {} is not labeled yet (the worker has not applied the command)",
            a.turn_id
        );
    }
    report(&events, a.common.json, |p| {
        matches!(p, Payload::OutcomeLabeled(_))
    })
}

async fn settle_read_only(t: &Target, turn: TurnId) -> anyhow::Result<Vec<Event>> {
    let (_, events) = t
        .desk()
        .read_turn(turn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("turn {turn} not found"))?;
    Ok(events.into_iter().map(|(_, e)| e).collect())
}

/// The events `pick` selects, as timeline lines or JSON.
fn report(events: &[Event], json: bool, pick: impl Fn(&Payload) -> bool) -> anyhow::Result<()> {
    // Masked like every view (the user is the one the turn's request names).
    let user = ballast::vault::view::turn_user(events);
    let mut masker = ballast::vault::view::Masker::new(None);
    let picked: Vec<Event> = events
        .iter()
        .filter(|e| pick(&e.payload))
        .map(|e| {
            let mut e = e.clone();
            let tenant = e.tenant.clone();
            masker.event(&tenant, &user, &mut e);
            e
        })
        .collect();
    if json {
        let out: Vec<serde_json::Value> = picked.iter().map(|e| e.to_json()).collect();
        return super::emit(&(serde_json::to_string_pretty(&out)? + "\n"));
    }
    let mut s = String::new();
    for e in picked {
        s.push_str(&format!(
            "#{:<4} {:<22} {}\n",
            e.seq,
            e.kind(),
            e.describe()
        ));
    }
    super::emit(&s)
}
