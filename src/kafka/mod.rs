//! Ballast on Kafka: topics, the exactly-once journal, and workers that share partitions through
//! a consumer group.

pub mod demo;
pub mod journal;
pub mod vault;
pub mod vault_topic;
pub mod worker;

use crate::log::LogError;
use crate::log::kafka::{KafkaConfig, ensure_topic};

/// The names of Ballast's topics: `<prefix>.requests`, `<prefix>.turn-events`, … The default
/// prefix is `ballast`; another prefix runs a second, independent deployment on one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Requests from backend teams (`TurnRequest`, Avro), keyed by turn id, murmur2-partitioned.
    pub requests: String,
    /// Every turn event, keyed by turn id; partition p holds the turns of request partition p.
    pub events: String,
    /// One `TurnOutcome` per finished turn: the contract for analytics consumers.
    pub outcomes: String,
    /// Escalations for operators.
    pub escalations: String,
    /// Request records a worker could not accept, with the reason in the `ballast.reason` header.
    pub dead_letters: String,
    /// Sealed personal values and wrapped keys (compacted), written in the transaction of the
    /// events that use them; tombstones when a user or tenant is forgotten.
    pub vault: String,
    /// Who saw cleartext of which turn, when and why.
    pub reveals: String,
}

pub const DEFAULT_PREFIX: &str = "ballast";

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Topics {
            requests: format!("{prefix}.requests"),
            events: format!("{prefix}.turn-events"),
            outcomes: format!("{prefix}.outcomes"),
            escalations: format!("{prefix}.escalations"),
            dead_letters: format!("{prefix}.dead-letters"),
            vault: format!("{prefix}.vault"),
            reveals: format!("{prefix}.reveals"),
        }
    }

    pub fn all(&self) -> [&str; 7] {
        [
            &self.requests,
            &self.events,
            &self.outcomes,
            &self.escalations,
            &self.dead_letters,
            &self.vault,
            &self.reveals,
        ]
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new(DEFAULT_PREFIX)
    }
}

pub const DEFAULT_PARTITIONS: u32 = 8;

/// Creates every Ballast topic (existing ones are left as they are, except that the vault
/// topic is given its compaction bound).
pub async fn init(
    cfg: &KafkaConfig,
    topics: &Topics,
    partitions: u32,
    replication: u32,
) -> Result<Vec<String>, LogError> {
    init_with(
        cfg,
        topics,
        partitions,
        replication,
        &vault_topic::VaultCompaction::default(),
    )
    .await
}

/// As [`init`], with the vault topic compacted by `vault` (tests shorten it).
pub async fn init_with(
    cfg: &KafkaConfig,
    topics: &Topics,
    partitions: u32,
    replication: u32,
    vault: &vault_topic::VaultCompaction,
) -> Result<Vec<String>, LogError> {
    let vault_configs = vault.topic_configs();
    for topic in topics.all() {
        // The turn log is the source of truth: never delete by age or size.
        let configs: Vec<(&str, &str)> = if topic == topics.events || topic == topics.reveals {
            vec![("retention.ms", "-1"), ("retention.bytes", "-1")]
        } else if topic == topics.vault {
            // Compacted: the latest record per key forever, and a forgotten key's records
            // gone from the segment files within a stated time (`vault_topic`).
            vault_configs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        ensure_topic(cfg, topic, partitions, replication, &configs).await?;
    }
    // A vault topic made before the bound was set gets it now.
    vault_topic::configure(cfg, &topics.vault, vault).await?;
    Ok(topics.all().iter().map(|t| t.to_string()).collect())
}
