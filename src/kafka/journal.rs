//! The Kafka journal: a Kafka transaction holds the turn events, the outcome records, the dead
//! letters and the consumed request offset (`send_offsets_to_transaction`) of one round — or,
//! with `[worker] commit_interval_ms` > 0, of every round its partition decided while it was
//! open (the actor holds their effects until the commit).
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
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

use super::Topics;
use crate::ids::{Offset, Partition};
use crate::log::kafka::{KafkaConfig, is_retryable};
use crate::log::{LogError, partition_for};
use crate::runtime::RuntimeError;
use crate::runtime::journal::{Held, Journal, Journals, Round};

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
            open: None,
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
    /// The open transaction's records not yet acknowledged (`true`: a turn event) and the
    /// request offset its last round carried; `None`: no transaction open.
    open: Option<Open>,
    producer: FutureProducer,
    topics: Topics,
    transactional: bool,
    outcome_partitions: u32,
    escalation_partitions: u32,
    vault_partitions: u32,
    dead_letter_partitions: u32,
    membership: Option<Arc<dyn GroupMetadata>>,
}

/// A transaction holding rounds (`[worker] commit_interval_ms` > 0).
struct Open {
    deliveries: Vec<(DeliveryFuture, bool)>,
    inbox_next: Offset,
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

    /// Hands the round's records to the producer; each with its acknowledgement to come
    /// (`true`: a turn event).
    fn send_round(
        &self,
        partition: Partition,
        round: &Round,
        deliveries: &mut Vec<(DeliveryFuture, bool)>,
    ) -> Result<(), RuntimeError> {
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
            deliveries.push((
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| txn_error("produce", e))?,
                false,
            ));
        }
        for r in &round.events {
            deliveries.push((
                send(&self.topics.events, partition.0, &r.key, &r.value, None)?,
                true,
            ));
        }
        for r in &round.outcomes {
            let p = partition_for(&r.key, self.outcome_partitions);
            deliveries.push((
                send(&self.topics.outcomes, p.0, &r.key, &r.value, None)?,
                false,
            ));
        }
        for r in &round.escalations {
            let p = partition_for(&r.key, self.escalation_partitions);
            deliveries.push((
                send(&self.topics.escalations, p.0, &r.key, &r.value, None)?,
                false,
            ));
        }
        for (p, r) in &round.forwards {
            let headers = OwnedHeaders::new().insert(Header {
                key: "ballast.forwarded.from",
                value: Some(&partition.0.to_string()),
            });
            deliveries.push((
                send(&self.topics.requests, p.0, &r.key, &r.value, Some(headers))?,
                false,
            ));
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
            deliveries.push((
                send(&self.topics.dead_letters, p, b"", &d.payload, Some(headers))?,
                false,
            ));
        }
        Ok(())
    }

    /// Waits for every record's acknowledgement; the turn-log offset just past the last event.
    async fn acknowledged(
        deliveries: Vec<(DeliveryFuture, bool)>,
    ) -> Result<Option<Offset>, RuntimeError> {
        let mut last_event = None;
        for (d, event) in deliveries {
            match d.await {
                Ok(Ok(delivery)) if event => last_event = Some(delivery.offset),
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
        let result = match self.hold_inner(partition, round).await {
            Ok(Held::Durable(end)) => Ok(end),
            Ok(Held::Pending) => self.flush_inner(partition).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| self.classify(e))
    }

    async fn hold(&mut self, partition: Partition, round: Round) -> Result<Held, RuntimeError> {
        let result = self.hold_inner(partition, round).await;
        result.map_err(|e| self.classify(e))
    }

    async fn flush(&mut self, partition: Partition) -> Result<Option<Offset>, RuntimeError> {
        let result = self.flush_inner(partition).await;
        result.map_err(|e| self.classify(e))
    }

    fn publishes_outcomes(&self) -> bool {
        true
    }
}

impl KafkaJournal {
    /// Without transactions a round is durable once acknowledged; with them it joins the open
    /// transaction (begun here if none is), committed by `flush_inner`.
    async fn hold_inner(
        &mut self,
        partition: Partition,
        round: Round,
    ) -> Result<Held, RuntimeError> {
        if !self.transactional {
            let mut deliveries = Vec::new();
            self.send_round(partition, &round, &mut deliveries)?;
            return Ok(Held::Durable(Self::acknowledged(deliveries).await?));
        }
        let mut open = match self.open.take() {
            Some(open) => open,
            None => {
                let p = self.producer.clone();
                blocking(move || p.begin_transaction())
                    .await?
                    .map_err(|e| txn_error("begin_transaction", e))?;
                Open {
                    deliveries: Vec::new(),
                    inbox_next: round.inbox_next,
                }
            }
        };
        if let Err(e) = self.send_round(partition, &round, &mut open.deliveries) {
            self.abort();
            return Err(e);
        }
        open.inbox_next = round.inbox_next;
        self.open = Some(open);
        Ok(Held::Pending)
    }

    /// Commits the open transaction (every round held since it began), with the request
    /// offset its last round carried.
    async fn flush_inner(&mut self, partition: Partition) -> Result<Option<Offset>, RuntimeError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let inbox_next = open.inbox_next;
        let end = match Self::acknowledged(open.deliveries).await {
            Ok(end) => end,
            Err(e) => {
                self.abort();
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
            if !fatal(&e) {
                self.abort();
            }
            txn_error("commit_transaction", e)
        })?;
        if self.membership.is_some() {
            self.committed_inbox = Some(inbox_next);
        }
        Ok(end)
    }

    /// Aborts the open transaction in the background: the partition restarts (recovering from
    /// what was committed), and a new `init_transactions` would wait for this anyway.
    fn abort(&mut self) {
        self.open = None;
        let p = self.producer.clone();
        std::thread::spawn(move || p.abort_transaction(TXN_TIMEOUT));
    }
}
