//! Ballast on a real Apache Kafka broker: several worker processes in one consumer group, one of
//! them killed with SIGKILL mid-run.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::{Schema, from_avro_datum, rabin::Rabin, types::Value};
use ballast::demo::workload;
use ballast::event::{Event, Payload, TurnRequest};
use ballast::exec::scripted::write_workload;
use ballast::ids::{Offset, Partition, TurnId};
use ballast::kafka::{self, Topics};
use ballast::log::EventLog;
use ballast::log::kafka::{KafkaConfig, KafkaLog};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

fn worker(bootstrap: &str, prefix: &str, dir: &Path, i: usize) -> Child {
    Command::new(bin())
        .args([
            "worker",
            "--bootstrap",
            bootstrap,
            "--group",
            &format!("{prefix}-group"),
            "--topic-prefix",
            prefix,
        ])
        .arg("--data-dir")
        .arg(dir.join(format!("worker-{i}")))
        .arg("--workload")
        .arg(dir.join("workload.jsonl"))
        .arg("--effects")
        .arg(dir.join("effects.jsonl"))
        .args(["--service-latency-ms", "10", "--session-timeout-ms", "6000"])
        .env(
            "BALLAST_LOG",
            std::env::var("BALLAST_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker starts")
}

/// Reads `topic` with a plain rdkafka consumer and decodes each value with the schema file only.
fn decode_outcomes(bootstrap: &str, topic: &str) -> Vec<BTreeMap<String, Value>> {
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
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        remaining += high;
        tpl.add_partition_offset(topic, p, KOffset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    // Offsets include transaction markers, so "high" over-counts records; stop once idle.
    let mut idle = 0;
    while seen < remaining && Instant::now() < deadline && idle < 20 {
        match consumer.poll(Duration::from_millis(100)) {
            None => idle += 1,
            Some(m) => {
                idle = 0;
                let m = m.expect("message");
                seen = seen.max(1) + 1;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_every_turn_finishes_in_order_and_nothing_unsafe_repeats() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let prefix = broker::unique_topic("t");
    let topics = Topics::new(&prefix);
    let cfg = KafkaConfig::new(bootstrap.clone());
    kafka::init(&cfg, &topics, 4, 1).await.expect("topics");
    let tmp = tempfile::tempdir().expect("tmp");
    let turns = workload::generate(2000, 7);
    write_workload(&tmp.path().join("workload.jsonl"), &turns).expect("workload");

    let mut workers: Vec<Child> = (0..3)
        .map(|i| worker(&bootstrap, &prefix, tmp.path(), i))
        .collect();
    let requests = KafkaLog::open(&cfg, &topics.requests)
        .await
        .expect("requests log");
    let reqs: Vec<TurnRequest> = turns
        .iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "chat".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
        })
        .collect();
    let codecs = ballast::event::codec::Codecs::new(ballast::event::codec::SchemaRegistry::new())
        .expect("codecs");
    ballast::submit::submit(&requests, &codecs.requests, &reqs)
        .await
        .expect("submit");

    // Kill one worker once real work is under way.
    let journal = tmp.path().join("effects.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 150 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    workers[0].kill().expect("SIGKILL");
    workers[0].wait().expect("reaped");

    // Every turn reaches an outcome on the outcome topic.
    let wanted: HashSet<String> = turns.iter().map(|t| t.turn_id.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    let outcomes = loop {
        let outcomes = decode_outcomes(&bootstrap, &topics.outcomes);
        let done: HashSet<String> = outcomes
            .iter()
            .filter_map(|o| match o.get("turn_id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if wanted.is_subset(&done) {
            break outcomes;
        }
        if Instant::now() > deadline {
            let events = KafkaLog::open(&cfg, &topics.events)
                .await
                .expect("events log");
            let stuck: Vec<&String> = wanted.difference(&done).take(5).collect();
            let mut report = String::new();
            for p in (0..events.partitions()).map(Partition) {
                for s in events.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
                    let e = codecs.events.decode(&s.value).expect("decodes");
                    if stuck.contains(&&e.turn_id.to_string()) {
                        report.push_str(&format!(
                            "{} {p}@{} #{} {}\n",
                            e.turn_id,
                            s.offset,
                            e.seq,
                            e.describe()
                        ));
                    }
                }
            }
            let mut max_source: BTreeMap<u32, i64> = BTreeMap::new();
            for p in (0..events.partitions()).map(Partition) {
                for s in events.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
                    if let Ok(Event {
                        payload: Payload::TurnRequested(r),
                        ..
                    }) = codecs.events.decode(&s.value)
                    {
                        let m = max_source.entry(p.0).or_insert(-1);
                        *m = (*m).max(r.source_offset.unwrap_or(-1));
                    }
                }
            }
            for p in (0..requests.partitions()).map(Partition) {
                for s in requests
                    .read(p, Offset::ZERO, 1_000_000)
                    .await
                    .expect("read")
                {
                    let r = codecs.requests.decode(&s.value).expect("request decodes");
                    if stuck.contains(&&r.turn_id.to_string()) {
                        report.push_str(&format!("request {} at {p}@{}\n", r.turn_id, s.offset));
                    }
                }
                report.push_str(&format!(
                    "{p}: requests end {:?}, max committed source_offset {:?}\n",
                    requests.end(p).await.ok(),
                    max_source.get(&p.0)
                ));
            }
            panic!(
                "{} of 2000 turns finished; unfinished: {stuck:?}\n{report}",
                wanted.intersection(&done).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for w in workers.iter_mut().skip(1) {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in workers.iter_mut().skip(1) {
        let status = w.wait().expect("worker exits");
        assert!(
            status.success(),
            "a SIGTERMed worker drains and exits cleanly: {status}"
        );
    }
    let per_turn: HashMap<String, usize> = outcomes.iter().fold(HashMap::new(), |mut m, o| {
        if let Some(Value::String(t)) = o.get("turn_id") {
            *m.entry(t.clone()).or_insert(0) += 1;
        }
        m
    });
    assert!(
        per_turn.values().all(|n| *n == 1),
        "one outcome record per turn"
    );

    // The turn-event topic: every turn terminal, dense and in order, one result per attempt.
    let events = KafkaLog::open(&cfg, &topics.events)
        .await
        .expect("events log");
    let mut by_turn: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for p in (0..events.partitions()).map(Partition) {
        let mut from = Offset::ZERO;
        loop {
            let batch = events.read(p, from, 10_000).await.expect("read");
            let Some(last) = batch.last() else { break };
            from = last.offset.next();
            for s in batch {
                let e = codecs.events.decode(&s.value).expect("event decodes");
                assert_eq!(
                    events.partition_for(&e.turn_id.key()),
                    p,
                    "a turn lives in its partition"
                );
                by_turn.entry(e.turn_id).or_default().push(e);
            }
        }
    }
    assert_eq!(by_turn.len(), 2000);
    check_turn_invariants(&by_turn);
    for (turn, evs) in &by_turn {
        assert_eq!(
            evs.last().map(|e| e.kind()),
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
    for (call_id, tool, _) in effects(tmp.path()) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_worker_resumed_after_its_session_timeout_cannot_append() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let prefix = broker::unique_topic("z");
    let topics = Topics::new(&prefix);
    let cfg = KafkaConfig::new(bootstrap.clone());
    kafka::init(&cfg, &topics, 2, 1).await.expect("topics");
    let tmp = tempfile::tempdir().expect("tmp");
    let turns = workload::generate(400, 11);
    write_workload(&tmp.path().join("workload.jsonl"), &turns).expect("workload");
    let codecs = ballast::event::codec::Codecs::new(ballast::event::codec::SchemaRegistry::new())
        .expect("codecs");
    let requests = KafkaLog::open(&cfg, &topics.requests)
        .await
        .expect("requests log");
    let reqs: Vec<TurnRequest> = turns
        .iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "chat".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
        })
        .collect();

    let mut zombie = worker(&bootstrap, &prefix, tmp.path(), 0);
    ballast::submit::submit(&requests, &codecs.requests, &reqs)
        .await
        .expect("submit");
    let journal = tmp.path().join("effects.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 20 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Freeze the owner mid-work; a second worker takes over once the session times out (6 s).
    let signal = |sig: &str, child: &Child| {
        assert!(
            Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .expect("kill")
                .success()
        );
    };
    signal("-STOP", &zombie);
    let mut successor = worker(&bootstrap, &prefix, tmp.path(), 1);
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The zombie wakes up with work in flight and tries to commit it.
    signal("-CONT", &zombie);

    let wanted: HashSet<String> = turns.iter().map(|t| t.turn_id.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: HashSet<String> = decode_outcomes(&bootstrap, &topics.outcomes)
            .iter()
            .filter_map(|o| match o.get("turn_id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if wanted.is_subset(&done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 400 turns finished",
            wanted.intersection(&done).count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for w in [&zombie, &successor] {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    assert!(successor.wait().expect("exits").success());
    let _ = zombie.wait();

    // Whatever the zombie tried after waking, the committed log has one history per turn: dense
    // sequence numbers (a second writer would repeat them), one result per call attempt, one
    // outcome per turn, and no non-idempotent call twice.
    let events = KafkaLog::open(&cfg, &topics.events)
        .await
        .expect("events log");
    let mut by_turn: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for p in (0..events.partitions()).map(Partition) {
        for s in events.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
            let e = codecs.events.decode(&s.value).expect("decodes");
            by_turn.entry(e.turn_id).or_default().push(e);
        }
    }
    assert_eq!(by_turn.len(), 400);
    check_turn_invariants(&by_turn);
    let outcomes = decode_outcomes(&bootstrap, &topics.outcomes);
    assert_eq!(outcomes.len(), 400, "exactly one outcome record per turn");
    let mut intents = HashMap::new();
    for e in by_turn.values().flatten() {
        if let Payload::ToolCallStarted(s) = &e.payload {
            intents.insert(s.call_id.clone(), s.idempotent);
        }
    }
    let mut once = HashSet::new();
    for (call_id, tool, _) in effects(tmp.path()) {
        if intents.get(&call_id) == Some(&false) {
            assert!(
                once.insert(call_id.clone()),
                "non-idempotent {tool} {call_id} ran twice"
            );
        }
    }
}

#[test]
fn the_demo_runs_through_kafka_with_worker_processes_and_reruns_without_redoing_work() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let prefix = broker::unique_topic("d");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf8");
    let args = [
        "demo",
        "--bootstrap",
        &bootstrap,
        "--topic-prefix",
        &prefix,
        "--workers",
        "2",
        "--turns",
        "300",
        "--data-dir",
        dir,
    ];
    let out = ballast(&args);
    let summary = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "300 in the workload",
        "(300 submitted now",
        "succeeded",
        "denied",
        "escalated",
        "p95",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle}:\n{summary}"
        );
    }
    let kafka = [
        "--bootstrap",
        bootstrap.as_str(),
        "--topic-prefix",
        prefix.as_str(),
        "--data-dir",
        dir,
    ];
    let list = ballast(&[&["turns", "--json"][..], &kafka[..]].concat());
    let turns: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(turns.len(), 300);
    assert!(turns.iter().all(|t| t["status"] == "terminal"));
    let id = turns[0]["turn_id"].as_str().expect("id");
    let trace = ballast(&[&["trace", id, "--json"][..], &kafka[..]].concat());
    let events: serde_json::Value = serde_json::from_slice(&trace.stdout).expect("trace json");
    assert_eq!(
        events
            .as_array()
            .and_then(|a| a.last())
            .map(|e| e["event"].clone()),
        Some("TurnCompleted".into())
    );
    let effects_before = effects(tmp.path()).len();
    let again = ballast(&args);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(0 submitted now"));
    assert_eq!(effects(tmp.path()).len(), effects_before);
}

/// A broker of the test's own (so stopping it disturbs no other test), stopped on drop.
struct OwnBroker {
    port: u16,
    home: tempfile::TempDir,
}

impl OwnBroker {
    fn script(&self, cmd: &str) -> String {
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .arg(cmd)
            .env("BALLAST_KAFKA_PORT", self.port.to_string())
            .env("BALLAST_KAFKA_HOME", self.home.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("kafka.sh runs");
        assert!(out.status.success(), "kafka.sh {cmd} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    }

    fn start() -> (Self, String) {
        // A free port whose neighbour (the controller port) is free too.
        let port = loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let p = l.local_addr().expect("addr").port();
            if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let broker = OwnBroker {
            port,
            home: tempfile::tempdir().expect("tmp"),
        };
        let bootstrap = broker.script("start");
        (broker, bootstrap)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .arg("stop")
            .env("BALLAST_KAFKA_PORT", self.port.to_string())
            .env("BALLAST_KAFKA_HOME", self.home.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_finish_when_the_broker_is_stopped_and_restarted_mid_run() {
    // Runs where Kafka runs (the jars are cached by then), on a broker of its own.
    if broker::bootstrap().is_none() {
        return;
    }
    let (own, bootstrap) = OwnBroker::start();
    let prefix = "restart";
    let topics = Topics::new(prefix);
    let cfg = KafkaConfig::new(bootstrap.clone());
    kafka::init(&cfg, &topics, 2, 1).await.expect("topics");
    let tmp = tempfile::tempdir().expect("tmp");
    let turns = workload::generate(600, 5);
    write_workload(&tmp.path().join("workload.jsonl"), &turns).expect("workload");
    let mut workers: Vec<Child> = (0..2)
        .map(|i| worker(&bootstrap, prefix, tmp.path(), i))
        .collect();
    let codecs = ballast::event::codec::Codecs::new(ballast::event::codec::SchemaRegistry::new())
        .expect("codecs");
    let requests = KafkaLog::open(&cfg, &topics.requests)
        .await
        .expect("requests log");
    let reqs: Vec<TurnRequest> = turns
        .iter()
        .map(|t| TurnRequest {
            turn_id: t.turn_id,
            tenant: t.tenant.clone(),
            user_id: t.user_id.clone(),
            text: t.text.clone(),
            channel: "chat".into(),
            attributes: BTreeMap::new(),
            submitted_at_ms: 0,
        })
        .collect();
    ballast::submit::submit(&requests, &codecs.requests, &reqs)
        .await
        .expect("submit");
    drop(requests);
    let journal = tmp.path().join("effects.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 40 {
        assert!(Instant::now() < deadline, "no progress before the restart");
        std::thread::sleep(Duration::from_millis(2));
    }
    own.script("halt");
    tokio::time::sleep(Duration::from_secs(4)).await;
    own.script("start");

    let wanted: HashSet<String> = turns.iter().map(|t| t.turn_id.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done: HashSet<String> = decode_outcomes(&bootstrap, &topics.outcomes)
            .iter()
            .filter_map(|o| match o.get("turn_id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if wanted.is_subset(&done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 600 turns finished after the restart",
            wanted.intersection(&done).count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for w in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
    let events = KafkaLog::open(&cfg, &topics.events)
        .await
        .expect("events log");
    let mut by_turn: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for p in (0..events.partitions()).map(Partition) {
        for s in events.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
            let e = codecs.events.decode(&s.value).expect("decodes");
            by_turn.entry(e.turn_id).or_default().push(e);
        }
    }
    assert_eq!(by_turn.len(), 600);
    check_turn_invariants(&by_turn);
    let mut intents = HashMap::new();
    for e in by_turn.values().flatten() {
        if let Payload::ToolCallStarted(s) = &e.payload {
            intents.insert(s.call_id.clone(), s.idempotent);
        }
    }
    let mut once = HashSet::new();
    for (call_id, tool, _) in effects(tmp.path()) {
        if intents.get(&call_id) == Some(&false) {
            assert!(
                once.insert(call_id.clone()),
                "non-idempotent {tool} {call_id} ran twice"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_go_to_the_dead_letter_topic_and_the_rest_of_the_batch_runs() {
    use rdkafka::message::Headers;
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let prefix = broker::unique_topic("dl");
    let topics = Topics::new(&prefix);
    let cfg = KafkaConfig::new(bootstrap.clone());
    kafka::init(&cfg, &topics, 1, 1).await.expect("topics");
    let tmp = tempfile::tempdir().expect("tmp");
    let turns = workload::generate(2, 3);
    write_workload(&tmp.path().join("workload.jsonl"), &turns).expect("workload");
    let codecs = ballast::event::codec::Codecs::new(ballast::event::codec::SchemaRegistry::new())
        .expect("codecs");
    let request = |t: &ballast::exec::scripted::WorkloadTurn| TurnRequest {
        turn_id: t.turn_id,
        tenant: t.tenant.clone(),
        user_id: t.user_id.clone(),
        text: t.text.clone(),
        channel: "chat".into(),
        attributes: BTreeMap::new(),
        submitted_at_ms: 0,
    };
    let good = |i: usize| {
        codecs
            .requests
            .encode(&request(&turns[i]))
            .expect("encodes")
    };
    let truncated = good(0)[..20].to_vec();
    let mut unknown_schema = good(0);
    unknown_schema[3] ^= 0xff;
    let record = |value: Vec<u8>| ballast::log::Record {
        key: b"k".to_vec(),
        value,
    };
    let requests = KafkaLog::open(&cfg, &topics.requests)
        .await
        .expect("requests log");
    requests
        .append(
            Partition(0),
            vec![
                record(good(0)),
                record(b"not avro at all".to_vec()),
                record(truncated),
                record(unknown_schema),
                record(vec![0xC3; 400 * 1024]),
                record(good(1)),
            ],
        )
        .await
        .expect("append");
    let mut w = worker(&bootstrap, &prefix, tmp.path(), 0);

    let wanted: HashSet<String> = turns.iter().map(|t| t.turn_id.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: HashSet<String> = decode_outcomes(&bootstrap, &topics.outcomes)
            .iter()
            .filter_map(|o| match o.get("turn_id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if wanted.is_subset(&done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the good requests around the bad ones did not finish"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status();
    assert!(
        w.wait().expect("exits").success(),
        "the worker kept going and exits cleanly"
    );

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "dlq-test")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.dead_letters, 0, KOffset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut letters: Vec<(String, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while letters.len() < 4 && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("message");
        let header = |name: &str| {
            m.headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).to_string()))
                })
                .unwrap_or_default()
        };
        letters.push((
            header("ballast.reason"),
            header("ballast.source.offset")
                .parse()
                .expect("offset header"),
        ));
    }
    letters.sort_by_key(|l| l.1);
    let offsets: Vec<u64> = letters.iter().map(|l| l.1).collect();
    assert_eq!(
        offsets,
        vec![1, 2, 3, 4],
        "each bad record once, with its source offset: {letters:?}"
    );
    assert!(letters[0].0.contains("undecodable"), "{letters:?}");
    assert!(
        letters[2].0.contains("not registered"),
        "unknown schema is named: {letters:?}"
    );
    assert!(letters[3].0.contains("oversize"), "{letters:?}");
}
