//! The control configuration (`control.toml` in the policy directory): risk weights and
//! thresholds, planner profiles and routing rules, budgets, approval deadlines.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ControlError;
use super::budget::BudgetLimits;
use super::risk::RiskConfig;
use crate::event::RouteSelected;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// A model step asking for more tool calls at once is denied before its first side effect.
    pub max_plan_steps: usize,
    /// Model steps a turn's loop may take; the one after escalates (`loop.max_steps`).
    pub max_steps: usize,
    /// How long a turn waits for a person to confirm a call before it escalates.
    pub approval_ttl_ms: i64,
    pub risk: RiskConfig,
    pub budgets: BudgetLimits,
    pub profiles: BTreeMap<String, PlannerProfile>,
    pub routing: Routing,
    pub guards: crate::guard::GuardConfig,
    pub slo: SloConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            max_plan_steps: 8,
            max_steps: 10,
            approval_ttl_ms: 15 * 60 * 1000,
            risk: RiskConfig::default(),
            budgets: BudgetLimits::default(),
            // The default ladder's specialist rung needs a profile to re-plan with.
            profiles: BTreeMap::from([
                ("general".to_string(), PlannerProfile::default()),
                (
                    "specialist".to_string(),
                    PlannerProfile {
                        model: "scripted-specialist".into(),
                        ..PlannerProfile::default()
                    },
                ),
            ]),
            routing: Routing::default(),
            guards: crate::guard::GuardConfig::default(),
            slo: SloConfig::default(),
        }
    }
}

/// A planner configuration a turn can be routed to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerProfile {
    pub model: String,
    /// Tokens reserved before each call of this model (its output ceiling plus a typical prompt).
    pub reserve_tokens: i64,
    pub micros_per_1k_tokens: i64,
    /// Tokens of a session's earlier turns shown to the model (oldest dropped first).
    pub session_tokens: i64,
}

impl Default for PlannerProfile {
    fn default() -> Self {
        PlannerProfile {
            model: "scripted".into(),
            reserve_tokens: 2_000,
            micros_per_1k_tokens: 500,
            session_tokens: 4_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routing {
    pub default_profile: String,
    /// Tried in order; the first that matches picks the profile.
    pub rules: Vec<RouteRule>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            default_profile: "general".into(),
            rules: Vec::new(),
        }
    }
}

/// Matches a request by tenant and/or request class (the request's `class` attribute).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub name: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    pub profile: String,
}

/// The request attribute that names a request's class for routing.
pub const CLASS_ATTRIBUTE: &str = "class";

impl ControlConfig {
    pub fn load(path: &Path) -> Result<Self, ControlError> {
        let text = std::fs::read_to_string(path).map_err(|e| ControlError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ControlError> {
        if let Some((key, line, _)) = crate::toml_lines::non_finite(text).into_iter().next() {
            return Err(ControlError::Config {
                path: origin.to_string(),
                line: Some(line),
                message: format!("{key}: nan and infinities are not settings"),
            });
        }
        let config: ControlConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            ControlError::Config {
                path: origin.to_string(),
                line,
                message: e.message().to_string(),
            }
        })?;
        if let Some((key, message)) = config.problems().into_iter().next() {
            return Err(ControlError::Config {
                path: origin.to_string(),
                line: crate::toml_lines::locate(text, &key).map(|(l, _)| l),
                message: format!("{key}: {message}"),
            });
        }
        Ok(config)
    }

    /// Everything wrong with the configuration, as (dotted key, message): what `control.toml`
    /// loading refuses and `check-config` reports at the key's line.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut bad = |key: &str, message: String| out.push((key.to_string(), message));
        let known = |p: &str| self.profiles.contains_key(p);
        if !known(&self.routing.default_profile) {
            bad(
                "routing.default_profile",
                format!(
                    "{:?} is not a profile of [profiles]",
                    self.routing.default_profile
                ),
            );
        }
        for (i, rule) in self.routing.rules.iter().enumerate() {
            if !known(&rule.profile) {
                bad(
                    &format!("routing.rules.{i}.profile"),
                    format!(
                        "rule {:?} names unknown profile {:?}",
                        rule.name, rule.profile
                    ),
                );
            }
        }
        let guards = &self.guards;
        if guards
            .ladder
            .contains(&crate::event::EscalationRung::Specialist)
            && !known(&guards.specialist_profile)
        {
            bad(
                "guards.specialist_profile",
                format!(
                    "the ladder has a specialist rung, but {:?} is not a profile",
                    guards.specialist_profile
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = guards.ladder.iter().find(|r| !seen.insert(r.as_str())) {
            bad(
                "guards.ladder",
                format!("rung {} appears twice", dup.as_str()),
            );
        }
        for (i, p) in guards.redact_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&p.regex) {
                bad(
                    &format!("guards.redact_patterns.{i}.regex"),
                    format!("pattern {:?}: {e}", p.name),
                );
            }
        }
        for (key, value) in [
            ("approval_ttl_ms", self.approval_ttl_ms),
            ("budgets.window_ms", self.budgets.window_ms),
            ("guards.handoff_ttl_ms", guards.handoff_ttl_ms),
            ("slo.period_ms", self.slo.period_ms),
        ] {
            if value <= 0 {
                bad(key, "must be positive".into());
            }
        }
        let risk = &self.risk;
        for (key, v) in [
            ("risk.confidence_weight", risk.confidence_weight),
            ("risk.failure_weight", risk.failure_weight),
            ("risk.anomaly_weight", risk.anomaly_weight),
            ("risk.confirm_at", risk.confirm_at),
            ("risk.escalate_at", risk.escalate_at),
            ("risk.deny_at", risk.deny_at),
        ] {
            if !v.is_finite() || v < 0.0 {
                bad(key, format!("{v} is not a number of zero or more"));
            }
        }
        // A stricter decision must not start below a milder one: escalate_at below confirm_at
        // would escalate what was meant to be confirmed.
        if risk.escalate_at < risk.confirm_at {
            bad(
                "risk.escalate_at",
                format!(
                    "escalate_at ({}) is below confirm_at ({}): thresholds go confirm ≤ escalate ≤ deny",
                    risk.escalate_at, risk.confirm_at
                ),
            );
        }
        if risk.deny_at < risk.escalate_at {
            bad(
                "risk.deny_at",
                format!(
                    "deny_at ({}) is below escalate_at ({}): thresholds go confirm ≤ escalate ≤ deny",
                    risk.deny_at, risk.escalate_at
                ),
            );
        }
        for (name, p) in &self.profiles {
            if p.reserve_tokens < 0 || p.micros_per_1k_tokens < 0 || p.session_tokens < 0 {
                bad(
                    &format!("profiles.{name}"),
                    "reserve_tokens, micros_per_1k_tokens and session_tokens must not be negative"
                        .into(),
                );
            }
        }
        if self.max_steps == 0 {
            bad("max_steps", "a turn needs at least one model step".into());
        }
        if guards.step_cost_micros < 0 {
            bad(
                "guards.step_cost_micros",
                "must not be negative (0 is off)".into(),
            );
        }
        let slo = &self.slo;
        for (key, value) in [
            ("slo.task_success", slo.task_success),
            ("slo.latency_target", slo.latency_target),
            ("slo.escalation_success", slo.escalation_success),
        ] {
            if !(value > 0.0 && value < 1.0) {
                bad(key, "a target is a share strictly between 0 and 1".into());
            }
        }
        if !(0.0..1.0).contains(&slo.hallucination_with_action_max) {
            bad(
                "slo.hallucination_with_action_max",
                "a share between 0 (inclusive) and 1".into(),
            );
        }
        out
    }

    /// Picks the planner profile for a request: the first matching rule, else the default.
    pub fn route(&self, tenant: &str, attributes: &BTreeMap<String, String>) -> RouteSelected {
        let class = attributes.get(CLASS_ATTRIBUTE).map(String::as_str);
        let (rule, profile) = self
            .routing
            .rules
            .iter()
            .find(|r| {
                r.tenant.as_deref().is_none_or(|t| t == tenant)
                    && r.class.as_deref().is_none_or(|c| Some(c) == class)
            })
            .map(|r| (r.name.as_str(), r.profile.as_str()))
            .unwrap_or(("default", self.routing.default_profile.as_str()));
        let p = self.profiles.get(profile).cloned().unwrap_or_default();
        RouteSelected {
            profile: profile.to_string(),
            rule: rule.to_string(),
            model: p.model,
            reserve_tokens: p.reserve_tokens,
            micros_per_1k_tokens: p.micros_per_1k_tokens,
        }
    }
}

/// `[control.slo]`: SLO targets and period (the SLO projection computes against these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// Share of turns that end succeeded.
    pub task_success: f64,
    /// Most share of turns with a hallucination with action.
    pub hallucination_with_action_max: f64,
    /// Turns answered within `latency_threshold_ms`, as a share (P95 ≤ 4.5 s: 95% within 4.5 s).
    pub latency_threshold_ms: i64,
    pub latency_target: f64,
    /// Share of human handoffs resolved within their deadline.
    pub escalation_success: f64,
    pub period_ms: i64,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            task_success: 0.95,
            hallucination_with_action_max: 0.005,
            latency_threshold_ms: 4_500,
            latency_target: 0.95,
            escalation_success: 0.99,
            period_ms: 30 * 24 * 3_600_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
max_plan_steps = 6
[profiles.general]
model = "scripted-general"
[profiles.specialist]
model = "scripted-specialist"
reserve_tokens = 4000
[routing]
default_profile = "general"
[[routing.rules]]
name = "billing"
class = "billing"
profile = "specialist"
[[routing.rules]]
name = "globex-vip"
tenant = "globex"
profile = "specialist"
"#;

    #[test]
    fn routes_by_class_then_tenant_then_default() {
        let c = ControlConfig::parse(CONFIG, "control.toml").expect("parses");
        let attrs = |class: &str| BTreeMap::from([("class".to_string(), class.to_string())]);
        let r = c.route("acme", &attrs("billing"));
        assert_eq!(
            (r.profile.as_str(), r.rule.as_str()),
            ("specialist", "billing")
        );
        assert_eq!(r.reserve_tokens, 4000);
        assert_eq!(c.route("globex", &BTreeMap::new()).rule, "globex-vip");
        let d = c.route("acme", &attrs("shipping"));
        assert_eq!(
            (d.profile.as_str(), d.rule.as_str()),
            ("general", "default")
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = ControlConfig::parse(
            "max_plan_steps = 6\nrisk = { confirm_at = \"high\" }\n",
            "x/control.toml",
        )
        .expect_err("bad type");
        let text = err.to_string();
        assert!(text.contains("x/control.toml:2"), "{text}");
        let err = ControlConfig::parse("[routing]\ndefault_profile = \"nope\"\n", "c.toml")
            .expect_err("unknown profile");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
