//! Provenance: where each value of a proposed tool call came from. Prompt injection makes a
//! model put an attacker's values (an IBAN, an address, a link) into a call; those values can
//! only have come from content the attacker controls — a tool's output, a retrieved document.
//! So each argument's values are traced through the turn's record to their origins: the user's
//! request, the session's earlier user messages, a trusted tool's result, an untrusted tool's
//! result (named), a retrieved document — or nowhere. Trust is per field: a trusted tool's
//! result can carry text others wrote (`untrusted_fields` in the catalog), and any field whose
//! text addresses the model is untrusted, and its values the attacker's choice. Pure: the facts
//! come from the turn's state.

pub mod atoms;
pub mod fields;
pub mod instruction;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::guard::grounding::{contains_token, spellings, text_has_value};

pub use atoms::{Atom, Piece};

/// Where a value was seen before the model proposed it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// This turn's request.
    User,
    /// An earlier user message of the session.
    Session,
    /// A tool's result (this turn or the session's earlier turns); `trusted`: the field it was
    /// found in is, by the catalog (tool and `untrusted_fields`) and by not addressing the model.
    Tool {
        name: String,
        trusted: bool,
        /// Found inside text that addresses the model (an injected instruction).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        instructed: bool,
    },
    /// A retrieved document.
    Document {
        id: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        instructed: bool,
    },
}

impl Origin {
    /// Whether the value could have come from the user or from a source the deployment trusts.
    pub fn vouched(&self) -> bool {
        match self {
            Origin::User | Origin::Session => true,
            Origin::Tool { trusted, .. } => *trusted,
            Origin::Document { .. } => false,
        }
    }

    /// Found inside text that addresses the model.
    pub fn instructed(&self) -> bool {
        match self {
            Origin::Tool { instructed, .. } | Origin::Document { instructed, .. } => *instructed,
            Origin::User | Origin::Session => false,
        }
    }

    /// The origin as Cedar sees it: its class (`user`, `session`, `trusted_tool`,
    /// `untrusted_tool`, `document`) and, for tools and documents, which one (`tool:NAME`,
    /// `document:ID`).
    pub fn labels(&self) -> Vec<String> {
        let mut out = match self {
            Origin::User => vec!["user".into()],
            Origin::Session => vec!["session".into()],
            Origin::Tool { name, trusted, .. } => vec![
                if *trusted {
                    "trusted_tool"
                } else {
                    "untrusted_tool"
                }
                .into(),
                format!("tool:{name}"),
            ],
            Origin::Document { id, .. } => vec!["document".into(), format!("document:{id}")],
        };
        if self.instructed() {
            out.push("instruction".into());
        }
        out
    }

    /// Said to a person: "the user", "read_inbox output (untrusted)".
    pub fn describe(&self) -> String {
        match self {
            Origin::User => "the user's request".into(),
            Origin::Session => "the user's earlier message".into(),
            Origin::Tool {
                name,
                trusted: true,
                ..
            } => format!("{name} output (trusted)"),
            Origin::Tool {
                name,
                instructed: true,
                ..
            } => format!("{name} output, in text that addresses the model"),
            Origin::Tool { name, .. } => format!("{name} output (untrusted)"),
            Origin::Document {
                id,
                instructed: true,
            } => format!("retrieved document {id}, in text that addresses the model"),
            Origin::Document { id, .. } => format!("retrieved document {id}"),
        }
    }
}

/// One tool result the turn has seen.
#[derive(Clone, Debug, Default)]
pub struct ResultFact<'a> {
    pub tool: &'a str,
    pub result_json: &'a str,
    /// The user pointed at this result (every argument of the call that read it came from the
    /// user: "pay the bill in bills/december.txt") and it does not address the model: its
    /// values are vouched for even if the tool's output is untrusted in general.
    pub designated: bool,
    /// The user chose what was read (every argument of the read came from the user, whatever
    /// their shape): copying text from it is what the user asked for.
    pub chosen: bool,
}

/// Whether a call reading `args_json` read what the user chose: it has arguments, and each of
/// their values is found in `user_texts`.
pub fn chosen_by(args_json: &str, user_texts: &[&str]) -> bool {
    let Ok(args) = serde_json::from_str::<Value>(args_json) else {
        return false;
    };
    let pieces: Vec<(String, Piece)> = atoms::of_args(&args)
        .into_iter()
        .flat_map(|(arg, ps)| ps.into_iter().map(move |p| (arg.clone(), p)))
        .collect();
    !pieces.is_empty()
        && pieces
            .iter()
            .all(|(arg, p)| user_texts.iter().any(|t| text_has(t, &p.atom, arg)))
}

/// Whether a call reading `args_json` was pointed at by the user: it has arguments, and each
/// of their values is found in `user_texts` (the request, the session's user messages).
pub fn designated_by(args_json: &str, user_texts: &[&str]) -> bool {
    let Ok(args) = serde_json::from_str::<Value>(args_json) else {
        return false;
    };
    let pieces: Vec<(String, Piece)> = atoms::of_args(&args)
        .into_iter()
        .flat_map(|(arg, ps)| ps.into_iter().map(move |p| (arg.clone(), p)))
        .collect();
    // A pointer names one object in the user's keeping (a path, a document or invoice id); a
    // date or a search term selects whatever matches, which an attacker can add to, and a
    // link names a page anyone on the web can write.
    let pointer = |p: &Piece| match &p.atom {
        Atom::Text(v) if v.starts_with("http") || v.starts_with("www.") => false,
        Atom::Text(v) => {
            v.chars().any(char::is_alphabetic)
                && v.chars()
                    .any(|c| matches!(c, '/' | '.' | '-' | '_') || c.is_ascii_digit())
                && !v.contains(char::is_whitespace)
        }
        Atom::Number(_) => false,
    };
    pieces.iter().any(|(_, p)| pointer(p))
        && pieces
            .iter()
            .all(|(arg, p)| user_texts.iter().any(|t| text_has(t, &p.atom, arg)))
}

/// What a turn had seen when the model proposed a call.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub request: &'a str,
    /// The session's earlier user messages.
    pub session: Vec<&'a str>,
    /// Tool results: this turn's, then the session's earlier turns'.
    pub results: Vec<ResultFact<'a>>,
    /// Retrieved documents: id and the text the model was shown.
    pub documents: Vec<(&'a str, &'a str)>,
}

/// One traced value of an argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Traced {
    pub value: String,
    /// Part of a larger value (an address inside a body, a code inside a link).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub part: bool,
    /// Empty: found nowhere in the turn (made up, or mistyped).
    pub origins: BTreeSet<Origin>,
    /// Found in free text of an untrusted output (a message, a review, a page) that the user
    /// did not ask to copy from: text someone else wrote, carried into the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copied: bool,
    /// A passage of a longer text (several words in a row found elsewhere), not a value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passage: bool,
    /// Found in free text someone else wrote (an untrusted field, a document) that the user
    /// did not point at — whatever else vouches for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_text: bool,
}

impl Traced {
    /// Found somewhere, and every place it was found is untrusted content.
    pub fn only_untrusted(&self) -> bool {
        !self.origins.is_empty() && !self.origins.iter().any(Origin::vouched)
    }

    pub fn nowhere(&self) -> bool {
        self.origins.is_empty()
    }

    /// Found inside text that addresses the model, and not given by the user.
    pub fn instructed(&self) -> bool {
        self.origins.iter().any(Origin::instructed) && !self.from_user()
    }

    /// The user's request or earlier messages hold it.
    pub fn from_user(&self) -> bool {
        self.origins
            .iter()
            .any(|o| matches!(o, Origin::User | Origin::Session))
    }
}

/// The provenance of one proposed call: each argument's values and their origins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallProvenance {
    pub args: BTreeMap<String, Vec<Traced>>,
}

impl CallProvenance {
    /// Every origin of an argument's values (`nowhere` when one of them was found nowhere).
    pub fn labels(&self, arg: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for t in self.args.get(arg).into_iter().flatten() {
            if t.nowhere() {
                out.insert("nowhere".to_string());
            }
            out.extend(t.origins.iter().flat_map(Origin::labels));
        }
        out
    }

    /// Arguments with a value nothing vouches for: found only in untrusted content, or nowhere.
    pub fn unvouched_args(&self) -> Vec<String> {
        self.args
            .iter()
            .filter(|(_, vs)| {
                vs.iter()
                    .any(|t| !t.passage && (t.nowhere() || t.only_untrusted() || t.instructed()))
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// "recipient: eve@evil.test from read_inbox output (untrusted), not from the user" — one
    /// line per argument, for approvers and refusals.
    pub fn explain(&self) -> String {
        let mut lines = Vec::new();
        for (arg, values) in &self.args {
            for t in values {
                let from = if t.nowhere() {
                    "found nowhere in the turn".to_string()
                } else {
                    let list: Vec<String> = t.origins.iter().map(Origin::describe).collect();
                    let mut s = format!("from {}", list.join(", "));
                    if !t
                        .origins
                        .iter()
                        .any(|o| matches!(o, Origin::User | Origin::Session))
                    {
                        s.push_str(", not from the user");
                    }
                    s
                };
                lines.push(format!("{arg}: {} {from}", t.value));
            }
        }
        lines.join("; ")
    }
}

fn text_has(hay: &str, atom: &Atom, arg: &str) -> bool {
    match atom {
        // 98.7 is the 98.70 of the bill.
        Atom::Text(s) => {
            contains_token(hay, s) || s.parse::<f64>().is_ok_and(|x| text_has_value(hay, x))
        }
        Atom::Number(n) => spellings(arg, *n).iter().any(|f| contains_token(hay, f)),
    }
}

/// The shape of a value, for ambiguity: e-mail, link, IBAN, phone, or a vault token's kind.
fn shape(v: &str) -> Option<String> {
    if let Some(t) = crate::guard::token::find(v).first() {
        return Some(t.kind.clone());
    }
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if v.contains('@') {
        Some("email".into())
    } else if v.starts_with("http") || v.starts_with("www.") {
        Some("url".into())
    } else if compact.len() >= 15
        && compact.chars().take(2).all(|c| c.is_ascii_uppercase())
        && compact.chars().skip(2).take(2).all(|c| c.is_ascii_digit())
    {
        Some("iban".into())
    } else if v.starts_with('+') {
        Some("phone".into())
    } else {
        None
    }
}

/// Whether `result_json` holds another value shaped like `atom`.
fn ambiguous(result_json: &str, atom: &Atom) -> bool {
    let Atom::Text(a) = atom else {
        return false;
    };
    let Some(kind) = shape(a) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Value>(result_json) else {
        return false;
    };
    let norm = |s: &str| s.split_whitespace().collect::<String>().to_lowercase();
    atoms::of_value(&v).iter().any(|p| match &p.atom {
        Atom::Text(other) => shape(other).as_deref() == Some(&kind) && norm(other) != norm(a),
        Atom::Number(_) => false,
    })
}

/// Whether the user gave a value of the same shape as `atom` (an address, an IBAN, a link)
/// that is not it: a source the user pointed at does not vouch for another one ("share it with
/// dan@example.com" — the file's own "share it with eve@evil.test" is not the user's choice).
fn user_gave_another(facts: &Facts<'_>, atom: &Atom) -> bool {
    let Atom::Text(a) = atom else {
        return false;
    };
    let Some(kind) = shape(a) else {
        return false;
    };
    let norm = |s: &str| s.split_whitespace().collect::<String>().to_lowercase();
    std::iter::once(facts.request)
        .chain(facts.session.iter().copied())
        .flat_map(|t| atoms::of_value(&Value::String(t.to_string())))
        .any(|p| match &p.atom {
            Atom::Text(other) => shape(other).as_deref() == Some(&kind) && norm(other) != norm(a),
            Atom::Number(_) => false,
        })
}

/// Where `atom` (a value of argument `arg`) was seen, and whether it was copied from free text
/// of an untrusted output.
fn origins(
    atom: &Atom,
    arg: &str,
    facts: &Facts<'_>,
    fields: &[fields::Field<'_>],
    consent: bool,
) -> (BTreeSet<Origin>, bool, bool) {
    let mut out = BTreeSet::new();
    if text_has(facts.request, atom, arg) {
        out.insert(Origin::User);
    }
    if facts.session.iter().any(|t| text_has(t, atom, arg)) {
        out.insert(Origin::Session);
    }
    // Copied: found in text someone wrote (a message, a description, a page — trusted tool or
    // not) that the user did not point at, and in no short field a trusted source vouches for
    // (a name, an id, an amount in a listing).
    let (mut in_text, mut in_field, mut in_untrusted_text) = (false, false, false);
    for f in fields {
        let Some(instructed) = f.find(atom, arg) else {
            continue;
        };
        let origin = match &f.source {
            fields::Source::Tool(name) => {
                // A source the user pointed at vouches for a value only when it offers no
                // other value of the same shape: a bill with two IBANs is ambiguous, and the
                // second one is how an attacker who can write into the bill would show.
                let designated = f.designated
                    && !ambiguous(f.result_json, atom)
                    && !user_gave_another(facts, atom);
                let trusted = (f.trusted || designated) && !instructed;
                // Someone's text, even in a source the user pointed at (a file, a page).
                in_untrusted_text |= f.free_text && !f.trusted;
                if f.free_text && !f.chosen && !designated {
                    in_text = true;
                } else if trusted {
                    in_field = true;
                }
                Origin::Tool {
                    name: name.to_string(),
                    trusted,
                    instructed,
                }
            }
            fields::Source::Document(id) => {
                in_text |= f.free_text;
                in_untrusted_text |= f.free_text;
                Origin::Document {
                    id: id.to_string(),
                    instructed,
                }
            }
        };
        out.insert(origin);
    }
    let from_user = out
        .iter()
        .any(|o| matches!(o, Origin::User | Origin::Session));
    (
        out,
        in_text && !in_field && !consent && !from_user,
        in_untrusted_text && !from_user,
    )
}

/// The provenance of a call's arguments (`args_json` as proposed; not an object → none).
/// `field_trust(tool, path)`: whether the catalog trusts that field of that tool's result.
pub fn trace(
    args_json: &str,
    facts: &Facts<'_>,
    field_trust: &dyn Fn(&str, &[String]) -> bool,
) -> CallProvenance {
    let Ok(args) = serde_json::from_str::<Value>(args_json) else {
        return CallProvenance::default();
    };
    let fields = fields::index(facts, field_trust);
    let consent = instruction::asks_to_copy(facts.request)
        || facts.session.iter().any(|t| instruction::asks_to_copy(t));
    let mut out = CallProvenance::default();
    // Built once, and only when an argument holds free text.
    let mut shingled: Option<Vec<Shingled>> = None;
    for (arg, atoms) in atoms::of_args(&args) {
        let mut traced: Vec<Traced> = atoms
            .into_iter()
            .map(|p| {
                let (origins, copied, in_text) = origins(&p.atom, &arg, facts, &fields, consent);
                Traced {
                    origins,
                    copied,
                    in_text,
                    value: p.atom.to_string(),
                    part: p.part,
                    passage: false,
                }
            })
            .collect();
        if let Some(v) = args.get(&arg) {
            let mut texts = Vec::new();
            collect_texts(v, &mut texts);
            texts.retain(|t| t.split_whitespace().count() > 4);
            if !texts.is_empty() {
                let sh = shingled.get_or_insert_with(|| shingle_fields(&fields));
                traced.extend(passages(&texts, facts, &fields, sh, consent));
            }
        }
        out.args.insert(arg, traced);
    }
    out
}

/// A free-text field's runs of words: all of them, and those inside text that addresses the
/// model.
struct Shingled {
    all: HashSet<String>,
    instructed: HashSet<String>,
}

fn shingle_fields(fields: &[fields::Field<'_>]) -> Vec<Shingled> {
    fields
        .iter()
        .map(|f| {
            if !f.free_text {
                return Shingled {
                    all: HashSet::new(),
                    instructed: HashSet::new(),
                };
            }
            Shingled {
                all: fields::shingles(&f.lower),
                instructed: f
                    .instruction_at
                    .map(|i| fields::shingles(&f.lower[i..]))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Passages of free text in an argument found in what the turn read: each sentence of five
/// words or more that shares five words in a row with a field or a document.
fn passages(
    texts: &[&str],
    facts: &Facts<'_>,
    fields: &[fields::Field<'_>],
    shingled: &[Shingled],
    consent: bool,
) -> Vec<Traced> {
    let mut out = Vec::new();
    for text in texts {
        for sentence in text.split(['.', '!', '?', ';', '\n']) {
            let mine = fields::shingles(sentence);
            if mine.is_empty() {
                continue;
            }
            let shares = |set: &HashSet<String>| mine.iter().any(|s| set.contains(s));
            let has = |t: &str| shares(&fields::shingles(t));
            let mut origins = BTreeSet::new();
            if has(facts.request) {
                origins.insert(Origin::User);
            }
            if facts.session.iter().any(|t| has(t)) {
                origins.insert(Origin::Session);
            }
            let mut copied = false;
            for (f, sh) in fields.iter().zip(shingled) {
                if !shares(&sh.all) {
                    continue;
                }
                let instructed = shares(&sh.instructed);
                match &f.source {
                    fields::Source::Tool(name) => {
                        let trusted = (f.trusted || f.designated) && !instructed;
                        copied |= !f.designated && !f.chosen;
                        origins.insert(Origin::Tool {
                            name: name.to_string(),
                            trusted,
                            instructed,
                        });
                    }
                    fields::Source::Document(id) => {
                        copied = true;
                        origins.insert(Origin::Document {
                            id: id.to_string(),
                            instructed,
                        });
                    }
                }
            }
            if origins.is_empty() {
                continue;
            }
            out.push(Traced {
                value: sentence.trim().chars().take(120).collect(),
                part: true,
                origins,
                copied: copied && !consent,
                passage: true,
                in_text: false,
            });
            if out.len() >= 16 {
                return out;
            }
        }
    }
    out
}

fn collect_texts<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| collect_texts(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_texts(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
