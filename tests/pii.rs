//! Personal data end to end on the embedded backend, through the API: a seeded corpus (every
//! positive of `guard::corpus` — e-mails, international phones, cards with any separators,
//! IBANs, API keys, JWTs, private keys — and the labelled secrets) goes in as request text,
//! user ids and attributes. Then:
//!
//! - the model server and the tool server received the cleartext;
//! - every surface is searched for every value: the data dir's raw files, `trace`, `turns`,
//!   `audit`, `outcomes`, `handoff list`, every API answer, `/metrics`, the process's log —
//!   zero hits;
//! - the approver sees the real arguments when they reveal them; reveals are recorded, refused
//!   to a role without the right and to an operator outside its queue;
//! - after `forget` (API for one user, CLI for the tenant) nothing is recoverable, views say
//!   `[FORGOTTEN:kind]`, and replay gives the same digests.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use ballast::guard::corpus::{CORPUS, LABELLED};
use common::agent::Running;
use common::{Served, ballast, http};
use serde_json::{Value, json};

/// One seeded request and the cleartext values it carries.
struct Seed {
    user: String,
    text: String,
    attributes: BTreeMap<String, String>,
    values: Vec<String>,
}

fn seeds() -> Vec<Seed> {
    let emails: Vec<&str> = CORPUS
        .iter()
        .filter(|(k, _)| *k == "email")
        .map(|(_, v)| *v)
        .collect();
    let phones: Vec<&str> = CORPUS
        .iter()
        .filter(|(k, _)| *k == "phone")
        .map(|(_, v)| *v)
        .collect();
    let mut out = Vec::new();
    for (i, chunk) in CORPUS.chunks(4).enumerate() {
        let mut values: Vec<String> = chunk.iter().map(|(_, v)| v.to_string()).collect();
        let mut text = format!("Note {i} for the file.");
        for (n, (kind, v)) in chunk.iter().enumerate() {
            text.push_str(&format!(" Item {n} ({kind}) is {v} ; ok."));
        }
        let (label, secret) = LABELLED[i % LABELLED.len()];
        text.push_str(&format!(" Also {label} ; end."));
        values.push(secret.to_string());
        let user = emails[i % emails.len()].to_string();
        let phone = phones[(i * 7) % phones.len()].to_string();
        values.push(user.clone());
        values.push(phone.clone());
        out.push(Seed {
            user,
            text,
            attributes: BTreeMap::from([("contact".to_string(), phone)]),
            values,
        });
    }
    out
}

const TRANSFER_IBAN: &str = "DE89370400440532013000";
const TRANSFER_USER: &str = "vip.customer@example.net";

/// The model: a note-taker that files the user's message with a tool and answers with what the
/// tool echoed back; asked for a transfer, it calls `wire_transfer` with the IBAN it read.
#[derive(Default)]
struct Seen {
    model: Vec<String>,
    notes: Vec<String>,
    transfers: Vec<String>,
}

fn completion(content: Option<String>, call: Option<(&str, Value)>) -> Value {
    let tool_calls = call.map(|(name, args)| {
        json!([{"id": "call_1", "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}])
    });
    json!({
        "id": "cmpl-1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": if tool_calls.is_some() { "tool_calls" } else { "stop" },
            "message": {"role": "assistant", "content": content, "tool_calls": tool_calls}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    })
}

async fn chat(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("seen").model.push(body.to_string());
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rposition(|m| m["role"] == "user")
        .unwrap_or(0);
    let request = messages[last_user]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tool_result = messages[last_user..]
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .and_then(|c| serde_json::from_str::<Value>(c).ok());
    let answer = match tool_result {
        None if request.starts_with("TRANSFER") => {
            let iban = request
                .split("IBAN ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_default();
            completion(
                None,
                Some(("wire_transfer", json!({"iban": iban, "amount_cents": 100}))),
            )
        }
        None => completion(None, Some(("send_note", json!({"message": request})))),
        Some(r) => completion(
            Some(format!(
                "Filed: {}",
                r["echo"].as_str().or(r["iban"].as_str()).unwrap_or("?")
            )),
            None,
        ),
    };
    axum::Json(answer)
}

async fn note(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = seen.lock().expect("seen");
    s.notes.push(body.to_string());
    axum::Json(json!({"note_id": s.notes.len(), "echo": body["message"]}))
}

async fn transfer(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = seen.lock().expect("seen");
    s.transfers.push(body.to_string());
    axum::Json(json!({"transfer_id": s.transfers.len(), "iban": body["iban"]}))
}

fn deployment(root: &Path, url: &str) -> std::path::PathBuf {
    let catalog = json!([
        {"name": "send_note", "description": "File a note with the customer's message.",
         "args_schema": {"type": "object", "properties": {"message": {"type": "string"}},
            "required": ["message"], "additionalProperties": false},
         "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "low",
         "idempotent": true, "timeout_ms": 3000, "cost_micros": 10, "key_args": [],
         "http": {"method": "POST", "url": format!("{url}/notes")}},
        {"name": "wire_transfer", "description": "Send money to an IBAN.",
         "args_schema": {"type": "object", "properties": {"iban": {"type": "string"},
            "amount_cents": {"type": "integer"}}, "required": ["iban", "amount_cents"],
            "additionalProperties": false},
         "result_schema": {"type": "object"}, "auth_scopes": [], "impact": "high",
         "idempotent": false, "timeout_ms": 3000, "cost_micros": 10, "key_args": ["iban"],
         "http": {"method": "POST", "url": format!("{url}/transfers")}}
    ]);
    std::fs::write(root.join("catalog.json"), catalog.to_string()).expect("catalog");
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).expect("policies");
    std::fs::write(
        policies.join("allow.cedar"),
        "@id(\"allow.all\")\npermit(principal, action, resource);\n\n\
         @id(\"transfer.confirm\")\n@decision(\"require_confirmation\")\n\
         @reason(\"transfers need a person's confirmation\")\n\
         forbid(principal, action == Ballast::Action::\"call_tool\", resource == Ballast::Tool::\"wire_transfer\");\n",
    )
    .expect("policy");
    let planner = |name: &str| {
        format!(
            "[planners.{name}]\nkind = \"openai\"\nbase_url = \"{url}/v1\"\nmodel = \"test-model\"\n\
             api_key_env = \"BALLAST_TEST_NO_KEY\"\ntimeout_ms = 5000\nmax_retries = 1\nbackoff_ms = 10\n\
             default_confidence = 0.9\n"
        )
    };
    let (planner, specialist) = (planner("general"), planner("specialist"));
    let text = format!(
        "catalog = \"catalog.json\"\npolicies = \"policies\"\n\n[log]\nbackend = \"embedded\"\n\
         data_dir = \"data\"\npartitions = 2\n\n[execution]\nretriever = \"none\"\n\n\
         {planner}\n{specialist}\n[control]\nmax_steps = 4\napproval_ttl_ms = 600000\n\n\
         [control.profiles.general]\nmodel = \"test-model\"\nreserve_tokens = 500\nmicros_per_1k_tokens = 1\n\n\
         [control.profiles.specialist]\nmodel = \"test-model\"\nreserve_tokens = 500\nmicros_per_1k_tokens = 1\n"
    );
    let file = root.join("ballast.toml");
    std::fs::write(&file, text).expect("config");
    file
}

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
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
}

fn call(s: &Served, bearer: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http(
        &s.addr,
        method,
        path,
        &[
            ("Authorization", bearer),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Every form a value can take in a text: as is, and JSON-escaped.
fn forms(v: &str) -> Vec<String> {
    let escaped = serde_json::to_string(v).expect("json");
    let escaped = escaped[1..escaped.len() - 1].to_string();
    if escaped == v {
        vec![v.to_string()]
    } else {
        vec![v.to_string(), escaped]
    }
}

/// Which of `values` occur in `hay` (any form).
fn hits(hay: &[u8], values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| {
            forms(v)
                .iter()
                .any(|f| hay.windows(f.len()).any(|w| w == f.as_bytes()))
        })
        .cloned()
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn cli(args: &[&str]) -> String {
    let out = ballast(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn personal_values_work_in_clear_rest_sealed_are_revealed_on_record_and_forgotten() {
    let root = tempfile::tempdir().expect("tmp");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/notes", axum::routing::post(note))
        .route("/transfers", axum::routing::post(transfer))
        .with_state(Arc::clone(&seen));
    let server = Running::start(app);
    let config = deployment(root.path(), &server.url);
    let data = root.path().join("data");
    let d = data.to_str().expect("utf8");
    let shop = token(d, "shop", "submitter");
    let ops = token(d, "ops-anna", "operator");
    let aud = token(d, "auditor-li", "auditor");
    let adm = token(d, "admin", "admin");
    let checked = ballast(&["check-config", config.to_str().expect("utf8")]);
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let log_path = root.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let s = Served::start_with(
        &["--config", config.to_str().expect("utf8")],
        log.into(),
        &[("BALLAST_LOG", "info")],
    );

    let seeds = seeds();
    let mut all_values: Vec<String> = seeds.iter().flat_map(|s| s.values.clone()).collect();
    all_values.push(TRANSFER_IBAN.into());
    all_values.push(TRANSFER_USER.into());
    all_values.sort();
    all_values.dedup();
    let mut ids = Vec::new();
    for seed in &seeds {
        let body = json!({"user_id": seed.user, "text": seed.text, "attributes": seed.attributes});
        let (status, v) = call(&s, &shop, "POST", "/v1/turns", &body.to_string());
        assert_eq!(status, 202, "{v}");
        let v: Value = serde_json::from_str(&v).expect("json");
        ids.push(v["turn_id"].as_str().expect("id").to_string());
    }
    let body = json!({"user_id": TRANSFER_USER,
        "text": format!("TRANSFER to IBAN {TRANSFER_IBAN} amount 100 cents please")});
    let (status, v) = call(&s, &shop, "POST", "/v1/turns", &body.to_string());
    assert_eq!(status, 202, "{v}");
    let transfer_id = serde_json::from_str::<Value>(&v).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string();
    for id in &ids {
        wait_for(&format!("turn {id}"), || {
            let (_, v) = call(&s, &aud, "GET", &format!("/v1/turns/{id}"), "");
            v.contains("\"terminal\"")
        });
    }
    let mut queue = String::new();
    wait_for("the transfer's approval", || {
        queue = call(&s, &ops, "GET", "/v1/queue", "").1;
        queue.contains(&transfer_id)
    });

    // The approver: masked by default, the real IBAN on a recorded reveal.
    assert!(
        queue.contains("[REDACTED:iban]") && !queue.contains(TRANSFER_IBAN),
        "{queue}"
    );
    let (status, revealed) = call(
        &s,
        &ops,
        "GET",
        "/v1/queue?reveal=true&reason=checking%20the%20beneficiary",
        "",
    );
    assert_eq!(status, 200, "{revealed}");
    assert!(revealed.contains(TRANSFER_IBAN), "{revealed}");
    let (status, _) = call(&s, &ops, "GET", "/v1/queue?reveal=true", "");
    assert_eq!(status, 400, "a reveal needs a reason");
    // Refused: a submitter, and an operator outside its queue (a finished turn).
    let (status, _) = call(
        &s,
        &shop,
        "GET",
        &format!("/v1/turns/{}/trace?reveal=true&reason=x", ids[0]),
        "",
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &s,
        &ops,
        "GET",
        &format!("/v1/turns/{}/trace?reveal=true&reason=x", ids[0]),
        "",
    );
    assert_eq!(
        status, 403,
        "an operator reveals only turns waiting for a person"
    );
    // An auditor may, and sees the first seed's values.
    let (status, trace) = call(
        &s,
        &aud,
        "GET",
        &format!("/v1/turns/{}/trace?reveal=true&reason=case%201234", ids[0]),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(
        hits(trace.as_bytes(), &seeds[0].values).len(),
        seeds[0].values.len(),
        "{trace}"
    );
    let (status, reveals) = call(&s, &aud, "GET", "/v1/reveals", "");
    assert_eq!(status, 200);
    let reveals: Vec<Value> = serde_json::from_str(&reveals).expect("reveals");
    let surfaces: Vec<(&str, &str, &str)> = reveals
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap_or_default(),
                r["surface"].as_str().unwrap_or_default(),
                r["turn_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        surfaces,
        [
            ("ops-anna", "queue", transfer_id.as_str()),
            ("auditor-li", "trace", ids[0].as_str())
        ],
        "exactly the two reveals, nothing for the refused ones"
    );
    assert_eq!(reveals[1]["reason"], "case 1234");

    // Approved: the tool gets the real IBAN.
    let (status, v) = call(
        &s,
        &ops,
        "POST",
        &format!("/v1/turns/{transfer_id}/approve"),
        "{}",
    );
    assert_eq!(status, 200, "{v}");
    wait_for("the transfer", || {
        call(&s, &aud, "GET", &format!("/v1/turns/{transfer_id}"), "")
            .1
            .contains("\"terminal\"")
    });

    // The execution plane worked on cleartext.
    for id in &ids {
        let (_, v) = call(&s, &aud, "GET", &format!("/v1/turns/{id}"), "");
        let (_, t) = call(&s, &aud, "GET", &format!("/v1/turns/{id}/trace"), "");
        assert!(v.contains("\"succeeded\""), "{v}\n{t}");
    }
    {
        let seen = seen.lock().expect("seen");
        // JSON escapes aside (the private keys' line breaks), as the servers received them.
        let unescape = |s: &String| s.replace("\\n", "\n").replace("\\\"", "\"");
        let model: String = seen.model.iter().map(unescape).collect();
        let notes: String = seen.notes.iter().map(unescape).collect();
        for seed in &seeds {
            let in_text: Vec<String> = seed
                .values
                .iter()
                .filter(|v| seed.text.contains(v.as_str()))
                .cloned()
                .collect();
            // Spellings of one value share a token and read back as the first one kept
            // ("0044 20 7946 0958" for "+44 20 7946 0958"): compare alphanumerics.
            // So each value's last eight letters and digits (full-width digits as ASCII).
            let norm = |s: &str| -> String {
                s.chars()
                    .filter(|c| c.is_alphanumeric())
                    .map(|c| match c {
                        '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
                        c => c,
                    })
                    .flat_map(char::to_lowercase)
                    .collect()
            };
            let (model, notes) = (norm(&model), norm(&notes));
            for v in &in_text {
                let n = norm(v);
                // Characters, not bytes: a value may be in any script (用户@例子.广告).
                let skip = n.chars().count().saturating_sub(8);
                let tail: String = n.chars().skip(skip).collect();
                let tail = tail.as_str();
                assert!(model.contains(tail), "the model saw {v}");
                assert!(notes.contains(tail), "the tool got {v}");
            }
        }
        assert!(
            seen.transfers.iter().any(|t| t.contains(TRANSFER_IBAN)),
            "{:?}",
            seen.transfers
        );
    }

    // Every view, masked.
    let mut views = String::new();
    for path in [
        "/v1/turns?limit=1000",
        "/v1/outcomes",
        "/v1/queue",
        "/v1/handoffs",
        "/v1/reveals",
    ] {
        views.push_str(&call(&s, &aud, "GET", path, "").1);
        views.push_str(&call(&s, &ops, "GET", path, "").1);
    }
    for id in ids.iter().chain([&transfer_id]) {
        for tail in ["", "/trace", "/audit"] {
            views.push_str(&call(&s, &aud, "GET", &format!("/v1/turns/{id}{tail}"), "").1);
        }
    }
    views.push_str(&s.get("/metrics").1);
    assert!(views.contains("[REDACTED:email]") && views.contains("[REDACTED:user]"));
    assert_eq!(
        hits(views.as_bytes(), &all_values),
        Vec::<String>::new(),
        "API views"
    );

    // Forget one user over the API: their values are gone for good, others' are not.
    let (status, v) = call(
        &s,
        &shop,
        "POST",
        "/v1/admin/forget",
        &json!({"user_id": seeds[0].user}).to_string(),
    );
    assert_eq!(status, 403, "only an admin forgets: {v}");
    let (status, v) = call(
        &s,
        &adm,
        "POST",
        "/v1/admin/forget",
        &json!({"user_id": seeds[0].user}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let forgot: Value = serde_json::from_str(&v).expect("json");
    assert!(
        forgot["keys"].as_u64() >= Some(1) && forgot["values"].as_u64() >= Some(3),
        "{forgot}"
    );
    let (_, trace) = call(
        &s,
        &aud,
        "GET",
        &format!(
            "/v1/turns/{}/trace?reveal=true&reason=after%20forget",
            ids[0]
        ),
        "",
    );
    assert!(trace.contains("[FORGOTTEN:email]"), "{trace}");
    assert_eq!(
        hits(trace.as_bytes(), &seeds[0].values),
        Vec::<String>::new()
    );
    let (_, masked) = call(&s, &aud, "GET", &format!("/v1/turns/{}/trace", ids[0]), "");
    assert!(masked.contains("[FORGOTTEN:"), "{masked}");
    // A user who shares no values with the forgotten one keeps theirs.
    let other = seeds
        .iter()
        .position(|x| x.user != seeds[0].user)
        .expect("another user");
    let (_, trace) = call(
        &s,
        &aud,
        "GET",
        &format!(
            "/v1/turns/{}/trace?reveal=true&reason=still%20there",
            ids[other]
        ),
        "",
    );
    assert!(
        hits(trace.as_bytes(), &[seeds[other].user.clone()]).len() == 1,
        "{trace}"
    );
    assert!(s.stop().success());

    // At rest: nothing in the data dir, nothing in the log.
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(files.len() > 3);
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        assert_eq!(
            hits(&bytes, &all_values),
            Vec::<String>::new(),
            "{}",
            f.display()
        );
    }
    let logged = std::fs::read(&log_path).expect("log");
    assert!(!logged.is_empty());
    assert_eq!(
        hits(&logged, &all_values),
        Vec::<String>::new(),
        "serve's log"
    );

    // The CLI's views, masked too.
    let mut out = cli(&["turns", "--data-dir", d, "--json"]);
    out.push_str(&cli(&["outcomes", "--data-dir", d]));
    out.push_str(&cli(&[
        "handoff",
        "list",
        "--data-dir",
        d,
        "--all",
        "--json",
    ]));
    for id in ids.iter().chain([&transfer_id]) {
        out.push_str(&cli(&["trace", id, "--data-dir", d]));
        out.push_str(&cli(&["trace", id, "--data-dir", d, "--json"]));
        out.push_str(&cli(&["audit", id, "--data-dir", d, "--json"]));
    }
    assert_eq!(
        hits(out.as_bytes(), &all_values),
        Vec::<String>::new(),
        "CLI views"
    );

    // The CLI reveals on record, and forgets a whole tenant; replay is unchanged by it.
    let revealed = cli(&[
        "trace",
        &ids[other],
        "--data-dir",
        d,
        "--reveal",
        "--reason",
        "cli check",
        "--operator",
        "li",
    ]);
    assert_eq!(
        hits(revealed.as_bytes(), &[seeds[other].user.clone()]).len(),
        1,
        "{revealed}"
    );
    let before = cli(&["replay", "--data-dir", d]);
    let forgot = cli(&["forget", "--tenant", "acme", "--data-dir", d]);
    assert!(forgot.contains("forgot tenant acme"), "{forgot}");
    let after = cli(&["replay", "--data-dir", d]);
    let digests = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("digest"))
            .map(str::to_owned)
            .collect()
    };
    assert!(!digests(&before).is_empty(), "{before}");
    assert_eq!(digests(&before), digests(&after));
    let revealed = cli(&[
        "trace",
        &ids[other],
        "--data-dir",
        d,
        "--reveal",
        "--reason",
        "after",
        "--operator",
        "li",
    ]);
    assert!(revealed.contains("[FORGOTTEN:"), "{revealed}");
    assert_eq!(hits(revealed.as_bytes(), &all_values), Vec::<String>::new());
    let emb = ballast::embedded::Embedded::open(&data, 0).expect("open");
    use ballast::vault::VaultStore;
    assert!(
        emb.vault_store.keys(b"").expect("keys").is_empty(),
        "every key and value destroyed"
    );
    let reveals = ballast::vault::reveal::list(emb.reveals.as_ref(), "acme", 0, 100);
    let reveals = tokio::runtime::Runtime::new()
        .expect("rt")
        .block_on(reveals)
        .expect("list");
    assert_eq!(
        reveals.iter().filter(|r| r.surface == "cli-trace").count(),
        2
    );
}

/// No master key, no service: `serve` and `worker` refuse to start (and say how to give one),
/// unless told to use a development key.
#[test]
fn serve_and_worker_refuse_to_start_without_a_master_key() {
    let root = tempfile::tempdir().expect("tmp");
    let data = root.path().join("data");
    for args in [
        vec![
            "serve",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ],
        vec![
            "worker",
            "--bootstrap",
            "127.0.0.1:1",
            "--workload",
            "w.jsonl",
            "--effects",
            "e.jsonl",
        ],
    ] {
        let out = std::process::Command::new(common::bin())
            .args(&args)
            .env_remove(ballast::vault::MASTER_KEY_ENV)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(
            err.contains("no master key") && err.contains("--dev-key"),
            "{args:?}: {err}"
        );
    }
    // A key file that is not 32 bytes of hex is refused too.
    let bad = root.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").expect("write");
    let out = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .env(ballast::vault::MASTER_KEY_ENV, &bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));
}

/// `rotate-master-key` re-wraps the tenant keys: a reveal shows the same cleartext under the new
/// key, the retired key opens nothing, and a rotation from a key that is not the current one is
/// refused without touching the vault.
#[test]
fn rotating_the_master_key_keeps_every_value_under_the_new_key_only() {
    let root = tempfile::tempdir().expect("tmp");
    let data = root.path().join("data");
    let d = data.to_str().expect("utf8");
    // The demo seals its users with a development key in the data dir.
    cli(&["demo", "--data-dir", d, "--turns", "12"]);
    let turns = cli(&["turns", "--data-dir", d, "--json"]);
    let first: Value = serde_json::from_str(turns.lines().next().expect("a turn")).expect("json");
    let turn = first["turn_id"].as_str().expect("turn id").to_string();
    assert!(
        first["user_id"]
            .as_str()
            .expect("user")
            .starts_with("[REDACTED"),
        "{first}"
    );
    let reveal = |key: Option<&Path>| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args([
            "trace",
            &turn,
            "--data-dir",
            d,
            "--reveal",
            "--reason",
            "rotation check",
        ]);
        match key {
            Some(k) => cmd.env(ballast::vault::MASTER_KEY_ENV, k),
            None => cmd.env_remove(ballast::vault::MASTER_KEY_ENV),
        };
        cmd.output().expect("runs")
    };
    let before = reveal(None);
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let before = String::from_utf8_lossy(&before.stdout).to_string();
    assert!(!before.contains("[REDACTED:user]"), "{before}");

    let new = root.path().join("new.key");
    std::fs::write(&new, format!("{}\n", hex::encode([7u8; 32]))).expect("write");
    let wrong = root.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", hex::encode([9u8; 32]))).expect("write");
    let refused = std::process::Command::new(common::bin())
        .args([
            "rotate-master-key",
            "--data-dir",
            d,
            "--new-key",
            new.to_str().expect("utf8"),
            "--old-key",
            wrong.to_str().expect("utf8"),
        ])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not open with this master key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Nothing moved: the development key still opens the vault.
    assert!(reveal(None).status.success());

    let out = cli(&[
        "rotate-master-key",
        "--data-dir",
        d,
        "--new-key",
        new.to_str().expect("utf8"),
    ]);
    assert!(
        out.starts_with("re-wrapped ") && !out.starts_with("re-wrapped 0 "),
        "{out}"
    );
    let after = reveal(Some(&new));
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&after.stdout), before);
    let stale = reveal(None);
    assert!(
        !stale.status.success() && String::from_utf8_lossy(&stale.stdout) != before,
        "the retired key still opens the vault: {}\n{}",
        String::from_utf8_lossy(&stale.stdout),
        String::from_utf8_lossy(&stale.stderr)
    );
    // Views need no key, and are the same.
    assert_eq!(cli(&["turns", "--data-dir", d, "--json"]), turns);
}
