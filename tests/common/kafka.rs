//! A Ballast deployment on a real broker for the Kafka tests: its own topics (unique prefix), a
//! workload, worker processes, and the checks every test makes on the committed log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::{Schema, from_avro_datum, rabin::Rabin, types::Value};
use ballast::demo::run::requests_for;
use ballast::demo::workload;
use ballast::event::codec::{Codecs, SchemaRegistry};
use ballast::event::{Event, Payload};
use ballast::exec::scripted::{WorkloadTurn, write_workload};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::kafka::{self, Topics};
use ballast::log::EventLog;
use ballast::log::kafka::{KafkaConfig, KafkaLog};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

use super::{bin, effects};

pub struct Deployment {
    pub bootstrap: String,
    pub prefix: String,
    pub topics: Topics,
    pub cfg: KafkaConfig,
    pub dir: tempfile::TempDir,
    pub turns: Vec<WorkloadTurn>,
    pub codecs: Codecs,
}

impl Deployment {
    /// Topics with `partitions` partitions under a unique prefix, and a workload of `n` turns.
    pub async fn new(bootstrap: &str, tag: &str, partitions: u32, n: usize, seed: u64) -> Self {
        let prefix = super::broker::unique_topic(tag);
        Self::with_prefix(bootstrap, &prefix, partitions, n, seed).await
    }

    pub async fn with_prefix(
        bootstrap: &str,
        prefix: &str,
        partitions: u32,
        n: usize,
        seed: u64,
    ) -> Self {
        let topics = Topics::new(prefix);
        let cfg = KafkaConfig::new(bootstrap);
        kafka::init(&cfg, &topics, partitions, 1)
            .await
            .expect("topics");
        let dir = tempfile::tempdir().expect("tmp");
        // The group's workers share one master key (a real deployment's file, not --dev-key).
        std::fs::write(
            dir.path().join("master.key"),
            format!("{}\n", hex::encode(ballast::vault::crypto::random_key())),
        )
        .expect("master key");
        let turns = workload::generate(n, seed);
        write_workload(&dir.path().join("workload.jsonl"), &turns).expect("workload");
        Deployment {
            bootstrap: bootstrap.to_string(),
            prefix: prefix.to_string(),
            topics,
            cfg,
            dir,
            turns,
            codecs: Codecs::new(SchemaRegistry::new()).expect("codecs"),
        }
    }

    /// The master key file this deployment's workers use.
    pub fn master_key(&self) -> std::path::PathBuf {
        self.dir.path().join("master.key")
    }

    /// Starts `ballast worker` number `i` of this deployment's group.
    pub fn worker(&self, i: usize) -> Child {
        Command::new(bin())
            .args([
                "worker",
                "--bootstrap",
                &self.bootstrap,
                "--topic-prefix",
                &self.prefix,
            ])
            .args(["--group", &format!("{}-group", self.prefix)])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("worker-{i}")))
            .arg("--workload")
            .arg(self.dir.path().join("workload.jsonl"))
            .arg("--effects")
            .arg(self.dir.path().join("effects.jsonl"))
            .args(["--service-latency-ms", "10", "--session-timeout-ms", "6000"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env(ballast::vault::MASTER_KEY_ENV, self.master_key())
            .env(
                "BALLAST_LOG",
                std::env::var("BALLAST_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker starts")
    }

    pub async fn requests_log(&self) -> KafkaLog {
        KafkaLog::open(&self.cfg, &self.topics.requests)
            .await
            .expect("requests log")
    }

    /// Produces a request for every workload turn.
    pub async fn submit_all(&self) {
        let log = self.requests_log().await;
        ballast::submit::submit(&log, &self.codecs.requests, &requests_for(&self.turns, 0))
            .await
            .expect("submit");
    }

    /// Waits until at least `n` side effects are journaled: real work is under way.
    pub fn wait_for_effects(&self, n: usize) {
        let journal = self.dir.path().join("effects.jsonl");
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < n {
            assert!(
                Instant::now() < deadline,
                "no progress: fewer than {n} side effects"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until every workload turn has an outcome record; returns the records, or the
    /// turns still missing at the deadline.
    pub async fn wait_for_outcomes(
        &self,
        within: Duration,
    ) -> Result<Vec<BTreeMap<String, Value>>, Vec<String>> {
        let wanted: HashSet<String> = self.turns.iter().map(|t| t.turn_id.to_string()).collect();
        let deadline = Instant::now() + within;
        loop {
            let outcomes = decode_outcomes(&self.bootstrap, &self.topics.outcomes);
            let done: HashSet<String> = outcomes
                .iter()
                .filter_map(|o| match o.get("turn_id") {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            if wanted.is_subset(&done) {
                return Ok(outcomes);
            }
            if Instant::now() > deadline {
                return Err(wanted.difference(&done).cloned().collect());
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    /// Every committed event of the turn log, by turn, with the partition it was found in.
    pub async fn turn_log(&self) -> BTreeMap<TurnId, Vec<(Partition, Offset, Event)>> {
        let events = KafkaLog::open(&self.cfg, &self.topics.events)
            .await
            .expect("events log");
        let mut by_turn: BTreeMap<TurnId, Vec<(Partition, Offset, Event)>> = BTreeMap::new();
        for p in (0..events.partitions()).map(Partition) {
            for s in events.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
                let e = self
                    .codecs
                    .events
                    .decode(&s.value)
                    .expect("every event decodes");
                by_turn.entry(e.turn_id).or_default().push((p, s.offset, e));
            }
        }
        by_turn
    }

    /// The checks every run must pass on the committed log: each workload turn present, in its
    /// own partition, terminal, with a dense history and one result per call attempt; each
    /// journaled side effect had a committed intent; no non-idempotent call ran twice.
    pub async fn check_log(&self) {
        let log = self.turn_log().await;
        assert_eq!(log.len(), self.turns.len(), "every turn has events");
        let events_log = KafkaLog::open(&self.cfg, &self.topics.events)
            .await
            .expect("events log");
        let mut by_turn: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
        let users: BTreeMap<TurnId, &str> = self
            .turns
            .iter()
            .map(|t| (t.turn_id, t.user_id.as_str()))
            .collect();
        for (turn, entries) in log {
            for (p, _, e) in entries {
                let user = users.get(&turn).copied().unwrap_or_default();
                let key = ballast::ids::routing_key(&e.tenant, user);
                assert_eq!(
                    events_log.partition_for(&key),
                    p,
                    "turn {turn} lives in its user's partition"
                );
                by_turn.entry(turn).or_default().push(e);
            }
        }
        super::check_turn_invariants(&by_turn);
        for (turn, events) in &by_turn {
            assert_eq!(
                events.last().map(|e| e.kind()),
                Some("TurnCompleted"),
                "turn {turn} is terminal"
            );
        }
        let mut intents = HashMap::new();
        for e in by_turn.values().flatten() {
            if let Payload::ToolCallStarted(s) = &e.payload {
                intents.insert(s.call_id.clone(), s.idempotent);
            }
        }
        let mut once = HashSet::new();
        for (call_id, tool, _) in effects(self.dir.path()) {
            let idempotent = *intents
                .get(&call_id)
                .unwrap_or_else(|| panic!("{tool} {call_id} ran without a committed intent"));
            if !idempotent {
                assert!(
                    once.insert(call_id.clone()),
                    "non-idempotent {tool} {call_id} ran twice"
                );
            }
        }
    }

    /// For a failure message: the history of some unfinished turns, and how far each partition
    /// consumed its requests.
    pub async fn diagnose(&self, missing: &[String]) -> String {
        let sample: Vec<&String> = missing.iter().take(5).collect();
        let mut report = format!("{} turns unfinished, e.g. {sample:?}\n", missing.len());
        let mut max_source: BTreeMap<u32, i64> = BTreeMap::new();
        for (turn, entries) in self.turn_log().await {
            for (p, offset, e) in entries {
                if let Payload::TurnRequested(r) = &e.payload {
                    let m = max_source.entry(p.0).or_insert(-1);
                    *m = (*m).max(r.source_offset.unwrap_or(-1));
                }
                if sample.contains(&&turn.to_string()) {
                    report.push_str(&format!(
                        "{turn} {p}@{offset} #{} {}\n",
                        e.seq,
                        e.describe()
                    ));
                }
            }
        }
        let requests = self.requests_log().await;
        for p in (0..requests.partitions()).map(Partition) {
            report.push_str(&format!(
                "{p}: requests end {:?}, max committed source_offset {:?}\n",
                requests.end(p).await.ok(),
                max_source.get(&p.0)
            ));
        }
        report
    }
}

pub fn signal(sig: &str, child: &Child) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill {sig} {}", child.id());
}

/// Reads `topic` with a plain rdkafka consumer and decodes each value with the schema file only.
pub fn decode_outcomes(bootstrap: &str, topic: &str) -> Vec<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/turn_outcome.avsc"),
    )
    .expect("schema file");
    let schema = Schema::parse_str(&text).expect("schema parses");
    let fingerprint = schema.fingerprint::<Rabin>().bytes;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "analytics-test")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in 0..md.topics()[0].partitions().len() as i32 {
        tpl.add_partition_offset(topic, p, KOffset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Offsets include transaction markers, so they over-count records: read until idle.
    let mut idle = 0;
    while Instant::now() < deadline && idle < 10 {
        match consumer.poll(Duration::from_millis(100)) {
            None => idle += 1,
            Some(m) => {
                idle = 0;
                let m = m.expect("message");
                let bytes = m.payload().expect("value");
                assert_eq!(&bytes[..2], &[0xC3, 0x01], "single-object marker");
                assert_eq!(
                    &bytes[2..10],
                    &fingerprint[..8],
                    "written with the schema in schemas/"
                );
                let value = from_avro_datum(&schema, &mut &bytes[10..], None)
                    .expect("decodes with the schema file alone");
                let Value::Record(fields) = value else {
                    panic!("record")
                };
                out.push(fields.into_iter().collect());
            }
        }
    }
    out
}

/// One record per turn id among outcome records.
pub fn assert_one_outcome_per_turn(outcomes: &[BTreeMap<String, Value>]) {
    let mut per_turn: HashMap<String, usize> = HashMap::new();
    for o in outcomes {
        if let Some(Value::String(t)) = o.get("turn_id") {
            *per_turn.entry(t.clone()).or_insert(0) += 1;
        }
    }
    assert!(
        per_turn.values().all(|n| *n == 1),
        "one outcome record per turn"
    );
}
