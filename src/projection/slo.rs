//! SLOs from the outcome stream: each SLI's value, target, error budget left over the SLO
//! period, and burn rates over the SRE windows. A burn rate is the window's bad fraction divided
//! by the budget fraction (1 − target): 1 spends the budget exactly over the period, 14.4 over
//! an hour exhausts a 30-day budget in about two days.

use serde::Serialize;

use crate::event::{Outcome, TurnOutcome};

pub use crate::control::config::SloConfig;

/// The SRE workbook's alerting windows.
pub const WINDOWS: [(&str, i64); 5] = [
    ("5m", 5 * 60_000),
    ("30m", 30 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("3d", 3 * 24 * 3_600_000),
];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sli {
    pub name: &'static str,
    /// The target share of good events.
    pub target: f64,
    pub good: u64,
    pub total: u64,
    /// good / total over the period (1 when there were no events).
    pub value: f64,
    /// 1 − (bad share / budget share) over the period; negative once overspent.
    pub budget_left: f64,
    /// (window, burn rate).
    pub burn: Vec<(&'static str, f64)>,
}

/// Which SLI events an outcome counts in: `Some(good)` if it counts, `None` if not.
pub type Classify = fn(&TurnOutcome, &SloConfig) -> Option<bool>;

/// Late labels that say a turn went wrong although it looked fine when it ended.
pub const BAD_LABELS: [&str; 2] = [HALLUCINATION_LABEL, "incorrect"];
pub const HALLUCINATION_LABEL: &str = "hallucination_with_action";
/// A turn labelled so (a drill's fault, a demo's staged failure) counts in no SLI: it measures
/// the test, not the service — as a planned maintenance window is left out of an availability
/// SLO. The label stays on the turn for everyone to see.
pub const DELIBERATE_INCIDENT: &str = "deliberate_incident";

fn excluded(o: &TurnOutcome) -> bool {
    o.labels.iter().any(|l| l == DELIBERATE_INCIDENT)
}

/// Good only for a full success: a turn that completed with refusals may have left the user's
/// task undone, and counts against the SLO.
fn task(o: &TurnOutcome, _: &SloConfig) -> Option<bool> {
    Some(
        o.outcome == Outcome::Succeeded
            && !o.labels.iter().any(|l| BAD_LABELS.contains(&l.as_str())),
    )
}

/// Bad if a call was blocked as a hallucination with action, or a reviewer labeled the turn so
/// (one the guards missed).
fn hallucination(o: &TurnOutcome, _: &SloConfig) -> Option<bool> {
    Some(o.hallucinations == 0 && !o.labels.iter().any(|l| l == HALLUCINATION_LABEL))
}

fn latency(o: &TurnOutcome, c: &SloConfig) -> Option<bool> {
    Some(o.latency_ms <= c.latency_threshold_ms)
}

fn escalation(o: &TurnOutcome, _: &SloConfig) -> Option<bool> {
    (o.escalation_rung.as_deref() == Some("human_handoff"))
        .then_some(o.outcome != Outcome::EscalationFailed)
}

fn count(outcomes: &[TurnOutcome], c: &SloConfig, f: Classify, from_ms: i64) -> (u64, u64) {
    outcomes
        .iter()
        .filter(|o| o.completed_at_ms > from_ms && !excluded(o))
        .filter_map(|o| f(o, c))
        .fold((0, 0), |(g, t), good| (g + u64::from(good), t + 1))
}

/// Each SLI: its name, target share of good events, and which outcomes it counts.
pub fn definitions(c: &SloConfig) -> [(&'static str, f64, Classify); 4] {
    [
        ("task_success", c.task_success, task),
        (
            "hallucination_with_action",
            1.0 - c.hallucination_with_action_max,
            hallucination,
        ),
        ("latency", c.latency_target, latency),
        ("escalation_success", c.escalation_success, escalation),
    ]
}

/// How one finished turn counts in each SLI: `(name, Some(good))`, or `None` where it does not
/// count (the escalation SLI counts human handoffs only).
pub fn classify(o: &TurnOutcome, c: &SloConfig) -> [(&'static str, Option<bool>); 4] {
    let skip = excluded(o);
    definitions(c).map(|(name, _, f)| (name, if skip { None } else { f(o, c) }))
}

/// The SLIs as of `now_ms`.
pub fn compute(outcomes: &[TurnOutcome], now_ms: i64, c: &SloConfig) -> Vec<Sli> {
    let slis = definitions(c);
    slis.iter()
        .map(|&(name, target, f)| {
            let budget = (1.0 - target).max(1e-9);
            let (good, total) = count(outcomes, c, f, now_ms - c.period_ms);
            let bad_share = |g: u64, t: u64| {
                if t == 0 {
                    0.0
                } else {
                    (t - g) as f64 / t as f64
                }
            };
            let burn = WINDOWS
                .iter()
                .map(|&(w, ms)| {
                    let (g, t) = count(outcomes, c, f, now_ms - ms);
                    (w, bad_share(g, t) / budget)
                })
                .collect();
            Sli {
                name,
                target,
                good,
                total,
                value: if total == 0 {
                    1.0
                } else {
                    good as f64 / total as f64
                },
                budget_left: 1.0 - bad_share(good, total) / budget,
                burn,
            }
        })
        .collect()
}

/// Informational: tool error rate and mean cost per turn over the period.
pub fn tool_error_rate_and_cost(
    outcomes: &[TurnOutcome],
    now_ms: i64,
    c: &SloConfig,
) -> (f64, f64) {
    let recent: Vec<&TurnOutcome> = outcomes
        .iter()
        .filter(|o| o.completed_at_ms > now_ms - c.period_ms)
        .collect();
    let calls: i64 = recent.iter().map(|o| i64::from(o.tool_calls)).sum();
    let failures: i64 = recent.iter().map(|o| i64::from(o.tool_failures)).sum();
    let cost: i64 = recent.iter().map(|o| o.cost_micros).sum();
    let rate = if calls == 0 {
        0.0
    } else {
        failures as f64 / calls as f64
    };
    let per_turn = if recent.is_empty() {
        0.0
    } else {
        cost as f64 / recent.len() as f64
    };
    (rate, per_turn)
}

/// The SLO table as text.
pub fn render(slis: &[Sli], tool_error_rate: f64, cost_per_turn: f64) -> String {
    let mut s = format!(
        "{:<27} {:>8} {:>8} {:>9} {:>11}",
        "sli", "target", "value", "events", "budget left"
    );
    for (w, _) in WINDOWS {
        s.push_str(&format!(" {:>7}", format!("burn {w}")));
    }
    s.push('\n');
    for sli in slis {
        s.push_str(&format!(
            "{:<27} {:>7.2}% {:>7.2}% {:>9} {:>10.1}%",
            sli.name,
            sli.target * 100.0,
            sli.value * 100.0,
            sli.total,
            sli.budget_left * 100.0
        ));
        for (_, b) in &sli.burn {
            s.push_str(&format!(" {b:>7.2}"));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "tool error rate {:.2}%, cost per turn {:.0} µ¤\n",
        tool_error_rate * 100.0,
        cost_per_turn
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TurnId;

    fn outcome(i: u64, outcome: Outcome, latency_ms: i64, at: i64) -> TurnOutcome {
        TurnOutcome {
            turn_id: TurnId::from_parts(i, [1; 10]),
            tenant: "a".into(),
            user_id: "u".into(),
            outcome,
            reason: String::new(),
            requested_at_ms: at - latency_ms,
            completed_at_ms: at,
            latency_ms,
            tool_calls: 2,
            tool_failures: 1,
            escalations: 0,
            model: None,
            events: 10,
            input_tokens: 0,
            output_tokens: 0,
            cost_micros: 100,
            escalation_rung: None,
            policy_version: None,
            hallucinations: 0,
            guard_trips: 0,
            labels: Vec::new(),
            reply: None,
            steps: 1,
            session_id: None,
            refused_calls: 0,
            held_calls: 0,
            denied_calls: 0,
        }
    }

    #[test]
    fn deliberate_incidents_count_in_no_sli() {
        let now = 100 * 86_400_000;
        let mut staged = outcome(1, Outcome::Failed, 99_000, now - 1_000);
        staged.labels.push(DELIBERATE_INCIDENT.into());
        let fine = outcome(2, Outcome::Succeeded, 1_000, now - 1_000);
        let slis = compute(&[staged.clone(), fine], now, &SloConfig::default());
        assert!(slis.iter().all(|s| s.value == 1.0), "{slis:?}");
        assert!(
            classify(&staged, &SloConfig::default())
                .iter()
                .all(|(_, g)| g.is_none())
        );
    }

    #[test]
    fn values_budgets_and_burn_rates() {
        let now = 100 * 86_400_000;
        // 100 turns in the last 5 minutes, 10 failed: 90% success against 95%.
        let mut all: Vec<TurnOutcome> = (0..100)
            .map(|i| {
                outcome(
                    i,
                    if i < 10 {
                        Outcome::Failed
                    } else {
                        Outcome::Succeeded
                    },
                    1_000,
                    now - 1_000,
                )
            })
            .collect();
        // 100 older turns (2 days ago), all fine.
        all.extend((100..200).map(|i| outcome(i, Outcome::Succeeded, 1_000, now - 2 * 86_400_000)));
        let slis = compute(&all, now, &SloConfig::default());
        let task = &slis[0];
        assert_eq!((task.good, task.total), (190, 200));
        assert!((task.value - 0.95).abs() < 1e-9);
        assert!(
            task.budget_left.abs() < 1e-9,
            "exactly spent: {}",
            task.budget_left
        );
        // 5m window: 10% bad over a 5% budget = burn 2; 3d window: 5% bad = burn 1.
        assert!((task.burn[0].1 - 2.0).abs() < 1e-9);
        assert!((task.burn[4].1 - 1.0).abs() < 1e-9);
        let (rate, cost) = tool_error_rate_and_cost(&all, now, &SloConfig::default());
        assert!((rate - 0.5).abs() < 1e-9 && (cost - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_turn_that_completed_with_refusals_is_not_a_task_success() {
        let now = 1_000_000;
        let mut partial = outcome(1, Outcome::CompletedWithRefusals, 10, now);
        partial.refused_calls = 1;
        let full = outcome(2, Outcome::Succeeded, 10, now);
        let slis = compute(&[partial, full], now, &SloConfig::default());
        let task = slis.iter().find(|s| s.name == "task_success").expect("sli");
        assert_eq!((task.good, task.total), (1, 2));
    }

    #[test]
    fn escalation_success_counts_handoffs_only() {
        let now = 1_000_000;
        let mut resolved = outcome(1, Outcome::Escalated, 10, now);
        resolved.escalation_rung = Some("human_handoff".into());
        let mut failed = outcome(2, Outcome::EscalationFailed, 10, now);
        failed.escalation_rung = Some("human_handoff".into());
        let other = outcome(3, Outcome::Succeeded, 10, now);
        let slis = compute(&[resolved, failed, other], now, &SloConfig::default());
        let esc = slis
            .iter()
            .find(|s| s.name == "escalation_success")
            .expect("sli");
        assert_eq!((esc.good, esc.total), (1, 2));
    }
}
