//! Ballast on Kafka: topics, the exactly-once journal, and workers that share partitions through
//! a consumer group.

pub mod demo;
pub mod journal;
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
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.requests,
            &self.events,
            &self.outcomes,
            &self.escalations,
            &self.dead_letters,
        ]
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new(DEFAULT_PREFIX)
    }
}

pub const DEFAULT_PARTITIONS: u32 = 8;

/// Creates every Ballast topic (existing ones are left as they are).
pub async fn init(
    cfg: &KafkaConfig,
    topics: &Topics,
    partitions: u32,
    replication: u32,
) -> Result<Vec<String>, LogError> {
    for topic in topics.all() {
        // The turn log is the source of truth: never delete by age or size.
        let configs: &[(&str, &str)] = if topic == topics.events {
            &[("retention.ms", "-1"), ("retention.bytes", "-1")]
        } else {
            &[]
        };
        ensure_topic(cfg, topic, partitions, replication, configs).await?;
    }
    Ok(topics.all().iter().map(|t| t.to_string()).collect())
}
