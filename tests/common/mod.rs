//! Helpers shared by the integration tests that drive the real `ballast` binary.
#![allow(dead_code)]

pub mod agent;
pub mod broker;
pub mod browser;
pub mod fake;
pub mod fleet;
pub mod kafka;
pub mod otlp;
pub mod plane;
pub mod scripted;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

use ballast::embedded::Embedded;
use ballast::event::{Event, Payload};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::EventLog;

/// The binary under test: this build's, or `$BALLAST_TEST_BIN` (another build — how a hostile
/// test is shown to fail on the code before its fix).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BALLAST_TEST_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ballast").to_string())
    })
}

pub fn ballast(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("ballast runs");
    if !out.status.success() {
        // The end of stderr holds the error; a long run's warnings before it would push it
        // out of a CI log's view.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "ballast {args:?} failed ({}):\n{}\n[last {} of {} stderr lines]\n{tail}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            lines.len().min(40),
            lines.len()
        );
    }
    out
}

pub fn turns_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = ballast(&["turns", "--data-dir", dir.to_str().expect("utf8"), "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Every event in the data dir, grouped by turn, in seq order as stored.
pub async fn events_by_turn(dir: &Path) -> BTreeMap<TurnId, Vec<Event>> {
    let emb = Embedded::open(dir, 0).expect("open data dir");
    let mut out: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for p in (0..emb.events.partitions()).map(Partition) {
        for s in emb
            .events
            .read(p, Offset::ZERO, usize::MAX)
            .await
            .expect("read")
        {
            let e = emb
                .codecs
                .events
                .decode(&s.value)
                .expect("every stored event decodes");
            out.entry(e.turn_id).or_default().push(e);
        }
    }
    out
}

/// Checks the log invariants every run must keep; returns (tool calls started, results).
pub fn check_turn_invariants(turns: &BTreeMap<TurnId, Vec<Event>>) -> (usize, usize) {
    let (mut started, mut results) = (0, 0);
    for (turn, events) in turns {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (0..events.len() as i64).collect::<Vec<_>>(),
            "turn {turn}: dense, in order, no duplicates"
        );
        let mut per_attempt: HashMap<(String, i32), usize> = HashMap::new();
        for e in events {
            match &e.payload {
                Payload::ToolCallStarted(s) => {
                    started += 1;
                    per_attempt
                        .entry((s.call_id.clone(), s.attempt))
                        .or_insert(0);
                }
                Payload::ToolCallCompleted(c) => {
                    results += 1;
                    *per_attempt
                        .entry((c.call_id.clone(), c.attempt))
                        .or_insert(100) += 1;
                }
                Payload::ToolCallFailed(f) => {
                    results += 1;
                    *per_attempt
                        .entry((f.call_id.clone(), f.attempt))
                        .or_insert(100) += 1;
                }
                _ => {}
            }
        }
        for (call, n) in per_attempt {
            assert_eq!(
                n, 1,
                "turn {turn}: call {call:?} must have exactly one result event"
            );
        }
    }
    (started, results)
}

/// effects.jsonl as (call_id, tool, idempotency_key) lines.
pub fn effects(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("effects.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("effects.jsonl line is JSON");
            let s = |k: &str| v[k].as_str().expect("string field").to_string();
            (s("call_id"), s("tool"), s("idempotency_key"))
        })
        .collect()
}

/// A plain HTTP/1.1 request to a server on 127.0.0.1: (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, headers, body);
    (status, body)
}

/// A plain HTTP/1.1 request: (status, response head lower-cased, body).
pub fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A `ballast serve` process on 127.0.0.1:0, stopped (SIGTERM) when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
}

impl Served {
    pub fn start(args: &[&str]) -> Served {
        Self::start_with(args, std::process::Stdio::inherit(), &[])
    }

    /// As `start`, its log (stderr) going to `stderr`, with `env` set.
    pub fn start_with(args: &[&str], stderr: std::process::Stdio, env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied()).stderr(stderr);
        Self::spawn(cmd, args)
    }

    /// As `start`, with the process's file-descriptor limit (soft and hard) set to `nofile`
    /// (util-linux `prlimit`), as on a host with a lower limit than this one.
    pub fn start_limited(args: &[&str], nofile: u64) -> Served {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(bin());
        Self::spawn(cmd, args)
    }

    /// `cmd` (the binary, or a wrapper running it) with `serve ARGS` on 127.0.0.1:0.
    fn spawn(mut cmd: Command, args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = cmd
            .arg("serve")
            .args(args)
            // Tests seal with the data dir's development key unless a config names a file.
            .arg("--dev-key")
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Served { child, addr }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], "")
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
