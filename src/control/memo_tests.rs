//! Cedar's answers reused (`memo`): what a policy set reads, and that a remembered answer is
//! always the answer Cedar gives.

use std::collections::BTreeMap;

use super::tests::{POLICIES, attrs, catalog, plane};
use super::*;
use crate::event::PolicyDecision;

/// Which `context` attributes a set reads is found from the policies themselves.
#[test]
fn the_memo_knows_which_context_attributes_the_policies_read() {
    use super::memo::{ContextReads, context_reads};
    let reads = |text: &str| {
        plane(text, ControlConfig::default())
            .policies()
            .memo_state()
            .1
    };
    let only = |attrs: &[&str]| ContextReads::Only(attrs.iter().map(|a| a.to_string()).collect());
    assert_eq!(reads(POLICIES), only(&["args", "confidence", "risk"]));
    let checkpoint = format!(
        "{POLICIES}\n@id(\"late\") forbid(principal, action, resource) \
         when {{ context has checkpoint && context.checkpoint == \"pre_tool\" }};"
    );
    assert_eq!(
        reads(&checkpoint),
        only(&["args", "checkpoint", "confidence", "risk"])
    );
    // `context` used whole (here, in hand-written JSON of a policy), or a policy that could
    // not be rendered: anything may matter.
    let whole = serde_json::json!({"effect": "forbid", "conditions": [{"kind": "when",
        "body": {"==": {"left": {"Var": "context"}, "right": {"Record": {}}}}}]});
    assert_eq!(context_reads([Some(whole)]), ContextReads::All);
    assert_eq!(context_reads([None]), ContextReads::All);
}

/// A remembered answer is reused for a question that agrees on everything the policies read,
/// and never for one that differs in any of it: the memo never changes a decision.
#[test]
fn remembered_answers_are_the_answers_cedar_gives() {
    let late = format!(
        "{POLICIES}\n@id(\"late\") @reason(\"not at the last moment\") \
         forbid(principal, action == Ballast::Action::\"call_tool\", resource) \
         when {{ context.checkpoint == \"pre_tool\" && context.args has amount_cents \
         && context.args.amount_cents > 100 }};"
    );
    let shared = plane(&late, ControlConfig::default());
    let fresh = || plane(&late, ControlConfig::default());
    let cases: Vec<(&str, &str, f64, Option<&str>)> = vec![
        (
            "lookup_order",
            r#"{"order_id":"A1"}"#,
            0.9,
            Some("orders:read"),
        ),
        ("lookup_order", r#"{"order_id":"A1"}"#, 0.9, None),
        (
            "lookup_order",
            r#"{"order_id":"A1"}"#,
            0.3,
            Some("orders:read"),
        ),
        (
            "issue_refund",
            r#"{"order_id":"A1","amount_cents":50}"#,
            0.9,
            None,
        ),
        (
            "issue_refund",
            r#"{"order_id":"A1","amount_cents":500}"#,
            0.9,
            None,
        ),
        (
            "issue_refund",
            r#"{"order_id":"A1","amount_cents":20000}"#,
            0.9,
            None,
        ),
        (
            "issue_refund",
            r#"{"order_id":"A1","amount_cents":"x"}"#,
            0.9,
            None,
        ),
    ];
    let mut decisions = std::collections::BTreeSet::new();
    for _ in 0..2 {
        for (tool, args, confidence, scopes) in &cases {
            let a: BTreeMap<String, String> = scopes
                .map(|s| BTreeMap::from([("scopes".to_string(), s.to_string())]))
                .unwrap_or_default();
            let ask =
                |review: Review, p: &CedarControlPlane| review(p, &a, *confidence, tool, args);
            for review in [plan_review as Review, call_review] {
                let (got, want) = (ask(review, &shared), ask(review, &fresh()));
                assert_eq!(
                    (&got.decision, &got.policy_ids, &got.reason),
                    (&want.decision, &want.policy_ids, &want.reason),
                    "{tool} {args} {confidence} {scopes:?}"
                );
                decisions.insert(format!("{:?}", got.decision));
            }
        }
    }
    assert!(
        decisions.len() >= 3,
        "the cases decide differently: {decisions:?}"
    );
    // Each distinct question was asked of Cedar once (plan and pre_tool differ here: the set
    // reads the checkpoint); the second round was answered from the memo.
    let (answers, _) = shared.policies().memo_state();
    assert!(answers > 0 && answers <= 2 * cases.len(), "{answers}");
}

/// When the policies do not read the checkpoint, a call's pre-tool review is the question its
/// plan review already asked: Cedar answers it once.
#[test]
fn a_plan_review_answers_the_pre_tool_review_of_the_same_call() {
    let p = plane(POLICIES, ControlConfig::default());
    let a = attrs();
    let args = r#"{"order_id":"A1"}"#;
    let plan = plan_review(&p, &a, 0.9, "lookup_order", args);
    let call = call_review(&p, &a, 0.9, "lookup_order", args);
    assert_eq!(
        (plan.decision, call.decision),
        (PolicyDecision::Allow, PolicyDecision::Allow)
    );
    assert_eq!(p.policies().memo_state().0, 1);
}

type Review = fn(&CedarControlPlane, &BTreeMap<String, String>, f64, &str, &str) -> Verdict;

fn principal(a: &BTreeMap<String, String>) -> Principal<'_> {
    Principal {
        tenant: "acme",
        user_id: "u1",
        channel: "chat",
        attributes: a,
    }
}

/// A one-step plan of `tool(args)`, reviewed at the plan checkpoint.
fn plan_review(
    p: &CedarControlPlane,
    a: &BTreeMap<String, String>,
    confidence: f64,
    tool: &str,
    args: &str,
) -> Verdict {
    let steps = vec![crate::event::PlanStep {
        tool: tool.to_string(),
        args_json: args.to_string(),
    }];
    p.review_plan(&PlanReview {
        principal: principal(a),
        steps: &steps,
        catalog: &catalog(),
        signals: &Signals {
            confidence,
            ..Signals::default()
        },
    })
}

/// The same call, reviewed just before it runs.
fn call_review(
    p: &CedarControlPlane,
    a: &BTreeMap<String, String>,
    confidence: f64,
    tool: &str,
    args: &str,
) -> Verdict {
    p.review_call(&CallReview {
        principal: principal(a),
        step: 0,
        tool,
        args_json: args,
        spec: None,
        signals: &Signals {
            confidence,
            ..Signals::default()
        },
        provenance: None,
    })
}
