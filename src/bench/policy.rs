//! `ballast bench --policy`: what a control-plane decision costs.
//!
//! Times the demo policy set's review of one tool call at the pre-tool checkpoint (Cedar request
//! and entities built, policies evaluated, risk scored, thresholds applied) and of a two-step plan,
//! against a baseline measured in the same run: Avro-encoding the PolicyEvaluated event that
//! records such a decision, which every decision pays anyway.
//!
//! The same call reviewed again is answered from the control plane's memo (the Cedar answer for
//! that user and tool, see `control::memo`), so it is timed two ways: `call_review_*` repeats one
//! call (a memo hit, what a call's pre-tool review after its plan review costs), and
//! `call_review_cold_*` asks for a new user each time (entities built and the policies
//! evaluated: what a first review costs).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::control::{CallReview, ControlError, ControlPlane, PlanReview, Principal, Signals};
use crate::event::codec::{CodecError, Codecs, SchemaRegistry};
use crate::event::{Checkpoint, Event, Payload, PlanStep, PolicyEvaluated};
use crate::ids::TurnId;

#[derive(Debug, thiserror::Error)]
pub enum PolicyBenchError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[derive(Clone, Debug)]
pub struct PolicyBenchReport {
    pub evals: usize,
    pub policies: usize,
    pub call_us_mean: f64,
    pub call_us_p50: f64,
    pub call_us_p99: f64,
    /// A new user each review: no memo, no cached entities.
    pub cold_us_mean: f64,
    pub cold_us_p50: f64,
    pub cold_us_p99: f64,
    pub plan_us_mean: f64,
    pub encode_us_mean: f64,
}

impl PolicyBenchReport {
    pub fn render(&self) -> String {
        format!(
            "policy_evals={}\npolicies={}\ncall_review_us_mean={:.2}\ncall_review_us_p50={:.2}\ncall_review_us_p99={:.2}\n\
             call_review_cold_us_mean={:.2}\ncall_review_cold_us_p50={:.2}\ncall_review_cold_us_p99={:.2}\n\
             plan_review_us_mean={:.2}\nbaseline_encode_us_mean={:.2}\ncall_review_vs_encode_ratio={:.2}\n",
            self.evals,
            self.policies,
            self.call_us_mean,
            self.call_us_p50,
            self.call_us_p99,
            self.cold_us_mean,
            self.cold_us_p50,
            self.cold_us_p99,
            self.plan_us_mean,
            self.encode_us_mean,
            self.call_us_mean / self.encode_us_mean.max(1e-9),
        )
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    crate::demo::run::percentile(sorted, q)
}

pub fn run(evals: usize) -> Result<PolicyBenchReport, PolicyBenchError> {
    let evals = evals.max(1);
    let catalog = crate::demo::tools::demo_catalog();
    let plane = crate::demo::operator::demo_control(catalog.clone())?;
    let attributes = BTreeMap::from([
        ("roles".to_string(), "customer".to_string()),
        ("class".to_string(), "billing".to_string()),
    ]);
    let principal = Principal {
        tenant: "acme",
        user_id: "u-42",
        channel: "chat",
        attributes: &attributes,
    };
    let signals = Signals {
        confidence: 0.91,
        ..Signals::default()
    };
    let args = r#"{"order_id":"A1001","amount_cents":4200}"#;
    let review = || {
        plane.review_call(&CallReview {
            principal,
            step: 1,
            tool: "issue_refund",
            args_json: args,
            spec: catalog.get("issue_refund"),
            signals: &signals,
            provenance: None,
        })
    };
    // Warm up caches and the allocator before timing.
    for _ in 0..evals.min(1_000) {
        std::hint::black_box(review());
    }
    let mut samples = Vec::with_capacity(evals);
    let started = Instant::now();
    for _ in 0..evals {
        let t = Instant::now();
        std::hint::black_box(review());
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let call_total = started.elapsed().as_secs_f64() * 1e6;
    samples.sort_by(f64::total_cmp);

    // The first review of each user: nothing remembered, entities built.
    let users: Vec<String> = (0..evals).map(|i| format!("u-cold-{i}")).collect();
    let mut cold = Vec::with_capacity(evals);
    let started = Instant::now();
    for user in &users {
        let t = Instant::now();
        std::hint::black_box(plane.review_call(&CallReview {
            principal: Principal {
                user_id: user,
                ..principal
            },
            step: 1,
            tool: "issue_refund",
            args_json: args,
            spec: catalog.get("issue_refund"),
            signals: &signals,
            provenance: None,
        }));
        cold.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cold_total = started.elapsed().as_secs_f64() * 1e6;
    cold.sort_by(f64::total_cmp);

    let steps = vec![
        PlanStep {
            tool: "lookup_order".into(),
            args_json: r#"{"order_id":"A1001"}"#.into(),
        },
        PlanStep {
            tool: "issue_refund".into(),
            args_json: args.into(),
        },
    ];
    let plan_evals = (evals / 4).max(1);
    let started = Instant::now();
    for _ in 0..plan_evals {
        std::hint::black_box(plane.review_plan(&PlanReview {
            principal,
            steps: &steps,
            catalog: &catalog,
            signals: &signals,
        }));
    }
    let plan_total = started.elapsed().as_secs_f64() * 1e6;

    let verdict = review();
    let codecs = Codecs::new(SchemaRegistry::new())?;
    let turn = TurnId::from_parts(1_767_225_600_000, [7; 10]);
    let event = Event {
        event_id: turn.event_id(7),
        turn_id: turn,
        tenant: "acme".into(),
        seq: 7,
        at_ms: 1_767_225_600_000,
        payload: Payload::PolicyEvaluated(PolicyEvaluated {
            checkpoint: Checkpoint::PreTool,
            step: Some(1),
            tool: Some("issue_refund".into()),
            decision: verdict.decision,
            policy_ids: verdict.policy_ids,
            reason: verdict.reason,
            risk_score: verdict.risk_score,
            policy_version: verdict.policy_version,
            ..PolicyEvaluated::default()
        }),
    };
    let started = Instant::now();
    for _ in 0..evals {
        std::hint::black_box(codecs.events.encode(&event)?);
    }
    let encode_total = started.elapsed().as_secs_f64() * 1e6;

    Ok(PolicyBenchReport {
        evals,
        policies: plane.policies().len(),
        call_us_mean: call_total / evals as f64,
        call_us_p50: percentile(&samples, 0.50),
        call_us_p99: percentile(&samples, 0.99),
        cold_us_mean: cold_total / evals as f64,
        cold_us_p50: percentile(&cold, 0.50),
        cold_us_p99: percentile(&cold, 0.99),
        plan_us_mean: plan_total / plan_evals as f64,
        encode_us_mean: encode_total / evals as f64,
    })
}
