use clap::{Args, Subcommand};

use ballast::kafka;
use ballast::log::kafka::KafkaConfig;

#[derive(Debug, Args)]
pub struct KafkaArgs {
    #[command(subcommand)]
    command: KafkaCommand,
}

#[derive(Debug, Subcommand)]
enum KafkaCommand {
    /// Create Ballast's topics (requests, turn events, outcomes, escalations, dead letters).
    Init {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value_t = kafka::DEFAULT_PARTITIONS)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication: u32,
        /// Topic names are `<prefix>.requests`, `<prefix>.turn-events`, …
        #[arg(long, default_value = kafka::DEFAULT_PREFIX)]
        topic_prefix: String,
    },
}

pub async fn run(a: KafkaArgs) -> anyhow::Result<()> {
    match a.command {
        KafkaCommand::Init {
            bootstrap,
            partitions,
            replication,
            topic_prefix,
        } => {
            let names = kafka::Topics::new(&topic_prefix);
            let topics = kafka::init(
                &KafkaConfig::new(bootstrap),
                &names,
                partitions,
                replication,
            )
            .await?;
            let mut out = String::new();
            for t in topics {
                out.push_str(&format!(
                    "{t}\t{partitions} partitions\treplication {replication}\n"
                ));
            }
            super::emit(&out)
        }
    }
}
