//! The demo workload: a seeded mix of customer-support turns that exercises every outcome —
//! successes, retried and failed tool calls, policy denials and escalations.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::event::PlanStep;
use crate::exec::scripted::{Script, WorkloadTurn};
use crate::ids::TurnId;

/// 2026-01-01T00:00:00Z: turn ids are time-ordered from here, one millisecond apart.
const EPOCH_MS: u64 = 1_767_225_600_000;
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// Scenario weights (per 100 turns) and what each should end as.
pub const SCENARIOS: &[(&str, u32, &str)] = &[
    ("order_status", 30, "succeeded"),
    ("refund", 12, "succeeded"),
    (
        "large_refund_approved",
        3,
        "succeeded after an operator approves",
    ),
    ("large_refund_denied", 2, "denied by an operator"),
    (
        "large_refund_unanswered",
        2,
        "approval expires, handoff expires: escalation_failed",
    ),
    ("kb_question", 8, "succeeded (a stale document is dropped)"),
    ("flaky_lookup", 6, "succeeded after a retry"),
    ("order_not_found", 4, "failed"),
    ("refund_over_limit", 2, "denied by policy refund.over_limit"),
    ("unknown_tool", 3, "denied"),
    ("runaway_plan", 2, "denied"),
    (
        "low_confidence",
        5,
        "ladder: constrained retry, specialist, handoff resolved",
    ),
    ("budget_hog", 2, "denied once the user's budget is spent"),
    (
        "pii_request",
        4,
        "succeeded; card and email redacted before the log",
    ),
    (
        "hallucinated_refund",
        2,
        "blocked; ladder walks all four rungs",
    ),
    (
        "contradictory_context",
        2,
        "constrained retry with the best document",
    ),
    (
        "schema_drift",
        2,
        "post-tool schema guard; handoff resolved",
    ),
    ("warehouse_outage", 3, "failed; the warehouse breaker opens"),
    ("looping_plan", 1, "loop guard; handoff resolved"),
    (
        "missing_scope",
        2,
        "denied: the caller lacks the refund scope",
    ),
    (
        "overpromise",
        2,
        "reply lint stops a guarantee; handoff resolved",
    ),
    (
        "follow_up",
        5,
        "a session of two turns: an order looked up, then a follow-up that refunds what it cost",
    ),
];

/// Scenarios the demo stages to show a guard, a policy or the ladder at work: they are meant to
/// fail, be denied or escalate. A served demo labels their turns `deliberate_incident` once they
/// end, so the SLOs measure the service rather than the staging (`demo::annotate`).
pub const STAGED_INCIDENTS: &[&str] = &[
    "large_refund_denied",
    "large_refund_unanswered",
    "order_not_found",
    "refund_over_limit",
    "unknown_tool",
    "runaway_plan",
    "low_confidence",
    "budget_hog",
    "hallucinated_refund",
    "schema_drift",
    "warehouse_outage",
    "looping_plan",
    "missing_scope",
    "overpromise",
];

/// Scopes a customer-support request carries (set by the backend that authenticated the user).
pub const SCOPES: &str =
    "support:search_kb,support:lookup_order,support:issue_refund,support:send_email";

/// The user whose many refunds exhaust their rolling budget.
pub const HOG_USER: &str = "u-hog";

fn step(tool: &str, args: serde_json::Value) -> PlanStep {
    PlanStep {
        tool: tool.into(),
        args_json: args.to_string(),
    }
}

fn pick(rng: &mut StdRng) -> &'static str {
    let total: u32 = SCENARIOS.iter().map(|s| s.1).sum();
    let mut x = rng.random_range(0..total);
    for (name, weight, _) in SCENARIOS {
        if x < *weight {
            return name;
        }
        x -= weight;
    }
    // Not reached: `x` is below the sum of the weights.
    SCENARIOS.first().map_or("", |s| s.0)
}

/// `n` turns, the same for the same seed.
pub fn generate(n: usize, seed: u64) -> Vec<WorkloadTurn> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .flat_map(|i| {
            let mut random = [0u8; 10];
            rng.fill(&mut random);
            let turn_id = TurnId::from_parts(EPOCH_MS + i as u64, random);
            // `choose` draws as `random_range(0..len)` did: the same workload for the same seed.
            let tenant = TENANTS.choose(&mut rng).copied().unwrap_or_default();
            let user = rng.random_range(1..=400);
            let order = rng.random_range(10_000..99_999);
            let scenario = pick(&mut rng);
            let confident = rng.random_range(0.72..0.99);
            let customer = format!("u-{user}");
            let eur = |cents: i64| format!("{}.{:02}", cents / 100, cents % 100);
            let refund = |amount: i64| {
                vec![
                    step("lookup_order", json!({"order_id": format!("A{order}")})),
                    step("issue_refund", json!({"order_id": format!("A{order}"), "amount_cents": amount})),
                ]
            };
            // The model looks the order up, then refunds the amount the lookup returned.
            let refund_looked_up = |prefix: char| {
                vec![
                    step("lookup_order", json!({"order_id": format!("{prefix}{order}")})),
                    step(
                        "issue_refund",
                        json!({"order_id": format!("{prefix}{order}"), "amount_cents": "{{lookup_order.amount_cents}}"}),
                    ),
                ]
            };
            let amount = rng.random_range(500..9_000);
            let (text, steps, confidence) = match scenario {
                "large_refund_approved" | "large_refund_denied" | "large_refund_unanswered" => (
                    format!("Order B{order} was a bulk order and never came. Refund all of it."),
                    refund_looked_up('B'),
                    confident,
                ),
                "budget_hog" => (
                    format!("Refund order A{order} too. And the next one. And the next."),
                    refund_looked_up('A'),
                    confident,
                ),
                "pii_request" => (
                    // `P` orders come back with contact details too: redacted after the tool.
                    format!("My card 4111 1111 1111 1111 was charged twice for order P{order}; write to jane.doe@example.com or call +44 20 7946 0958."),
                    vec![step("lookup_order", json!({"order_id": format!("P{order}")}))],
                    confident,
                ),
                "hallucinated_refund" => (
                    format!("Order A{order} arrived damaged. What can you do?"),
                    // The "model" makes up an amount nobody mentioned.
                    refund(rng.random_range(20_000..40_000)),
                    confident,
                ),
                "contradictory_context" => (
                    "How fast are express-lane reimbursements compared to normal refunds?".to_string(),
                    vec![step("search_kb", json!({"query": "refund timing"}))],
                    confident,
                ),
                "schema_drift" => (
                    format!("Where is parcel R{order} right now?"),
                    vec![step("carrier_status", json!({"tracking_id": format!("R{order}")}))],
                    confident,
                ),
                "warehouse_outage" => (
                    format!("Is item W{order} in stock?"),
                    vec![step("warehouse_stock", json!({"sku": format!("W{order}")}))],
                    confident,
                ),
                "looping_plan" => (
                    format!("Check order A{order}, check it again, and again."),
                    vec![step("lookup_order", json!({"order_id": format!("A{order}")})); 3],
                    confident,
                ),
                "missing_scope" => (
                    format!("Order A{order} arrived damaged, I want a refund of {} EUR.", eur(amount)),
                    refund(amount),
                    confident,
                ),
                "overpromise" => (
                    "Will my order arrive before the holidays if I order now?".to_string(),
                    vec![step("search_kb", json!({"query": "holiday campaign"}))],
                    confident,
                ),
                "order_status" => (
                    format!("Where is my order A{order}? It has not arrived yet."),
                    vec![step("lookup_order", json!({"order_id": format!("A{order}")}))],
                    confident,
                ),
                "refund" => (
                    format!("Order A{order} arrived damaged, please refund it and confirm by email."),
                    {
                        let mut s = refund_looked_up('A');
                        s.push(step("send_email", json!({"customer_id": customer, "template": "refund_confirmation"})));
                        s
                    },
                    confident,
                ),
                "follow_up" => (
                    format!("Where is my order A{order}?"),
                    vec![step("lookup_order", json!({"order_id": format!("A{order}")}))],
                    confident,
                ),
                "kb_question" => (
                    "How long do refunds take to reach my card?".to_string(),
                    vec![step("search_kb", json!({"query": "refund timing card"}))],
                    confident,
                ),
                "flaky_lookup" => (
                    format!("Can you check order T{order} for me?"),
                    vec![step("lookup_order", json!({"order_id": format!("T{order}")}))],
                    confident,
                ),
                "order_not_found" => (
                    format!("What happened to order E{order}?"),
                    vec![step("lookup_order", json!({"order_id": format!("E{order}")}))],
                    confident,
                ),
                "refund_over_limit" => (
                    format!("Refund everything on order A{order}, all 900 EUR of it."),
                    vec![
                        step("lookup_order", json!({"order_id": format!("A{order}")})),
                        step("issue_refund", json!({"order_id": format!("A{order}"), "amount_cents": 90_000})),
                    ],
                    confident,
                ),
                "unknown_tool" => (
                    "Delete my account and all my data right now.".to_string(),
                    vec![step("delete_account", json!({"user": customer}))],
                    confident,
                ),
                "runaway_plan" => (
                    "Tell me everything about every order I ever made.".to_string(),
                    (0..12)
                        .map(|k| step("lookup_order", json!({"order_id": format!("A{}", order + k)})))
                        .collect(),
                    confident,
                ),
                _ => (
                    format!("Refund order A{order} and maybe also the other one? Not sure which."),
                    vec![step("issue_refund", json!({"order_id": format!("A{order}"), "amount_cents": 4_200}))],
                    rng.random_range(0.15..0.45),
                ),
            };
            let (tenant, user_id) = match scenario {
                "budget_hog" => ("acme", HOG_USER.to_string()),
                _ => (tenant, format!("u-{user}")),
            };
            let scopes = if scenario == "missing_scope" {
                "support:search_kb,support:lookup_order"
            } else {
                SCOPES
            };
            let mut attributes = std::collections::BTreeMap::from([
                ("scenario".to_string(), scenario.to_string()),
                ("roles".to_string(), "customer".to_string()),
                ("scopes".to_string(), scopes.to_string()),
            ]);
            if steps.iter().any(|s| s.tool.contains("refund")) {
                attributes.insert("class".into(), "billing".into());
            }
            let session_id = (scenario == "follow_up").then(|| format!("s-{user}-{order}"));
            let first = WorkloadTurn {
                turn_id,
                tenant: tenant.into(),
                user_id: user_id.clone(),
                text,
                scenario: scenario.into(),
                script: Script {
                    // A runaway plan asks for everything at once.
                    batch: if scenario == "runaway_plan" {
                        vec![steps.len()]
                    } else {
                        Vec::new()
                    },
                    steps,
                    confidence,
                },
                attributes: attributes.clone(),
                session_id: session_id.clone(),
            };
            let mut out = vec![first];
            if let Some(session_id) = session_id {
                // The follow-up names nothing: the order and the amount come from the answer
                // the session's first turn got.
                let mut attributes = attributes;
                attributes.insert("class".into(), "billing".into());
                out.push(WorkloadTurn {
                    turn_id: TurnId::from_parts(EPOCH_MS + i as u64, {
                        let mut r = random;
                        r[0] ^= 0xff;
                        r
                    }),
                    tenant: tenant.into(),
                    user_id,
                    text: "It arrived broken. Please refund it.".into(),
                    scenario: "follow_up".into(),
                    script: Script {
                        steps: vec![step(
                            "issue_refund",
                            json!({
                                "order_id": "{{lookup_order.order_id}}",
                                "amount_cents": "{{lookup_order.amount_cents}}",
                            }),
                        )],
                        confidence,
                        batch: Vec::new(),
                    },
                    attributes,
                    session_id: Some(session_id),
                });
            }
            out
        })
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload_and_every_scenario_appears() {
        let a = generate(1_000, 7);
        assert_eq!(a, generate(1_000, 7));
        assert_ne!(a, generate(1_000, 8));
        for (name, _, _) in SCENARIOS {
            assert!(a.iter().any(|t| t.scenario == *name), "{name} present");
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|t| t.turn_id).collect();
        assert_eq!(ids.len(), 1_000);
    }
}
