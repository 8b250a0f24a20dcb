//! The Cedar control plane's decisions, one rule at a time.

use std::collections::BTreeMap;

use super::cedar::Policies;
use super::*;
use crate::event::PolicyDecision;
use crate::exec::catalog::{ArgThreshold, Impact};

pub(super) fn catalog() -> Catalog {
    let object = serde_json::json!({"type": "object", "properties": {
        "order_id": {"type": "string"}, "amount_cents": {"type": "integer"}}});
    Catalog::new([
        ToolSpec {
            name: "lookup_order".into(),
            args_schema: object.clone(),
            auth_scopes: vec!["orders:read".into()],
            ..ToolSpec::default()
        },
        ToolSpec {
            name: "issue_refund".into(),
            args_schema: object,
            impact: Impact::High,
            tags: vec!["payments".into()],
            risk_thresholds: vec![ArgThreshold {
                arg: "amount_cents".into(),
                above: 10_000,
                add: 0.1,
            }],
            ..ToolSpec::default()
        },
    ])
}

pub(super) const POLICIES: &str = r#"
@id("all") permit(principal, action, resource);
@id("big") @decision("require_confirmation") @reason("big refund")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"issue_refund")
when { context.args has amount_cents && context.args.amount_cents > 10000 };
@id("huge") @reason("huge refund")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"issue_refund")
when { context.args has amount_cents && context.args.amount_cents > 50000 };
@id("unsure") @decision("escalate")
forbid(principal, action == Ballast::Action::"call_tool", resource) when { context.confidence < 50 };
@id("scopes") forbid(principal, action == Ballast::Action::"call_tool", resource)
unless { principal.scopes.containsAll(resource.scopes) };
@id("risky") @decision("escalate")
forbid(principal, action == Ballast::Action::"call_tool", resource) when { context.risk >= 95 };
"#;

pub(super) fn plane(policies: &str, config: ControlConfig) -> CedarControlPlane {
    let p = Policies::from_sources(&[("t.cedar".into(), policies.into())], &catalog())
        .expect("policies load");
    CedarControlPlane::new(config, catalog(), p, None)
}

pub(super) fn attrs() -> BTreeMap<String, String> {
    BTreeMap::from([("scopes".to_string(), "orders:read".to_string())])
}

fn call(plane: &CedarControlPlane, tool: &str, args: &str, confidence: f64) -> Verdict {
    let a = attrs();
    let signals = Signals {
        confidence,
        ..Signals::default()
    };
    plane.review_call(&CallReview {
        principal: Principal {
            tenant: "acme",
            user_id: "u1",
            channel: "chat",
            attributes: &a,
        },
        step: 0,
        tool,
        args_json: args,
        spec: None,
        signals: &signals,
        provenance: None,
    })
}

#[test]
fn each_rule_decides_with_its_id_and_the_most_severe_wins() {
    let p = plane(POLICIES, ControlConfig::default());
    let v = call(&p, "lookup_order", r#"{"order_id":"A1"}"#, 0.9);
    assert_eq!(
        (v.decision, v.policy_ids.clone()),
        (PolicyDecision::Allow, vec!["all".to_string()])
    );
    assert!(v.policy_version.starts_with("sha256:"));
    let v = call(
        &p,
        "issue_refund",
        r#"{"order_id":"A1","amount_cents":20000}"#,
        0.9,
    );
    assert_eq!(
        (v.decision, v.reason.as_str()),
        (PolicyDecision::RequireConfirmation, "big refund")
    );
    // Both "big" and "huge" hold: deny is more severe than require_confirmation.
    let v = call(
        &p,
        "issue_refund",
        r#"{"order_id":"A1","amount_cents":90000}"#,
        0.9,
    );
    assert_eq!(
        (v.decision, v.policy_ids.clone()),
        (PolicyDecision::Deny, vec!["huge".to_string()])
    );
    let v = call(&p, "lookup_order", r#"{"order_id":"A1"}"#, 0.2);
    assert_eq!(
        (v.decision, v.policy_ids.clone()),
        (PolicyDecision::Escalate, vec!["unsure".to_string()])
    );
}

#[test]
fn principals_need_the_tools_scopes() {
    let p = plane(POLICIES, ControlConfig::default());
    let a = BTreeMap::new();
    let signals = Signals {
        confidence: 0.9,
        ..Signals::default()
    };
    let v = p.review_call(&CallReview {
        principal: Principal {
            tenant: "acme",
            user_id: "u1",
            channel: "chat",
            attributes: &a,
        },
        step: 0,
        tool: "lookup_order",
        args_json: r#"{"order_id":"A1"}"#,
        spec: None,
        signals: &signals,
        provenance: None,
    });
    assert_eq!(
        (v.decision, v.policy_ids),
        (PolicyDecision::Deny, vec!["scopes".to_string()])
    );
}

/// The entities of a review are built once per (user, tool) and reused; a principal whose
/// attributes differ in any way is never answered with another's entities.
#[test]
fn entities_are_reused_only_for_the_same_principal() {
    let p = plane(POLICIES, ControlConfig::default());
    let signals = Signals {
        confidence: 0.9,
        ..Signals::default()
    };
    let review = |tenant: &str, user: &str, scopes: Option<&str>| {
        let a: BTreeMap<String, String> = scopes
            .map(|s| BTreeMap::from([("scopes".to_string(), s.to_string())]))
            .unwrap_or_default();
        p.review_call(&CallReview {
            principal: Principal {
                tenant,
                user_id: user,
                channel: "chat",
                attributes: &a,
            },
            step: 0,
            tool: "lookup_order",
            args_json: r#"{"order_id":"A1"}"#,
            spec: None,
            signals: &signals,
            provenance: None,
        })
        .decision
    };
    for _ in 0..3 {
        assert_eq!(
            review("acme", "u1", Some("orders:read")),
            PolicyDecision::Allow
        );
        assert_eq!(review("acme", "u1", None), PolicyDecision::Deny);
        assert_eq!(review("acme", "u1", Some("other")), PolicyDecision::Deny);
        // The same characters split differently between tenant and user: another principal.
        assert_eq!(review("acm", "eu1", None), PolicyDecision::Deny);
    }
    assert_eq!(p.policies().cached_entities(), 4);
}

#[test]
fn no_permit_denies_by_default_and_bad_arguments_fail_closed() {
    let p = plane(
        r#"@id("x") permit(principal, action == Ballast::Action::"send_response", resource);"#,
        ControlConfig::default(),
    );
    let v = call(&p, "lookup_order", r#"{"order_id":"A1"}"#, 0.9);
    assert_eq!(v.policy_ids, vec![cedar::DEFAULT_DENY.to_string()]);
    let p = plane(POLICIES, ControlConfig::default());
    // An amount that is a string would silently skip the amount rules: refused instead.
    let v = call(
        &p,
        "issue_refund",
        r#"{"order_id":"A1","amount_cents":"90000"}"#,
        0.9,
    );
    assert_eq!(
        (v.decision, v.policy_ids),
        (PolicyDecision::Deny, vec![plane::RULE_ARGS.to_string()])
    );
    let v = call(&p, "issue_refund", "not json", 0.9);
    assert_eq!(v.decision, PolicyDecision::Deny);
    let v = call(&p, "drop_tables", "{}", 0.9);
    assert_eq!(v.policy_ids, vec![plane::RULE_TOOL_EXISTS.to_string()]);
}

#[test]
fn risk_is_visible_to_policies_and_its_thresholds_decide_too() {
    // issue_refund: high impact 0.8 + 0.1 over 10 000 + 0.4 × (1 − 0.8) = 0.98 → "risky" (≥ 95%).
    let p = plane(POLICIES, ControlConfig::default());
    let v = call(
        &p,
        "issue_refund",
        r#"{"order_id":"A1","amount_cents":20000}"#,
        0.8,
    );
    assert!((v.risk_score - 0.98).abs() < 1e-9, "{}", v.risk_score);
    assert_eq!(
        (v.decision, v.policy_ids),
        (PolicyDecision::Escalate, vec!["risky".to_string()])
    );
    // Thresholds from configuration map the score on their own.
    let mut config = ControlConfig::default();
    config.risk.confirm_at = 0.8;
    let p = plane(r#"@id("all") permit(principal, action, resource);"#, config);
    let v = call(
        &p,
        "issue_refund",
        r#"{"order_id":"A1","amount_cents":500}"#,
        0.9,
    );
    assert_eq!(
        (v.decision, v.policy_ids),
        (
            PolicyDecision::RequireConfirmation,
            vec![risk::RULE_CONFIRM.to_string()]
        )
    );
}

#[test]
fn a_plan_is_as_strict_as_its_strictest_step() {
    let p = plane(POLICIES, ControlConfig::default());
    let steps = vec![
        crate::event::PlanStep {
            tool: "lookup_order".into(),
            args_json: r#"{"order_id":"A1"}"#.into(),
        },
        crate::event::PlanStep {
            tool: "issue_refund".into(),
            args_json: r#"{"order_id":"A1","amount_cents":90000}"#.into(),
        },
    ];
    let a = attrs();
    let signals = Signals {
        confidence: 0.9,
        ..Signals::default()
    };
    let principal = Principal {
        tenant: "acme",
        user_id: "u1",
        channel: "chat",
        attributes: &a,
    };
    let review = |steps: &[crate::event::PlanStep]| {
        p.review_plan(&PlanReview {
            principal,
            steps,
            catalog: &catalog(),
            signals: &signals,
        })
    };
    let v = review(&steps);
    assert_eq!(v.decision, PolicyDecision::Deny);
    assert!(v.reason.starts_with("step 1 issue_refund"), "{}", v.reason);
    assert_eq!(review(&steps[..1]).decision, PolicyDecision::Allow);
    let long = vec![steps[0].clone(); 9];
    assert_eq!(
        review(&long).policy_ids,
        vec![plane::RULE_STEP_LIMIT.to_string()]
    );
}

#[test]
fn the_builtin_set_loads_and_escalates_low_confidence() {
    let p = CedarControlPlane::builtin(catalog()).expect("built-in policies load");
    assert_eq!(
        call(&p, "lookup_order", r#"{"order_id":"A1"}"#, 0.9).decision,
        PolicyDecision::Allow
    );
    assert_eq!(
        call(&p, "lookup_order", r#"{"order_id":"A1"}"#, 0.3).decision,
        PolicyDecision::Escalate
    );
    assert_eq!(
        call(&p, "lookup_order", r#"{"order_id":"A1"}"#, f64::NAN).decision,
        PolicyDecision::Escalate
    );
}

#[test]
fn the_requests_the_plane_builds_conform_to_the_schema() {
    // Production evaluation skips the per-request schema check for speed; this is the check.
    let policies = Policies::from_sources(&[("t.cedar".into(), POLICIES.into())], &catalog())
        .expect("loads")
        .check_requests(true);
    let p = CedarControlPlane::new(ControlConfig::default(), catalog(), policies, None);
    for (tool, args) in [
        ("lookup_order", r#"{"order_id":"A1"}"#),
        ("issue_refund", r#"{"order_id":"A1","amount_cents":20000}"#),
        (
            "issue_refund",
            r#"{"order_id":"A1","amount_cents":20000,"note":{"x":1}}"#,
        ),
    ] {
        let v = call(&p, tool, args, 0.9);
        assert!(
            !v.policy_ids.iter().any(|id| id.starts_with("cedar.")),
            "{tool}: {v:?}"
        );
    }
    let a = attrs();
    let signals = Signals {
        confidence: 0.9,
        anomalies: vec!["no_context".into()],
        ..Signals::default()
    };
    let v = p.review_response(&ResponseReview {
        principal: Principal {
            tenant: "acme",
            user_id: "u1",
            channel: "chat",
            attributes: &a,
        },
        citations: 2,
        tool_calls: 1,
        signals: &signals,
    });
    assert_eq!(
        (v.decision, v.policy_ids),
        (PolicyDecision::Allow, vec!["all".to_string()])
    );
}

/// Cedar reads provenance per argument, `unvouched_args`, list arguments as sets and amounts as
/// decimals — "a payment's recipient must come from the user or a trusted tool".
#[test]
fn policies_read_provenance_sets_and_decimals() {
    use crate::guard::provenance::{self, Facts, ResultFact};
    let args = serde_json::json!({"type": "object", "properties": {
        "recipient": {"type": "string"}, "amount": {"type": "number"},
        "cc": {"type": "array", "items": {"type": "string"}}}});
    let catalog = Catalog::new([ToolSpec {
        name: "send_money".into(),
        args_schema: args,
        sinks: vec!["recipient".into()],
        ..ToolSpec::default()
    }]);
    let policies = r#"
@id("all") permit(principal, action, resource);
@id("recipient_vouched") @reason("the recipient must come from the user or a trusted tool")
forbid(principal, action == Ballast::Action::"call_tool", resource == Ballast::Tool::"send_money")
when { context.provenance has recipient
       && !context.provenance.recipient.containsAny(["user", "session", "trusted_tool"]) };
@id("big") @decision("require_confirmation")
forbid(principal, action == Ballast::Action::"call_tool", resource)
when { context.args has amount && context.args.amount.greaterThan(decimal("1000.0")) };
@id("eve") forbid(principal, action == Ballast::Action::"call_tool", resource)
when { context.args has cc && context.args.cc.contains("eve@evil.test") };
@id("unvouched") @decision("escalate")
forbid(principal, action == Ballast::Action::"call_tool", resource)
when { context.unvouched_args.contains("cc") };
"#;
    let p = Policies::from_sources(&[("p.cedar".into(), policies.into())], &catalog)
        .expect("policies load")
        .check_requests(true);
    let plane = CedarControlPlane::new(ControlConfig::default(), catalog, p, None);
    let facts = Facts {
        request: "Pay 20.50 to DE89 3704 0044 0532 0130 00, copy ann@example.com",
        session: vec![],
        results: vec![ResultFact {
            tool: "read_inbox",
            result_json: r#"{"body":"pay DE75 5121 0800 1245 1261 99, copy bob@example.com"}"#,
            ..Default::default()
        }],
        documents: vec![],
    };
    let review = |args: &str| {
        let prov = provenance::trace(args, &facts, &|_, _| false);
        let a = attrs();
        let signals = Signals {
            confidence: 0.9,
            ..Signals::default()
        };
        plane.review_call(&CallReview {
            principal: Principal {
                tenant: "acme",
                user_id: "u1",
                channel: "chat",
                attributes: &a,
            },
            step: 0,
            tool: "send_money",
            args_json: args,
            spec: None,
            signals: &signals,
            provenance: Some(&prov),
        })
    };
    let ok = review(
        r#"{"recipient":"DE89 3704 0044 0532 0130 00","amount":20.5,"cc":["ann@example.com"]}"#,
    );
    assert_eq!(ok.decision, PolicyDecision::Allow, "{ok:?}");
    let v = review(r#"{"recipient":"DE75 5121 0800 1245 1261 99","amount":20.5}"#);
    assert_eq!(v.policy_ids, vec!["recipient_vouched".to_string()], "{v:?}");
    let v = review(r#"{"recipient":"DE89 3704 0044 0532 0130 00","amount":1500.25}"#);
    assert_eq!(v.decision, PolicyDecision::RequireConfirmation, "{v:?}");
    let v = review(
        r#"{"recipient":"DE89 3704 0044 0532 0130 00","amount":1,"cc":["ann@example.com","eve@evil.test"]}"#,
    );
    assert_eq!(v.decision, PolicyDecision::Deny, "{v:?}");
    assert!(v.policy_ids.contains(&"eve".to_string()), "{v:?}");
    let v = review(
        r#"{"recipient":"DE89 3704 0044 0532 0130 00","amount":1,"cc":["bob@example.com"]}"#,
    );
    assert_eq!(v.decision, PolicyDecision::Escalate, "{v:?}");
}
