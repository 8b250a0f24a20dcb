use std::sync::Arc;

use clap::Args;

use ballast::clock::{Clock, SystemClock};
use ballast::embedded::Embedded;
use ballast::ids::TurnId;
use ballast::log::EventLog;
use ballast::operator::answer_approval;
use ballast::projection::turn_index::TurnIndex;

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
    let dir = &a.log.data_dir;
    if a.log.bootstrap.is_none() && !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    let who = operator(&a);
    let now = SystemClock.now_ms();
    // Where the turn is read from and where the answer goes, on either backend.
    let (events, requests, codecs, index, _store): (Arc<dyn EventLog>, Arc<dyn EventLog>, _, _, _) =
        match &a.log.bootstrap {
            None => {
                let emb = Embedded::open(dir, 0).map_err(|e| {
                    anyhow::anyhow!(
                        "{e}\n(is a worker running on {}? stop it first; it applies the answer when it restarts)",
                        dir.display()
                    )
                })?;
                let index = TurnIndex::open(&emb.store)?;
                super::catch_up_index(&emb, &index).await?;
                (
                    emb.events.clone(),
                    emb.requests.clone(),
                    emb.codecs.clone(),
                    index,
                    emb.store.clone(),
                )
            }
            Some(bootstrap) => {
                let opened = super::open_log(&a.log).await?;
                let topics = ballast::kafka::Topics::new(&a.log.topic_prefix);
                let cfg = ballast::log::kafka::KafkaConfig::new(bootstrap);
                let requests =
                    Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.requests).await?);
                (
                    opened.events,
                    requests,
                    opened.codecs,
                    opened.index,
                    opened.store,
                )
            }
        };
    let cmd = answer_approval(
        events.as_ref(),
        requests.as_ref(),
        &codecs,
        &index,
        a.turn_id,
        granted,
        &who,
        a.reason.clone(),
        now,
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
