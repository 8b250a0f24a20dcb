//! The Kafka journal: each round is one Kafka transaction holding the turn events, the outcome
//! records, the dead letters and the consumed request offset (`send_offsets_to_transaction`).
//!
//! Each partition has its own `transactional.id` (`<events topic>-<group>-p<N>`). Opening the journal
//! calls `init_transactions`, which fences every earlier producer with that id: a worker that
//! lost the partition (a zombie paused past its session timeout) can no longer commit, and what
//! it wrote uncommitted is invisible to `read_committed` readers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

use super::Topics;
use crate::ids::{Offset, Partition};
use crate::log::kafka::{KafkaConfig, is_retryable};
use crate::log::{LogError, partition_for};
use crate::runtime::RuntimeError;
use crate::runtime::journal::{Journal, Journals, Round};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Gives the journal the consumer group's metadata, for committing offsets in transactions.
pub trait GroupMetadata: Send + Sync + 'static {
    fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata>;
}

impl<C: ConsumerContext + 'static> GroupMetadata for BaseConsumer<C> {
    fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        Consumer::group_metadata(self)
    }
}

pub struct KafkaJournals {
    pub cfg: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    /// `false` for Kafka-compatible brokers without transactions: idempotent appends only; the
    /// request position is still derived from the turn log, duplicates are still dropped by seq.
    pub transactional: bool,
    pub outcome_partitions: u32,
    pub dead_letter_partitions: u32,
    pub escalation_partitions: u32,
    pub vault_partitions: u32,
    pub membership: Option<Arc<dyn GroupMetadata>>,
}

/// Fenced or otherwise unusable: only a fatal producer state. Abortable transaction errors
/// (a failed offset commit during a broker restart, …) are retried by restarting the partition.
fn fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fatal
        )
    ) || matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

fn txn_error(what: &str, e: KafkaError) -> RuntimeError {
    if fatal(&e) {
        RuntimeError::Fenced(format!("{what}: {e}"))
    } else {
        // Anything short of fencing is worth a restart of the partition: the actor recovers
        // from the committed log and decides again.
        let _ = is_retryable(&e);
        RuntimeError::Log(LogError::storage(format!("kafka {what}: {e}"), true))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))
}

#[async_trait]
impl Journals for KafkaJournals {
    async fn open(&self, partition: Partition) -> Result<Box<dyn Journal>, RuntimeError> {
        let mut client = self.cfg.client();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000");
        if self.transactional {
            client
                .set(
                    "transactional.id",
                    format!("{}-{}-p{}", self.topics.events, self.group, partition.0),
                )
                .set("transaction.timeout.ms", "60000");
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|e| RuntimeError::Log(crate::log::kafka::kafka_error(e)))?;
        if self.transactional {
            let p = producer.clone();
            blocking(move || p.init_transactions(TXN_TIMEOUT))
                .await?
                .map_err(|e| txn_error("init_transactions", e))?;
        }
        Ok(Box::new(KafkaJournal {
            committed_inbox: None,
            producer,
            topics: self.topics.clone(),
            transactional: self.transactional,
            outcome_partitions: self.outcome_partitions,
            escalation_partitions: self.escalation_partitions,
            vault_partitions: self.vault_partitions,
            dead_letter_partitions: self.dead_letter_partitions,
            membership: self.membership.clone(),
        }))
    }
}

struct KafkaJournal {
    /// The request offset last committed in a transaction: most rounds carry only effect
    /// results, and skipping an unchanged offset saves two coordinator round trips.
    committed_inbox: Option<Offset>,
    producer: FutureProducer,
    topics: Topics,
    transactional: bool,
    outcome_partitions: u32,
    escalation_partitions: u32,
    vault_partitions: u32,
    dead_letter_partitions: u32,
    membership: Option<Arc<dyn GroupMetadata>>,
}

impl KafkaJournal {
    /// Once fenced, librdkafka puts the producer in a fatal state and later calls fail with
    /// secondary errors (purged queues, …): any error in that state means "fenced".
    fn classify(&self, err: RuntimeError) -> RuntimeError {
        match self.producer.client().fatal_error() {
            Some((code, why)) => RuntimeError::Fenced(format!("{code:?}: {why}")),
            None => err,
        }
    }

    async fn produce_round(
        &self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError> {
        let mut deliveries = Vec::with_capacity(round.events.len() + round.outcomes.len());
        let events = round.events.len();
        let send =
            |topic: &str, p: u32, key: &[u8], value: &[u8], headers: Option<OwnedHeaders>| {
                let mut record = FutureRecord::to(topic)
                    .partition(p as i32)
                    .key(key)
                    .payload(value);
                if let Some(h) = headers {
                    record = record.headers(h);
                }
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| txn_error("produce", e))
            };
        // The vault records the events below use, in the same transaction: both or neither.
        for (id, value) in &round.vault {
            let p = super::vault::partition_of(id, self.vault_partitions);
            let mut record = FutureRecord::to(&self.topics.vault)
                .partition(p.0 as i32)
                .key(&id[..]);
            if let Some(v) = value {
                record = record.payload(&v[..]);
            }
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| txn_error("produce", e))?,
            );
        }
        let events_at = deliveries.len();
        for r in &round.events {
            deliveries.push(send(
                &self.topics.events,
                partition.0,
                &r.key,
                &r.value,
                None,
            )?);
        }
        for r in &round.outcomes {
            let p = partition_for(&r.key, self.outcome_partitions);
            deliveries.push(send(&self.topics.outcomes, p.0, &r.key, &r.value, None)?);
        }
        for r in &round.escalations {
            let p = partition_for(&r.key, self.escalation_partitions);
            deliveries.push(send(&self.topics.escalations, p.0, &r.key, &r.value, None)?);
        }
        for (p, r) in &round.forwards {
            let headers = OwnedHeaders::new().insert(Header {
                key: "ballast.forwarded.from",
                value: Some(&partition.0.to_string()),
            });
            deliveries.push(send(
                &self.topics.requests,
                p.0,
                &r.key,
                &r.value,
                Some(headers),
            )?);
        }
        for d in &round.dead_letters {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "ballast.reason",
                    value: Some(d.reason.as_str()),
                })
                .insert(Header {
                    key: "ballast.source.partition",
                    value: Some(&d.partition.0.to_string()),
                })
                .insert(Header {
                    key: "ballast.source.offset",
                    value: Some(&d.offset.0.to_string()),
                });
            let p = d.partition.0 % self.dead_letter_partitions.max(1);
            deliveries.push(send(
                &self.topics.dead_letters,
                p,
                b"",
                &d.payload,
                Some(headers),
            )?);
        }
        let mut last_event = None;
        for (i, d) in deliveries.into_iter().enumerate() {
            match d.await {
                Ok(Ok(delivery)) if (events_at..events_at + events).contains(&i) => {
                    last_event = Some(delivery.offset)
                }
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(txn_error("delivery", e)),
                Err(_) => return Err(RuntimeError::Log(LogError::Closed)),
            }
        }
        Ok(last_event.map(|o| Offset(o.max(0) as u64 + 1)))
    }
}

#[async_trait]
impl Journal for KafkaJournal {
    async fn commit(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError> {
        let result = self.commit_inner(partition, round).await;
        result.map_err(|e| self.classify(e))
    }

    fn publishes_outcomes(&self) -> bool {
        true
    }
}

impl KafkaJournal {
    async fn commit_inner(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Option<Offset>, RuntimeError> {
        if !self.transactional {
            return self.produce_round(partition, round).await;
        }
        let inbox_next = round.inbox_next;
        let p = self.producer.clone();
        blocking(move || p.begin_transaction())
            .await?
            .map_err(|e| txn_error("begin_transaction", e))?;
        let produced = self.produce_round(partition, round).await;
        let end = match produced {
            Ok(end) => end,
            Err(e) => {
                let p = self.producer.clone();
                let _ = blocking(move || p.abort_transaction(TXN_TIMEOUT)).await;
                return Err(e);
            }
        };
        let p = self.producer.clone();
        let membership = self
            .membership
            .clone()
            .filter(|_| self.committed_inbox != Some(inbox_next));
        let requests = self.topics.requests.clone();
        blocking(move || -> Result<(), KafkaError> {
            if let Some(cgm) = membership.as_ref().and_then(|m| m.group_metadata()) {
                let mut offsets = TopicPartitionList::new();
                offsets.add_partition_offset(
                    &requests,
                    partition.0 as i32,
                    KOffset::Offset(inbox_next.0 as i64),
                )?;
                p.send_offsets_to_transaction(&offsets, &cgm, TXN_TIMEOUT)?;
            }
            p.commit_transaction(TXN_TIMEOUT)
        })
        .await?
        .map_err(|e| {
            let p = self.producer.clone();
            if !fatal(&e) {
                std::thread::spawn(move || p.abort_transaction(TXN_TIMEOUT));
            }
            txn_error("commit_transaction", e)
        })?;
        if self.membership.is_some() {
            self.committed_inbox = Some(inbox_next);
        }
        Ok(end)
    }
}
