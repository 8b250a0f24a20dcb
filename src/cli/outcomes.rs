use clap::Args;

use ballast::ids::{Offset, Partition};
use ballast::log::{EventLog, Scan};

#[derive(Debug, Args)]
pub struct OutcomesArgs {
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// Keep streaming outcomes as turns finish (Kafka: `--bootstrap`). Embedded data dirs are
    /// read by one process at a time, so there this prints what is recorded and stops.
    #[arg(long)]
    follow: bool,
}

/// Prints every TurnOutcome record as one JSON object per line, oldest first.
pub async fn run(a: OutcomesArgs) -> anyhow::Result<()> {
    let (log, codecs, _keep): (std::sync::Arc<dyn EventLog>, _, _) = match &a.log.bootstrap {
        None => {
            let dir = &a.log.data_dir;
            if !dir.join("sled").exists() {
                anyhow::bail!(
                    "{} is not a ballast data dir (no sled/ inside)",
                    dir.display()
                );
            }
            let emb = ballast::embedded::Embedded::open(dir, 0)?;
            (emb.outcomes.clone(), emb.codecs.clone(), Some(emb))
        }
        Some(bootstrap) => {
            let store = ballast::log::SledStore::open(&a.log.data_dir)?;
            let codecs = ballast::embedded::load_codecs(&store)?;
            let topics = ballast::kafka::Topics::new(&a.log.topic_prefix);
            let cfg = ballast::log::kafka::KafkaConfig::new(bootstrap);
            let log =
                std::sync::Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.outcomes).await?);
            (log, codecs, None)
        }
    };
    let print = |value: &[u8]| -> anyhow::Result<()> {
        let outcome = codecs.outcomes.decode(value)?;
        super::emit(&format!("{}\n", serde_json::to_string(&outcome)?))
    };
    for p in (0..log.partitions()).map(Partition) {
        let mut scan = Scan::new(log.as_ref(), p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(4096).await? {
            for s in batch {
                print(&s.value)?;
            }
        }
    }
    if a.follow && a.log.bootstrap.is_some() {
        let mut tails = Vec::new();
        for p in (0..log.partitions()).map(Partition) {
            tails.push(log.subscribe(p, log.end(p).await?).await?);
        }
        loop {
            for tail in tails.iter_mut() {
                let batch = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    tail.next_batch(1024),
                )
                .await;
                if let Ok(batch) = batch {
                    for s in batch? {
                        print(&s.value)?;
                    }
                }
            }
        }
    }
    Ok(())
}
