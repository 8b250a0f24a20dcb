//! The HTTP API of a real `ballast serve` on 127.0.0.1: every route refuses a missing token
//! (401), a wrong role (403) and another tenant's turn (404) with problem details that leak
//! nothing; a validator accepts `/openapi.json`; a turn submitted over HTTP runs, shows its
//! trace and moves the SLOs; bodies are size-limited; a tenant's rate is limited.

mod common;

use std::time::{Duration, Instant};

use common::{Served, ballast, http};
use serde_json::{Value, json};

struct Tokens {
    submitter: String,
    operator: String,
    auditor: String,
    other_tenant: String,
}

fn token(dir: &str, name: &str, tenant: &str, roles: &str) -> String {
    let out = ballast(&[
        "token",
        "--data-dir",
        dir,
        "--name",
        name,
        "--tenant",
        tenant,
        "--roles",
        roles,
        "--grants",
        "role:customer,support:*",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn seeded(turns: &str) -> (tempfile::TempDir, Tokens) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().to_str().expect("utf8").to_string();
    ballast(&[
        "demo",
        "--data-dir",
        &dir,
        "--turns",
        turns,
        "--workers",
        "0",
    ]);
    // The route sweep below makes dozens of failed authentications from one address on purpose.
    let auth = root.path().join("auth.toml");
    let mut text = std::fs::read_to_string(&auth).unwrap_or_default();
    text.push_str("\n[rate]\nfailed_auth_burst = 10000.0\n");
    std::fs::write(&auth, text).expect("auth.toml");
    let tokens = Tokens {
        submitter: token(&dir, "backend", "acme", "submitter"),
        operator: token(&dir, "ops-anna", "acme", "operator"),
        auditor: token(&dir, "auditor-li", "acme", "auditor"),
        other_tenant: token(&dir, "hooli-admin", "hooli", "admin"),
    };
    (root, tokens)
}

fn call(s: &Served, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    http(&s.addr, method, path, &headers, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Waits until the acme turns in the seeded workload have all been started and some finished.
fn wait_for_turns(s: &Served, t: &Tokens, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = call(
            s,
            "GET",
            "/v1/turns?status=terminal&limit=1000",
            Some(&t.auditor),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let turns = json_of(&body).as_array().cloned().unwrap_or_default();
        if turns.len() >= at_least {
            return turns;
        }
        assert!(
            Instant::now() < deadline,
            "only {} turns finished",
            turns.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_route_refuses_without_a_token_with_a_wrong_role_and_across_tenants() {
    let (root, t) = seeded("80");
    let dir = root.path().to_str().expect("utf8");
    let s = Served::start(&["--data-dir", dir]);
    let turns = wait_for_turns(&s, &t, 20);
    let acme_turn = turns[0]["turn_id"].as_str().expect("id").to_string();
    assert!(turns.iter().all(|x| x["tenant"] == "acme"));

    // (method, path, body, roles allowed)
    let turn = |p: &str| p.replace("ID", &acme_turn);
    let routes: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "POST",
            "/v1/turns".into(),
            r#"{"user_id":"u-1","text":"hello"}"#,
            &["submitter"],
        ),
        (
            "GET",
            "/v1/turns".into(),
            "",
            &["submitter", "operator", "auditor"],
        ),
        (
            "GET",
            turn("/v1/turns/ID"),
            "",
            &["submitter", "operator", "auditor"],
        ),
        (
            "GET",
            turn("/v1/turns/ID/trace"),
            "",
            &["operator", "auditor"],
        ),
        (
            "GET",
            turn("/v1/turns/ID/audit"),
            "",
            &["operator", "auditor"],
        ),
        ("POST", turn("/v1/turns/ID/approve"), "{}", &["operator"]),
        ("POST", turn("/v1/turns/ID/deny"), "{}", &["operator"]),
        ("POST", turn("/v1/turns/ID/reverse"), "{}", &["operator"]),
        (
            "POST",
            turn("/v1/turns/ID/labels"),
            r#"{"label":"correct"}"#,
            &["operator", "auditor"],
        ),
        (
            "GET",
            "/v1/me".into(),
            "",
            &["submitter", "operator", "auditor"],
        ),
        ("GET", "/v1/queue".into(), "", &["operator"]),
        ("GET", "/v1/handoffs".into(), "", &["operator"]),
        ("POST", turn("/v1/handoffs/ID/accept"), "{}", &["operator"]),
        (
            "POST",
            turn("/v1/handoffs/ID/resolve"),
            r#"{"resolution":"done"}"#,
            &["operator"],
        ),
        ("GET", "/v1/slo".into(), "", &["operator", "auditor"]),
        ("GET", "/v1/slo/series".into(), "", &["operator", "auditor"]),
        ("GET", "/v1/outcomes".into(), "", &["auditor"]),
    ];
    let by_role = [
        ("submitter", t.submitter.as_str()),
        ("operator", t.operator.as_str()),
        ("auditor", t.auditor.as_str()),
    ];
    for (method, path, body, allowed) in &routes {
        for token in [None, Some("blst_not-a-token")] {
            let (status, text) = call(&s, method, path, token, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            let p = json_of(&text);
            assert_eq!(p["status"], 401);
            assert!(!text.contains(&acme_turn), "{method} {path} leaks the turn");
        }
        for (role, token) in by_role {
            let (status, text) = call(&s, method, path, Some(token), body);
            if allowed.contains(&role) {
                assert_ne!(status, 401, "{method} {path} as {role}: {text}");
                assert_ne!(status, 403, "{method} {path} as {role}: {text}");
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}: {text}");
                assert_eq!(
                    json_of(&text)["type"],
                    "https://ballast.dev/problems/forbidden"
                );
                assert!(
                    !text.contains(&acme_turn),
                    "{method} {path} as {role} leaks"
                );
            }
        }
        // Another tenant's admin: a turn of acme does not exist for it.
        if path.contains(&acme_turn) {
            let (status, text) = call(&s, method, path, Some(&t.other_tenant), body);
            assert_eq!(status, 404, "{method} {path} across tenants: {text}");
            assert!(!text.contains("acme"), "{text}");
        }
    }
    // Lists never show another tenant's turns or outcomes.
    for path in ["/v1/turns", "/v1/outcomes", "/v1/queue", "/v1/handoffs"] {
        let (status, text) = call(&s, "GET", path, Some(&t.other_tenant), "");
        assert_eq!(status, 200, "{path}: {text}");
        assert!(
            !text.contains("acme") && !text.contains(&acme_turn),
            "{path} leaks: {text}"
        );
    }
    let (_, text) = call(&s, "GET", "/v1/slo", Some(&t.other_tenant), "");
    assert_eq!(json_of(&text)["turns"], 0, "hooli has no turns: {text}");
    assert!(s.stop().success());
}

#[test]
fn openapi_is_valid_and_a_submitted_turn_runs_shows_its_trace_and_moves_the_slos() {
    let (root, t) = seeded("40");
    let dir = root.path().to_str().expect("utf8");
    let s = Served::start(&["--data-dir", dir]);
    wait_for_turns(&s, &t, 3);

    // OpenAPI: generated from the handlers, accepted by a validator, every route documented.
    let (status, doc) = call(&s, "GET", "/openapi.json", None, "");
    assert_eq!(status, 200);
    let spec = root.path().join("openapi.json");
    std::fs::write(&spec, &doc).expect("write");
    let python = std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&spec)
        .output()
        .expect("python runs (scripts/test.sh installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&doc);
    // Routes and the document come from one list (utoipa-axum): every route is documented.
    for path in [
        "/v1/turns",
        "/v1/turns/{id}",
        "/v1/turns/{id}/trace",
        "/v1/turns/{id}/events",
        "/v1/turns/{id}/audit",
        "/v1/turns/{id}/approve",
        "/v1/turns/{id}/deny",
        "/v1/turns/{id}/reverse",
        "/v1/turns/{id}/labels",
        "/v1/me",
        "/v1/queue",
        "/v1/handoffs",
        "/v1/handoffs/{id}/accept",
        "/v1/handoffs/{id}/resolve",
        "/v1/slo",
        "/v1/slo/series",
        "/v1/outcomes",
        "/v1/sessions/{id}",
        "/v1/reveals",
        "/v1/admin/forget",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(
        doc["paths"]["/v1/turns"]["post"].is_object()
            && doc["paths"]["/v1/turns"]["get"].is_object()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let (_, before) = call(&s, "GET", "/v1/slo", Some(&t.auditor), "");
    let before = json_of(&before)["turns"].as_u64().expect("turns");
    // Submit with a body a backend would send.
    let (status, text) = call(
        &s,
        "POST",
        "/v1/turns",
        Some(&t.submitter),
        &json!({"user_id": "u-http", "text": "Where is my order A1001?", "attributes": {"roles": "customer", "scopes": ballast::demo::workload::SCOPES}}).to_string(),
    );
    assert_eq!(status, 202, "{text}");
    let id = json_of(&text)["turn_id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let turn = loop {
        let (status, text) = call(
            &s,
            "GET",
            &format!("/v1/turns/{id}"),
            Some(&t.submitter),
            "",
        );
        if status == 200 && json_of(&text)["status"] == "terminal" {
            break json_of(&text);
        }
        assert!(
            Instant::now() < deadline,
            "turn never finished: {status} {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(turn["outcome"], "succeeded", "{turn}");
    assert_eq!(turn["tenant"], "acme");
    let (status, text) = call(
        &s,
        "GET",
        &format!("/v1/turns/{id}/trace"),
        Some(&t.auditor),
        "",
    );
    assert_eq!(status, 200);
    let events = json_of(&text);
    let kinds: Vec<&str> = events
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"ToolCallCompleted") && kinds.last() == Some(&"TurnCompleted"),
        "{kinds:?}"
    );
    assert!(events[0]["otel"]["ballast.turn.id"].is_string());
    let (_, after) = call(&s, "GET", "/v1/slo", Some(&t.auditor), "");
    assert_eq!(
        json_of(&after)["turns"].as_u64(),
        Some(before + 1),
        "the SLOs moved"
    );

    // Bad bodies are problems too.
    let big = format!(r#"{{"user_id":"u","text":"{}"}}"#, "x".repeat(100 * 1024));
    let (status, text) = call(&s, "POST", "/v1/turns", Some(&t.submitter), &big);
    assert_eq!(status, 413, "{}", &text[..text.len().min(200)]);
    assert_eq!(json_of(&text)["status"], 413);
    let (status, text) = call(&s, "POST", "/v1/turns", Some(&t.submitter), "{not json");
    assert_eq!(status, 400, "{text}");
    assert_eq!(
        json_of(&text)["type"],
        "https://ballast.dev/problems/invalid-body"
    );
    let (status, _) = call(&s, "GET", "/v1/turns/not-a-uuid", Some(&t.auditor), "");
    assert_eq!(status, 400);
    let (status, text) = call(&s, "GET", "/v1/nothing", Some(&t.auditor), "");
    assert_eq!(
        (status, json_of(&text)["status"].as_u64()),
        (404, Some(404))
    );
    assert!(s.stop().success());
}

#[test]
fn a_tenant_over_its_rate_gets_429_and_other_tenants_do_not() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().to_str().expect("utf8");
    let a = token(dir, "a", "acme", "auditor");
    let b = token(dir, "b", "globex", "auditor");
    let auth = root.path().join("auth.toml");
    let text = std::fs::read_to_string(&auth).expect("auth");
    std::fs::write(
        &auth,
        format!("[rate]\nrequests_per_second = 1\nburst = 5\n{text}"),
    )
    .expect("write");
    let s = Served::start(&["--data-dir", dir]);
    let statuses: Vec<u16> = (0..12)
        .map(|_| call(&s, "GET", "/v1/me", Some(&a), "").0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        5,
        "{statuses:?}"
    );
    let (status, text) = call(&s, "GET", "/v1/me", Some(&a), "");
    assert_eq!(status, 429, "{text}");
    assert!(
        json_of(&text)["retry_after"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    assert_eq!(
        call(&s, "GET", "/v1/me", Some(&b), "").0,
        200,
        "globex has its own bucket"
    );
    assert!(s.stop().success());
}
