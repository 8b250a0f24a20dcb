//! The dashboard against a `serve` replica over Kafka (issue #32): the same browser test as
//! tests/browser.rs — sign in, SLO tiles, a trace, a waiting approval followed live and
//! approved — where the turns run in a `ballast worker` process and the replica only follows
//! the topics.

mod common;

use std::time::Duration;

use common::broker;
use common::fleet::{Fleet, REFUND_SCOPES};
use serde_json::json;

#[test]
fn the_dashboard_of_a_kafka_replica_shows_slos_a_trace_and_approves_a_turn() {
    let Some(bootstrap) = broker::bootstrap() else {
        return;
    };
    let mut f = Fleet::new(&bootstrap, "fleet-dashboard", 2);
    f.start_worker(0);
    f.start_replica(0, &[]);
    let submit = |user: &str, order: &str, scopes: Option<&str>| -> String {
        let mut body = json!({
            "user_id": user,
            "text": format!("Please refund order {order}, it arrived broken."),
        });
        if let Some(s) = scopes {
            body["attributes"] = json!({ "scopes": s });
        }
        let (status, _, answer) = f.call(0, "POST", "/v1/turns", &body.to_string());
        assert_eq!(status, 202, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
        v["turn_id"].as_str().expect("id").to_string()
    };
    // A refund that succeeds; one refused for want of its scope (the SLO tiles show a miss);
    // one over 100.00 that waits for a person.
    let done = submit("customer-1", "A1001", Some(REFUND_SCOPES));
    let refused = submit("customer-2", "A1001", None);
    let held = submit("customer-3", "A1003", Some(REFUND_SCOPES));
    for id in [&done, &refused] {
        f.poll(
            0,
            &format!("/v1/turns/{id}?wait_ms=5000"),
            Duration::from_secs(90),
            "a turn to end",
            id,
            |s, body| s == 200 && body.contains("\"status\":\"terminal\""),
        );
    }
    f.poll(
        0,
        "/v1/queue",
        Duration::from_secs(90),
        "the held refund in the replica's queue",
        &held,
        |s, body| s == 200 && body.contains(&held),
    );
    let log = common::browser::dashboard(f.addr(0), &f.token, "ballast-dashboard-kafka.png", true);
    eprintln!("{log}");
}
