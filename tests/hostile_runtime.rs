//! The hostile suite, runtime half: 2,000 turns parked on approvals do not stop new turns
//! (item 13); on a real broker, requests produced with librdkafka's default partitioner are
//! forwarded to their partition and run, and a producer asserting claims its tenant is not
//! trusted with is dead-lettered with that reason (items 14 and 1); model and tool servers
//! cannot answer with more than the body cap (item 3).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ballast::event::{Payload, PlanStep};
use ballast::exec::scripted::WorkloadTurn;
use ballast::ids::{Offset, Partition};
use ballast::log::EventLog;
use common::broker;
use common::kafka::{Deployment, signal};
use common::plane::{Env, refund, turn};
use serde_json::json;

fn lookup() -> Vec<PlanStep> {
    vec![PlanStep {
        tool: "lookup_order".into(),
        args_json: json!({"order_id": "A1001"}).to_string(),
    }]
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

async fn approvals_requested(env: &Env) -> usize {
    let mut n = 0;
    for p in (0..env.emb.partitions()).map(Partition) {
        for s in env
            .emb
            .events
            .read(p, Offset::ZERO, 10_000_000)
            .await
            .expect("read")
        {
            let e = env.emb.codecs.events.decode(&s.value).expect("decodes");
            if matches!(e.payload, Payload::ApprovalRequested(_)) {
                n += 1;
            }
        }
    }
    n
}

/// Item 13: a turn waiting for a person holds no admission slot. 2,000 turns wait on approvals
/// nobody answers (the default admission is 32 turns per partition, so 64 used to freeze both
/// partitions); new turns still start and finish. Their latency against an idle system's is
/// printed (timing is measured, not asserted: `ballast bench --waiting` reports it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_parked_turns_do_not_stop_new_ones() {
    const PARKED: u64 = 2_000;
    const FRESH: u64 = 50;
    let env = Env::new();
    let fresh = |from: u64| -> Vec<WorkloadTurn> {
        (from..from + FRESH)
            .map(|i| turn(i, &format!("fresh-{i}"), lookup(), 0.95))
            .collect()
    };
    let idle = fresh(0);
    let parked: Vec<WorkloadTurn> = (1_000..1_000 + PARKED)
        .map(|i| turn(i, &format!("parked-{i}"), refund(20_000), 0.95))
        .collect();
    let busy = fresh(10_000);
    let all: Vec<WorkloadTurn> = idle.iter().chain(&parked).chain(&busy).cloned().collect();
    let mut running = env.start(&all, env.control(&all));

    env.submit(&idle).await;
    let baseline: Vec<u64> = running
        .finished(FRESH as usize)
        .await
        .iter()
        .filter_map(|f| f.wall_latency_us)
        .collect();

    env.submit(&parked).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let n = approvals_requested(&env).await;
        if n as u64 >= PARKED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} turns parked on approvals"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.submit(&busy).await;
    let loaded = running.finished(FRESH as usize).await;
    assert!(
        loaded
            .iter()
            .all(|f| busy.iter().any(|b| b.turn_id == f.turn_id)),
        "the turns that finish are the new ones, not the parked"
    );
    let loaded: Vec<u64> = loaded.iter().filter_map(|f| f.wall_latency_us).collect();
    let (idle_p50, loaded_p50) = (median(baseline), median(loaded));
    println!(
        "parked {PARKED}: new turns p50 {loaded_p50} µs vs idle {idle_p50} µs ({:.2}×)",
        loaded_p50 as f64 / idle_p50.max(1) as f64
    );
    running.stop().await;
}

/// Items 14 and 1 on Kafka: a producer on librdkafka's default partitioner
/// (`consistent_random`, the default of confluent-kafka) puts users' requests on the "wrong"
/// partitions; the worker forwards each to its routing partition in the same transaction and
/// every turn runs there. A request asserting a scope its tenant's producers are not trusted
/// with (`[intake]`) is dead-lettered naming the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misrouted_requests_are_forwarded_and_untrusted_claims_dead_lettered() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "misrouted", 4, 40, 23).await;
    let data = d.dir.path().join("configured");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::copy(
        d.dir.path().join("workload.jsonl"),
        data.join("workload.jsonl"),
    )
    .expect("workload");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/policies");
    // A configured worker has no built-in tools: the demo's are reached over HTTP.
    let _tools = common::agent::demo_tools_over_http(
        &d.dir.path().join("effects.jsonl"),
        &d.dir.path().join("catalog.json"),
    );
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
    // The producer a Python team would use: keyed by tenant/user, default partitioner.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap.as_str())
        .set("partitioner", "consistent_random")
        .create()
        .expect("producer");
    let mut requests = ballast::demo::run::requests_for(&d.turns, 0);
    let mut greedy = requests[0].clone();
    greedy.turn_id = ballast::ids::TurnId::new_v7();
    greedy.attributes.insert(
        "scopes".into(),
        "support:lookup_order,admin:everything".into(),
    );
    requests.push(greedy.clone());
    // One door (issue #29, item 8): what the API refuses, Kafka intake refuses for the same
    // reason — each of these is a dead letter naming the API's own problem detail.
    let mut refused = Vec::new();
    let mut empty = requests[1].clone();
    empty.turn_id = ballast::ids::TurnId::new_v7();
    empty.text = "  ".into();
    refused.push((empty, "text must not be empty"));
    let mut crowded = requests[2].clone();
    crowded.turn_id = ballast::ids::TurnId::new_v7();
    for i in 0..33 {
        crowded.attributes.insert(format!("a{i}"), "x".into());
    }
    refused.push((crowded, "attributes, limit 32"));
    let mut long_session = requests[3].clone();
    long_session.turn_id = ballast::ids::TurnId::new_v7();
    long_session.session_id = Some("s".repeat(200));
    refused.push((long_session, "session_id is 200 characters, limit 128"));
    requests.extend(refused.iter().map(|(r, _)| r.clone()));
    let raw_users: Vec<String> = requests.iter().map(|r| r.user_id.clone()).collect();
    let events = ballast::log::KafkaLog::open(&d.cfg, &d.topics.events)
        .await
        .expect("events");
    let mut misrouted = 0;
    for r in &requests {
        let key = ballast::ids::routing_key(&r.tenant, &r.user_id);
        let value = d.codecs.requests.encode(r).expect("encode");
        let delivery = producer
            .send(
                FutureRecord::to(&d.topics.requests)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        if delivery.partition as u32 != events.partition_for(&key).0 {
            misrouted += 1;
        }
    }
    assert!(misrouted > 0, "the default partitioner misroutes some keys");

    let mut w = Command::new(common::bin())
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
    let outcomes = d.wait_for_outcomes(Duration::from_secs(120)).await;
    signal("-TERM", &w);
    let status = w.wait().expect("exits");
    if let Err(missing) = outcomes {
        panic!("{}", d.diagnose(&missing).await);
    }
    assert!(status.success());
    // Every workload turn ran once, in its user's partition (check_log checks both).
    d.check_log().await;
    println!(
        "{misrouted} of {} requests misrouted by the producer, all forwarded",
        requests.len()
    );

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap.as_str())
        .set("group.id", "dlq-claims")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(&d.topics.dead_letters, p, KOffset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reasons.len() < 1 + refused.len() && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("message");
        if let Some(h) = m.headers() {
            for x in h.iter() {
                if x.key == "ballast.reason" {
                    reasons.push(String::from_utf8_lossy(x.value.unwrap_or_default()).to_string());
                }
            }
        }
    }
    assert_eq!(
        reasons.len(),
        1 + refused.len(),
        "the greedy request and the refused ones: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("claims") && r.contains("admin:everything")),
        "{reasons:?}"
    );
    for (_, why) in &refused {
        assert!(
            reasons.iter().any(|r| r.contains(why)),
            "no dead letter says {why:?}: {reasons:?}"
        );
    }

    // A misrouted request is forwarded tokenized: no raw user id (nor any personal value) is
    // copied to another partition of the request topic.
    let copies: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap.as_str())
        .set("group.id", "forwarded-copies")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(&d.topics.requests, p, KOffset::Beginning)
            .expect("tpl");
    }
    copies.assign(&tpl).expect("assign");
    let (mut forwarded, mut idle) = (0, 0);
    while idle < 10 {
        let Some(m) = copies.poll(Duration::from_millis(200)) else {
            idle += 1;
            continue;
        };
        idle = 0;
        let m = m.expect("message");
        let is_copy = m
            .headers()
            .is_some_and(|h| h.iter().any(|x| x.key == "ballast.forwarded.from"));
        if !is_copy {
            continue;
        }
        forwarded += 1;
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
        for u in &raw_users {
            assert!(
                !payload.contains(u.as_str()),
                "a forwarded copy carries the raw user id {u:?}"
            );
        }
    }
    // Refused requests are dead-lettered where they land; the rest are forwarded once.
    assert!(
        forwarded > 0 && forwarded <= misrouted,
        "{forwarded} copies for {misrouted} misrouted requests"
    );
}

/// Item 3: a model or tool server answering with more than the cap (default 1 MiB) fails that
/// call instead of growing the worker's memory.
#[tokio::test]
async fn oversized_bodies_from_model_and_tool_servers_fail_the_call() {
    use ballast::exec::Tool;
    use common::fake::{FakeServer, Reply};
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let server = FakeServer::start(vec![Reply::json(200, huge.clone())]);
    let mut spec = ballast::demo::tools::demo_catalog()
        .get("lookup_order")
        .cloned()
        .expect("tool");
    spec.http = Some(ballast::exec::http_tool::HttpEndpoint {
        method: Some("GET".into()),
        url: format!("{}/orders/{{order_id}}", server.url),
        headers: Default::default(),
        idempotency_header: None,
        max_response_bytes: None,
    });
    let tool = ballast::exec::http_tool::HttpTool::new(spec, reqwest::Client::new(), &|_| None)
        .expect("tool");
    let call = ballast::turn::ToolInvocation {
        call_id: "c1".into(),
        tool: "lookup_order".into(),
        args_json: json!({"order_id": "A1"}).to_string(),
        idempotency_key: "k1".into(),
        attempt: 1,
        tenant: "acme".into(),
        user_id: "u-1".into(),
    };
    let err = tool.call(&call).await.expect_err("over the cap");
    assert!(
        err.message.contains("over 1048576 bytes"),
        "{}",
        err.message
    );

    let model = FakeServer::start(vec![Reply::json(200, huge)]);
    let planner = ballast::exec::openai::OpenAiPlanner::new(
        ballast::exec::openai::OpenAiConfig {
            base_url: format!("{}/v1", model.url),
            model: "m".into(),
            api_key_env: None,
            max_retries: 0,
            ..Default::default()
        },
        ballast::demo::tools::demo_catalog(),
    )
    .expect("planner");
    let request = ballast::exec::PlanRequest {
        turn_id: ballast::ids::TurnId::new_v7(),
        profile: "general".into(),
        constrained: false,
        attempt: 0,
        tenant: "acme".into(),
        user_id: "u-1".into(),
        step: 0,
        conversation: ballast::exec::Conversation {
            request: "Where is my order A1001?".into(),
            ..Default::default()
        },
    };
    let err = planner.complete(&request).await.expect_err("over the cap");
    assert!(err.to_string().contains("over 1048576 bytes"), "{err}");
}
