//! Chaos drills on the demo workload: each fault kind moves what it should and trips the guard or
//! ladder rung it should, against a baseline run of the same workload.

use ballast::drill::{DrillOptions, Fault, Faults, Report, run};

async fn drill(faults: &[&str]) -> Report {
    // Slowed calls add up when turns run one at a time; what is measured there does not need
    // the lockstep schedule.
    let lockstep = !faults.iter().any(|f| f.starts_with("slow_tools"));
    let opts = DrillOptions {
        workload: "demo".into(),
        turns: 120,
        faults: Faults {
            seed: 11,
            faults: faults
                .iter()
                .map(|f| f.parse::<Fault>().expect("fault parses"))
                .collect(),
        },
        policies: None,
        root: None,
        lockstep,
    };
    run(opts, &|_| {}).await.expect("drill runs")
}

fn guard(r: &ballast::drill::RunResult, key: &str) -> u64 {
    r.guards
        .iter()
        .filter(|(k, _)| k.contains(key))
        .map(|(_, n)| n)
        .sum()
}

fn rung(r: &ballast::drill::RunResult, key: &str) -> u64 {
    r.rungs.get(key).copied().unwrap_or(0)
}

fn sli(r: &ballast::drill::RunResult, name: &str) -> f64 {
    r.slis
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.value)
        .expect("sli")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_moves_its_slo_and_trips_its_guard() {
    let r = drill(&["retrieval_outage:rate=0.6"]).await;
    assert!(
        sli(&r.faulted, "task_success") < sli(&r.baseline, "task_success"),
        "{}",
        r.render()
    );
    assert!(
        rung(&r.faulted, "constrained_retry") > rung(&r.baseline, "constrained_retry"),
        "{}",
        r.render()
    );

    let r = drill(&["stale_context"]).await;
    assert!(
        guard(&r.faulted, "context.stale") > 3 * guard(&r.baseline, "context.stale").max(1),
        "{}",
        r.render()
    );
    assert!(
        sli(&r.faulted, "task_success") < sli(&r.baseline, "task_success"),
        "{}",
        r.render()
    );

    let r = drill(&["contradictory_context"]).await;
    assert!(
        guard(&r.faulted, "context.contradictory")
            > 3 * guard(&r.baseline, "context.contradictory").max(1),
        "{}",
        r.render()
    );
    assert!(
        rung(&r.faulted, "constrained_retry") > rung(&r.baseline, "constrained_retry"),
        "{}",
        r.render()
    );

    let r = drill(&["tool_schema_mismatch:rate=0.5"]).await;
    assert!(
        guard(&r.faulted, "result.schema") > 3 * guard(&r.baseline, "result.schema").max(1),
        "{}",
        r.render()
    );
    assert!(
        sli(&r.faulted, "task_success") < sli(&r.baseline, "task_success"),
        "{}",
        r.render()
    );

    let r = drill(&["dropped_confidence"]).await;
    assert!(
        rung(&r.faulted, "human_handoff") > rung(&r.baseline, "human_handoff"),
        "{}",
        r.render()
    );
    assert!(
        sli(&r.faulted, "task_success") < 0.05,
        "no plan without a confidence goes through: {}",
        r.render()
    );

    let r = drill(&["failing_tools:rate=0.5"]).await;
    assert!(
        guard(&r.faulted, "breaker.open") > guard(&r.baseline, "breaker.open"),
        "{}",
        r.render()
    );
    assert!(
        r.faulted.tool_error_rate > r.baseline.tool_error_rate,
        "{}",
        r.render()
    );

    let r = drill(&["slow_tools:rate=1,delay_ms=1800"]).await;
    assert!(
        sli(&r.faulted, "latency") < sli(&r.baseline, "latency"),
        "{}",
        r.render()
    );

    // The report names the faults and renders as text and Markdown.
    assert!(
        r.render().contains("slow_tools(rate=1.0, delay_ms=1800)"),
        "{}",
        r.render()
    );
    assert!(r.markdown().contains("| latency |"), "{}", r.markdown());
}
