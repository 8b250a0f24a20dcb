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
use super::risk::{Risk, percent};
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
    catalog: Catalog,
    dir: Option<PathBuf>,
    /// Whether the configuration came from the directory's `control.toml` (re-read on reload)
    /// rather than from the deployment file or the defaults (fixed).
    config_from_dir: bool,
    active: RwLock<Arc<Active>>,
}

/// The policy set and control configuration in force, and the version naming both.
struct Active {
    policies: Arc<Policies>,
    config: Arc<ControlConfig>,
    version: String,
    /// A digest of the directory's files as read, so an unchanged directory is not compiled
    /// again on every poll.
    sources: Option<[u8; 32]>,
}

/// A digest of the names and bytes of a policy directory's `*.cedar` files and `control.toml`.
fn dir_digest(dir: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "cedar")
                || p.file_name().is_some_and(|n| n == CONFIG_FILE)
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(b"\0");
        h.update(std::fs::read(&f).ok()?);
        h.update(b"\0");
    }
    Some(h.finalize().into())
}

impl Active {
    /// The version covers the Cedar files and the control configuration (risk thresholds,
    /// budgets, routing, ladder): a backtest can tell when either changed.
    fn new(policies: Policies, config: ControlConfig) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(policies.version.as_bytes());
        h.update(b"\0");
        h.update(serde_json::to_vec(&config).unwrap_or_default());
        let version = format!(
            "sha256:{}",
            hex::encode(h.finalize().get(..6).unwrap_or_default())
        );
        Active {
            policies: Arc::new(policies),
            config: Arc::new(config),
            version,
            sources: None,
        }
    }
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

    /// A plane over a policy set and a fixed configuration; with `dir`, the Cedar files there
    /// are reloaded on change.
    pub fn new(
        config: ControlConfig,
        catalog: Catalog,
        policies: Policies,
        dir: Option<PathBuf>,
    ) -> Self {
        CedarControlPlane {
            catalog,
            dir,
            config_from_dir: false,
            active: RwLock::new(Arc::new(Active::new(policies, config))),
        }
    }

    /// Loads `dir/*.cedar` and `dir/control.toml` (defaults when absent). Any error refuses the
    /// whole directory. Both are reloaded on change.
    pub fn load(dir: &Path, catalog: Catalog) -> Result<Self, ControlError> {
        let sources = dir_digest(dir);
        let (policies, config) = Self::read_dir(dir, &catalog)?;
        let mut active = Active::new(policies, config);
        active.sources = sources;
        Ok(CedarControlPlane {
            catalog,
            dir: Some(dir.to_path_buf()),
            config_from_dir: true,
            active: RwLock::new(Arc::new(active)),
        })
    }

    fn read_dir(dir: &Path, catalog: &Catalog) -> Result<(Policies, ControlConfig), ControlError> {
        let config_path = dir.join(CONFIG_FILE);
        let config = if config_path.exists() {
            ControlConfig::load(&config_path)?
        } else {
            ControlConfig::default()
        };
        Ok((Policies::load_dir(dir, catalog)?, config))
    }

    fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(a) => Arc::clone(&a),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn policies(&self) -> Arc<Policies> {
        Arc::clone(&self.active().policies)
    }

    /// The version of the policy set and configuration in force (recorded in every decision).
    pub fn version(&self) -> String {
        self.active().version.clone()
    }

    /// Re-reads the policy directory (and its `control.toml`, when the configuration came from
    /// it). Returns the new version when something changed; an invalid change is refused and
    /// the running set kept.
    pub fn reload(&self) -> Result<Option<String>, ControlError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let current = self.active();
        let sources = dir_digest(dir);
        if sources.is_some() && sources == current.sources {
            return Ok(None);
        }
        let mut fresh = if self.config_from_dir {
            let (policies, config) = Self::read_dir(dir, &self.catalog)?;
            Active::new(policies, config)
        } else {
            Active::new(
                Policies::load_dir(dir, &self.catalog)?,
                (*current.config).clone(),
            )
        };
        fresh.sources = sources;
        if fresh.version == current.version {
            // Same meaning (a comment or whitespace changed): keep the running set, remember
            // the files so they are not compiled again.
            let same = Active {
                policies: Arc::clone(&current.policies),
                config: Arc::clone(&current.config),
                version: current.version.clone(),
                sources,
            };
            match self.active.write() {
                Ok(mut a) => *a = Arc::new(same),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(same),
            }
            return Ok(None);
        }
        let version = fresh.version.clone();
        match self.active.write() {
            Ok(mut a) => *a = Arc::new(fresh),
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
        active: &Active,
        principal: &Principal<'_>,
        checkpoint: &str,
        step: u32,
        tool: &str,
        args_json: &str,
        signals: &Signals,
        provenance: Option<&crate::guard::provenance::CallProvenance>,
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
        let (policies, config) = (&active.policies, &active.config);
        let args: Option<serde_json::Value> = serde_json::from_str(args_json).ok();
        let risk = config.risk.score(
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
        let provenance_pairs = match policies.provenance_context(provenance) {
            Ok(p) => p,
            Err(e) => return (deny(RULE_ARGS, e), risk.score),
        };
        let who = Self::principal(principal);
        // The same question as an earlier review (everything the policies read agrees): the
        // same answer, without building the context again.
        let memo_key = policies.call_memo_key(&who, tool, |attr, k| {
            match attr {
                "checkpoint" => k.part(checkpoint),
                "step" => k.part(&step.to_string()),
                "args" => k.part(&args_value.to_string()),
                "features" => k.list(&risk.features),
                "risk" => k.part(&percent(risk.score).to_string()),
                "confidence" => k.part(&percent(signals.confidence).to_string()),
                "failures" => k.part(&signals.failures.to_string()),
                "anomalies" => k.list(&signals.anomalies),
                "budget" => k.list(&[
                    signals.budget.cost_micros.to_string(),
                    signals.budget.tokens.to_string(),
                    signals.budget.tool_calls.to_string(),
                ]),
                "model_step" => k.part(&signals.model_step.to_string()),
                "prior_tools" => k.list(&signals.prior_tools),
                // Origins are rich (labels per argument): such a set is asked every time.
                "provenance" | "unvouched_args" => return false,
                // Not in a call's context: absent from every call review alike.
                _ => k.part("\0absent"),
            };
            true
        });
        let remembered = memo_key.as_deref().and_then(|k| policies.remembered(k));
        let mut eval = match remembered {
            Some(e) => e,
            None => {
                let e = self.evaluate_call(
                    policies,
                    &who,
                    checkpoint,
                    step,
                    tool,
                    args_record,
                    &risk,
                    signals,
                    provenance_pairs,
                );
                if let Some(k) = memo_key {
                    policies.remember(k, &e);
                }
                e
            }
        };
        if let Some((decision, rule, at)) = config.risk.decision(risk.score) {
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

    /// Cedar's answer for one call review: the context built and evaluated.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_call(
        &self,
        policies: &Policies,
        who: &PrincipalAttrs<'_>,
        checkpoint: &str,
        step: u32,
        tool: &str,
        args_record: RestrictedExpression,
        risk: &Risk,
        signals: &Signals,
        provenance: Vec<(String, RestrictedExpression)>,
    ) -> Evaluation {
        let mut context = vec![
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
            (
                "model_step".to_string(),
                cedar::long(i64::from(signals.model_step)),
            ),
            (
                "prior_tools".to_string(),
                cedar::string_set(&signals.prior_tools),
            ),
        ];
        context.extend(provenance);
        policies.evaluate(who, ACTION_CALL_TOOL, Resource::Tool(tool), context)
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
        self.active().config.route(tenant, attributes)
    }

    fn review_plan(&self, plan: &PlanReview<'_>) -> Verdict {
        let active = self.active();
        let version = active.version.as_str();
        let max_steps = active.config.max_plan_steps;
        if plan.steps.len() > max_steps {
            let e = Evaluation {
                decision: PolicyDecision::Deny,
                policy_ids: vec![RULE_STEP_LIMIT.into()],
                reason: format!("plan has {} steps, limit is {max_steps}", plan.steps.len(),),
            };
            return self.verdict(e, 1.0, version);
        }
        // The plan is as strict as its strictest step.
        let mut worst: Option<(usize, &str, Evaluation)> = None;
        let mut permits: Vec<String> = Vec::new();
        let mut max_risk: f64 = 0.0;
        for (i, step) in plan.steps.iter().enumerate() {
            let (e, risk) = self.assess_call(
                &active,
                &plan.principal,
                "plan",
                i as u32,
                &step.tool,
                &step.args_json,
                plan.signals,
                None,
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
                .is_none_or(|(_, _, w)| e.decision.severity() > w.decision.severity())
            {
                worst = Some((i, &step.tool, e));
            }
        }
        match worst {
            Some((i, tool, e)) if e.decision != PolicyDecision::Allow => {
                let reason = format!("step {i} {tool}: {}", e.reason);
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
        let active = self.active();
        let (e, risk) = self.assess_call(
            &active,
            &call.principal,
            "pre_tool",
            call.step,
            call.tool,
            call.args_json,
            call.signals,
            call.provenance,
        );
        self.verdict(e, risk, &active.version)
    }

    fn on_refusal(&self, policy_ids: &[String]) -> crate::guard::OnRefusal {
        // A plan over the step limit is not one call the model could do without.
        if policy_ids.iter().any(|id| id == RULE_STEP_LIMIT) {
            return crate::guard::OnRefusal::EndTurn;
        }
        self.active().policies.on_refusal(policy_ids)
    }

    fn review_response(&self, response: &ResponseReview<'_>) -> Verdict {
        let active = self.active();
        let policies = &active.policies;
        let risk = active.config.risk.score(
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
        self.verdict(e, risk.score, &active.version)
    }

    fn config(&self) -> Arc<ControlConfig> {
        Arc::clone(&self.active().config)
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
    pub config: Arc<ControlConfig>,
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
    fn on_refusal(&self, _: &[String]) -> crate::guard::OnRefusal {
        crate::guard::OnRefusal::EndTurn
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
    fn config(&self) -> Arc<ControlConfig> {
        Arc::clone(&self.config)
    }
}
