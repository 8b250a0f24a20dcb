//! The hostile suite, admission half (issue #29): caller-chosen identifiers are personal data
//! (item 3), one door's limits and reasons (item 8), and the small ones (item 9) — each
//! replayed against a real `ballast serve` and the real binary. (Submissions under `kill -9`:
//! `crash_submit.rs`.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Served, ballast, http_full};
use serde_json::{Value, json};

fn token(dir: &str, name: &str, roles: &str) -> String {
    let out = ballast(&[
        "token",
        "--data-dir",
        dir,
        "--name",
        name,
        "--tenant",
        "acme",
        "--roles",
        roles,
        "--grants",
        "role:customer,support:*",
        "--defaults",
        "role:customer,support:lookup_order,support:search_kb",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn call(s: &Served, t: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {t}");
    let (status, _, body) = http_full(
        &s.addr,
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    (status, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// Where under `dir` any of `values` rests in clear (bytes as written, any case).
fn in_clear(dir: &Path, values: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    let mut found = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let hay = String::from_utf8_lossy(&bytes).to_lowercase();
        for v in values {
            if hay.contains(&v.to_lowercase()) {
                found.push(format!("{v:?} in {}", f.display()));
            }
        }
    }
    found
}

fn wait_terminal(s: &Served, t: &str, turn: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(s, t, "GET", &format!("/v1/turns/{turn}"), "");
        if status == 200 && json_of(&body)["status"] == "terminal" {
            return json_of(&body);
        }
        assert!(
            Instant::now() < deadline,
            "turn {turn} did not finish: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An SSE stream's text until its outcome event (or 15 s).
fn stream(s: &Served, t: &str, turn: &str) -> String {
    use std::io::{Read, Write};
    let host = s.addr.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(host).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    write!(
        c,
        "GET /v1/turns/{turn}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !text.contains("event: outcome") {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => continue,
        }
    }
    text
}

/// Item 3: an e-mail address, a card number and a phone number chosen as `session_id` rest
/// and show nowhere in clear — turn view, list, session view, trace, SSE, outcomes, the CLI,
/// the raw bytes of the data dir — and the session still works (its turns find each other).
#[test]
fn a_session_id_is_personal_data() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8").to_string();
    let t = token(&dir, "all", "submitter,operator,auditor,admin");
    let s = Served::start_with(&["--data-dir", &dir], std::process::Stdio::null(), &[]);
    let sessions = [
        "maria.gonzalez@example.com",
        "4539 1488 0343 6467",
        "+44 20 7946 0958",
    ];
    let mut turns = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        for n in 0..2 {
            let (status, body) = call(
                &s,
                &t,
                "POST",
                "/v1/turns",
                &json!({"user_id": format!("u-{i}"), "session_id": session,
                        "text": format!("Where is my order A100{n}?")})
                .to_string(),
            );
            assert_eq!(status, 202, "{body}");
            let turn = json_of(&body)["turn_id"].as_str().expect("id").to_string();
            let view = wait_terminal(&s, &t, &turn);
            assert_eq!(view["session_id"], "[REDACTED:session]", "{view}");
            turns.push(turn);
        }
        // The session is found by the id its caller knows; both of its turns are in it.
        let path = format!("/v1/sessions/{}", urlencode(session));
        let (status, body) = call(&s, &t, "GET", &path, "");
        assert_eq!(status, 200, "{body}");
        let v = json_of(&body);
        assert_eq!(v["turns"].as_array().map(Vec::len), Some(2), "{v}");
    }
    let mut shown = String::new();
    for path in ["/v1/turns?limit=100", "/v1/outcomes"] {
        shown.push_str(&call(&s, &t, "GET", path, "").1);
    }
    for turn in &turns {
        shown.push_str(&call(&s, &t, "GET", &format!("/v1/turns/{turn}/trace"), "").1);
        shown.push_str(&call(&s, &t, "GET", &format!("/v1/turns/{turn}/audit"), "").1);
        shown.push_str(&stream(&s, &t, turn));
    }
    let cli = ballast(&["turns", "--data-dir", &dir, "--json"]);
    shown.push_str(&String::from_utf8_lossy(&cli.stdout));
    let out = ballast(&["outcomes", "--data-dir", &dir]);
    shown.push_str(&String::from_utf8_lossy(&out.stdout));
    for v in sessions {
        assert!(!shown.contains(v), "{v:?} shown in clear");
    }
    assert!(shown.contains("[REDACTED:session]"));

    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/v1/admin/forget",
        &json!({"all_users": true}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let view = json_of(&call(&s, &t, "GET", &format!("/v1/turns/{}", turns[0]), "").1);
    assert_eq!(view["session_id"], "[FORGOTTEN:session]", "{view}");
    s.stop();
    let digits: Vec<String> = sessions
        .iter()
        .map(|v| v.chars().filter(|c| !c.is_whitespace()).collect())
        .collect();
    let mut values: Vec<&str> = sessions.to_vec();
    values.extend(digits.iter().map(String::as_str));
    let found = in_clear(root.path(), &values);
    assert!(found.is_empty(), "session ids at rest in clear: {found:#?}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Items 8 and 9: the API's door — the same turn id and content under another session is a
/// conflict; identifiers dressed as vault tokens, control characters and bad attribute names
/// are refused with a reason; a day of minutes is a series the API answers.
#[test]
fn one_door_refuses_what_it_must_and_answers_what_it_should() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8").to_string();
    let t = token(&dir, "all", "submitter,operator,auditor");
    let s = Served::start_with(&["--data-dir", &dir], std::process::Stdio::null(), &[]);
    let turn = uuid::Uuid::now_v7().to_string();
    let body = |session: &str| {
        json!({"turn_id": turn, "user_id": "u-1", "session_id": session,
               "text": "Where is my order A1001?"})
        .to_string()
    };
    assert_eq!(call(&s, &t, "POST", "/v1/turns", &body("s-1")).0, 202);
    assert_eq!(call(&s, &t, "POST", "/v1/turns", &body("s-1")).0, 202);
    let (status, answer) = call(&s, &t, "POST", "/v1/turns", &body("s-2"));
    assert_eq!(
        status, 409,
        "another session under the same turn id: {answer}"
    );

    for (bad, why) in [
        (
            json!({"user_id": "[pii:user:abcdefghabcdefgh] x", "text": "hi"}),
            "vault token",
        ),
        (
            json!({"user_id": "u\u{7}1", "text": "hi"}),
            "control character",
        ),
        (
            json!({"user_id": "u-1", "text": "hi", "attributes": {"bad name": "x"}}),
            "names are",
        ),
        (
            json!({"user_id": "u-1", "text": "   "}),
            "text must not be empty",
        ),
        (
            json!({"user_id": "u-1", "text": "hi", "session_id": "s".repeat(129)}),
            "limit 128",
        ),
    ] {
        let (status, answer) = call(&s, &t, "POST", "/v1/turns", &bad.to_string());
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer.contains(why), "{bad}: {answer}");
    }

    let (status, answer) = call(
        &s,
        &t,
        "GET",
        "/v1/slo/series?bucket_ms=60000&window_ms=86400000",
        "",
    );
    assert_eq!(status, 200, "a day of minutes: {answer}");
    assert_eq!(json_of(&answer).as_array().map(Vec::len), Some(1440));
    let (status, _) = call(
        &s,
        &t,
        "GET",
        "/v1/slo/series?bucket_ms=60000&window_ms=86460000",
        "",
    );
    assert_eq!(status, 400, "a day and a minute is over the limit");
    s.stop();
}

/// Item 9: `auth.toml` is the owner's alone; a CLI command with a relative `--data-dir` beside
/// a running `serve` works; `check-config` refuses a missing or malformed master key file.
#[test]
fn small_ones() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("data");
    let d = dir.to_str().expect("utf8").to_string();
    let t = token(&d, "all", "submitter,auditor");
    let mode = std::fs::metadata(dir.join("auth.toml"))
        .expect("auth.toml")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "auth.toml mode {:o}", mode & 0o777);

    let s = Served::start_with(&["--data-dir", &d], std::process::Stdio::null(), &[]);
    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/v1/turns",
        &json!({"user_id": "u-1", "text": "Where is my order A1001?"}).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    wait_terminal(&s, &t, json_of(&body)["turn_id"].as_str().expect("id"));
    let out = std::process::Command::new(common::bin())
        .current_dir(root.path())
        .args(["turns", "--data-dir", "data", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "relative --data-dir beside serve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("turn_id"));
    s.stop();

    for (content, why) in [(None, "missing"), (Some("not hex\n"), "malformed")] {
        let key = root.path().join(format!("{why}.key"));
        if let Some(c) = content {
            std::fs::write(&key, c).expect("key");
        }
        let config = root.path().join(format!("{why}.toml"));
        std::fs::write(
            &config,
            format!(
                "[vault]\nmaster_key_file = \"{}\"\n\n[planners.general]\nkind = \"scripted\"\n",
                key.display()
            ),
        )
        .expect("config");
        let out = std::process::Command::new(common::bin())
            .args(["check-config"])
            .arg(&config)
            .output()
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{why} master key file passed: {text}"
        );
        assert!(text.contains("vault.master_key_file"), "{why}: {text}");
    }
}

/// Item 9: a wrong master key is refused at start, not met as a 503 on every request later.
#[test]
fn a_wrong_master_key_is_refused_at_start() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("data");
    let d = dir.to_str().expect("utf8").to_string();
    let key = |name: &str| {
        let path = root.path().join(name);
        std::fs::write(
            &path,
            format!("{}\n", hex::encode(ballast::vault::crypto::random_key())),
        )
        .expect("key");
        path.to_str().expect("utf8").to_string()
    };
    let (right, wrong) = (key("right.key"), key("wrong.key"));
    let t = token(&d, "all", "submitter,auditor");
    let s = Served::start_with(
        &["--data-dir", &d],
        std::process::Stdio::null(),
        &[("BALLAST_MASTER_KEY_FILE", &right)],
    );
    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/v1/turns",
        &json!({"user_id": "alice@example.com", "text": "Where is my order A1001?"}).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    wait_terminal(&s, &t, json_of(&body)["turn_id"].as_str().expect("id"));
    s.stop();
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--data-dir", &d, "--listen", "127.0.0.1:0"])
        .env("BALLAST_MASTER_KEY_FILE", &wrong)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve started (and kept running) with a wrong master key: {stderr}"
    );
    assert!(
        stderr.contains("does not open with this master key"),
        "{stderr}"
    );
}
