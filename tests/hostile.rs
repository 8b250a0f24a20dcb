//! The hostile suite: what a hostile tester broke, replayed against a real `ballast serve` and
//! the real binary so none of it comes back. Each test names the item of the hardening issue it
//! replays. (Parked turns and misrouted Kafka requests: `hostile_runtime.rs`; fuzzing:
//! `fuzz.rs`.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Served, ballast, http_full};
use serde_json::{Value, json};

fn token_with(dir: &str, name: &str, roles: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "--data-dir",
        dir,
        "--name",
        name,
        "--tenant",
        "acme",
        "--roles",
        roles,
    ];
    args.extend_from_slice(extra);
    let out = ballast(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (status, lower-cased head, body) of a call with an optional raw Authorization value.
fn call(
    s: &Served,
    method: &str,
    path: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut headers = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    http_full(&s.addr, method, path, &headers, body)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn problem(head: &str, body: &str) -> Value {
    assert!(
        head.contains("content-type: application/problem+json"),
        "not a problem document: {head}\n{body}"
    );
    json_of(body)
}

fn empty_served() -> (tempfile::TempDir, Served, String) {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8").to_string();
    let auth = root.path().join("auth.toml");
    // These tests fail authentication on purpose, many times, from one address.
    std::fs::write(&auth, "[rate]\nfailed_auth_burst = 100000.0\n").expect("auth");
    let admin = token_with(&dir, "admin", "admin", &[]);
    let s = Served::start(&["--data-dir", &dir]);
    (root, s, admin)
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/turns"),
    ("GET", "/v1/turns"),
    ("GET", "/v1/turns/ID"),
    ("GET", "/v1/turns/ID/trace"),
    ("GET", "/v1/turns/ID/audit"),
    ("GET", "/v1/turns/ID/events"),
    ("POST", "/v1/turns/ID/approve"),
    ("POST", "/v1/turns/ID/deny"),
    ("POST", "/v1/turns/ID/reverse"),
    ("POST", "/v1/turns/ID/labels"),
    ("GET", "/v1/me"),
    ("GET", "/v1/queue"),
    ("GET", "/v1/handoffs"),
    ("POST", "/v1/handoffs/ID/accept"),
    ("POST", "/v1/handoffs/ID/resolve"),
    ("GET", "/v1/slo"),
    ("GET", "/v1/slo/series"),
    ("GET", "/v1/outcomes"),
    ("GET", "/v1/no-such-route"),
    ("DELETE", "/v1/turns"),
];

/// Items 2 and 4: every /v1 route answers 401 to a missing or invalid token before it reads the
/// path, the query or the body (no 400, 405, 415 or 422 that would teach the schema); the bearer
/// scheme is case-insensitive; with a token, malformed queries and bodies are problem details.
#[test]
fn authentication_comes_before_anything_is_read() {
    let (_root, s, admin) = empty_served();
    let garbage = [
        (None, "not json at all {"),
        (Some("text/plain"), "{\"user_id\":1}"),
        (Some("application/json"), "{\"unknown_field\":true}"),
    ];
    for (method, path) in ROUTES {
        let paths = [
            path.replace("ID", "not-a-uuid"),
            format!(
                "{}?limit=abc&bucket_ms=-5&since_ms=x",
                path.replace("ID", "%ff")
            ),
        ];
        for p in &paths {
            for auth in [
                None,
                Some("Bearer blst_wrong"),
                Some("Basic dXNlcjpwYXNz"),
                Some("Bearer"),
            ] {
                for (ct, body) in garbage {
                    let (status, head, text) = call(&s, method, p, auth, ct, body);
                    assert_eq!(status, 401, "{method} {p} auth={auth:?} ct={ct:?}: {text}");
                    assert_eq!(problem(&head, &text)["status"], 401);
                }
            }
        }
    }
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, _, text) = call(
            &s,
            "GET",
            "/v1/me",
            Some(&format!("{scheme} {admin}")),
            None,
            "",
        );
        assert_eq!(status, 200, "{scheme}: {text}");
    }
    // Authenticated: malformed queries, paths and bodies are problem details too (item 4).
    let a = bearer(&admin);
    for (method, path, ct, body, want) in [
        ("GET", "/v1/turns?limit=abc", None, "", 400),
        ("GET", "/v1/slo/series?bucket_ms=x", None, "", 400),
        ("GET", "/v1/outcomes?since_ms=%ff", None, "", 400),
        ("GET", "/v1/turns/not-a-uuid", None, "", 400),
        ("POST", "/v1/turns", Some("text/plain"), "{}", 415),
        ("POST", "/v1/turns", Some("application/json"), "{", 400),
        (
            "POST",
            "/v1/turns",
            Some("application/json"),
            "{\"user_id\":1}",
            422,
        ),
        ("DELETE", "/v1/turns", None, "", 405),
        ("GET", "/v1/nothing", None, "", 404),
    ] {
        let (status, head, text) = call(&s, method, path, Some(&a), ct, body);
        assert_eq!(status, want, "{method} {path}: {text}");
        assert_eq!(problem(&head, &text)["status"], want);
    }
    let too_big = format!(
        "{{\"user_id\":\"u\",\"text\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let (status, head, text) = call(
        &s,
        "POST",
        "/v1/turns",
        Some(&a),
        Some("application/json"),
        &too_big,
    );
    assert_eq!(status, 413, "{text}");
    problem(&head, &text);
    assert!(s.stop().success());
}

/// Item 3: failed authentications are limited per client address; a locked-out address gets
/// 429 with Retry-After for its bad tokens until it has waited — its valid ones are still
/// served (`hostile_server.rs`: failures are throttled, not the address).
#[test]
fn failed_authentications_lock_the_address_out() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8");
    std::fs::write(
        root.path().join("auth.toml"),
        "[rate]\nfailed_auth_burst = 5.0\nfailed_auth_per_second = 0.01\n",
    )
    .expect("auth");
    let admin = token_with(dir, "admin", "admin", &[]);
    let s = Served::start(&["--data-dir", dir]);
    for i in 0..5 {
        let (status, _, _) = call(&s, "GET", "/v1/me", Some("Bearer guess"), None, "");
        assert_eq!(status, 401, "guess {i}");
    }
    let (status, head, text) = call(&s, "GET", "/v1/me", Some("Bearer guess"), None, "");
    assert_eq!(status, 429, "{text}");
    assert!(head.contains("retry-after:"), "{head}");
    let (status, _, _) = call(&s, "GET", "/v1/me", Some(&bearer(&admin)), None, "");
    assert_eq!(
        status, 200,
        "a valid token is served from a locked-out address"
    );
    assert!(s.stop().success());
}

/// Item 3: one request cannot make the server do unbounded work: the series is at most 1,440
/// points, a bucket wider than the SLO period is a 400 (it used to panic), lists are capped.
#[test]
fn unbounded_asks_are_refused_with_their_limit() {
    let (_root, s, admin) = empty_served();
    let a = bearer(&admin);
    for (path, limit) in [
        (
            "/v1/slo/series?bucket_ms=1000&window_ms=2592000000",
            Some(1440),
        ),
        ("/v1/slo/series?bucket_ms=9999999999999", None),
        ("/v1/slo/series?bucket_ms=1", None),
        ("/v1/slo/series?bucket_ms=60000&window_ms=-1", None),
        (
            "/v1/slo/series?bucket_ms=60000&window_ms=9223372036854775807",
            None,
        ),
        ("/v1/turns?limit=5000", Some(1000)),
        ("/v1/outcomes?limit=99999999", Some(10000)),
    ] {
        let (status, head, text) = call(&s, "GET", path, Some(&a), None, "");
        assert_eq!(status, 400, "{path}: {text}");
        let p = problem(&head, &text);
        if let Some(l) = limit {
            assert_eq!(p["limit"], l, "{path}: {text}");
        }
    }
    // A day back in one-minute buckets: exactly the 1,440 points allowed (issue #29, item 9:
    // it used to be refused, one point over).
    let (status, _, text) = call(
        &s,
        "GET",
        "/v1/slo/series?bucket_ms=60000&window_ms=86400000",
        Some(&a),
        None,
        "",
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_of(&text).as_array().map(Vec::len), Some(1440));
    // The server is still there.
    let (status, _, _) = call(&s, "GET", "/v1/me", Some(&a), None, "");
    assert_eq!(status, 200);
    assert!(s.stop().success());
}

/// The streaming surfaces: a `Last-Event-ID` that is not a seq and an unknown query parameter
/// are problems, a huge `wait_ms` is capped (never a hang), and another tenant's turn streams
/// nothing (404, as for every read).
#[test]
fn streaming_inputs_are_checked() {
    let (root, s, admin) = empty_served();
    let dir = root.path().to_str().expect("utf8").to_string();
    let sub = bearer(&token_with(&dir, "backend", "submitter", &[]));
    let out = ballast(&[
        "token",
        "--data-dir",
        &dir,
        "--name",
        "rival",
        "--tenant",
        "globex",
        "--roles",
        "submitter",
    ]);
    let other = bearer(String::from_utf8_lossy(&out.stdout).trim());
    // The server re-reads its tokens every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(&s, "GET", "/v1/me", Some(&other), None, "").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new tokens never took"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let body = r#"{"user_id":"u-1","text":"Where is my order A1001?"}"#;
    let ct = Some("application/json");
    let (status, _, text) = call(&s, "POST", "/v1/turns?colour=red", Some(&sub), ct, body);
    assert_eq!(status, 400, "{text}");
    let started = std::time::Instant::now();
    let (status, _, text) = call(
        &s,
        "POST",
        "/v1/turns?wait_ms=99999999999",
        Some(&sub),
        ct,
        body,
    );
    assert!(status == 200 || status == 202, "{status}: {text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(70));
    let id = json_of(&text)["turn_id"].as_str().expect("id").to_string();
    let path = format!("/v1/turns/{id}/events");
    let (status, _, text) = http_full(
        &s.addr,
        "GET",
        &path,
        &[
            ("Authorization", sub.as_str()),
            ("Last-Event-ID", "not-a-seq"),
        ],
        "",
    );
    assert_eq!(status, 400, "{text}");
    let (status, head, text) = call(&s, "GET", &path, Some(&other), None, "");
    assert_eq!(status, 404, "{text}");
    problem(&head, &text);
    let _ = admin;
    assert!(s.stop().success());
}

/// Items 1 and 5: what a request asserts about its user is bounded by its token's grants (403
/// naming the claim); defaults fill what it does not assert; a turn id reused with other
/// content is a 409 naming the turn, the same content again stays idempotent.
#[test]
fn claims_are_bounded_by_the_token_and_turn_ids_by_their_content() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8");
    let plain = token_with(dir, "plain", "submitter,auditor", &[]);
    let shop = token_with(
        dir,
        "shop",
        "submitter,auditor",
        &[
            "--grants",
            "role:customer,support:*",
            "--defaults",
            "role:customer,support:lookup_order",
        ],
    );
    let s = Served::start(&["--data-dir", dir]);
    let submit = |t: &str, body: Value| {
        call(
            &s,
            "POST",
            "/v1/turns",
            Some(&bearer(t)),
            Some("application/json"),
            &body.to_string(),
        )
    };
    let (status, head, text) = submit(
        &plain,
        json!({"user_id": "u-1", "text": "refund me", "attributes": {"scopes": "support:issue_refund"}}),
    );
    assert_eq!(status, 403, "{text}");
    let p = problem(&head, &text);
    assert_eq!(p["claim"], "support:issue_refund", "{text}");
    let (status, _, text) = submit(
        &shop,
        json!({"user_id": "u-1", "text": "x", "attributes": {"roles": "customer,admin"}}),
    );
    assert_eq!(status, 403, "{text}");
    assert_eq!(json_of(&text)["claim"], "role:admin");
    let (status, _, text) = submit(
        &shop,
        json!({"user_id": "u-1", "text": "x", "attributes": {"scopes": "billing:all"}}),
    );
    assert_eq!(status, 403, "{text}");

    // Within the grants: accepted; with nothing asserted, the defaults are what the turn carries.
    let id = "019a0000-0000-7000-8000-0000000000a1";
    let body = json!({"user_id": "u-2", "text": "Where is my order A1001?", "turn_id": id});
    let (status, _, text) = submit(&shop, body.clone());
    assert_eq!(status, 202, "{text}");
    let (status, _, text) = submit(&shop, body.clone());
    assert_eq!(status, 202, "the same content again is idempotent: {text}");
    let (status, head, text) = submit(
        &shop,
        json!({"user_id": "u-2", "text": "Refund everything", "turn_id": id}),
    );
    assert_eq!(status, 409, "{text}");
    assert_eq!(problem(&head, &text)["turn_id"], id);
    let deadline = Instant::now() + Duration::from_secs(60);
    let request = loop {
        let (status, _, text) = call(
            &s,
            "GET",
            &format!("/v1/turns/{id}/trace"),
            Some(&bearer(&shop)),
            None,
            "",
        );
        if status == 200 {
            let events = json_of(&text);
            if let Some(r) = events
                .as_array()
                .and_then(|a| a.iter().find(|e| e["event"] == "TurnRequested"))
            {
                break r.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the turn never started: {status} {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = request.to_string();
    assert!(
        text.contains("customer") && text.contains("support:lookup_order"),
        "{text}"
    );
    assert!(!text.contains("support:issue_refund"), "{text}");
    assert!(s.stop().success());
}

/// Item 6: tokens added to or revoked from auth.toml take effect without a restart.
#[test]
fn tokens_come_and_go_without_a_restart() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8");
    let first = token_with(dir, "first", "auditor", &[]);
    let s = Served::start(&["--data-dir", dir]);
    let me = |t: &str| call(&s, "GET", "/v1/me", Some(&bearer(t)), None, "").0;
    assert_eq!(me(&first), 200);
    let second = token_with(dir, "second", "auditor", &[]);
    let within = |want: u16, t: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while me(t) != want {
            assert!(
                Instant::now() < deadline,
                "token did not become {want} in 10 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    within(200, &second);
    let revoked = ballast(&["token", "revoke", "first", "--data-dir", dir]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    within(401, &first);
    assert_eq!(me(&second), 200, "revoking one name leaves the others");
    let (ok, _, _) = out(&["token", "revoke", "nobody", "--data-dir", dir]);
    assert!(!ok, "revoking an unknown name says so");
    assert!(s.stop().success());
}

/// Item 9: serve creates a data dir that does not exist.
#[test]
fn serve_creates_its_data_dir() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("new").join("deeper");
    let s = Served::start(&["--data-dir", dir.to_str().expect("utf8")]);
    let (status, _) = s.get("/healthz");
    assert_eq!(status, 200);
    assert!(dir.join("sled").exists());
    assert!(s.stop().success());
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// Item 7: NaN and infinities are refused anywhere, and thresholds out of order, at their line.
#[test]
fn check_config_refuses_nan_and_thresholds_out_of_order_at_their_line() {
    let root = tempfile::tempdir().expect("tmp");
    let file = root.path().join("ballast.toml");
    write(
        &file,
        "[log]\nbackend = \"embedded\"\n\n[control.risk]\nconfirm_at = nan\n",
    );
    let (ok, o, e) = out(&["check-config", file.to_str().expect("utf8")]);
    let text = o + &e;
    assert!(!ok, "{text}");
    assert!(text.contains("ballast.toml:5:"), "{text}");
    assert!(text.contains("nan"), "{text}");

    write(
        &file,
        "[control.risk]\nconfirm_at = 0.5\nescalate_at = 0.4\ndeny_at = inf\n",
    );
    let (ok, o, e) = out(&["check-config", file.to_str().expect("utf8")]);
    let text = o + &e;
    assert!(!ok, "{text}");
    assert!(text.contains("ballast.toml:4:"), "inf at its line: {text}");

    write(
        &file,
        "[control.risk]\nconfirm_at = 0.5\nescalate_at = 0.4\n",
    );
    let (ok, o, e) = out(&["check-config", file.to_str().expect("utf8")]);
    let text = o + &e;
    assert!(!ok, "{text}");
    assert!(text.contains("ballast.toml:3:"), "{text}");
    assert!(text.contains("escalate_at"), "{text}");

    // The same in a policy directory's control.toml.
    let policies = root.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    write(
        &policies.join("a.cedar"),
        "permit(principal, action, resource);\n",
    );
    write(
        &policies.join("control.toml"),
        "[risk]\nconfirm_at = 0.9\ndeny_at = -inf\n",
    );
    write(
        &file,
        &format!("policies = {:?}\n", policies.display().to_string()),
    );
    let (ok, o, e) = out(&["check-config", file.to_str().expect("utf8")]);
    let text = o + &e;
    assert!(!ok, "{text}");
    assert!(text.contains("control.toml:3"), "{text}");
}

/// Item 8: control.toml is part of the policy version and reloads like the Cedar files; an
/// invalid change keeps the running set.
#[test]
fn control_toml_is_versioned_and_hot_reloaded() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path();
    write(
        &dir.join("a.cedar"),
        "permit(principal, action, resource);\n",
    );
    write(&dir.join("control.toml"), "[risk]\nconfirm_at = 0.9\n");
    let catalog = ballast::demo::tools::demo_catalog();
    let plane = ballast::control::CedarControlPlane::load(dir, catalog).expect("loads");
    let v1 = plane.version();
    assert_eq!(plane.reload().expect("reload"), None, "nothing changed");
    write(&dir.join("control.toml"), "[risk]\nconfirm_at = 0.8\n");
    let v2 = plane.reload().expect("reload").expect("a new version");
    assert_ne!(v1, v2);
    use ballast::control::ControlPlane;
    assert_eq!(plane.config().risk.confirm_at, 0.8);
    write(
        &dir.join("control.toml"),
        "[risk]\nconfirm_at = 0.8\nescalate_at = 0.1\n",
    );
    assert!(plane.reload().is_err(), "an invalid change is refused");
    assert_eq!(plane.version(), v2, "and the running set kept");
    assert_eq!(plane.config().risk.escalate_at, 1.01);
    write(
        &dir.join("control.toml"),
        "# a comment only\n[risk]\nconfirm_at = 0.8\n",
    );
    assert_eq!(
        plane.reload().expect("reload"),
        None,
        "same meaning, same version"
    );
}

/// Item 11: `--since`/`--until` are parsed by a date crate: a multi-byte character is an error,
/// never a panic (exit code 101).
#[test]
fn times_with_multibyte_characters_are_errors_not_panics() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8");
    ballast(&["demo", "--data-dir", dir, "--turns", "5", "--workers", "0"]);
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/policies");
    for bad in [
        "2026-12-01T10:00:00é",
        "é",
        "２０２６-12-01",
        "2026-12-01T10:00:00",
    ] {
        let o = std::process::Command::new(common::bin())
            .args([
                "backtest",
                "--policies",
                policies,
                "--data-dir",
                dir,
                "--since",
                bad,
            ])
            .output()
            .expect("run");
        assert_eq!(
            o.status.code(),
            Some(1),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("not a time"));
    }
    let out = ballast(&[
        "backtest",
        "--policies",
        policies,
        "--data-dir",
        dir,
        "--since",
        "2020-01-01",
        "--until",
        "2099-01-01T00:00:00+02:00",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 10: README's own first example works: the token command and the request it shows, run
/// as written, end in a looked-up order, not a denial.
#[test]
fn the_readme_example_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let token_line = readme
        .lines()
        .skip_while(|l| !l.contains("ballast token --data-dir /tmp/ballast-serve"))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        token_line.contains("--grants"),
        "README's token command: {token_line}"
    );
    let flags: Vec<String> = token_line
        .replace('\\', " ")
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .skip(1)
        .take_while(|w| !w.starts_with('#'))
        .map(|w| w.trim_end_matches(')').trim_matches('\'').to_owned())
        .collect();
    let body = readme
        .lines()
        .find(|l| l.contains("curl -s -X POST") && l.contains("http://127.0.0.1:8420/v1/turns"))
        .and_then(|l| {
            let after = readme.split(l).nth(1)?;
            let line = after.lines().find(|x| x.contains("-d '"))?;
            let start = line.find("-d '")? + 4;
            let end = line[start..].find('\'')? + start;
            Some(line[start..end].to_string())
        })
        .expect("README's curl body");
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().to_str().expect("utf8");
    let mut args: Vec<&str> = vec!["token"];
    let flags: Vec<String> = flags
        .into_iter()
        .map(|f| {
            if f == "/tmp/ballast-serve" {
                dir.to_string()
            } else {
                f
            }
        })
        .collect();
    args.extend(flags.iter().map(String::as_str));
    let out = ballast(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let s = Served::start(&["--data-dir", dir]);
    let (status, _, text) = call(
        &s,
        "POST",
        "/v1/turns",
        Some(&bearer(&token)),
        Some("application/json"),
        &body,
    );
    assert_eq!(status, 202, "{body}: {text}");
    let id = json_of(&text)["turn_id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let turn = loop {
        let (_, _, text) = call(
            &s,
            "GET",
            &format!("/v1/turns/{id}"),
            Some(&bearer(&token)),
            None,
            "",
        );
        let v = json_of(&text);
        if v["status"] == "terminal" {
            break v;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(turn["outcome"], "succeeded", "{turn}");
    let (_, _, trace) = call(
        &s,
        "GET",
        &format!("/v1/turns/{id}/trace"),
        Some(&bearer(&token)),
        None,
        "",
    );
    assert!(
        trace.contains("lookup_order"),
        "the order was looked up: {trace}"
    );
    assert!(s.stop().success());
}

fn out(args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(common::bin())
        .args(args)
        .output()
        .expect("run ballast");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Item 12: while `serve` runs, the operators' and auditors' commands work on its data dir with
/// the same output as offline; an approval answered from the CLI applies at once.
#[test]
fn cli_commands_work_while_serve_runs() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("data");
    let d = dir.to_str().expect("utf8");
    // The demo policies, with approvals that wait long enough to be answered by hand.
    let policies = root.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/policies");
    for f in std::fs::read_dir(&examples).expect("examples") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, policies.join(f.file_name().expect("name"))).expect("copy");
    }
    let control = std::fs::read_to_string(policies.join("control.toml")).expect("control");
    write(
        &policies.join("control.toml"),
        &control.replace("approval_ttl_ms = 2000", "approval_ttl_ms = 600000"),
    );
    let p = policies.to_str().expect("utf8");
    let (ok, _, err) = out(&["demo", "--data-dir", d, "--turns", "60", "--workers", "0"]);
    assert!(ok, "{err}");
    let operator = token_with(d, "ops", "operator,auditor", &[]);
    let s = Served::start(&["--data-dir", d, "--policies", p]);
    // Wait for the workload to settle: every turn finished or waiting for a person.
    let a = bearer(&operator);
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let (_, _, running) = call(
            &s,
            "GET",
            "/v1/turns?status=running&limit=1000",
            Some(&a),
            None,
            "",
        );
        let (_, _, queue) = call(&s, "GET", "/v1/queue", Some(&a), None, "");
        let (running, queue) = (json_of(&running), json_of(&queue));
        let approvals: Vec<String> = queue
            .as_array()
            .expect("queue")
            .iter()
            .filter(|w| w["kind"] == "approval")
            .filter_map(|w| w["turn_id"].as_str().map(str::to_owned))
            .collect();
        if running.as_array().map(Vec::len) == Some(approvals.len()) && !approvals.is_empty() {
            break approvals;
        }
        assert!(
            Instant::now() < deadline,
            "did not settle: {running} / {queue}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Live: each command works (it used to fail with "could not acquire lock").
    let (ok, listed, err) = out(&["turns", "--data-dir", d, "--json"]);
    assert!(ok, "turns: {err}");
    let turns: Vec<Value> = listed.lines().map(json_of).collect();
    assert_eq!(turns.len(), 60, "{listed}");
    let done = turns
        .iter()
        .find(|t| t["status"] == "terminal")
        .and_then(|t| t["turn_id"].as_str())
        .expect("a finished turn")
        .to_string();
    let reads: Vec<Vec<String>> = vec![
        vec!["trace".into(), done.clone(), "--data-dir".into(), d.into()],
        vec![
            "trace".into(),
            done.clone(),
            "--data-dir".into(),
            d.into(),
            "--json".into(),
        ],
        vec![
            "audit".into(),
            done.clone(),
            "--data-dir".into(),
            d.into(),
            "--json".into(),
        ],
        vec!["outcomes".into(), "--data-dir".into(), d.into()],
        vec![
            "handoff".into(),
            "list".into(),
            "--data-dir".into(),
            d.into(),
            "--all".into(),
        ],
    ];
    let mut live = Vec::new();
    for r in &reads {
        let args: Vec<&str> = r.iter().map(String::as_str).collect();
        let (ok, text, err) = out(&args);
        assert!(ok, "{args:?} while serving: {err}");
        live.push(text);
    }
    let (ok, slo, err) = out(&["slo", "--data-dir", d, "--json"]);
    assert!(ok && slo.contains("task_success"), "slo: {err}");
    let (ok, _, err) = out(&["replay", "--data-dir", d]);
    assert!(ok, "replay while serving: {err}");
    // An approval answered from the CLI applies at once.
    let turn = &waiting[0];
    let (ok, text, err) = out(&["approve", turn, "--data-dir", d, "--operator", "anna"]);
    assert!(ok, "approve: {err}");
    assert!(text.contains("approved"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, t) = call(&s, "GET", &format!("/v1/turns/{turn}"), Some(&a), None, "");
        if json_of(&t)["status"] == "terminal" {
            break;
        }
        assert!(Instant::now() < deadline, "the approval did not apply: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, trace, _) = out(&["trace", turn, "--data-dir", d]);
    assert!(
        trace.contains("anna"),
        "recorded as the CLI's operator: {trace}"
    );
    assert!(s.stop().success());
    // Offline, the same commands print the same.
    for (r, before) in reads.iter().zip(&live) {
        let args: Vec<&str> = r.iter().map(String::as_str).collect();
        let (ok, text, err) = out(&args);
        assert!(ok, "{args:?} offline: {err}");
        if r[0] != "outcomes" && r[0] != "handoff" {
            assert_eq!(&text, before, "{args:?}: live and offline differ");
        }
    }
}
