use clap::{Args, Subcommand};

use ballast::clock::{Clock, SystemClock};
use ballast::ids::TurnId;

#[derive(Debug, Args)]
pub struct HandoffArgs {
    #[command(subcommand)]
    command: HandoffCommand,
}

#[derive(Debug, Subcommand)]
enum HandoffCommand {
    /// Turns handed to a person and still waiting (with --all, every handoff).
    List {
        #[command(flatten)]
        log: super::LogArgs,
        #[arg(long)]
        all: bool,
        /// One JSON object per handoff, with the turn's trace as recorded at the handoff.
        #[arg(long)]
        json: bool,
    },
    /// Take a handed-off turn (recorded as HandoffAccepted).
    Accept {
        turn_id: TurnId,
        #[command(flatten)]
        log: super::LogArgs,
        #[arg(long)]
        operator: Option<String>,
    },
    /// Close a handed-off turn, saying what was done; it ends as escalated (resolved).
    Resolve {
        turn_id: TurnId,
        #[command(flatten)]
        log: super::LogArgs,
        #[arg(long)]
        resolution: String,
        #[arg(long)]
        operator: Option<String>,
    },
}

impl HandoffArgs {
    pub(super) fn embedded_dir(&self) -> Option<std::path::PathBuf> {
        match &self.command {
            HandoffCommand::List { log, .. }
            | HandoffCommand::Accept { log, .. }
            | HandoffCommand::Resolve { log, .. } => log.embedded_dir(),
        }
    }
}

/// Said when the data dir is locked by a running worker.
fn busy(log: &super::LogArgs) -> String {
    format!(
        "is a worker running on {}? stop it first; it applies the answer when it restarts",
        log.data_dir.display()
    )
}

fn who(operator: &Option<String>) -> String {
    super::operator_name(operator)
}

use ballast::vault::view::{redact_all, redact_all_json};

pub async fn run(a: HandoffArgs) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match a.command {
        HandoffCommand::List { log, all, json } => {
            let l = super::desk::open(&log, &busy(&log)).await?;
            let waiting = l.waiting(&log).await?;
            let views = l.desk().handoffs(l.escalations.as_ref(), &waiting).await?;
            let mut out = String::new();
            for v in views.iter().filter(|v| all || v.open) {
                let h = &v.handoff;
                if json {
                    // Published masked; masked again in case a record predates that.
                    let mut trace: serde_json::Value =
                        serde_json::from_str(&h.trace_json).unwrap_or(serde_json::Value::Null);
                    redact_all_json(&mut trace);
                    let line = serde_json::json!({
                        "turn_id": h.turn_id.to_string(), "tenant": h.tenant,
                        "user_id": redact_all(&h.user_id), "reason": redact_all(&h.reason), "call_id": h.call_id, "raised_at_ms": h.raised_at_ms,
                        "deadline_ms": h.deadline_ms, "rungs": h.rungs, "open": v.open,
                        "accepted_by": v.accepted_by, "outcome": v.outcome, "trace": trace, "trace_version": h.trace_version,
                    });
                    out.push_str(&format!("{line}\n"));
                } else {
                    let state = match (&v.outcome, &v.accepted_by) {
                        (Some(o), _) => o.clone(),
                        (None, Some(op)) => format!("accepted by {op}"),
                        (None, None) => "waiting".into(),
                    };
                    let left = (h.deadline_ms - now) / 1000;
                    let due = ballast::clock::rfc3339(h.deadline_ms);
                    out.push_str(&format!(
                        "{}  {:<10} {:<20} due {due} ({}s left)  after [{}]  {}\n",
                        h.turn_id,
                        h.tenant,
                        state,
                        left.max(0),
                        h.rungs.join(" → "),
                        redact_all(&h.reason)
                    ));
                }
            }
            super::emit(&out)
        }
        HandoffCommand::Accept {
            turn_id,
            log,
            operator,
        } => {
            let l = super::desk::open(&log, &busy(&log)).await?;
            let op = who(&operator);
            let c = l.desk().answer_handoff(turn_id, None, (&op, now)).await?;
            super::emit(&format!(
                "accepted turn {turn_id} as {op}; command {}\n",
                c.command_id
            ))
        }
        HandoffCommand::Resolve {
            turn_id,
            log,
            resolution,
            operator,
        } => {
            let l = super::desk::open(&log, &busy(&log)).await?;
            let op = who(&operator);
            let c = l
                .desk()
                .answer_handoff(turn_id, Some(resolution), (&op, now))
                .await?;
            super::emit(&format!(
                "resolved turn {turn_id} as {op}; command {}\n",
                c.command_id
            ))
        }
    }
}
