//! [`CedarControlPlane`]: Cedar policies plus the risk score and routing, with hot reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use cedar_policy::RestrictedExpression;

use super::cedar::{
    self, ACTION_CALL_TOOL, ACTION_SEND_RESPONSE, Evaluation, Policies, PrincipalAttrs, Resource,
};
use super::risk::percent;
use super::{
    CallReview, ControlConfig, ControlError, ControlPlane, PlanReview, Principal, ResponseReview,
    Signals, Verdict, list_attribute,
};
use crate::event::{PolicyDecision, RouteSelected};
use crate::exec::catalog::Catalog;

pub const RULE_TOOL_EXISTS: &str = "control.tool_exists";
pub const RULE_STEP_LIMIT: &str = "control.step_limit";
pub const RULE_ARGS: &str = "control.args";
/// The file in a policy directory that holds the control configuration.
pub const CONFIG_FILE: &str = "control.toml";

pub struct CedarControlPlane {
    config: ControlConfig,
    catalog: Catalog,
    dir: Option<PathBuf>,
    policies: RwLock<Arc<Policies>>,
}

impl CedarControlPlane {
    /// The built-in policy set and default configuration.
    pub fn builtin(catalog: Catalog) -> Result<Self, ControlError> {
        let policies = Policies::from_sources(
            &[("builtin.cedar".into(), cedar::BUILTIN_POLICIES.into())],
            &catalog,
        )?;
        Ok(Self::new(ControlConfig::default(), catalog, policies, None))
    }

    pub fn new(
        config: ControlConfig,
        catalog: Catalog,
        policies: Policies,
        dir: Option<PathBuf>,
    ) -> Self {
        CedarControlPlane {
            config,
            catalog,
            dir,
            policies: RwLock::new(Arc::new(policies)),
        }
    }

    /// Loads `dir/*.cedar` and `dir/control.toml` (defaults when absent). Any error refuses the
    /// whole directory.
    pub fn load(dir: &Path, catalog: Catalog) -> Result<Self, ControlError> {
        let config_path = dir.join(CONFIG_FILE);
        let config = if config_path.exists() {
            ControlConfig::load(&config_path)?
        } else {
            ControlConfig::default()
        };
        let policies = Policies::load_dir(dir, &catalog)?;
        Ok(Self::new(
            config,
            catalog,
            policies,
            Some(dir.to_path_buf()),
        ))
    }

    pub fn policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn version(&self) -> String {
        self.policies().version.clone()
    }

    /// Re-reads the policy directory. Returns the new version when the policies changed; an
    /// invalid set is refused and the running one kept.
    pub fn reload(&self) -> Result<Option<String>, ControlError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let fresh = Policies::load_dir(dir, &self.catalog)?;
        if fresh.version == self.version() {
            return Ok(None);
        }
        let version = fresh.version.clone();
        match self.policies.write() {
            Ok(mut p) => *p = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        tracing::info!(%version, dir = %dir.display(), "policy set reloaded");
        Ok(Some(version))
    }

    fn principal<'a>(p: &Principal<'a>) -> PrincipalAttrs<'a> {
        PrincipalAttrs {
            tenant: p.tenant,
            user_id: p.user_id,
            channel: p.channel,
            roles: list_attribute(p.attributes, "roles"),
            scopes: list_attribute(p.attributes, "scopes"),
        }
    }

    fn budget(signals: &Signals) -> RestrictedExpression {
        cedar::record(vec![
            ("cost_left_micros", cedar::long(signals.budget.cost_micros)),
            ("tokens_left", cedar::long(signals.budget.tokens)),
            ("tool_calls_left", cedar::long(signals.budget.tool_calls)),
        ])
    }

    /// One call at one checkpoint: Cedar, then the risk thresholds; the more severe wins.
    #[allow(clippy::too_many_arguments)]
    fn assess_call(
        &self,
        policies: &Policies,
        principal: &Principal<'_>,
        checkpoint: &str,
        step: u32,
        tool: &str,
        args_json: &str,
        signals: &Signals,
    ) -> (Evaluation, f64) {
        let deny = |id: &str, reason: String| Evaluation {
            decision: PolicyDecision::Deny,
            policy_ids: vec![id.to_string()],
            reason,
        };
        let Some(spec) = self.catalog.get(tool) else {
            return (
                deny(
                    RULE_TOOL_EXISTS,
                    format!("tool {tool} is not in the catalog"),
                ),
                1.0,
            );
        };
        let args: Option<serde_json::Value> = serde_json::from_str(args_json).ok();
        let risk = self.config.risk.score(
            Some(spec),
            args.as_ref(),
            signals.confidence,
            signals.failures,
            signals.anomalies.len(),
        );
        let Some(args_value) = args.as_ref().filter(|a| a.is_object()) else {
            return (
                deny(
                    RULE_ARGS,
                    format!("arguments of {tool} are not a JSON object"),
                ),
                risk.score,
            );
        };
        let args_record = match policies.args_record(Some(args_value)) {
            Ok(r) => r,
            Err(e) => return (deny(RULE_ARGS, e), risk.score),
        };
        let context = vec![
            ("checkpoint".to_string(), cedar::string(checkpoint)),
            ("step".to_string(), cedar::long(i64::from(step))),
            ("args".to_string(), args_record),
            ("features".to_string(), cedar::string_set(&risk.features)),
            ("risk".to_string(), cedar::long(percent(risk.score))),
            (
                "confidence".to_string(),
                cedar::long(percent(signals.confidence)),
            ),
            (
                "failures".to_string(),
                cedar::long(i64::from(signals.failures)),
            ),
            (
                "anomalies".to_string(),
                cedar::string_set(&signals.anomalies),
            ),
            ("budget".to_string(), Self::budget(signals)),
        ];
        let mut eval = policies.evaluate(
            &Self::principal(principal),
            ACTION_CALL_TOOL,
            Resource::Tool(tool),
            context,
        );
        if let Some((decision, rule, at)) = self.config.risk.decision(risk.score) {
            let why = format!("risk {:.2} is at or above {rule} {at:.2}", risk.score);
            if decision.severity() > eval.decision.severity() {
                eval = Evaluation {
                    decision,
                    policy_ids: vec![rule.to_string()],
                    reason: why,
                };
            } else if decision == eval.decision {
                eval.policy_ids.push(rule.to_string());
                eval.reason = format!("{}; {why}", eval.reason);
            }
        }
        (eval, risk.score)
    }

    fn verdict(&self, e: Evaluation, risk_score: f64, version: &str) -> Verdict {
        Verdict {
            decision: e.decision,
            policy_ids: e.policy_ids,
            reason: e.reason,
            risk_score,
            policy_version: version.to_string(),
        }
    }
}

impl ControlPlane for CedarControlPlane {
    fn route(&self, tenant: &str, attributes: &BTreeMap<String, String>) -> RouteSelected {
        self.config.route(tenant, attributes)
    }

    fn review_plan(&self, plan: &PlanReview<'_>) -> Verdict {
        let policies = self.policies();
        let version = policies.version.as_str();
        if plan.steps.len() > self.config.max_plan_steps {
            let e = Evaluation {
                decision: PolicyDecision::Deny,
                policy_ids: vec![RULE_STEP_LIMIT.into()],
                reason: format!(
                    "plan has {} steps, limit is {}",
                    plan.steps.len(),
                    self.config.max_plan_steps
                ),
            };
            return self.verdict(e, 1.0, version);
        }
        // The plan is as strict as its strictest step.
        let mut worst: Option<(usize, Evaluation)> = None;
        let mut permits: Vec<String> = Vec::new();
        let mut max_risk: f64 = 0.0;
        for (i, step) in plan.steps.iter().enumerate() {
            let (e, risk) = self.assess_call(
                &policies,
                &plan.principal,
                "plan",
                i as u32,
                &step.tool,
                &step.args_json,
                plan.signals,
            );
            max_risk = max_risk.max(risk);
            if e.decision == PolicyDecision::Allow {
                for id in &e.policy_ids {
                    if !permits.contains(id) {
                        permits.push(id.clone());
                    }
                }
            }
            if worst
                .as_ref()
                .is_none_or(|(_, w)| e.decision.severity() > w.decision.severity())
            {
                worst = Some((i, e));
            }
        }
        match worst {
            Some((i, e)) if e.decision != PolicyDecision::Allow => {
                let reason = format!("step {i} {}: {}", plan.steps[i].tool, e.reason);
                self.verdict(Evaluation { reason, ..e }, max_risk, version)
            }
            _ => {
                let e = Evaluation {
                    decision: PolicyDecision::Allow,
                    policy_ids: permits,
                    reason: format!("all {} steps allowed", plan.steps.len()),
                };
                self.verdict(e, max_risk, version)
            }
        }
    }

    fn review_call(&self, call: &CallReview<'_>) -> Verdict {
        let policies = self.policies();
        let (e, risk) = self.assess_call(
            &policies,
            &call.principal,
            "pre_tool",
            call.step,
            call.tool,
            call.args_json,
            call.signals,
        );
        self.verdict(e, risk, &policies.version)
    }

    fn review_response(&self, response: &ResponseReview<'_>) -> Verdict {
        let policies = self.policies();
        let risk = self.config.risk.score(
            None,
            None,
            response.signals.confidence,
            response.signals.failures,
            response.signals.anomalies.len(),
        );
        let context = vec![
            ("risk".to_string(), cedar::long(percent(risk.score))),
            (
                "confidence".to_string(),
                cedar::long(percent(response.signals.confidence)),
            ),
            (
                "citations".to_string(),
                cedar::long(response.citations as i64),
            ),
            (
                "tool_calls".to_string(),
                cedar::long(response.tool_calls as i64),
            ),
            (
                "anomalies".to_string(),
                cedar::string_set(&response.signals.anomalies),
            ),
            ("budget".to_string(), Self::budget(response.signals)),
        ];
        let e = policies.evaluate(
            &Self::principal(&response.principal),
            ACTION_SEND_RESPONSE,
            Resource::Response,
            context,
        );
        self.verdict(e, risk.score, &policies.version)
    }

    fn config(&self) -> &ControlConfig {
        &self.config
    }
}

/// Polls a control plane's policy directory and reloads it on change. Stops when dropped.
pub struct PolicyWatcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PolicyWatcher {
    pub fn spawn(plane: Arc<CedarControlPlane>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("policy-watcher".into())
            .spawn(move || {
                let mut last_error = String::new();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    match plane.reload() {
                        Ok(_) => last_error.clear(),
                        Err(e) => {
                            let text = e.to_string();
                            if text != last_error {
                                tracing::error!(error = %text, "policy change refused; keeping the running policy set");
                                last_error = text;
                            }
                        }
                    }
                }
            })
            .ok();
        PolicyWatcher { stop, handle }
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Denies everything, saying why: what runs when no policy set could be loaded.
pub struct FailClosed {
    pub reason: String,
    pub config: ControlConfig,
}

impl FailClosed {
    fn deny(&self) -> Verdict {
        Verdict {
            decision: PolicyDecision::Deny,
            policy_ids: vec!["control.unavailable".into()],
            reason: format!("no policy set loaded: {}", self.reason),
            risk_score: 1.0,
            policy_version: "none".into(),
        }
    }
}

impl ControlPlane for FailClosed {
    fn route(&self, tenant: &str, attributes: &BTreeMap<String, String>) -> RouteSelected {
        self.config.route(tenant, attributes)
    }
    fn review_plan(&self, _: &PlanReview<'_>) -> Verdict {
        self.deny()
    }
    fn review_call(&self, _: &CallReview<'_>) -> Verdict {
        self.deny()
    }
    fn review_response(&self, _: &ResponseReview<'_>) -> Verdict {
        self.deny()
    }
    fn config(&self) -> &ControlConfig {
        &self.config
    }
}
