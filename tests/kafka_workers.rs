//! Ballast on a real Apache Kafka broker: worker processes in one consumer group, killed,
//! frozen, cut off from a restarting broker, fed bad input.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ballast::ids::Partition;
use ballast::log::EventLog;

use common::kafka::{Deployment, assert_one_outcome_per_turn, signal};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_every_turn_finishes_in_order_and_nothing_unsafe_repeats() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "t", 4, 2000, 7).await;
    let mut workers: Vec<Child> = (0..3).map(|i| d.worker(i)).collect();
    d.submit_all().await;
    // Kill one worker once real work is under way.
    d.wait_for_effects(150);
    workers[0].kill().expect("SIGKILL");
    workers[0].wait().expect("reaped");

    let outcomes = match d.wait_for_outcomes(Duration::from_secs(90)).await {
        Ok(o) => o,
        Err(missing) => panic!("{}", d.diagnose(&missing).await),
    };
    for w in workers.iter().skip(1) {
        signal("-TERM", w);
    }
    for w in workers.iter_mut().skip(1) {
        let status = w.wait().expect("worker exits");
        assert!(
            status.success(),
            "a SIGTERMed worker drains and exits cleanly: {status}"
        );
    }
    assert_one_outcome_per_turn(&outcomes);
    d.check_log().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_worker_resumed_after_its_session_timeout_cannot_append() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "z", 2, 400, 11).await;
    let mut zombie = d.worker(0);
    d.submit_all().await;
    d.wait_for_effects(20);
    // Freeze the owner mid-work; a second worker takes over once the session times out (6 s).
    signal("-STOP", &zombie);
    let mut successor = d.worker(1);
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The zombie wakes up with work in flight and tries to commit it.
    signal("-CONT", &zombie);

    let outcomes = match d.wait_for_outcomes(Duration::from_secs(120)).await {
        Ok(o) => o,
        Err(missing) => panic!("{}", d.diagnose(&missing).await),
    };
    signal("-TERM", &zombie);
    signal("-TERM", &successor);
    assert!(successor.wait().expect("exits").success());
    let _ = zombie.wait();
    // Whatever the zombie tried after waking, the committed log has one history per turn: dense
    // sequence numbers (a second writer would repeat them), one result per call attempt, one
    // outcome per turn, and no non-idempotent call twice.
    assert_eq!(outcomes.len(), 400, "exactly one outcome record per turn");
    assert_one_outcome_per_turn(&outcomes);
    d.check_log().await;
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
    // The example analytics consumer (Python: confluent-kafka + fastavro, the schema file from
    // schemas/) decodes every outcome record the workers published.
    let python = std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into());
    let consumer = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/analytics/outcomes_consumer.py"
        ))
        .args(["--bootstrap", &bootstrap])
        .args(["--topic", &format!("{prefix}.outcomes")])
        .args(["--idle-seconds", "3", "--json"])
        .output()
        .expect("python runs (scripts/test.sh sets BALLAST_PYTHON to a venv with the deps)");
    let stdout = String::from_utf8_lossy(&consumer.stdout);
    assert!(
        consumer.status.success(),
        "consumer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&consumer.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let (summary, records) = lines.split_last().expect("summary line");
    assert_eq!(summary["summary"]["decoded"], 300);
    assert_eq!(summary["summary"]["skipped"], 0);
    let consumed: std::collections::BTreeMap<String, String> = records
        .iter()
        .map(|r| {
            (
                r["turn_id"].as_str().expect("turn_id").to_string(),
                r["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect();
    let listed: std::collections::BTreeMap<String, String> = turns
        .iter()
        .map(|t| {
            (
                t["turn_id"].as_str().expect("id").to_string(),
                t["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect();
    assert_eq!(
        consumed, listed,
        "one decoded outcome per turn, the same outcome"
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
    let d = Deployment::with_prefix(&bootstrap, "restart", 2, 600, 5).await;
    let mut workers: Vec<Child> = (0..2).map(|i| d.worker(i)).collect();
    d.submit_all().await;
    d.wait_for_effects(40);
    own.script("halt");
    tokio::time::sleep(Duration::from_secs(4)).await;
    own.script("start");

    if let Err(missing) = d.wait_for_outcomes(Duration::from_secs(180)).await {
        panic!("after the restart: {}", d.diagnose(&missing).await);
    }
    for w in &workers {
        signal("-TERM", w);
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
    d.check_log().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_go_to_the_dead_letter_topic_and_the_rest_of_the_batch_runs() {
    use rdkafka::message::Headers;
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "dl", 1, 2, 3).await;
    let requests = ballast::demo::run::requests_for(&d.turns, 0);
    let good = |i: usize| d.codecs.requests.encode(&requests[i]).expect("encodes");
    let truncated = good(0)[..20].to_vec();
    let mut unknown_schema = good(0);
    unknown_schema[3] ^= 0xff;
    let record = |value: Vec<u8>| ballast::log::Record {
        key: b"k".to_vec(),
        value,
    };
    d.requests_log()
        .await
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
    let mut w = d.worker(0);
    if let Err(missing) = d.wait_for_outcomes(Duration::from_secs(60)).await {
        panic!("the good requests around the bad ones did not finish: {missing:?}");
    }
    signal("-TERM", &w);
    assert!(
        w.wait().expect("exits").success(),
        "the worker kept going and exits cleanly"
    );
    let (bootstrap, topics) = (&d.bootstrap, &d.topics);

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap.as_str())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_from_a_configuration_file_runs_every_turn() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "cfg", 2, 40, 17).await;
    // The scripted planner of a configured worker reads the workload from its data dir.
    let data = d.dir.path().join("configured");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::copy(
        d.dir.path().join("workload.jsonl"),
        data.join("workload.jsonl"),
    )
    .expect("workload");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/policies");
    // A configured worker has no built-in tools: the demo's are reached over HTTP.
    let effects = d.dir.path().join("effects.jsonl");
    let _tools = common::agent::demo_tools_over_http(&effects, &d.dir.path().join("catalog.json"));
    let file = d.dir.path().join("ballast.toml");
    std::fs::write(
        &file,
        format!(
            "catalog = \"catalog.json\"\npolicies = \"{}\"\n\n[log]\nbackend = \"kafka\"\nbootstrap = \"{bootstrap}\"\n\
             data_dir = \"configured\"\n\n[planners.general]\nkind = \"scripted\"\n\n\
             [planners.specialist]\nkind = \"scripted\"\n\n\
             [intake.tenants.\"*\"]\ngrants = [\"role:customer\", \"support:*\"]\n",
            policies.display()
        ),
    )
    .expect("config");
    let ok = ballast(&["check-config", file.to_str().expect("utf8")]);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok"));

    let mut w = Command::new(bin())
        .args(["worker", "--config"])
        .arg(&file)
        .env(ballast::vault::MASTER_KEY_ENV, d.master_key())
        .args(["--topic-prefix", &d.prefix])
        .args(["--group", &format!("{}-group", d.prefix)])
        .args([
            "--session-timeout-ms",
            "6000",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker starts");
    d.submit_all().await;
    let outcomes = d.wait_for_outcomes(Duration::from_secs(90)).await;
    signal("-TERM", &w);
    let status = w.wait().expect("exits");
    let outcomes = outcomes.unwrap_or_else(|missing| panic!("turns without outcome: {missing:?}"));
    assert!(status.success());
    assert_one_outcome_per_turn(&outcomes);
    // The worker used the data dir named in the file, and the tools it called acted.
    assert!(data.join("sled").exists() || data.read_dir().is_ok_and(|mut d| d.next().is_some()));
    assert!(std::fs::metadata(&effects).is_ok_and(|m| m.len() > 0));
}

#[test]
fn a_worker_refuses_a_configuration_for_the_embedded_backend() {
    let root = tempfile::tempdir().expect("tmp");
    let file = root.path().join("ballast.toml");
    std::fs::write(
        &file,
        "[log]\nbackend = \"embedded\"\ndata_dir = \"d\"\n\n\
         [[mcp]]\nname = \"tools\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["worker", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ballast serve --config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
