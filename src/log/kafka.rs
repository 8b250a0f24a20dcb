//! The Kafka backend: one topic is one log; Kafka partitions are log partitions.
//!
//! - `append` produces the batch to the partition with an idempotent producer (`acks=all`) under
//!   a per-partition lock (batches from one process never interleave) and returns when every
//!   record is acknowledged; the offsets come from the delivery reports. Durability is Kafka's:
//!   acknowledged by all in-sync replicas (not an fsync; on one broker that is its page cache).
//!   If an append fails midway, a prefix of the batch may be present — the turn state machine
//!   accepts any prefix of a decision, and exactly-once workers write through transactions.
//! - Reads use `isolation.level=read_committed`, up to the high watermark.
//! - Offsets are dense as long as no transaction markers are written to the topic; transactional
//!   writers leave gaps, which readers skip (offsets still only increase).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

use super::{EventLog, LogError, Record, Result, Stored, Tail, check_partition, partition_entry};
use crate::ids::{Offset, Partition};

const READ_TIMEOUT: Duration = Duration::from_secs(15);
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a Kafka error may go away if the same call is made again.
pub fn is_retryable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageTimedOut
                | QueueFull
                | BrokerTransportFailure
                | AllBrokersDown
                | NotLeaderForPartition
                | LeaderNotAvailable
                | RequestTimedOut
                | NetworkException
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | OperationTimedOut
                | TimedOutQueue
                | CoordinatorLoadInProgress
                | NotCoordinator
                // Seen for a few seconds after a broker restart, before metadata settles.
                | UnknownPartition
                | UnknownTopicOrPartition
        )
    )
}

pub fn kafka_error(e: KafkaError) -> LogError {
    let retryable = is_retryable(&e);
    LogError::storage(format!("kafka: {e}"), retryable)
}

/// Connection settings shared by every client Ballast makes.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub client_id: String,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            client_id: "ballast".into(),
        }
    }

    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            .set("broker.address.family", "v4");
        c
    }

    /// A consumer that reads assigned partitions (no group membership, no commits).
    pub fn reader(&self) -> Result<StreamConsumer> {
        self.client()
            .set("group.id", "ballast-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            // A fetch the broker holds waits for bytes, not for a commit: records a transaction
            // makes readable were seen only when the held fetch expired (librdkafka's 500 ms
            // default), which a replica's `wait_ms` answers paid in full.
            .set("fetch.wait.max.ms", "20")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka_error)
    }
}

/// Creates `topic` unless it exists; waits until its metadata lists every partition.
pub async fn ensure_topic(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: u32,
    replication: u32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client().create().map_err(kafka_error)?;
    let mut new = NewTopic::new(
        topic,
        partitions as i32,
        TopicReplication::Fixed(replication as i32),
    );
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(META_TIMEOUT)),
        )
        .await
        .map_err(kafka_error)?;
    let mut existed = false;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
            Err((name, code)) => {
                return Err(LogError::storage(
                    format!("creating topic {name}: {code}"),
                    false,
                ));
            }
        }
    }
    let meta: BaseConsumer = cfg.client().create().map_err(kafka_error)?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Ok(md) = meta.fetch_metadata(Some(&topic), META_TIMEOUT)
                && let Some(t) = md.topics().iter().find(|t| t.error().is_none())
            {
                let existing = t.partitions().len() as u32;
                if existing >= partitions {
                    return Ok(());
                }
                // A topic made earlier with fewer partitions: say so, not "did not appear".
                if existed && existing > 0 {
                    return Err(LogError::PartitionMismatch {
                        name: topic,
                        existing,
                        requested: partitions,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LogError::storage(
            format!("topic {topic} did not appear in metadata"),
            true,
        ))
    })
    .await
    .map_err(|e| LogError::storage(e, true))?
}

struct Inner {
    cfg: KafkaConfig,
    topic: String,
    partitions: u32,
    producer: FutureProducer,
    meta: Arc<BaseConsumer>,
    append_locks: Vec<tokio::sync::Mutex<()>>,
    /// One reader per partition, kept between reads with the offset it will deliver next: a
    /// scan reading a partition chunk by chunk reuses it as is; a read at another offset gets
    /// a fresh one. Creating a librdkafka consumer per read (threads, broker connections) cost
    /// more than the read.
    readers: Vec<tokio::sync::Mutex<Option<Reader>>>,
    /// One tail per partition kept for `wait_for_records`: a follower waits on every partition
    /// after each catch-up, and a consumer made per wait (connections, a fetch from scratch)
    /// made each wake-up cost hundreds of milliseconds.
    waiters: Vec<tokio::sync::Mutex<Option<KafkaTail>>>,
}

struct Reader {
    consumer: StreamConsumer,
    /// The offset the consumer's next message will have (or past it, over transaction markers).
    next: u64,
    /// Just past the last record it delivered. A caller continues from there, not from `next`:
    /// between them lie only a commit's marker or aborted records, which a reader at `next`
    /// has stepped over. Matching only `next` made every read after a commit a fresh consumer
    /// (a connection and a fetch from scratch, ~200 ms), which a replica paid per catch-up.
    delivered_end: u64,
}

/// A log stored in one Kafka topic.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl KafkaLog {
    /// Opens the log in `topic`, which must exist (see [`ensure_topic`]).
    pub async fn open(cfg: &KafkaConfig, topic: &str) -> Result<Self> {
        let producer: FutureProducer = cfg
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(kafka_error)?;
        let meta: Arc<BaseConsumer> = Arc::new(cfg.client().create().map_err(kafka_error)?);
        let partitions = {
            let meta = Arc::clone(&meta);
            let topic = topic.to_string();
            tokio::task::spawn_blocking(move || -> Result<u32> {
                let md = meta
                    .fetch_metadata(Some(&topic), META_TIMEOUT)
                    .map_err(kafka_error)?;
                let t = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .ok_or_else(|| {
                        LogError::storage(
                            format!("topic {topic} does not exist (run `ballast kafka init`)"),
                            false,
                        )
                    })?;
                Ok(t.partitions().len() as u32)
            })
            .await
            .map_err(|e| LogError::storage(e, true))??
        };
        Ok(KafkaLog {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                topic: topic.to_string(),
                partitions,
                producer,
                meta,
                append_locks: (0..partitions)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                readers: (0..partitions)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                waiters: (0..partitions)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
            }),
        })
    }

    /// Appends records, `None` values as tombstones (null payloads, which compaction removes
    /// with the key); returns the first record's offset once durable.
    pub async fn produce(
        &self,
        partition: Partition,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<Offset> {
        let append_lock = partition_entry(&self.inner.append_locks, partition)?;
        if records.is_empty() {
            return self.end(partition).await;
        }
        let _serial = append_lock.lock().await;
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, value) in &records {
            let mut record = FutureRecord::to(&self.inner.topic)
                .partition(partition.0 as i32)
                .key(&key[..]);
            if let Some(v) = value {
                record = record.payload(&v[..]);
            }
            loop {
                match self.inner.producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_error(e)),
                }
            }
        }
        let mut base = None;
        for d in deliveries {
            match d.await {
                Ok(Ok(delivery)) => {
                    base.get_or_insert(delivery.offset);
                }
                Ok(Err((e, _))) => return Err(kafka_error(e)),
                Err(_) => return Err(LogError::Closed),
            }
        }
        Ok(Offset(base.unwrap_or(0).max(0) as u64))
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    fn assigned(&self, partition: Partition, from: Offset) -> Result<StreamConsumer> {
        let consumer = self.inner.cfg.reader()?;
        self.assign(&consumer, partition, from)?;
        Ok(consumer)
    }

    /// Points `consumer` at `from` in `partition` (librdkafka drops what it fetched before).
    fn assign(&self, consumer: &StreamConsumer, partition: Partition, from: Offset) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.inner.topic,
            partition.0 as i32,
            KOffset::Offset(from.0 as i64),
        )
        .map_err(kafka_error)?;
        consumer.assign(&tpl).map_err(kafka_error)
    }

    fn position_of(&self, consumer: &StreamConsumer, partition: Partition) -> Option<u64> {
        let positions = consumer.position().ok()?;
        match positions
            .find_partition(&self.inner.topic, partition.0 as i32)?
            .offset()
        {
            KOffset::Offset(o) if o >= 0 => Some(o as u64),
            _ => None,
        }
    }

    async fn high_watermark(&self, partition: Partition) -> Result<u64> {
        let meta = Arc::clone(&self.inner.meta);
        let topic = self.inner.topic.clone();
        tokio::task::spawn_blocking(move || {
            meta.fetch_watermarks(&topic, partition.0 as i32, META_TIMEOUT)
        })
        .await
        .map_err(|e| LogError::storage(e, true))?
        .map(|(_, high)| high.max(0) as u64)
        .map_err(kafka_error)
    }
}

fn stored(m: &impl Message) -> Stored {
    Stored {
        offset: Offset(m.offset().max(0) as u64),
        key: m.key().unwrap_or_default().to_vec(),
        value: m.payload().unwrap_or_default().to_vec(),
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    async fn append(&self, partition: Partition, records: Vec<Record>) -> Result<Offset> {
        let records = records
            .into_iter()
            .map(|r| (r.key, Some(r.value)))
            .collect();
        self.produce(partition, records).await
    }

    async fn read(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>> {
        check_partition(partition, self.inner.partitions)?;
        let mut high = self.high_watermark(partition).await?;
        if from.0 >= high || max == 0 {
            return Ok(Vec::new());
        }
        let Some(slot) = self.inner.readers.get(partition.0 as usize) else {
            return Err(LogError::storage(
                format!("no reader for {partition}"),
                false,
            ));
        };
        let mut slot = slot.lock().await;
        let reader = match slot.take() {
            Some(r) if r.next == from.0 || r.delivered_end == from.0 => r,
            // Another offset: a fresh consumer. Re-assigning the old one left its position at
            // the old offset until the new fetch arrived, and a read that timed out waiting
            // took that stale position for progress past records it never delivered.
            _ => Reader {
                consumer: self.assigned(partition, from)?,
                next: from.0,
                delivered_end: from.0,
            },
        };
        let delivered_before = reader.delivered_end;
        let consumer = &reader.consumer;
        let mut out: Vec<Stored> = Vec::with_capacity(max.min((high - from.0) as usize));
        // The consumer's position moves past control records (transaction markers) and aborted
        // data without delivering them: reaching `high` by position means the range is read.
        let mut position = reader.next.max(from.0);
        let mut last_progress = std::time::Instant::now();
        while out.len() < max && position < high {
            // Short: a committed transaction ends in a marker the consumer steps over without
            // delivering it, so the last record of a read is followed by nothing — only the
            // position, checked when this expires, shows the range is read. At 200 ms every
            // read that ended at a commit (a replica's each catch-up) waited that long.
            match tokio::time::timeout(Duration::from_millis(10), consumer.recv()).await {
                Ok(Ok(m)) => {
                    let s = stored(&m);
                    last_progress = std::time::Instant::now();
                    // A commit returns before the coordinator writes its markers: `high` (the
                    // last stable offset) may have been read just before they landed, and the
                    // consumer already sees past it. Ask again so the rest of that round is
                    // read now instead of ending the read in the middle of it.
                    if s.offset.0 >= high {
                        high = self.high_watermark(partition).await?.max(s.offset.0 + 1);
                    }
                    // Offsets only go up: anything at or below what was delivered (a fetch
                    // from before a re-assignment) is not delivered again.
                    if s.offset.0 >= position {
                        position = s.offset.0 + 1;
                        out.push(s);
                    }
                }
                Ok(Err(e)) => return Err(kafka_error(e)),
                Err(_) => {
                    let now = self.position_of(consumer, partition).unwrap_or(position);
                    if now > position {
                        position = now;
                        last_progress = std::time::Instant::now();
                    } else if last_progress.elapsed() > READ_TIMEOUT {
                        return Err(LogError::storage(
                            format!(
                                "{}:{partition} stuck at {position} below {high} for {READ_TIMEOUT:?} (an open transaction?)",
                                self.inner.topic
                            ),
                            true,
                        ));
                    }
                }
            }
        }
        // Kept for the next read only when its position is known: what was delivered last.
        *slot = Some(Reader {
            consumer: reader.consumer,
            next: position,
            delivered_end: out.last().map_or(delivered_before, |s| s.offset.0 + 1),
        });
        Ok(out)
    }

    async fn end(&self, partition: Partition) -> Result<Offset> {
        check_partition(partition, self.inner.partitions)?;
        Ok(Offset(self.high_watermark(partition).await?))
    }

    /// Through the partition's kept tail: records it delivered at or after `from` answer at
    /// once; else it waits for the next. Cancel-safe: the tail stays in its slot (a dropped
    /// wait leaves what it received in the tail's `pending`), and one behind `from` skips ahead.
    async fn wait_for_records(&self, partition: Partition, from: Offset) -> Result<()> {
        let mut slot = partition_entry(&self.inner.waiters, partition)?
            .lock()
            .await;
        if slot.is_none() {
            *slot = Some(KafkaTail {
                consumer: self.assigned(partition, from)?,
                position: from,
                pending: std::collections::VecDeque::new(),
            });
        }
        let Some(tail) = slot.as_mut() else {
            return Err(LogError::Closed);
        };
        loop {
            if tail.position > from || tail.pending.iter().any(|s| s.offset >= from) {
                return Ok(());
            }
            match tail.next_batch(10_000).await {
                Ok(_) => {}
                Err(e) => {
                    // A broken consumer is not kept: the next wait makes a fresh one.
                    *slot = None;
                    return Err(e);
                }
            }
        }
    }

    async fn subscribe(&self, partition: Partition, from: Offset) -> Result<Box<dyn Tail>> {
        check_partition(partition, self.inner.partitions)?;
        Ok(Box::new(KafkaTail {
            consumer: self.assigned(partition, from)?,
            position: from,
            pending: std::collections::VecDeque::new(),
        }))
    }
}

struct KafkaTail {
    consumer: StreamConsumer,
    position: Offset,
    /// Received from the consumer but not yet returned. Holding them here (not in a local of
    /// `next_batch`) is what makes `next_batch` cancel-safe: a dropped call loses nothing.
    pending: std::collections::VecDeque<Stored>,
}

impl KafkaTail {
    /// One non-blocking attempt to receive: polls `recv` once with a no-op waker. Dropping a
    /// pending `recv` is safe (it is cancel-safe), and no timer is involved.
    fn try_recv(&self) -> Option<Result<Stored>> {
        let mut fut = std::pin::pin!(self.consumer.recv());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(m)) => Some(Ok(stored(&m))),
            std::task::Poll::Ready(Err(e)) => Some(Err(kafka_error(e))),
            std::task::Poll::Pending => None,
        }
    }
}

#[async_trait]
impl Tail for KafkaTail {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Stored>> {
        let max = max.max(1);
        while self.pending.is_empty() {
            // `recv` is cancel-safe, and nothing is held between its completion and the push.
            let m = self.consumer.recv().await.map_err(kafka_error)?;
            let s = stored(&m);
            drop(m);
            if s.offset >= self.position {
                self.pending.push_back(s);
            }
        }
        while self.pending.len() < max {
            match self.try_recv() {
                Some(Ok(s)) if s.offset >= self.position => self.pending.push_back(s),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        let n = self.pending.len().min(max);
        let out: Vec<Stored> = self.pending.drain(..n).collect();
        if let Some(last) = out.last() {
            self.position = last.offset.next();
        }
        Ok(out)
    }

    fn position(&self) -> Offset {
        self.position
    }
}
