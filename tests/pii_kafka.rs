//! Personal data on Kafka: requests carrying the seeded corpus (text, user ids, attributes) go
//! to `PREFIX.requests` as a backend team's producer would send them; two workers in one
//! group tokenize them at intake. Then every other topic — turn events, outcomes, escalations,
//! dead letters, the vault, reveals — holds none of the values; the vault topic holds sealed
//! records; `ballast forget --bootstrap` publishes tombstones, after which a fresh replica
//! (a new data dir) can no longer read the forgotten user's values but still reads the others.
//!
//! And forgetting that forgets on Kafka: after `forget`, the forgotten user's records leave the
//! vault topic's segment files within the topic's compaction bound (the workers append the
//! marker that rolls the segment), and a forensic read of every worker's data dir and of the
//! CLI's with the master key recovers none of their values (`forensic/reader.rs`).

mod common;
#[path = "forensic/reader.rs"]
mod reader;

use std::collections::BTreeMap;
use std::time::Duration;

use ballast::guard::corpus::CORPUS;
use ballast::ids::{Offset, Partition};
use ballast::kafka::vault_topic::VaultCompaction;
use ballast::log::kafka::KafkaLog;
use ballast::log::{EventLog, Scan};
use common::broker;
use common::kafka::Deployment;

/// Every record (key and value) of every partition of `topic`.
async fn topic_bytes(d: &Deployment, topic: &str) -> (usize, Vec<u8>) {
    let log = KafkaLog::open(&d.cfg, topic).await.expect("topic");
    let (mut n, mut out) = (0, Vec::new());
    for p in (0..log.partitions()).map(Partition) {
        let mut scan = Scan::new(&log, p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(1024).await.expect("read") {
            for s in batch {
                n += 1;
                out.extend_from_slice(&s.key);
                out.push(b'\n');
                out.extend_from_slice(&s.value);
                out.push(b'\n');
            }
        }
    }
    (n, out)
}

fn hits(hay: &[u8], values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| {
            let escaped = serde_json::to_string(v).expect("json");
            [v.as_str(), &escaped[1..escaped.len() - 1]]
                .iter()
                .any(|f| hay.windows(f.len()).any(|w| w == f.as_bytes()))
        })
        .cloned()
        .collect()
}

fn run(args: &[&str], key: &std::path::Path) -> String {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .env(ballast::vault::MASTER_KEY_ENV, key)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_hold_no_personal_value_and_forget_reaches_every_replica() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "pii", 2, 40, 11).await;
    // The workload's requests, each carrying corpus values as a producer would send them.
    let emails: Vec<&str> = CORPUS
        .iter()
        .filter(|(k, _)| *k == "email")
        .map(|(_, v)| *v)
        .collect();
    let mut requests = ballast::demo::run::requests_for(&d.turns, 0);
    let mut values: Vec<String> = Vec::new();
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, r) in requests.iter_mut().enumerate() {
        let (_, a) = CORPUS[(2 * i) % CORPUS.len()];
        let (_, b) = CORPUS[(2 * i + 1) % CORPUS.len()];
        r.user_id = emails[i % 4].to_string();
        r.text = format!("{} Details: {a} ; and {b} ; thanks.", r.text);
        r.attributes
            .insert("contact".into(), CORPUS[(i * 5) % CORPUS.len()].1.into());
        let mine = [r.user_id.clone(), a.to_string(), b.to_string()];
        values.extend(mine.iter().cloned());
        values.push(CORPUS[(i * 5) % CORPUS.len()].1.into());
        by_user.entry(r.user_id.clone()).or_default().extend(mine);
    }
    values.sort();
    values.dedup();
    let log = d.requests_log().await;
    ballast::submit::submit(&log, &d.codecs.requests, &requests)
        .await
        .expect("submit");
    let mut workers = [d.worker(0), d.worker(1)];
    let outcomes = d.wait_for_outcomes(Duration::from_secs(120)).await;
    for w in &mut workers {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
        let _ = w.wait();
    }
    let outcomes = outcomes.unwrap_or_else(|missing| panic!("turns without outcome: {missing:?}"));
    assert_eq!(outcomes.len(), d.turns.len());

    // Every topic but the producers' request topic: no value, in keys or values.
    let t = &d.topics;
    for topic in [
        &t.events,
        &t.outcomes,
        &t.escalations,
        &t.dead_letters,
        &t.vault,
        &t.reveals,
    ] {
        let (_, bytes) = topic_bytes(&d, topic).await;
        assert_eq!(hits(&bytes, &values), Vec::<String>::new(), "topic {topic}");
    }
    let (sealed, _) = topic_bytes(&d, &t.vault).await;
    assert!(
        sealed > 2 * by_user.len(),
        "the vault topic holds the sealed values: {sealed}"
    );
    // The workers' own data dirs (snapshots, replicas) hold none either.
    for i in 0..2 {
        let mut files = Vec::new();
        let dir = d.dir.path().join(format!("worker-{i}"));
        walk(&dir, &mut files);
        for f in files {
            let bytes = std::fs::read(&f).expect("read");
            assert_eq!(
                hits(&bytes, &values),
                Vec::<String>::new(),
                "{}",
                f.display()
            );
        }
    }

    // Forget one user from the command line; a fresh replica then cannot read their values.
    let key = d.master_key();
    let cli_dir = d.dir.path().join("cli");
    drop(ballast::log::SledStore::open(&cli_dir).expect("cli data dir"));
    let c = cli_dir.to_str().expect("utf8");
    let kafka = ["--bootstrap", &bootstrap, "--topic-prefix", &d.prefix];
    let forgotten = emails[0];
    let tenant = requests[0].tenant.clone();
    let said = run(
        &[
            &[
                "forget",
                "--tenant",
                &tenant,
                "--user",
                forgotten,
                "--data-dir",
                c,
            ][..],
            &kafka[..],
        ]
        .concat(),
        &key,
    );
    assert!(said.contains("forgot user"), "{said}");
    let fresh = d.dir.path().join("fresh");
    drop(ballast::log::SledStore::open(&fresh).expect("fresh data dir"));
    let f = fresh.to_str().expect("utf8");
    let turn_of = |user: &str| {
        requests
            .iter()
            .find(|r| r.user_id == user)
            .map(|r| r.turn_id.to_string())
            .expect("a turn")
    };
    let gone = run(
        &[
            &[
                "trace",
                &turn_of(forgotten),
                "--reveal",
                "--reason",
                "after forget",
                "--data-dir",
                f,
            ][..],
            &kafka[..],
        ]
        .concat(),
        &key,
    );
    assert!(gone.contains("[FORGOTTEN:"), "{gone}");
    assert_eq!(
        hits(gone.as_bytes(), &by_user[forgotten]),
        Vec::<String>::new()
    );
    let kept = run(
        &[
            &[
                "trace",
                &turn_of(emails[1]),
                "--reveal",
                "--reason",
                "still there",
                "--data-dir",
                f,
            ][..],
            &kafka[..],
        ]
        .concat(),
        &key,
    );
    assert!(kept.contains(emails[1]), "{kept}");
    // Masked without --reveal; and both reveals are on the reveals topic.
    let masked = run(
        &[
            &["trace", &turn_of(emails[1]), "--data-dir", f][..],
            &kafka[..],
        ]
        .concat(),
        &key,
    );
    assert!(
        masked.contains("[REDACTED:") && !masked.contains(emails[1]),
        "{masked}"
    );
    let (reveals, bytes) = topic_bytes(&d, &t.reveals).await;
    assert_eq!(reveals, 2, "{}", String::from_utf8_lossy(&bytes));

    // Rotate the master key (workers stopped): the tenant keys are republished re-wrapped. A
    // replica that held the old wrapping (`fresh`) and one made now both read with the new key;
    // the old key opens nothing.
    let new = d.dir.path().join("new.key");
    std::fs::write(&new, format!("{}\n", hex::encode([5u8; 32]))).expect("write");
    let said = run(
        &[
            &[
                "rotate-master-key",
                "--data-dir",
                c,
                "--new-key",
                new.to_str().expect("utf8"),
            ][..],
            &kafka[..],
        ]
        .concat(),
        &key,
    );
    assert!(
        said.starts_with("re-wrapped ") && !said.starts_with("re-wrapped 0 "),
        "{said}"
    );
    let newer = d.dir.path().join("newer");
    drop(ballast::log::SledStore::open(&newer).expect("newer data dir"));
    for dir in [f, newer.to_str().expect("utf8")] {
        let shown = run(
            &[
                &[
                    "trace",
                    &turn_of(emails[1]),
                    "--reveal",
                    "--reason",
                    "after rotation",
                    "--data-dir",
                    dir,
                ][..],
                &kafka[..],
            ]
            .concat(),
            &new,
        );
        assert!(shown.contains(emails[1]), "{dir}: {shown}");
    }
    let stale = std::process::Command::new(common::bin())
        .args(
            [
                &[
                    "trace",
                    &turn_of(emails[1]),
                    "--reveal",
                    "--reason",
                    "old key",
                    "--data-dir",
                    f,
                ][..],
                &kafka[..],
            ]
            .concat(),
        )
        .env(ballast::vault::MASTER_KEY_ENV, &key)
        .output()
        .expect("runs");
    assert!(
        !stale.status.success() || !String::from_utf8_lossy(&stale.stdout).contains(emails[1]),
        "the retired key still opens the vault"
    );
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The broker's log directory, when the broker is the local one `scripts/kafka.sh` runs.
fn broker_log_dir(bootstrap: &str) -> Option<std::path::PathBuf> {
    let home = std::env::var_os("BALLAST_KAFKA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let port = bootstrap.rsplit(':').next()?;
            let home = std::env::var_os("HOME")?;
            Some(std::path::Path::new(&home).join(format!(".cache/ballast/kafka-run-{port}")))
        })?;
    Some(home.join("data")).filter(|d| d.is_dir())
}

/// Every byte of every segment file of `topic`'s partitions in the broker's log directory.
fn segment_bytes(logs: &std::path::Path, topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(logs).expect("log dir").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.rsplit_once('-').is_some_and(|(t, _)| t == topic) {
            let mut files = Vec::new();
            walk(&e.path(), &mut files);
            for f in files {
                out.extend(std::fs::read(f).unwrap_or_default());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_keys_leave_every_replica_and_the_vault_topic_within_its_bound() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let d = Deployment::new(&bootstrap, "forget", 2, 24, 29).await;
    // A short bound, so the test sees it pass: segments roll 3 s after their first record,
    // replaced files go 1 s after cleaning. `init` again gives the existing topic the bound.
    let bound = VaultCompaction {
        roll_ms: 3_000,
        delete_retention_ms: 86_400_000,
        file_delete_delay_ms: 1_000,
    };
    ballast::kafka::init_with(&d.cfg, &d.topics, 2, 1, &bound)
        .await
        .expect("bound");
    assert_eq!(
        ballast::kafka::vault_topic::effective(&d.cfg, &d.topics.vault)
            .await
            .expect("describe"),
        bound
    );

    // Three people in each tenant, values of their own (tenant in every one of them).
    let mut requests = ballast::demo::run::requests_for(&d.turns, 0);
    let mut values: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (i, r) in requests.iter_mut().enumerate() {
        let who = ["ann", "bob", "cat"][i % 3];
        r.user_id = format!("{who}.{}@example.org", r.tenant);
        let mail = format!("{who}.{}.home@example.net", r.tenant);
        r.text = format!("{} Write to {mail} please.", r.text);
        let v = values
            .entry((r.tenant.clone(), who.to_string()))
            .or_default();
        v.extend([r.user_id.clone(), mail]);
        v.sort();
        v.dedup();
    }
    let tenants: Vec<String> = {
        let mut t: Vec<String> = requests.iter().map(|r| r.tenant.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let log = d.requests_log().await;
    ballast::submit::submit(&log, &d.codecs.requests, &requests)
        .await
        .expect("submit");
    let mut workers = [d.worker(0), d.worker(1)];
    let outcomes = d.wait_for_outcomes(Duration::from_secs(120)).await;
    outcomes.unwrap_or_else(|missing| panic!("turns without outcome: {missing:?}"));

    // Ann of the first request's tenant is forgotten; everyone else is kept.
    let tenant = requests[0].tenant.clone();
    let ann = requests[0].user_id.clone();
    let forgotten = values[&(tenant.clone(), "ann".to_string())].clone();
    let kept: Vec<String> = values
        .iter()
        .filter(|((t, who), _)| !(t == &tenant && who == "ann"))
        .flat_map(|(_, v)| v.clone())
        .collect();
    // Ann's records in the topic: her user key and her sealed values.
    let turn_log = d.turn_log().await;
    let token = turn_log[&requests[0].turn_id]
        .iter()
        .find_map(|(_, _, e)| match &e.payload {
            ballast::event::Payload::TurnRequested(r) => Some(r.user_id.clone()),
            _ => None,
        })
        .expect("the request");
    let code = token
        .trim_end_matches(']')
        .rsplit(':')
        .next()
        .expect("code")
        .to_string();
    let vault = KafkaLog::open(&d.cfg, &d.topics.vault)
        .await
        .expect("vault");
    let mut hers: Vec<Vec<u8>> = Vec::new();
    for p in (0..vault.partitions()).map(Partition) {
        for s in vault.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
            let user_key = [b"u\0", tenant.as_bytes(), b"\0", code.as_bytes()].concat();
            let value = [b"v\0", tenant.as_bytes(), b"\0", code.as_bytes(), b"\0"].concat();
            if (s.key == user_key || s.key.starts_with(&value)) && !s.value.is_empty() {
                hers.push(s.value.clone());
            }
        }
    }
    assert!(hers.len() >= 3, "her key and values are in the topic");
    let logs = broker_log_dir(&bootstrap);
    if let Some(logs) = &logs {
        let bytes = segment_bytes(logs, &d.topics.vault);
        assert!(
            hers.iter().all(|h| contains(&bytes, h)),
            "the broker's files hold her records before forget (else the check below is blind)"
        );
    } else {
        eprintln!("NOT CHECKED: the broker's log directory is not on this machine");
    }

    // A replica that catches up now, then stays away (a CLI's data dir).
    let stale = d.dir.path().join("stale");
    drop(ballast::log::SledStore::open(&stale).expect("stale data dir"));
    let s = stale.to_str().expect("utf8").to_string();
    let kafka_args0 = ["--bootstrap", &bootstrap, "--topic-prefix", &d.prefix];
    run(
        &[&["turns", "--data-dir", &s][..], &kafka_args0[..]].concat(),
        &d.master_key(),
    );

    // Forget her from the command line, the workers running.
    let key = d.master_key();
    let cli_dir = d.dir.path().join("cli");
    drop(ballast::log::SledStore::open(&cli_dir).expect("cli data dir"));
    let kafka_args = ["--bootstrap", &bootstrap, "--topic-prefix", &d.prefix];
    let c = cli_dir.to_str().expect("utf8");
    let started = std::time::Instant::now();
    let said = run(
        &[
            &[
                "forget",
                "--tenant",
                &tenant,
                "--user",
                &ann,
                "--data-dir",
                c,
            ][..],
            &kafka_args[..],
        ]
        .concat(),
        &key,
    );
    eprintln!(
        "forget on Kafka took {:?}: {}",
        started.elapsed(),
        said.trim()
    );
    assert!(said.contains("forgot user"), "{said}");

    // Within the bound (3 s roll, the worker's marker, the cleaner's 15 s backoff, 1 s file
    // delay): none of her records is left in the topic's files.
    let started = std::time::Instant::now();
    if let Some(logs) = &logs {
        let deadline = started + Duration::from_secs(180);
        loop {
            let bytes = segment_bytes(logs, &d.topics.vault);
            let left = hers.iter().filter(|h| contains(&bytes, h)).count();
            if left == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{left} of her {} records still in the vault topic's files",
                hers.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "her {} records left the vault topic's files {:?} after forget",
            hers.len(),
            started.elapsed()
        );
    }
    let mut markers = 0;
    for p in (0..vault.partitions()).map(Partition) {
        for s in vault.read(p, Offset::ZERO, 1_000_000).await.expect("read") {
            markers += usize::from(s.key == b"r\0roll");
        }
    }
    assert!(markers >= 1, "the workers appended a roll marker");

    for w in &mut workers {
        common::kafka::signal("-TERM", w);
        let _ = w.wait();
    }
    // The replica that stayed away comes back having missed the tombstones: as if the cleaner
    // had removed them, its offsets are past them — and it last caught up long ago. It
    // empties itself and reads the topic again.
    {
        let store = ballast::log::SledStore::open(&stale).expect("stale");
        let offsets = store.tree("vault-offsets").expect("offsets");
        for p in (0..vault.partitions()).map(Partition) {
            let end = vault.end(p).await.expect("end").0;
            offsets
                .insert(p.0.to_be_bytes(), &end.to_be_bytes())
                .expect("offset");
        }
        offsets
            .insert(b"synced_at", &0i64.to_be_bytes())
            .expect("synced_at");
        store.db().flush().expect("flush");
    }
    run(
        &[&["turns", "--data-dir", &s][..], &kafka_args0[..]].concat(),
        &key,
    );

    // Every replica: the workers' and the CLI's, and the one that stayed away.
    let master = ballast::vault::crypto::parse_master(&std::fs::read_to_string(&key).expect("key"))
        .expect("master");
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    for dir in ["worker-0", "worker-1", "cli", "stale"] {
        let found = reader::read(&d.dir.path().join(dir), &master, &names);
        eprintln!(
            "forensic read of {dir}: {} files, {} bytes, tenant keys {:?}, {} user keys, {} values",
            found.files,
            found.bytes,
            found.tenant_keys,
            found.user_keys,
            found.values.len()
        );
        let back: Vec<&String> = forgotten
            .iter()
            .filter(|v| found.values.contains(*v))
            .collect();
        assert!(back.is_empty(), "{dir}: forgotten values decrypt: {back:?}");
        let missing: Vec<&String> = kept.iter().filter(|v| !found.values.contains(*v)).collect();
        assert!(
            missing.is_empty(),
            "{dir}: kept values not found (a blind reader): {missing:?}"
        );
    }
}
