//! The built-in provenance rules, each switchable and tuned in `[control.guards.provenance]`
//! and recorded with its id:
//!
//! - `provenance.untrusted_sink`: a value of a sink argument (where money, data or an
//!   invitation goes) that only untrusted content — an untrusted tool's output, a retrieved
//!   document — could have supplied, or that appears nowhere in the turn;
//! - `provenance.exfiltration`: a value read from a `sensitive_output` tool going into a sink, or
//!   sent along with a destination the user did not give — unless it says little about its
//!   source (a date, a time, a small number, a few short words) or the user typed it;
//! - `provenance.untrusted_content`: a write (impact above none) whose other arguments carry
//!   text from untrusted content — values named by text that addresses the model, or text
//!   copied from an untrusted output the user did not ask to copy from;
//! - `provenance.untrusted_instruction`: content addressing the model with instructions, in any
//!   output (trusted or not) or document. Recorded as a guard trip; it decides nothing alone,
//!   but the field it is found in is untrusted and its values count as the attacker's.
//!
//! Sinks are the catalog's `sinks` plus every URL argument (a URL sent to a tool goes to its
//! host: a fetch is a destination), and a link anywhere in what a write sends.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::PolicyDecision;
use crate::exec::catalog::{Impact, ToolSpec};

use super::atoms::{Atom, low_information, trivial};
use super::{CallProvenance, Origin, Traced};

pub const UNTRUSTED_SINK: &str = "provenance.untrusted_sink";
pub const EXFILTRATION: &str = "provenance.exfiltration";
pub const UNTRUSTED_INSTRUCTION: &str = "provenance.untrusted_instruction";
pub const UNTRUSTED_CONTENT: &str = "provenance.untrusted_content";

/// What a rule decides when it trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDecision {
    #[default]
    RequireConfirmation,
    Deny,
    Escalate,
    /// The rule is switched off.
    Off,
}

impl RuleDecision {
    pub fn decision(self) -> Option<PolicyDecision> {
        match self {
            RuleDecision::RequireConfirmation => Some(PolicyDecision::RequireConfirmation),
            RuleDecision::Deny => Some(PolicyDecision::Deny),
            RuleDecision::Escalate => Some(PolicyDecision::Escalate),
            RuleDecision::Off => None,
        }
    }
}

pub use crate::guard::OnRefusal;

/// `on_refusal`, per rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnRefusalByRule {
    pub untrusted_sink: OnRefusal,
    pub exfiltration: OnRefusal,
    pub untrusted_content: OnRefusal,
}

impl OnRefusalByRule {
    /// The setting for a provenance rule id (`None`: not one of them).
    pub fn for_rule(&self, rule: &str) -> Option<OnRefusal> {
        match rule {
            UNTRUSTED_SINK => Some(self.untrusted_sink),
            EXFILTRATION => Some(self.exfiltration),
            UNTRUSTED_CONTENT => Some(self.untrusted_content),
            _ => None,
        }
    }
}

/// `[control.guards.provenance]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// `require_confirmation` (default), `deny`, `escalate` or `off`.
    pub untrusted_sink: RuleDecision,
    /// `deny` (default), `require_confirmation`, `escalate` or `off`.
    pub exfiltration: RuleDecision,
    /// `require_confirmation` (default), `deny`, `escalate` or `off`.
    pub untrusted_content: RuleDecision,
    /// Record untrusted content that addresses the model with instructions.
    pub untrusted_instruction: bool,
    /// Retrieved documents count as trusted content (default: untrusted, like a web page).
    pub trust_documents: bool,
    pub on_refusal: OnRefusalByRule,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        ProvenanceConfig {
            untrusted_sink: RuleDecision::RequireConfirmation,
            exfiltration: RuleDecision::Deny,
            untrusted_content: RuleDecision::RequireConfirmation,
            untrusted_instruction: true,
            trust_documents: false,
            on_refusal: OnRefusalByRule::default(),
        }
    }
}

/// A rule that tripped on a call.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub decision: PolicyDecision,
    pub on_refusal: OnRefusal,
    /// Said to the approver, recorded in the decision, and fed back to the model on refusal.
    pub detail: String,
}

fn vouched(o: &BTreeSet<Origin>, cfg: &ProvenanceConfig) -> bool {
    o.iter().any(|o| {
        (o.vouched() && !o.instructed())
            || (cfg.trust_documents
                && matches!(
                    o,
                    Origin::Document {
                        instructed: false,
                        ..
                    }
                ))
    })
}

fn from(t: &Traced) -> String {
    let list: Vec<String> = t.origins.iter().map(Origin::describe).collect();
    list.join(", ")
}

const URL_ARGS: [&str; 9] = [
    "url", "uri", "link", "href", "website", "webpage", "web_page", "page_url", "site",
];

/// The arguments that send something somewhere: the catalog's sinks, and every URL argument
/// (named like one, or whose values are all links): a URL sent to a tool goes to its host.
pub fn sink_args(spec: &ToolSpec, prov: &CallProvenance) -> Vec<String> {
    let mut out = spec.sinks.clone();
    for (arg, values) in &prov.args {
        let whole: Vec<&Traced> = values.iter().filter(|t| !t.part && !t.passage).collect();
        let named = URL_ARGS.contains(&arg.to_lowercase().as_str());
        let links = !whole.is_empty() && whole.iter().all(|t| is_link(&t.value));
        if (named || links) && !out.contains(arg) {
            out.push(arg.clone());
        }
    }
    out
}

/// Why `t` is the attacker's choice although something vouches for it, if it is: text that
/// addresses the model names it and it is specific (an id, an address, a code, a name of
/// several words — not a lone short word, a date or an amount, which an attacker's text and
/// the user's task share by chance); or the call is high-impact and the value appears in such
/// text, or in any free text someone else wrote ("TODO: delete the file with ID 13").
fn tainted(t: &Traced, spec: &ToolSpec, cfg: &ProvenanceConfig) -> Option<String> {
    let high = spec.impact >= Impact::High;
    if t.instructed() {
        let atom = atom_of(t);
        let specific = t.passage
            || !low_information(&atom)
            || (matches!(atom, Atom::Text(ref v) if v.split_whitespace().count() >= 2));
        if !vouched(&t.origins, cfg) || specific || high {
            return Some(format!(
                "is named by text that addresses the model ({}), not by the user",
                from(t)
            ));
        }
    }
    (high && t.in_text).then(|| {
        format!(
            "appears in text someone else wrote ({}), not in the user's request, and the call is high-impact",
            from(t)
        )
    })
}

/// A tool that changes something (anything above `impact = "none"`).
fn writes(spec: &ToolSpec) -> bool {
    spec.impact > Impact::None
}

/// The rules that trip on a call, most severe first.
pub fn check(
    spec: &ToolSpec,
    prov: &CallProvenance,
    sensitive: &dyn Fn(&str) -> bool,
    cfg: &ProvenanceConfig,
) -> Vec<Finding> {
    let sinks = sink_args(spec, prov);
    let mut out = Vec::new();
    if let Some(decision) = cfg.untrusted_sink.decision() {
        let why = untrusted_sinks(spec, prov, &sinks, cfg);
        if !why.is_empty() {
            out.push(Finding {
                rule: UNTRUSTED_SINK,
                decision,
                on_refusal: cfg.on_refusal.untrusted_sink,
                detail: why.join("; "),
            });
        }
    }
    if let Some(decision) = cfg.exfiltration.decision() {
        let why = exfiltration(spec, prov, &sinks, sensitive);
        // Refused outright when the destination is the attacker's for sure — named by text
        // that addresses the model, or found nowhere; otherwise (a contact, an address from
        // someone's message) a person decides, rather than a refusal of what may well be the
        // user's own task.
        let attacker_destination = sinks.iter().any(|arg| {
            prov.args.get(arg).is_some_and(|vs| {
                vs.iter()
                    .filter(|t| !t.passage)
                    .any(|t| !t.from_user() && (t.nowhere() || t.instructed()))
            })
        });
        let decision = if !attacker_destination && severity(decision) > 1 {
            PolicyDecision::RequireConfirmation
        } else {
            decision
        };
        if !why.is_empty() {
            out.push(Finding {
                rule: EXFILTRATION,
                decision,
                on_refusal: cfg.on_refusal.exfiltration,
                detail: why.join("; "),
            });
        }
    }
    if let Some(decision) = cfg.untrusted_content.decision()
        && writes(spec)
    {
        let why = untrusted_content(spec, prov, &sinks, cfg);
        if !why.is_empty() {
            out.push(Finding {
                rule: UNTRUSTED_CONTENT,
                decision,
                on_refusal: cfg.on_refusal.untrusted_content,
                detail: why.join("; "),
            });
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(severity(f.decision)));
    out
}

fn untrusted_sinks(
    spec: &ToolSpec,
    prov: &CallProvenance,
    sinks: &[String],
    cfg: &ProvenanceConfig,
) -> Vec<String> {
    let mut why = Vec::new();
    for arg in sinks {
        // A page fetched (a read) from a link in what the turn read is how browsing works:
        // held only when the link was copied out of someone's text the user did not point
        // at, or named by text that addresses the model.
        let browsing = !writes(spec) && !spec.sinks.contains(arg);
        for t in prov
            .args
            .get(arg)
            .into_iter()
            .flatten()
            .filter(|t| !t.passage)
        {
            if t.from_user() {
                continue;
            }
            let reason = if t.nowhere() {
                Some("is found nowhere in the turn".to_string())
            } else if browsing && !t.copied && !t.instructed() {
                None
            } else if !vouched(&t.origins, cfg) {
                Some(format!("comes only from {}, not from the user", from(t)))
            } else {
                tainted(t, spec, cfg)
            };
            if let Some(r) = reason {
                why.push(format!("{arg}: {} {r}", t.value));
            }
        }
    }
    // A link in anything a write or a sink tool sends is a destination too: where its reader
    // goes.
    if sinks.is_empty() && !writes(spec) {
        return why;
    }
    for (arg, values) in prov.args.iter().filter(|(a, _)| !sinks.contains(a)) {
        for t in values.iter().filter(|t| !t.passage && is_link(&t.value)) {
            if !t.nowhere()
                && !t.from_user()
                && (!vouched(&t.origins, cfg) || tainted(t, spec, cfg).is_some())
            {
                why.push(format!(
                    "{arg}: the link {} comes only from {}, not from the user",
                    t.value,
                    from(t)
                ));
            }
        }
    }
    why
}

fn exfiltration(
    spec: &ToolSpec,
    prov: &CallProvenance,
    sinks: &[String],
    sensitive: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let read_from = |o: &BTreeSet<Origin>| -> Option<String> {
        o.iter().find_map(|o| match o {
            Origin::Tool { name, .. } if sensitive(name) => Some(name.clone()),
            _ => None,
        })
    };
    // Where it goes: every sink value the user gave → the user chose the destination.
    let user_destination = !sinks.is_empty()
        && sinks.iter().all(|arg| {
            prov.args
                .get(arg)
                .is_none_or(|vs| vs.iter().filter(|t| !t.passage).all(|t| t.from_user()))
        });
    let mut why = Vec::new();
    for (arg, values) in &prov.args {
        let is_sink = sinks.contains(arg);
        for t in values.iter().filter(|t| !t.passage) {
            // What the user typed, and what says little about its source (a date, a small
            // amount, a few short words), tells the destination nothing private.
            if t.from_user() || low_information(&atom_of(t)) {
                continue;
            }
            let Some(tool) = read_from(&t.origins) else {
                continue;
            };
            // A sink's own value is a destination (the untrusted-sink rule's business);
            // what a sink carries inside it (a code in a link) and what other arguments
            // carry are data.
            let carried = if is_sink {
                t.part
            } else {
                !user_destination && !sinks.is_empty()
            };
            if carried {
                why.push(format!(
                    "{arg}: {} was read from {tool} (private data) and would leave through {}",
                    t.value, spec.name
                ));
            }
        }
    }
    why
}

fn untrusted_content(
    spec: &ToolSpec,
    prov: &CallProvenance,
    sinks: &[String],
    cfg: &ProvenanceConfig,
) -> Vec<String> {
    let mut why = Vec::new();
    // An argument the schema fixes to a few choices (a status, a flag) carries no text.
    let fixed = |arg: &str| {
        spec.args_schema
            .pointer(&format!("/properties/{arg}"))
            .is_some_and(|p| {
                p.get("enum").is_some() || p.get("type").is_some_and(|t| t == "boolean")
            })
    };
    for (arg, values) in prov
        .args
        .iter()
        .filter(|(a, _)| !sinks.contains(a) && !fixed(a))
    {
        for t in values {
            // Links are destinations: the untrusted-sink rule's business.
            if t.from_user() || (!t.passage && (trivial(&atom_of(t)) || is_link(&t.value))) {
                continue;
            }
            if let Some(r) = tainted(t, spec, cfg) {
                why.push(format!("{arg}: \"{}\" {r}", t.value));
            } else if t.copied {
                why.push(format!(
                    "{arg}: \"{}\" is copied from text in {}, which the user did not ask to copy from",
                    t.value,
                    from(t)
                ));
            }
        }
    }
    why
}

/// A traced value as the atom it was (numbers are written as numbers).
fn atom_of(t: &Traced) -> Atom {
    match t.value.parse::<i64>() {
        Ok(n) => Atom::Number(n),
        Err(_) => Atom::Text(t.value.clone()),
    }
}

fn is_link(v: &str) -> bool {
    v.starts_with("http://") || v.starts_with("https://") || v.starts_with("www.")
}

/// Deny > escalate > confirmation > allow.
pub fn severity(d: PolicyDecision) -> u8 {
    match d {
        PolicyDecision::Allow => 0,
        PolicyDecision::RequireConfirmation => 1,
        PolicyDecision::Escalate => 2,
        PolicyDecision::Deny => 3,
    }
}

pub use super::instruction::instruction;
