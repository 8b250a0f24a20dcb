//! The risk score: a documented, deterministic number in [0, 1] for one tool call.
//!
//! ```text
//! risk = min(1, impact(tool)                        none 0, low 0.2, medium 0.5, high 0.8
//!             + Σ add  for each catalog threshold the call's arguments exceed
//!             + confidence_weight × (1 − confidence)  a missing (NaN) confidence counts as 0
//!             + failure_weight    × earlier failed calls in the turn
//!             + anomaly_weight    × anomaly flags)
//! ```
//!
//! Thresholds in the control configuration map the score to a decision (`confirm_at`,
//! `escalate_at`, `deny_at`); Cedar policies read it as `context.risk` (percent, 0–100).

use serde::{Deserialize, Serialize};

use crate::event::PolicyDecision;
use crate::exec::catalog::ToolSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    pub confidence_weight: f64,
    pub failure_weight: f64,
    pub anomaly_weight: f64,
    /// Scores at or above these map to the decision (the most severe that applies wins).
    pub confirm_at: f64,
    pub escalate_at: f64,
    pub deny_at: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            confidence_weight: 0.4,
            failure_weight: 0.1,
            anomaly_weight: 0.15,
            // Above any reachable score: off until configured, so that the policies alone decide
            // (the demo's control.toml turns them on).
            confirm_at: 1.01,
            escalate_at: 1.01,
            deny_at: 1.01,
        }
    }
}

pub const RULE_CONFIRM: &str = "risk.confirm_at";
pub const RULE_ESCALATE: &str = "risk.escalate_at";
pub const RULE_DENY: &str = "risk.deny_at";

/// A score and the argument features that raised it.
#[derive(Clone, Debug, PartialEq)]
pub struct Risk {
    pub score: f64,
    /// Names of the catalog thresholds the arguments exceeded (e.g. `amount_cents>10000`).
    pub features: Vec<String>,
}

impl RiskConfig {
    pub fn score(
        &self,
        spec: Option<&ToolSpec>,
        args: Option<&serde_json::Value>,
        confidence: f64,
        failures: u32,
        anomalies: usize,
    ) -> Risk {
        let mut score = spec.map_or(0.0, |s| s.impact.base_risk());
        let mut features = Vec::new();
        if let (Some(spec), Some(args)) = (spec, args) {
            for t in &spec.risk_thresholds {
                let value = args.get(&t.arg).and_then(serde_json::Value::as_f64);
                if value.is_some_and(|v| v > t.above as f64) {
                    score += t.add;
                    features.push(format!("{}>{}", t.arg, t.above));
                }
            }
        }
        let confidence = if confidence.is_nan() {
            0.0
        } else {
            confidence.clamp(0.0, 1.0)
        };
        score += self.confidence_weight * (1.0 - confidence);
        score += self.failure_weight * f64::from(failures);
        score += self.anomaly_weight * anomalies as f64;
        Risk {
            score: score.clamp(0.0, 1.0),
            features,
        }
    }

    /// What the thresholds say about a score, with the threshold's rule id.
    pub fn decision(&self, score: f64) -> Option<(PolicyDecision, &'static str, f64)> {
        if score >= self.deny_at {
            Some((PolicyDecision::Deny, RULE_DENY, self.deny_at))
        } else if score >= self.escalate_at {
            Some((PolicyDecision::Escalate, RULE_ESCALATE, self.escalate_at))
        } else if score >= self.confirm_at {
            Some((
                PolicyDecision::RequireConfirmation,
                RULE_CONFIRM,
                self.confirm_at,
            ))
        } else {
            None
        }
    }
}

/// A fraction in [0, 1] as a whole percentage, the form Cedar (integers only) reads.
pub fn percent(x: f64) -> i64 {
    if x.is_nan() {
        0
    } else {
        (x.clamp(0.0, 1.0) * 100.0).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::catalog::{ArgThreshold, Impact};
    use serde_json::json;

    fn refund() -> ToolSpec {
        ToolSpec {
            name: "issue_refund".into(),
            impact: Impact::Medium,
            risk_thresholds: vec![ArgThreshold {
                arg: "amount_cents".into(),
                above: 10_000,
                add: 0.2,
            }],
            ..ToolSpec::default()
        }
    }

    #[test]
    fn score_follows_the_documented_formula() {
        let cfg = RiskConfig::default();
        let small = cfg.score(
            Some(&refund()),
            Some(&json!({"amount_cents": 500})),
            1.0,
            0,
            0,
        );
        assert_eq!(small.score, 0.5);
        assert!(small.features.is_empty());
        let large = cfg.score(
            Some(&refund()),
            Some(&json!({"amount_cents": 25_000})),
            0.9,
            1,
            1,
        );
        let expected: f64 = 0.5 + 0.2 + 0.4 * 0.1 + 0.1 + 0.15;
        assert!((large.score - expected).abs() < 1e-9, "{}", large.score);
        assert_eq!(large.features, vec!["amount_cents>10000".to_string()]);
        // Capped at 1, and a missing confidence counts as none.
        let worst = cfg.score(
            Some(&refund()),
            Some(&json!({"amount_cents": 1e9})),
            f64::NAN,
            9,
            9,
        );
        assert_eq!(worst.score, 1.0);
    }

    #[test]
    fn thresholds_map_to_the_most_severe_decision() {
        let cfg = RiskConfig {
            confirm_at: 0.7,
            escalate_at: 0.9,
            deny_at: 0.99,
            ..RiskConfig::default()
        };
        assert_eq!(cfg.decision(0.2), None);
        assert_eq!(
            cfg.decision(0.7).map(|d| d.0),
            Some(PolicyDecision::RequireConfirmation)
        );
        assert_eq!(
            cfg.decision(0.95).map(|d| d.0),
            Some(PolicyDecision::Escalate)
        );
        assert_eq!(cfg.decision(1.0).map(|d| d.0), Some(PolicyDecision::Deny));
        assert_eq!(percent(0.734), 73);
        assert_eq!(percent(f64::NAN), 0);
    }
}
