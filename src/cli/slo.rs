use clap::Args;

use ballast::clock::{Clock, SystemClock};
use ballast::ids::{Offset, Partition};
use ballast::log::{EventLog, Scan};
use ballast::projection::slo::{SloConfig, compute, render, tool_error_rate_and_cost};

#[derive(Debug, Args)]
pub struct SloArgs {
    #[command(flatten)]
    log: super::LogArgs,
    /// Policy directory whose control.toml `[slo]` section sets the targets (defaults otherwise).
    #[arg(long)]
    policies: Option<std::path::PathBuf>,
    /// The SLIs as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints each SLI with its target, value, error budget left and burn rates, computed from
/// the outcome records.
pub async fn run(a: SloArgs) -> anyhow::Result<()> {
    let config = match &a.policies {
        Some(dir) => {
            let path = dir.join("control.toml");
            if path.exists() {
                ballast::control::ControlConfig::load(&path)?.slo
            } else {
                SloConfig::default()
            }
        }
        None => SloConfig::default(),
    };
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
    let mut outcomes = Vec::new();
    for p in (0..log.partitions()).map(Partition) {
        let mut scan = Scan::new(log.as_ref(), p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(4096).await? {
            for s in batch {
                outcomes.push(codecs.outcomes.decode(&s.value)?);
            }
        }
    }
    let now = SystemClock.now_ms();
    let slis = compute(&outcomes, now, &config);
    let (rate, cost) = tool_error_rate_and_cost(&outcomes, now, &config);
    if a.json {
        let out = serde_json::json!({
            "turns": outcomes.len(),
            "slis": slis,
            "tool_error_rate": rate,
            "cost_per_turn_micros": cost,
        });
        return super::emit(&(serde_json::to_string_pretty(&out)? + "\n"));
    }
    super::emit(&format!(
        "{} turns\n{}",
        outcomes.len(),
        render(&slis, rate, cost)
    ))
}
