//! How the vault topic is compacted, which is what bounds how long a forgotten key's records
//! stay in the broker's segment files.
//!
//! A tombstone removes its key's earlier records only when the log cleaner cleans the segment
//! holding them, and the cleaner never touches the active segment. So three things have to
//! happen after `forget` publishes its tombstones:
//!
//! 1. the active segment rolls: Kafka rolls it on the first append once its first record is
//!    older than `min(segment.ms, max.compaction.lag.ms)` — on an append, never by itself, so
//!    the workers append a marker (`r\0…`, a tombstone for a key nothing uses) to each
//!    partition that received tombstones, once that time has passed (`KafkaVault::roll_due`);
//! 2. the cleaner runs: `max.compaction.lag.ms` makes the rolled segment due at once
//!    (`min.compaction.lag.ms` 0), and the broker's cleaner picks it up within its backoff
//!    (`log.cleaner.backoff.ms`, 15 s by default) if it is not busy with other logs;
//! 3. the replaced segment files are deleted `file.delete.delay.ms` later.
//!
//! The tombstones themselves stay `delete.retention.ms` (they hold no key): a replica that
//! was away longer than that may have missed one, so it rebuilds itself from the topic
//! (`KafkaVault::open`).

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::log::LogError;
use crate::log::kafka::{KafkaConfig, kafka_error};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The vault topic's compaction settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultCompaction {
    /// `segment.ms` and `max.compaction.lag.ms`: how old a segment's first record may get
    /// before the next append rolls it and the cleaner must clean it.
    pub roll_ms: u64,
    /// `delete.retention.ms`: how long a tombstone stays readable.
    pub delete_retention_ms: u64,
    /// `file.delete.delay.ms`: how long a cleaned-away segment file waits before deletion.
    pub file_delete_delay_ms: u64,
}

impl Default for VaultCompaction {
    fn default() -> Self {
        VaultCompaction {
            roll_ms: 3_600_000,
            delete_retention_ms: 86_400_000,
            file_delete_delay_ms: 60_000,
        }
    }
}

impl VaultCompaction {
    /// The topic configuration that enforces these settings.
    pub fn topic_configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", "compact".into()),
            ("segment.ms", self.roll_ms.to_string()),
            ("max.compaction.lag.ms", self.roll_ms.to_string()),
            ("min.compaction.lag.ms", "0".into()),
            ("min.cleanable.dirty.ratio", "0.01".into()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            (
                "file.delete.delay.ms",
                self.file_delete_delay_ms.to_string(),
            ),
        ]
    }

    /// How long after it last caught up a replica must rebuild itself rather than trust its
    /// offsets: half the tombstones' lifetime, so no tombstone can have come and gone unseen.
    pub fn stale_after_ms(&self) -> u64 {
        self.delete_retention_ms / 2
    }

    /// The settings as `configs` (a topic's description) has them; missing ones default.
    fn from_configs(configs: &[(String, String)]) -> Self {
        let get = |name: &str| {
            configs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .map(|v| v.max(0) as u64)
        };
        let d = VaultCompaction::default();
        let segment = get("segment.ms").unwrap_or(d.roll_ms);
        let lag = get("max.compaction.lag.ms").unwrap_or(u64::MAX);
        VaultCompaction {
            roll_ms: segment.min(lag),
            delete_retention_ms: get("delete.retention.ms").unwrap_or(d.delete_retention_ms),
            file_delete_delay_ms: get("file.delete.delay.ms").unwrap_or(d.file_delete_delay_ms),
        }
    }
}

fn admin(cfg: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, LogError> {
    cfg.client().create().map_err(kafka_error)
}

/// The topic's configuration: every entry, and whether it was set on the topic itself.
async fn describe(cfg: &KafkaConfig, topic: &str) -> Result<Vec<(String, String, bool)>, LogError> {
    let admin = admin(cfg)?;
    let results = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(kafka_error)?;
    let mut out = Vec::new();
    for r in results {
        let resource = r.map_err(|code| {
            LogError::storage(format!("describing topic {topic}: {code}"), false)
        })?;
        for e in resource.entries {
            if let Some(v) = e.value {
                out.push((e.name, v, e.source == ConfigSource::DynamicTopic));
            }
        }
    }
    Ok(out)
}

/// The compaction the topic really has (an operator may have changed it).
pub async fn effective(cfg: &KafkaConfig, topic: &str) -> Result<VaultCompaction, LogError> {
    let configs: Vec<(String, String)> = describe(cfg, topic)
        .await?
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    Ok(VaultCompaction::from_configs(&configs))
}

/// Gives an existing vault topic `want`'s settings, keeping whatever else was set on it (the
/// AlterConfigs call replaces a topic's whole configuration).
pub async fn configure(
    cfg: &KafkaConfig,
    topic: &str,
    want: &VaultCompaction,
) -> Result<(), LogError> {
    let current = describe(cfg, topic).await?;
    let ours = want.topic_configs();
    let mut entries: Vec<(String, String)> = current
        .into_iter()
        .filter(|(k, _, dynamic)| *dynamic && !ours.iter().any(|(o, _)| o == k))
        .map(|(k, v, _)| (k, v))
        .collect();
    entries.extend(ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in &entries {
        alter = alter.set(k, v);
    }
    let results = admin(cfg)?
        .alter_configs(
            [&alter],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(kafka_error)?;
    for r in results {
        r.map_err(|(_, code)| {
            LogError::storage(format!("configuring topic {topic}: {code}"), false)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roll_bound_is_the_smaller_of_segment_ms_and_the_compaction_lag() {
        let c = VaultCompaction::default();
        let described: Vec<(String, String)> = c
            .topic_configs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(VaultCompaction::from_configs(&described), c);
        let lagless = [("segment.ms".to_string(), "604800000".to_string())];
        assert_eq!(VaultCompaction::from_configs(&lagless).roll_ms, 604_800_000);
        let both = [
            ("segment.ms".to_string(), "604800000".to_string()),
            ("max.compaction.lag.ms".to_string(), "60000".to_string()),
        ];
        assert_eq!(VaultCompaction::from_configs(&both).roll_ms, 60_000);
        assert_eq!(c.stale_after_ms(), 43_200_000);
    }
}
