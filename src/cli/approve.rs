use clap::Args;

use ballast::clock::{Clock, SystemClock};
use ballast::embedded::Embedded;
use ballast::ids::TurnId;
use ballast::operator::answer_approval;
use ballast::projection::turn_index::TurnIndex;

#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// The waiting turn's id (UUID).
    turn_id: TurnId,
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// Why, recorded in the ApprovalGranted / ApprovalDenied event.
    #[arg(long)]
    reason: Option<String>,
    /// Who answers, recorded in the event (default: $BALLAST_OPERATOR, else $USER).
    #[arg(long)]
    operator: Option<String>,
}

fn operator(a: &ApprovalArgs) -> String {
    a.operator
        .clone()
        .or_else(|| std::env::var("BALLAST_OPERATOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// Answers a turn's pending approval on an embedded data dir. The answer is durable when this
/// returns; the worker applies it when it next runs on the data dir (or at once if it is this
/// process's embedded worker reading the same log).
pub async fn run(a: ApprovalArgs, granted: bool) -> anyhow::Result<()> {
    if !a.data_dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            a.data_dir.display()
        );
    }
    let emb = Embedded::open(&a.data_dir, 0).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(is a worker running on {}? stop it first; it applies the answer when it restarts)",
            a.data_dir.display()
        )
    })?;
    let index = TurnIndex::open(&emb.store)?;
    index
        .catch_up(emb.events.as_ref(), &emb.codecs.events)
        .await?;
    let who = operator(&a);
    let cmd = answer_approval(
        emb.events.as_ref(),
        emb.requests.as_ref(),
        &emb.codecs,
        &index,
        a.turn_id,
        granted,
        &who,
        a.reason.clone(),
        SystemClock.now_ms(),
    )
    .await?;
    super::emit(&format!(
        "{} turn {} ({}) as {who}; command {}\n",
        if granted { "approved" } else { "denied" },
        a.turn_id,
        cmd.tenant,
        cmd.command_id
    ))
}
