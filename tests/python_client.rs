//! The Python client (`clients/python/`) against a real `ballast serve`: its pytest suite runs
//! with BALLAST_URL and BALLAST_TOKEN pointing here. And a request the client's Kafka producer
//! encodes is decoded by Ballast's own codec.

mod common;

use std::path::Path;

use common::{Served, ballast};

fn python() -> String {
    std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn client_src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/src")
}

#[test]
fn the_python_clients_tests_pass_against_a_real_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let out = ballast(&[
        "token",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--name",
        "python",
        "--tenant",
        "acme",
        "--roles",
        "submitter,operator,auditor",
        "--grants",
        "role:customer,support:*",
    ]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let s = Served::start(&["--data-dir", data.to_str().expect("utf8")]);
    let out = std::process::Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/tests"))
        .env("PYTHONPATH", client_src())
        .env("BALLAST_URL", &s.addr)
        .env("BALLAST_TOKEN", &token)
        // What the demo's policies ask of a customer's request.
        .env(
            "BALLAST_ATTRIBUTES",
            serde_json::json!({"roles": "customer", "scopes": ballast::demo::workload::SCOPES})
                .to_string(),
        )
        .output()
        .expect("pytest runs (scripts/test.sh installs it)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("passed") && !report.contains("skipped"),
        "{report}"
    );
    assert!(s.stop().success());
}

#[test]
fn a_request_the_python_producer_encodes_is_what_ballast_reads() {
    let script = "import sys\n\
        from ballast_client.producer import RequestEncoder, request\n\
        r = request('acme', 'u-1', 'Where is my order A1001?', turn_id=sys.argv[1], \
        attributes={'roles': 'customer'}, session_id='s-9')\n\
        sys.stdout.buffer.write(RequestEncoder().encode(r))\n";
    let id = ballast::ids::TurnId::new_v7();
    let out = std::process::Command::new(python())
        .args(["-c", script, &id.to_string()])
        .env("PYTHONPATH", client_src())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codecs = ballast::event::codec::Codecs::new(std::sync::Arc::new(
        ballast::event::codec::SchemaRegistry::default(),
    ))
    .expect("codecs");
    let r = codecs
        .requests
        .decode(&out.stdout)
        .expect("Ballast decodes it");
    assert_eq!(r.turn_id, id);
    assert_eq!((r.tenant.as_str(), r.user_id.as_str()), ("acme", "u-1"));
    assert_eq!(r.attributes["roles"], "customer");
    assert_eq!(r.session_id.as_deref(), Some("s-9"));
    assert_eq!(r.channel, "kafka");
}
