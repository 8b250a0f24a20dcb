//! The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core signs
//! in, reads SLO tiles computed from a seeded data dir, opens a trace, approves a waiting turn
//! and sees it change, and saves a screenshot. scripts/test.sh installs chromium and
//! playwright-core when missing.

mod common;

use std::time::{Duration, Instant};

use common::{Served, ballast, http};

#[test]
fn the_dashboard_signs_in_shows_slos_opens_a_trace_and_approves_a_turn() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let d = dir.to_str().expect("utf8");
    // Approvals wait ten minutes here, so the browser has time to answer one.
    let policies = common::plane::policy_dir(root.path());
    ballast(&["demo", "--data-dir", d, "--turns", "80", "--workers", "0"]);
    let out = ballast(&[
        "token",
        "--data-dir",
        d,
        "--name",
        "ops-anna",
        "--tenant",
        "acme",
        "--roles",
        "operator,auditor",
    ]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let s = Served::start(&[
        "--data-dir",
        d,
        "--policies",
        policies.to_str().expect("utf8"),
    ]);
    let auth = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http(&s.addr, "GET", "/v1/queue", &[("Authorization", &auth)], "");
        assert_eq!(status, 200, "{body}");
        if body.contains("\"approval\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no approval waiting: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = common::browser::dashboard(&s.addr, &token, "ballast-dashboard.png", false);
    eprintln!("{log}");
    assert!(s.stop().success());
}
