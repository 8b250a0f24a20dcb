//! Cedar policies: loading (parse, name, validate against the generated schema, fail with the file
//! and line), and evaluating one request into an allow / require_confirmation / escalate / deny
//! decision.
//!
//! Cedar answers allow or deny. Ballast reads two more decisions from annotations on `forbid`
//! policies: `@decision("require_confirmation")` and `@decision("escalate")`; a `forbid` without one
//! denies. When several forbids are satisfied the most severe wins. `@id("...")` names a policy
//! (the name recorded in PolicyEvaluated) and `@reason("...")` says why, for people.
//! `@on_refusal("end_turn")` makes a refusal by the policy (its denial, or a person refusing the
//! confirmation it asked for) end the turn; by default (`"feedback"`) the model is told and
//! goes on with the rest of the user's task.
//! A policy that fails to evaluate counts as a `deny` (fail closed).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entity, Policy, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

pub use super::entities::PrincipalAttrs;
use super::entities::{EntityCache, Names, strings, tool_entity, uid};
use super::memo::{ContextReads, Key, Memo};
pub use super::schema::schema_text;
use super::schema::{ArgType, arg_names, arg_types};
use sha2::{Digest, Sha256};

use super::ControlError;
use crate::event::PolicyDecision;
use crate::exec::catalog::Catalog;
use crate::guard::OnRefusal;

pub const ACTION_CALL_TOOL: &str = "call_tool";
pub const ACTION_SEND_RESPONSE: &str = "send_response";
/// The id recorded when no `permit` matched.
pub const DEFAULT_DENY: &str = "cedar.default_deny";

/// The built-in policy set, used when no policy directory is configured.
pub const BUILTIN_POLICIES: &str = include_str!("builtin.cedar");

/// What a policy says when it is satisfied.
#[derive(Clone, Debug)]
struct PolicyMeta {
    decision: PolicyDecision,
    reason: Option<String>,
    /// `@on_refusal("end_turn")`: a refusal by this policy ends the turn instead of going back
    /// to the model.
    on_refusal: OnRefusal,
}

/// A validated policy set with its version.
pub struct Policies {
    pub version: String,
    pub files: Vec<PathBuf>,
    set: PolicySet,
    meta: HashMap<PolicyId, PolicyMeta>,
    schema: Schema,
    arg_types: BTreeMap<String, ArgType>,
    arg_names: std::collections::BTreeSet<String>,
    tools: HashMap<String, Entity>,
    names: Names,
    authorizer: Authorizer,
    checked: bool,
    entities: EntityCache,
    /// The `context` attributes the set reads, and its answers by request (see `memo`).
    reads: ContextReads,
    memo: Memo<Evaluation>,
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn located(file: &str, text: &str, d: &dyn Diagnostic, fallback: String) -> String {
    let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    let help = d.help().map(|h| format!(" ({h})")).unwrap_or_default();
    match offset {
        Some(o) => {
            let (line, col) = line_col(text, o);
            format!("{file}:{line}:{col}: {fallback}{help}")
        }
        None => format!("{file}: {fallback}{help}"),
    }
}

impl Policies {
    /// Loads every `*.cedar` file in `dir` (sorted by name).
    pub fn load_dir(dir: &Path, catalog: &Catalog) -> Result<Self, ControlError> {
        let io = |e: std::io::Error| ControlError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ControlError::Policy(format!(
                "{}: no *.cedar policy files",
                dir.display()
            )));
        }
        let mut sources = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| ControlError::Io {
                path: f.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((f.display().to_string(), text));
        }
        let mut p = Self::from_sources(&sources, catalog)?;
        p.files = files;
        Ok(p)
    }

    /// Parses, names and validates policy sources given as (file name, text).
    pub fn from_sources(
        sources: &[(String, String)],
        catalog: &Catalog,
    ) -> Result<Self, ControlError> {
        let text = schema_text(catalog);
        let (schema, _warnings) = Schema::from_cedarschema_str(&text)
            .map_err(|e| ControlError::Policy(format!("generated Cedar schema: {e}")))?;
        let validator = Validator::new(schema.clone());
        let mut set = PolicySet::new();
        let mut meta = HashMap::new();
        let mut hasher = Sha256::new();
        for (file, text) in sources {
            hasher.update(file.rsplit('/').next().unwrap_or(file).as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
            let parsed = PolicySet::from_str(text).map_err(|errs| {
                let msgs: Vec<String> = errs
                    .iter()
                    .map(|e| located(file, text, e, e.to_string()))
                    .collect();
                ControlError::Policy(msgs.join("\n"))
            })?;
            if parsed.templates().next().is_some() {
                return Err(ControlError::Policy(format!(
                    "{file}: policy templates are not supported; write static policies"
                )));
            }
            let stem = Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut named = PolicySet::new();
            for (i, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{stem}.policy{i}"));
                let decision = match (policy.effect(), policy.annotation("decision")) {
                    (cedar_policy::Effect::Permit, None) => PolicyDecision::Allow,
                    (cedar_policy::Effect::Permit, Some(_)) => {
                        return Err(policy_error(
                            file,
                            text,
                            policy,
                            "@decision is only meaningful on forbid policies",
                        ));
                    }
                    (cedar_policy::Effect::Forbid, None | Some("deny")) => PolicyDecision::Deny,
                    (cedar_policy::Effect::Forbid, Some("escalate")) => PolicyDecision::Escalate,
                    (cedar_policy::Effect::Forbid, Some("require_confirmation")) => {
                        PolicyDecision::RequireConfirmation
                    }
                    (cedar_policy::Effect::Forbid, Some(other)) => {
                        return Err(policy_error(
                            file,
                            text,
                            policy,
                            &format!(
                                "@decision({other:?}) must be deny, escalate or require_confirmation"
                            ),
                        ));
                    }
                };
                let on_refusal = match policy.annotation("on_refusal") {
                    None | Some("feedback") => OnRefusal::Feedback,
                    Some("end_turn") => OnRefusal::EndTurn,
                    Some(other) => {
                        return Err(policy_error(
                            file,
                            text,
                            policy,
                            &format!("@on_refusal({other:?}) must be feedback or end_turn"),
                        ));
                    }
                };
                let pid = PolicyId::new(&id);
                if meta.contains_key(&pid) {
                    return Err(policy_error(
                        file,
                        text,
                        policy,
                        &format!("duplicate policy id {id:?}"),
                    ));
                }
                meta.insert(
                    pid.clone(),
                    PolicyMeta {
                        decision,
                        reason: policy.annotation("reason").map(str::to_owned),
                        on_refusal,
                    },
                );
                let renamed: Policy = policy.new_id(pid);
                named
                    .add(renamed.clone())
                    .map_err(|e| ControlError::Policy(format!("{file}: {e}")))?;
                set.add(renamed)
                    .map_err(|e| ControlError::Policy(format!("{file}: {e}")))?;
            }
            let result = validator.validate(&named, ValidationMode::Strict);
            if !result.validation_passed() {
                let msgs: Vec<String> = result
                    .validation_errors()
                    .map(|e| located(file, text, e, e.to_string()))
                    .collect();
                return Err(ControlError::Policy(msgs.join("\n")));
            }
        }
        let digest = hasher.finalize();
        let version = format!(
            "sha256:{}",
            hex::encode(digest.get(..6).unwrap_or_default())
        );
        let tools = catalog
            .iter()
            .filter_map(|t| tool_entity(t).ok().map(|e| (t.name.clone(), e)))
            .collect();
        let reads = super::memo::context_reads(set.policies().map(|p| p.to_json().ok()));
        Ok(Policies {
            version,
            files: Vec::new(),
            set,
            meta,
            schema,
            arg_types: arg_types(catalog),
            arg_names: arg_names(catalog),
            tools,
            names: Names::new(ACTION_CALL_TOOL, ACTION_SEND_RESPONSE)
                .map_err(ControlError::Policy)?,
            authorizer: Authorizer::new(),
            checked: false,
            entities: EntityCache::default(),
            reads,
            memo: Memo::default(),
        })
    }

    /// What a refusal by these policies does: `end_turn` if one of them says so, or if the
    /// decision came from a policy set that could not be evaluated (fail closed).
    pub fn on_refusal(&self, ids: &[String]) -> OnRefusal {
        let ends = ids.iter().any(|id| {
            matches!(
                id.as_str(),
                "cedar.evaluation_error" | "cedar.request_invalid"
            ) || self
                .meta
                .get(&PolicyId::new(id))
                .is_some_and(|m| m.on_refusal == OnRefusal::EndTurn)
        });
        if ends {
            OnRefusal::EndTurn
        } else {
            OnRefusal::Feedback
        }
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The memo key of a `call_tool` review: who asks, the tool, and the value `value` writes
    /// for each `context` attribute the set reads (`value` returns false when an attribute's
    /// value cannot be keyed). `None`: this review's answer is not to be reused.
    pub(super) fn call_memo_key(
        &self,
        p: &PrincipalAttrs<'_>,
        tool: &str,
        mut value: impl FnMut(&str, &mut Key) -> bool,
    ) -> Option<Vec<u8>> {
        if self.checked {
            return None;
        }
        let ContextReads::Only(attrs) = &self.reads else {
            return None;
        };
        let mut k = Key::default();
        k.part(ACTION_CALL_TOOL)
            .part(tool)
            .part(p.tenant)
            .part(p.user_id)
            .part(p.channel)
            .list(&p.roles)
            .list(&p.scopes);
        for a in attrs {
            k.part(a);
            if !value(a, &mut k) {
                return None;
            }
        }
        Some(k.finish())
    }

    pub(super) fn remembered(&self, key: &[u8]) -> Option<Evaluation> {
        self.memo.get(key)
    }

    pub(super) fn remember(&self, key: Vec<u8>, e: &Evaluation) {
        self.memo.put(key, e.clone());
    }

    /// Answers remembered, and the `context` attributes the set reads.
    #[cfg(test)]
    pub(super) fn memo_state(&self) -> (usize, ContextReads) {
        (self.memo.len(), self.reads.clone())
    }

    /// (user, tool) pairs whose Cedar entities are cached.
    #[cfg(test)]
    pub(super) fn cached_entities(&self) -> usize {
        self.entities.len()
    }

    /// Cedar's `args` record for a call: arguments the schema types, each of the right type.
    /// An argument of the wrong type is an error (it would silently skip the policies about it).
    pub fn args_record(
        &self,
        args: Option<&serde_json::Value>,
    ) -> Result<RestrictedExpression, String> {
        let mut fields = Vec::new();
        if let Some(obj) = args.and_then(|a| a.as_object()) {
            for (name, value) in obj {
                let Some(ty) = self.arg_types.get(name) else {
                    continue;
                };
                let expr = match (ty, value) {
                    (ArgType::Long, v) if v.as_i64().is_some() => {
                        RestrictedExpression::new_long(v.as_i64().unwrap_or_default())
                    }
                    (ArgType::String, serde_json::Value::String(s)) => {
                        RestrictedExpression::new_string(s.clone())
                    }
                    (ArgType::Bool, serde_json::Value::Bool(b)) => {
                        RestrictedExpression::new_bool(*b)
                    }
                    (ArgType::StringSet, serde_json::Value::Array(items))
                        if items.iter().all(|i| i.is_string()) =>
                    {
                        RestrictedExpression::new_set(
                            items
                                .iter()
                                .filter_map(|i| i.as_str())
                                .map(|i| RestrictedExpression::new_string(i.to_string())),
                        )
                    }
                    (ArgType::Decimal, serde_json::Value::Number(n)) => match n.as_f64() {
                        // Cedar's decimal: four places, within ±922,337,203,685,477.
                        Some(x) if x.is_finite() && x.abs() < 9.2e14 => {
                            RestrictedExpression::new_decimal(format!("{x:.4}"))
                        }
                        _ => return Err(format!("argument {name} = {n} is out of decimal range")),
                    },
                    (ty, v) => return Err(format!("argument {name} = {v} is not a {ty:?}")),
                };
                fields.push((name.clone(), expr));
            }
        }
        RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
    }

    /// Cedar's `provenance` record and `unvouched_args` set for a call: for each argument, the
    /// origins of its values (see `guard::provenance`).
    pub fn provenance_context(
        &self,
        provenance: Option<&crate::guard::provenance::CallProvenance>,
    ) -> Result<Vec<(String, RestrictedExpression)>, String> {
        let mut fields = Vec::new();
        let mut unvouched = Vec::new();
        if let Some(p) = provenance {
            for arg in p.args.keys().filter(|a| self.arg_names.contains(*a)) {
                let labels: Vec<String> = p.labels(arg).into_iter().collect();
                fields.push((arg.clone(), string_set(&labels)));
            }
            unvouched = p.unvouched_args();
        }
        Ok(vec![
            (
                "provenance".to_string(),
                RestrictedExpression::new_record(fields).map_err(|e| e.to_string())?,
            ),
            ("unvouched_args".to_string(), string_set(&unvouched)),
        ])
    }

    /// Evaluates one request. `context` pairs must match the action's context type.
    pub fn evaluate(
        &self,
        principal: &PrincipalAttrs<'_>,
        action: &str,
        resource: Resource<'_>,
        context: Vec<(String, RestrictedExpression)>,
    ) -> Evaluation {
        match self.try_evaluate(principal, action, resource, context, self.checked) {
            Ok(e) => e,
            Err(message) => Evaluation {
                decision: PolicyDecision::Deny,
                policy_ids: vec!["cedar.request_invalid".into()],
                reason: format!("policy request could not be built: {message}"),
            },
        }
    }

    /// Evaluates with the request checked against the schema, whatever the set's setting: an
    /// error names what does not conform.
    pub fn evaluate_checked(
        &self,
        principal: &PrincipalAttrs<'_>,
        action: &str,
        resource: Resource<'_>,
        context: Vec<(String, RestrictedExpression)>,
    ) -> Result<Evaluation, String> {
        self.try_evaluate(principal, action, resource, context, true)
    }

    /// Checks every request against the schema (about a third of a review's cost). Off by
    /// default: requests are built by `CedarControlPlane` alone, with types fixed by code and the
    /// catalog, and the control-plane tests check that they conform.
    pub fn check_requests(mut self, on: bool) -> Self {
        self.checked = on;
        self
    }

    fn try_evaluate(
        &self,
        principal: &PrincipalAttrs<'_>,
        action: &str,
        resource: Resource<'_>,
        context: Vec<(String, RestrictedExpression)>,
        checked: bool,
    ) -> Result<Evaluation, String> {
        let (resource_uid, built) = match resource {
            Resource::Tool(name) => {
                let e = self
                    .tools
                    .get(name)
                    .ok_or_else(|| format!("tool {name} is not in the catalog"))?;
                let built = self.entities.get(&self.names, principal, name, Some(e))?;
                (e.uid(), built)
            }
            Resource::Response => (
                self.names.response.clone(),
                self.entities.get(&self.names, principal, "", None)?,
            ),
        };
        let (principal_uid, entities) = (built.principal.clone(), &built.entities);
        let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
        let request = Request::new(
            principal_uid,
            match action {
                ACTION_CALL_TOOL => self.names.call_tool.clone(),
                ACTION_SEND_RESPONSE => self.names.send_response.clone(),
                other => uid("Action", other)?,
            },
            resource_uid,
            context,
            checked.then_some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        let response = self.authorizer.is_authorized(&request, &self.set, entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            return Ok(Evaluation {
                decision: PolicyDecision::Deny,
                policy_ids: vec!["cedar.evaluation_error".into()],
                reason: format!(
                    "a policy failed to evaluate (fail closed): {}",
                    errors.join("; ")
                ),
            });
        }
        let mut ids: Vec<&PolicyId> = response.diagnostics().reason().collect();
        ids.sort_by_key(|id| id.to_string());
        if response.decision() == Decision::Allow {
            let reason = ids
                .iter()
                .filter_map(|id| self.meta.get(*id).and_then(|m| m.reason.clone()))
                .next()
                .unwrap_or_else(|| "permitted".into());
            return Ok(Evaluation {
                decision: PolicyDecision::Allow,
                policy_ids: ids.iter().map(|id| id.to_string()).collect(),
                reason,
            });
        }
        if ids.is_empty() {
            return Ok(Evaluation {
                decision: PolicyDecision::Deny,
                policy_ids: vec![DEFAULT_DENY.into()],
                reason: "no permit policy matched".into(),
            });
        }
        let worst = ids
            .iter()
            .filter_map(|id| self.meta.get(*id))
            .map(|m| m.decision)
            .max_by_key(|d| d.severity())
            .unwrap_or(PolicyDecision::Deny);
        let deciding: Vec<&PolicyId> = ids
            .into_iter()
            .filter(|id| self.meta.get(*id).is_none_or(|m| m.decision == worst))
            .collect();
        let reason = deciding
            .iter()
            .map(|id| {
                self.meta
                    .get(*id)
                    .and_then(|m| m.reason.clone())
                    .unwrap_or_else(|| format!("forbidden by {id}"))
            })
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Evaluation {
            decision: worst,
            policy_ids: deciding.iter().map(|id| id.to_string()).collect(),
            reason,
        })
    }
}

#[derive(Clone, Copy)]
pub enum Resource<'a> {
    Tool(&'a str),
    Response,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub decision: PolicyDecision,
    pub policy_ids: Vec<String>,
    pub reason: String,
}

fn policy_error(file: &str, text: &str, policy: &Policy, message: &str) -> ControlError {
    // Cedar keeps no public source location on a policy; its @id annotation finds it.
    let at = policy
        .annotation("id")
        .and_then(|id| text.find(&format!("@id(\"{id}\")")))
        .map(|o| {
            let (line, col) = line_col(text, o);
            format!("{file}:{line}:{col}")
        })
        .unwrap_or_else(|| file.to_string());
    ControlError::Policy(format!("{at}: {message}"))
}

pub(crate) fn long(x: i64) -> RestrictedExpression {
    RestrictedExpression::new_long(x)
}

pub(crate) fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

pub(crate) fn string_set(items: &[String]) -> RestrictedExpression {
    strings(items)
}

pub(crate) fn record(fields: Vec<(&str, RestrictedExpression)>) -> RestrictedExpression {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_string(), v)))
        .unwrap_or_else(|_| RestrictedExpression::new_bool(false))
}
