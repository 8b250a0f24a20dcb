use clap::Args;

use ballast::clock::{Clock, SystemClock};
use ballast::ids::TurnId;

#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// The waiting turn's id (UUID).
    turn_id: TurnId,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// Why, recorded in the ApprovalGranted / ApprovalDenied event.
    #[arg(long)]
    reason: Option<String>,
    /// Who answers, recorded in the event (default: $BALLAST_OPERATOR, else $USER).
    #[arg(long)]
    operator: Option<String>,
}

fn operator(a: &ApprovalArgs) -> String {
    super::operator_name(&a.operator)
}

/// Answers a turn's pending approval. The answer is durable when this returns: on the embedded
/// log the worker applies it when it next runs on the data dir; on Kafka the worker owning the
/// turn's partition applies it at once.
pub async fn run(a: ApprovalArgs, granted: bool) -> anyhow::Result<()> {
    let who = operator(&a);
    let now = SystemClock.now_ms();
    let busy = format!(
        "is a worker running on {}? stop it first; it applies the answer when it restarts",
        a.log.data_dir.display()
    );
    let opened = super::desk::open(&a.log, &busy).await?;
    let cmd = opened
        .desk()
        .answer_approval(a.turn_id, granted, a.reason.clone(), (&who, now))
        .await?;
    super::emit(&format!(
        "{} turn {} ({}) as {who}; command {}\n",
        if granted { "approved" } else { "denied" },
        a.turn_id,
        cmd.tenant,
        cmd.command_id
    ))
}
