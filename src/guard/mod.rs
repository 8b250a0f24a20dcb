//! Guardrails: circuit breakers at four checkpoints where damage can occur.
//!
//! - pre-tool: the tool exists, its arguments satisfy its JSON schema, the caller holds its auth
//!   scopes, its key arguments are grounded in the turn (hallucination with action), no PII in
//!   the arguments; then the control plane's policy;
//! - mid-plan: step limit, repeated identical calls (loops), retries per tool, per-tool circuit
//!   breakers across turns;
//! - post-tool: the result satisfies its schema and the catalog's anomaly checks; retrieved
//!   documents are fresh and agree with each other;
//! - pre-response: PII and secret redaction, citations name documents retrieved in this turn,
//!   policy lint.
//!
//! Each guard is a pure function returning a [`Trip`] when it fires; `decide` records it as
//! GuardrailTripped and acts on its verdict (modify, deny, escalate).

pub mod breaker;
pub mod checks;
pub mod corpus;
pub(crate) mod detect;
pub mod grounding;
pub mod provenance;
pub mod redact;
pub mod schema;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::event::{EscalationRung, GuardVerdict};
use crate::exec::catalog::Catalog;

pub use breaker::{BreakerConfig, Breakers};
pub use redact::{Found, Redactor, iban_valid, luhn};

/// A redaction pattern from configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPattern {
    pub name: String,
    pub regex: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// The same tool with the same arguments this many times in one turn is a loop.
    pub repeat_limit: usize,
    /// Attempts of one tool within a turn, all calls together.
    pub retries_per_tool: i32,
    pub breaker: BreakerConfig,
    /// Retrieved documents older than this are stale.
    pub max_doc_age_ms: i64,
    /// Block calls whose key arguments appear nowhere in the turn.
    pub grounding: bool,
    pub redact_patterns: Vec<NamedPattern>,
    /// Phrases a reply must not contain (case-insensitive): commitments the agent may not make.
    pub forbidden_phrases: Vec<String>,
    /// The escalation ladder, tried in this order.
    pub ladder: Vec<EscalationRung>,
    /// The planner profile the `specialist` rung re-plans with.
    pub specialist_profile: String,
    /// How long a human handoff may stay unresolved before the turn ends as escalation_failed.
    pub handoff_ttl_ms: i64,
    /// Documents a constrained retry keeps.
    pub constrained_documents: usize,
    /// A turn's model spend may grow by this much per loop step before the mid-plan guard
    /// stops it (`loop.cost_growth`): step k may be asked while the spend is at most k × this.
    /// 0: off.
    pub step_cost_micros: i64,
    /// Treat IPv4 and IPv6 addresses as personal data (off: they are usually infrastructure).
    pub redact_ip_addresses: bool,
    /// Where argument values came from: the untrusted-sink, exfiltration, untrusted-content
    /// and untrusted-instruction rules (`[control.guards.provenance]`).
    pub provenance: provenance::rules::ProvenanceConfig,
    /// What the guards' refusals of a call do (`[control.guards.on_refusal]`).
    pub on_refusal: GuardsOnRefusal,
    /// Refusals fed back to the model in one turn; past this many the model is taken not to be
    /// getting anywhere, and a refusal ends the turn or climbs the ladder as with `end_turn`.
    pub max_refusals: u32,
}

/// What happens to the turn when something refuses one of its calls: a policy's denial, a
/// guard's, a provenance rule's, or a person's refusal to confirm it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRefusal {
    /// The call is recorded as refused (`CallRefused`) and the model is told, as the call's
    /// error, that it did not run and why; the loop goes on with the rest of the user's task.
    #[default]
    Feedback,
    /// Not fed back: a denial ends the turn (denied), an escalation climbs the ladder.
    EndTurn,
}

/// `[control.guards.on_refusal]`: the pre-tool guards that can refuse a call the model could do
/// without (or do differently).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardsOnRefusal {
    /// `hallucination.*`: a key argument found nowhere in the turn.
    pub grounding: OnRefusal,
    /// `args.json`, `args.schema`: arguments that do not fit the tool's schema.
    pub schema: OnRefusal,
    /// `auth.scopes`: the user lacks a scope the tool needs.
    pub scopes: OnRefusal,
    /// `tool.exists`: a tool that is not in the catalog.
    pub unknown_tool: OnRefusal,
}

impl GuardsOnRefusal {
    /// The setting for a guard rule id; `None` for rules no setting covers (they are not
    /// refusals the model can work around: a broken schema, a breaker, a loop).
    pub fn for_rule(&self, rule: &str) -> Option<OnRefusal> {
        if rule.starts_with("hallucination.") {
            Some(self.grounding)
        } else if matches!(rule, "args.json" | "args.schema" | "control.args") {
            Some(self.schema)
        } else if rule == "auth.scopes" {
            Some(self.scopes)
        } else if matches!(rule, "tool.exists" | "control.tool_exists") {
            Some(self.unknown_tool)
        } else {
            None
        }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            repeat_limit: 3,
            retries_per_tool: 6,
            breaker: BreakerConfig::default(),
            max_doc_age_ms: 400 * 24 * 3_600_000,
            grounding: true,
            redact_patterns: Vec::new(),
            forbidden_phrases: Vec::new(),
            ladder: vec![
                EscalationRung::ConstrainedRetry,
                EscalationRung::Specialist,
                EscalationRung::UserConfirmation,
                EscalationRung::HumanHandoff,
            ],
            specialist_profile: "specialist".into(),
            handoff_ttl_ms: 30 * 60 * 1000,
            constrained_documents: 1,
            step_cost_micros: 0,
            redact_ip_addresses: false,
            provenance: provenance::rules::ProvenanceConfig::default(),
            on_refusal: GuardsOnRefusal::default(),
            max_refusals: 5,
        }
    }
}

/// A guard that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Trip {
    pub guard: &'static str,
    pub rule: String,
    pub verdict: GuardVerdict,
    pub detail: String,
    pub hallucination: bool,
}

impl Trip {
    pub fn new(
        guard: &'static str,
        rule: impl Into<String>,
        verdict: GuardVerdict,
        detail: impl Into<String>,
    ) -> Self {
        Trip {
            guard,
            rule: rule.into(),
            verdict,
            detail: detail.into(),
            hallucination: false,
        }
    }
}

/// Everything the guards need, compiled once: schemas, patterns, configuration.
pub struct Guards {
    pub config: GuardConfig,
    pub schemas: schema::Schemas,
    pub redactor: Redactor,
}

impl Guards {
    /// Compiles the guards; an invalid redaction pattern is an error (checked when the
    /// configuration loads).
    pub fn new(config: GuardConfig, catalog: &Catalog) -> Result<Self, String> {
        Ok(Guards {
            schemas: schema::Schemas::compile(catalog),
            redactor: Redactor::with_options(&config.redact_patterns, config.redact_ip_addresses)?,
            config,
        })
    }

    /// The guards for `config`, or, if its patterns do not compile, the defaults (logged).
    pub fn or_default(config: GuardConfig, catalog: &Catalog) -> Self {
        Guards::new(config, catalog).unwrap_or_else(|e| {
            tracing::error!(error = %e, "guard configuration invalid; using the defaults");
            Guards {
                schemas: schema::Schemas::compile(catalog),
                redactor: Redactor::builtin(),
                config: GuardConfig::default(),
            }
        })
    }
}
