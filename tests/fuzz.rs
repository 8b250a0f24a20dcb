//! Property-based fuzz targets for every input surface that parses: the Avro decoder and request
//! intake, API bodies and query strings, `ballast.toml`, `control.toml`, Cedar policy loading and
//! `--since`/`--until` times. Each target throws generated and mutated inputs at the parser and
//! fails on a panic (or, for the API, on a 5xx or an error that is not a problem document).
//!
//! Bounded here (`BALLAST_FUZZ_CASES`, default 200 inputs per target); `scripts/fuzz.sh` runs each
//! target for `BALLAST_FUZZ_SECONDS` instead and prints the inputs tried. `BALLAST_FUZZ_SEED`
//! replays a run.

mod common;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Runs `check` on values of `strategy` until the case count or the time budget is spent;
/// a panic fails the target with the input that caused it.
fn fuzz<S>(name: &str, strategy: S, check: impl Fn(&S::Value))
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let seconds: u64 = std::env::var("BALLAST_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cases: u64 = std::env::var("BALLAST_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("BALLAST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand_seed);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let deadline = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    let mut tried = 0u64;
    loop {
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => tried >= cases,
        };
        if done {
            break;
        }
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let value = tree.current();
        if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| check(&value))) {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("fuzz {name}: input #{tried} (seed {seed}) failed: {why}\ninput: {value:?}");
        }
        tried += 1;
    }
    println!("fuzz {name}: {tried} inputs, 0 failures (seed {seed})");
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// Edits that break parsers in interesting ways.
const NASTY: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "1e999",
    "-1",
    "0",
    "\"",
    "'",
    "[",
    "]]",
    "{",
    "}",
    "=",
    "\n",
    "\\",
    "\u{0}",
    "é",
    "😀",
    "\u{202e}",
    "[[",
    "#",
    ",",
    ".",
    "::",
    "9223372036854775808",
    "true",
    "\"\"\"",
    "@id(",
    "forbid(",
    "when {",
    "context.",
    "principal",
    "1.5",
    "T",
    "Z",
    "+",
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        proptest::sample::select(NASTY).prop_map(str::to_owned),
        any::<char>().prop_map(|c| c.to_string()),
        "[a-z_.]{1,12}",
    ];
    prop_oneof![
        (any::<usize>(), token).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), 1usize..80).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

/// `base` with up to eight random edits (on character boundaries).
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(edit(), 0..8).prop_map(move |edits| {
        let mut chars: Vec<char> = base.chars().collect();
        for e in edits {
            let len = chars.len().max(1);
            match e {
                Edit::Insert(i, t) => {
                    let at = i % (chars.len() + 1);
                    chars.splice(at..at, t.chars());
                }
                Edit::Delete(i, n) => {
                    let at = i % len;
                    let end = (at + n).min(chars.len());
                    if at < end {
                        chars.drain(at..end);
                    }
                }
                Edit::Duplicate(i, n) => {
                    let at = i % len;
                    let end = (at + n).min(chars.len());
                    if at < end {
                        let piece: Vec<char> = chars[at..end].to_vec();
                        chars.splice(end..end, piece);
                    }
                }
            }
        }
        chars.into_iter().collect()
    })
}

const BALLAST_TOML: &str = include_str!("../examples/ballast.toml");
const CONTROL_TOML: &str = include_str!("../examples/demo/policies/control.toml");
const REFUNDS_CEDAR: &str = include_str!("../examples/demo/policies/refunds.cedar");
const BASELINE_CEDAR: &str = include_str!("../examples/demo/policies/baseline.cedar");

#[test]
fn fuzz_ballast_toml() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    fuzz(
        "ballast.toml",
        prop_oneof![mutated(BALLAST_TOML), ".{0,200}"],
        |text| {
            let report = ballast::config::check::check(text, "fuzz.toml", &base, &|_| None);
            // Whatever is wrong is reported at a line, never met later.
            for p in &report.errors {
                assert!(!p.message.is_empty());
            }
        },
    );
}

#[test]
fn fuzz_control_toml() {
    fuzz(
        "control.toml",
        prop_oneof![mutated(CONTROL_TOML), ".{0,200}"],
        |text| {
            if let Ok(c) = ballast::control::ControlConfig::parse(text, "control.toml") {
                assert!(c.problems().is_empty(), "a loaded config has no problems");
                assert!(c.risk.confirm_at <= c.risk.escalate_at);
                assert!(c.risk.confirm_at.is_finite());
            }
        },
    );
}

#[test]
fn fuzz_cedar_loading() {
    let catalog = ballast::demo::tools::demo_catalog();
    fuzz(
        "cedar",
        prop_oneof![mutated(REFUNDS_CEDAR), mutated(BASELINE_CEDAR), ".{0,120}"],
        |text| {
            let _ = ballast::control::cedar::Policies::from_sources(
                &[("fuzz.cedar".to_string(), text.clone())],
                &catalog,
            );
        },
    );
}

#[test]
fn fuzz_times() {
    fuzz(
        "since/until",
        prop_oneof![
            mutated("2026-12-01T10:00:00.123+01:00"),
            mutated("2026-12-01"),
            ".{0,40}"
        ],
        |text| {
            let _ = ballast::audit::parse_time(text);
        },
    );
}

fn sample_request() -> ballast::event::TurnRequest {
    ballast::event::TurnRequest {
        turn_id: ballast::ids::TurnId::new_v7(),
        tenant: "acme".into(),
        user_id: "u-1".into(),
        text: "Where is my order A1001?".into(),
        channel: "chat".into(),
        attributes: BTreeMap::from([
            ("roles".to_string(), "customer".to_string()),
            ("scopes".to_string(), "support:lookup_order".to_string()),
        ]),
        submitted_at_ms: 1,
        session_id: Some("s-1".into()),
    }
}

#[derive(Clone, Debug)]
enum Bytes {
    Raw(Vec<u8>),
    /// A valid request record with bytes flipped, cut or appended.
    Mutated(Vec<(usize, u8)>, Option<usize>, Vec<u8>),
}

#[test]
fn fuzz_avro_decoder_and_intake() {
    let codecs = ballast::event::codec::Codecs::new(ballast::event::codec::SchemaRegistry::new())
        .expect("codecs");
    let valid = codecs.requests.encode(&sample_request()).expect("encode");
    let trust = ballast::control::claims::IntakeTrust::default();
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::Raw),
        (
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            proptest::option::of(any::<usize>()),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(f, c, a)| Bytes::Mutated(f, c, a)),
    ];
    fuzz("avro+intake", strategy, |b| {
        let bytes = match b {
            Bytes::Raw(v) => v.clone(),
            Bytes::Mutated(flips, cut, append) => {
                let mut v = valid.clone();
                for (i, x) in flips {
                    let n = v.len();
                    v[i % n] ^= x;
                }
                if let Some(c) = cut {
                    v.truncate(c % (v.len() + 1));
                }
                v.extend_from_slice(append);
                v
            }
        };
        if let Ok(ballast::event::codec::Inbound::Request(r)) = codecs.decode_inbound(&bytes) {
            let _ = trust.apply(&r.tenant, &r.attributes);
            let _ = ballast::ids::routing_key(&r.tenant, &r.user_id);
        }
        let _ = codecs.events.decode(&bytes);
        let _ = codecs.outcomes.decode(&bytes);
    });
}

/// A request to the API: method, path, query, body, content type, token.
#[derive(Clone, Debug)]
struct ApiCase {
    method: &'static str,
    path: String,
    body: String,
    content_type: Option<&'static str>,
    authorized: bool,
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/turns"),
    ("GET", "/v1/turns"),
    ("GET", "/v1/turns/{id}"),
    ("GET", "/v1/turns/{id}/trace"),
    ("GET", "/v1/turns/{id}/audit"),
    ("POST", "/v1/turns/{id}/approve"),
    ("POST", "/v1/turns/{id}/deny"),
    ("POST", "/v1/turns/{id}/reverse"),
    ("POST", "/v1/turns/{id}/labels"),
    ("GET", "/v1/me"),
    ("GET", "/v1/queue"),
    ("GET", "/v1/handoffs"),
    ("POST", "/v1/handoffs/{id}/accept"),
    ("POST", "/v1/handoffs/{id}/resolve"),
    ("GET", "/v1/slo"),
    ("GET", "/v1/slo/series"),
    ("GET", "/v1/outcomes"),
];

fn api_case() -> impl Strategy<Value = ApiCase> {
    let query = prop_oneof![
        Just(String::new()),
        mutated("?limit=10&status=terminal&since_ms=0&until_ms=99"),
        mutated("?bucket_ms=60000&window_ms=3600000"),
        "\\?[a-z_=&%0-9-]{0,40}",
    ];
    let body = prop_oneof![
        mutated(
            r#"{"user_id":"u-1","text":"Where is my order A1001?","attributes":{"roles":"customer"}}"#
        ),
        mutated(r#"{"reason":"ok"}"#),
        mutated(r#"{"label":"correct","note":"n"}"#),
        mutated(r#"{"resolution":"called"}"#),
        ".{0,80}",
    ];
    let id = prop_oneof![
        Just("0190f5f4-7b1c-7cc0-8000-000000000001".to_string()),
        "[0-9a-f-]{0,40}",
        mutated("%2e%2e/x"),
    ];
    (
        proptest::sample::select(ROUTES),
        proptest::sample::select(&["GET", "POST", "PUT", "DELETE"][..]),
        any::<bool>(),
        id,
        query,
        body,
        proptest::option::of(proptest::sample::select(
            &[
                "application/json",
                "text/plain",
                "application/json; charset=utf-8",
            ][..],
        )),
        any::<bool>(),
    )
        .prop_map(
            |((m, p), other, keep, id, q, body, ct, authorized)| ApiCase {
                method: if keep { m } else { other },
                path: format!("{}{q}", p.replace("{id}", &id)),
                body,
                content_type: ct,
                authorized,
            },
        )
}

#[test]
fn fuzz_api_bodies_and_queries() {
    use axum::body::Body;
    use tower::ServiceExt;
    let root = tempfile::tempdir().expect("tmp");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (token, entry) = ballast::api::auth::AuthConfig::issue_with(
        "fuzzer",
        "acme",
        vec![ballast::api::auth::Role::Admin],
        ballast::control::claims::Grants::new(vec!["role:customer".into()], vec![]),
    );
    let router = rt.block_on(async {
        let emb = ballast::embedded::Embedded::open(root.path(), 2).expect("open");
        let projections = ballast::projection::Projections::standard(&emb.store).expect("proj");
        let auth = ballast::api::auth::AuthStore::fixed(ballast::api::auth::AuthConfig {
            tokens: vec![entry],
            rate: ballast::api::auth::RateConfig {
                requests_per_second: 1e9,
                burst: 1e9,
                failed_auth_burst: 1e9,
                failed_auth_per_second: 1e9,
            },
            ..Default::default()
        });
        let state = ballast::api::AppState::new(
            emb,
            projections,
            std::sync::Arc::new(auth),
            ballast::projection::slo::SloConfig::default(),
            std::sync::Arc::new(ballast::clock::SystemClock),
        )
        .expect("state");
        ballast::api::router(std::sync::Arc::new(state))
    });
    let bearer = format!("Bearer {token}");
    fuzz("api", api_case(), |case| {
        let Ok(uri) = case.path.parse::<axum::http::Uri>() else {
            return;
        };
        let mut req = axum::http::Request::builder().method(case.method).uri(uri);
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if case.authorized {
            req = req.header("authorization", bearer.as_str());
        }
        let req = req.body(Body::from(case.body.clone())).expect("request");
        let resp = rt
            .block_on(router.clone().oneshot(req))
            .expect("infallible");
        let status = resp.status().as_u16();
        assert!(status < 500 || status == 503, "{case:?} answered {status}");
        if case.path.starts_with("/v1") && !case.authorized {
            assert!(
                status == 401 || status == 429,
                "an unauthenticated request learns nothing: {case:?} answered {status}"
            );
        }
        if status >= 400 {
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert_eq!(
                ct, "application/problem+json",
                "{case:?} answered {status} with {ct:?}"
            );
        }
    });
}
