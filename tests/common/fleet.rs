//! A scale-out deployment on a real broker (issue #32): the quickstart's scripted model and
//! orders service (examples/quickstart, run with the test venv's Python), its catalog and
//! policies, on topics of its own (a unique prefix), `ballast worker` processes in one group and
//! `ballast serve --config` replicas over the same topics — every process with the same master
//! key, the replicas with one shared `--auth` file. Everything listens on 127.0.0.1 (port 0) and
//! is killed when the fleet is dropped. Each process's stderr goes to a log file in the fleet's
//! directory (appended across restarts), whose tail a failing test prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ballast::event::Event;
use ballast::event::codec::{Codecs, SchemaRegistry};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::kafka::Topics;
use ballast::log::kafka::{KafkaConfig, KafkaLog};
use ballast::log::{EventLog, Scan};

use super::{ballast, bin};

/// What each `ballast token` of the fleet's auth file may let a request assert, and what one
/// asserting nothing gets (as examples/quickstart/run.sh's shop backend); the workers' `[intake]`
/// grants cover the same, since a worker re-checks every request's claims.
pub const GRANTS: &str = "role:customer,orders:read,refunds:write";
pub const DEFAULTS: &str = "role:customer,orders:read";
/// The request attribute a refund needs (the quickstart's `refunds:write` scope).
pub const REFUND_SCOPES: &str = "orders:read,refunds:write";

pub fn python() -> String {
    std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart")
}

pub struct Replica {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
}

pub struct Fleet {
    pub bootstrap: String,
    pub prefix: String,
    pub topics: Topics,
    pub cfg: KafkaConfig,
    pub root: tempfile::TempDir,
    pub config: PathBuf,
    pub auth: PathBuf,
    pub orders_url: String,
    /// `ops-anna`: submitter, operator and auditor of tenant `acme`.
    pub token: String,
    pub group: String,
    pub workers: Vec<Option<Child>>,
    pub replicas: Vec<Option<Replica>>,
    /// The extra flags each replica was first started with (a restart uses them again).
    replica_flags: Vec<Vec<String>>,
    python: Vec<Child>,
    pub codecs: Codecs,
}

/// Starts a quickstart server (`model_server.py`, `orders_service.py`) on a free port; its
/// address from the line it prints. The child goes to the `Fleet`, which kills and waits for it
/// when dropped (the lint cannot follow it there).
#[allow(clippy::zombie_processes)]
fn python_server(script: &str, log: &Path) -> (Child, String) {
    let out = log.with_extension("out");
    let mut child = Command::new(python())
        .arg(quickstart().join(script))
        .args(["--port", "0"])
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("python runs (BALLAST_PYTHON or python3)");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(url) = text.lines().find_map(|l| {
            l.split_once("listening on ")
                .map(|(_, u)| u.trim().to_string())
        }) {
            // The model prints its base URL (…/v1); the orders service its root.
            return (child, url.trim_end_matches("/v1").to_string());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Fleet {
    /// The quickstart on Kafka: topics with `partitions` partitions under a unique prefix, the
    /// model and orders service, the configuration, the master key, the auth file and its
    /// token. No worker or replica runs yet.
    pub fn new(bootstrap: &str, tag: &str, partitions: u32) -> Fleet {
        let prefix = super::broker::unique_topic(tag);
        let root = tempfile::tempdir().expect("tmp");
        let dir = root.path();
        let (model, model_url) = python_server("model_server.py", &dir.join("model.log"));
        let (orders, orders_url) = python_server("orders_service.py", &dir.join("orders.log"));
        let (model_port, orders_port) = (port_of(&model_url), port_of(&orders_url));
        let ports = |text: &str| {
            text.replace("127.0.0.1:8421", &format!("127.0.0.1:{model_port}"))
                .replace("127.0.0.1:8422", &format!("127.0.0.1:{orders_port}"))
        };
        let read = |f: &str| std::fs::read_to_string(quickstart().join(f)).expect("quickstart");
        std::fs::write(dir.join("catalog.json"), ports(&read("catalog.json"))).expect("catalog");
        std::fs::create_dir_all(dir.join("policies")).expect("policies");
        for entry in std::fs::read_dir(quickstart().join("policies")).expect("policies") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join("policies").join(entry.file_name()))
                .expect("copy policy");
        }
        let toml = ports(&read("ballast.toml"));
        assert!(toml.contains("backend = \"embedded\"") && toml.contains("partitions = 2"));
        let toml = toml
            .replace(
                "backend = \"embedded\"",
                &format!("backend = \"kafka\"\nbootstrap = \"{bootstrap}\""),
            )
            .replace("partitions = 2", &format!("partitions = {partitions}"));
        // The one master key of the deployment (what the API's tokens may claim for a request
        // of any tenant, the quickstart's `[intake]` says).
        assert!(
            toml.contains("[intake.tenants.\"*\"]"),
            "the quickstart's [intake]"
        );
        let toml = format!("{toml}\n[vault]\nmaster_key_file = \"master.key\"\n");
        let config = dir.join("ballast.toml");
        std::fs::write(&config, toml).expect("config");
        let key = dir.join("master.key");
        std::fs::write(
            &key,
            format!("{}\n", hex::encode(ballast::vault::crypto::random_key())),
        )
        .expect("master key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod 600");
        let checked = ballast(&["check-config", config.to_str().expect("utf8")]);
        assert!(String::from_utf8_lossy(&checked.stdout).contains("ok"));
        ballast(&[
            "kafka",
            "init",
            "--bootstrap",
            bootstrap,
            "--partitions",
            &partitions.to_string(),
            "--topic-prefix",
            &prefix,
        ]);
        // The limiter is not under test here: polling clients must not meet it.
        let auth = dir.join("auth.toml");
        std::fs::write(
            &auth,
            "[rate]\nrequests_per_second = 100000.0\nburst = 100000.0\n",
        )
        .expect("auth");
        let token = Self::issue(&auth, "ops-anna", "submitter,operator,auditor");
        Fleet {
            bootstrap: bootstrap.to_string(),
            topics: Topics::new(&prefix),
            group: format!("{prefix}-workers"),
            prefix,
            cfg: KafkaConfig::new(bootstrap),
            config,
            auth,
            orders_url,
            token,
            workers: Vec::new(),
            replicas: Vec::new(),
            replica_flags: Vec::new(),
            python: vec![model, orders],
            codecs: Codecs::new(SchemaRegistry::new()).expect("codecs"),
            root,
        }
    }

    /// A new token in the shared auth file (every replica re-reads it within a second).
    pub fn issue(auth: &Path, name: &str, roles: &str) -> String {
        let out = ballast(&[
            "token",
            "--auth",
            auth.to_str().expect("utf8"),
            "--name",
            name,
            "--tenant",
            "acme",
            "--roles",
            roles,
            "--grants",
            GRANTS,
            "--defaults",
            DEFAULTS,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    fn log(&self, what: &str, i: usize) -> PathBuf {
        self.dir().join(format!("{what}-{i}.log"))
    }

    fn append(&self, what: &str, i: usize) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(what, i))
            .expect("log file")
    }

    /// Starts (or restarts, on the same data dir) worker `i` of the fleet's group.
    pub fn start_worker(&mut self, i: usize) {
        let child = Command::new(bin())
            .args(["worker", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir().join(format!("worker-{i}")))
            .args(["--topic-prefix", &self.prefix, "--group", &self.group])
            .args([
                "--session-timeout-ms",
                "6000",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env(
                "BALLAST_LOG",
                std::env::var("BALLAST_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("QUICKSTART_API_KEY", "not-checked")
            .stdout(Stdio::null())
            .stderr(self.append("worker", i))
            .spawn()
            .expect("worker starts");
        if self.workers.len() <= i {
            self.workers.resize_with(i + 1, || None);
        }
        assert!(self.workers[i].replace(child).is_none(), "worker {i} runs");
    }

    /// `kill -9` worker `i`.
    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut c) = self.workers.get_mut(i).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM worker `i` and wait for it (it drains its partitions first).
    pub fn stop_worker(&mut self, i: usize) {
        if let Some(mut c) = self.workers.get_mut(i).and_then(Option::take) {
            super::kafka::signal("-TERM", &c);
            let status = c.wait().expect("wait");
            assert!(status.success(), "worker {i} stopped with {status}");
        }
    }

    /// Starts replica `i` (a new data dir of its own, or its old one on a restart) with
    /// `flags` (`--otlp-endpoint`, `--max-backlog`, …; a restart reuses the first start's) and
    /// waits until its `/readyz` answers 200; returns its address.
    pub fn start_replica(&mut self, i: usize, flags: &[&str]) -> String {
        use std::io::BufRead;
        if self.replica_flags.len() <= i {
            self.replica_flags.resize_with(i + 1, Vec::new);
            self.replica_flags[i] = flags.iter().map(|f| f.to_string()).collect();
        }
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir().join(format!("replica-{i}")))
            .arg("--auth")
            .arg(&self.auth)
            .args([
                "--topic-prefix",
                &self.prefix,
                "--worker-group",
                &self.group,
            ])
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.replica_flags[i])
            .env(
                "BALLAST_LOG",
                std::env::var("BALLAST_TEST_SERVE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("QUICKSTART_API_KEY", "not-checked")
            .stdout(Stdio::piped())
            .stderr(self.append("replica", i))
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.wait();
            panic!(
                "replica {i} did not start ({line:?}):\n{}",
                tail(&self.log("replica", i), 30)
            );
        };
        let addr = addr.to_string();
        if self.replicas.len() <= i {
            self.replicas.resize_with(i + 1, || None);
        }
        assert!(
            self.replicas[i]
                .replace(Replica {
                    child,
                    addr: addr.clone()
                })
                .is_none(),
            "replica {i} runs"
        );
        self.wait_ready(i);
        addr
    }

    /// Waits (bounded) until replica `i`'s projections have caught up once (`/readyz` 200).
    pub fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = super::http(self.addr(i), "GET", "/readyz", &[], "");
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} not ready: {status} {body}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -9` replica `i`.
    pub fn kill_replica(&mut self, i: usize) {
        if let Some(mut r) = self.replicas.get_mut(i).and_then(Option::take) {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.replicas[i].as_ref().expect("replica runs").addr
    }

    /// A request to replica `i` with the fleet's token: (status, head, body).
    pub fn call(&self, i: usize, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let bearer = format!("Bearer {}", self.token);
        super::http_full(
            self.addr(i),
            method,
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    /// Every refund the orders service issued.
    pub fn refunds(&self) -> Vec<serde_json::Value> {
        let (status, body) = super::http(&self.orders_url, "GET", "/refunds", &[], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["refunds"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every committed event of the turn log, by turn, in log order.
    pub fn turn_log(&self) -> BTreeMap<TurnId, Vec<Event>> {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let events = KafkaLog::open(&self.cfg, &self.topics.events)
                .await
                .expect("events log");
            let mut by_turn: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
            for p in (0..events.partitions()).map(Partition) {
                let mut scan = Scan::new(&events, p, Offset::ZERO);
                while let Some(chunk) = scan.next_chunk(4096).await.expect("read") {
                    for s in chunk {
                        let e = self.codecs.events.decode(&s.value).expect("decodes");
                        by_turn.entry(e.turn_id).or_default().push(e);
                    }
                }
            }
            by_turn
        })
    }

    /// Every record of `topic` (read_committed), keys and values: (records, bytes).
    pub fn topic_bytes(&self, topic: &str) -> (usize, Vec<u8>) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let log = KafkaLog::open(&self.cfg, topic).await.expect("topic");
            let (mut n, mut out) = (0, Vec::new());
            for p in (0..log.partitions()).map(Partition) {
                let mut scan = Scan::new(&log, p, Offset::ZERO);
                while let Some(chunk) = scan.next_chunk(1024).await.expect("read") {
                    for s in chunk {
                        n += 1;
                        out.extend_from_slice(&s.key);
                        out.push(b'\n');
                        out.extend_from_slice(&s.value);
                        out.push(b'\n');
                    }
                }
            }
            (n, out)
        })
    }

    /// The lines of each running replica's `/metrics` starting with `prefix`.
    pub fn metrics(&self, prefix: &str) -> String {
        let mut out = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let Some(r) = r else { continue };
            let (_, body) = super::http(&r.addr, "GET", "/metrics", &[], "");
            for l in body.lines().filter(|l| l.starts_with(prefix)) {
                out.push_str(&format!("replica {i}: {l}\n"));
            }
        }
        out
    }

    /// The tails of every worker's and replica's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (what, n) in [
            ("worker", self.workers.len()),
            ("replica", self.replicas.len()),
        ] {
            for i in 0..n {
                out.push_str(&format!(
                    "--- {what} {i} (last 25 lines of {}) ---\n{}\n",
                    self.log(what, i).display(),
                    tail(&self.log(what, i), 25)
                ));
            }
        }
        out
    }

    /// What the turn log holds of `turn`, and every log's tail: why a turn did not end.
    pub fn diagnose(&self, turn: &str) -> String {
        let id: Option<TurnId> = turn.parse().ok();
        let log = self.turn_log();
        let events = id.and_then(|t| log.get(&t));
        let trace = events.map_or_else(
            || "(no events in the turn log)".to_string(),
            |es| {
                es.iter()
                    .map(|e| format!("#{} {}", e.seq, e.describe()))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        );
        format!("turn {turn}:\n{trace}\n{}", self.logs())
    }

    /// Polls `GET path` on replica `i` until `done(status, body)`, at most `within`; the last
    /// answer, or a failure naming `what` with the turn's trace and the logs.
    pub fn poll(
        &self,
        i: usize,
        path: &str,
        within: Duration,
        what: &str,
        turn: &str,
        done: impl Fn(u16, &str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (status, _, body) = self.call(i, "GET", path, "");
            if done(status, &body) {
                return body;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} (GET {path} on replica {i}: {status} {body})\n{}",
                    self.diagnose(turn)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.workers.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for r in self.replicas.iter_mut().flatten() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        for c in &mut self.python {
            let _ = c.kill();
            let _ = c.wait();
        }
        // For looking at a failed run's logs and data dirs afterwards.
        if std::env::var_os("BALLAST_KEEP_FLEET").is_some()
            && let Ok(spare) = tempfile::tempdir()
        {
            let kept = std::mem::replace(&mut self.root, spare).keep();
            eprintln!("fleet kept in {}", kept.display());
        }
    }
}
