//! Finding personal data and secrets in text: e-mail addresses in any script; phone numbers in
//! international and national formats, `tel:` URIs and bare North American numbers; card
//! numbers with any separators (spaces of any kind, dots, dashes, underscores, slashes,
//! zero-width characters) and full-width digits, Luhn-checked, also glued to a word by `_`, `/`
//! or `-`; IBANs in any case with their country's length and the mod-97 check; cloud-provider
//! and API keys, AWS secret access keys beside their key id, JWTs, bearer tokens, private key
//! blocks (with or without their END line) and `password=`-style pairs; configured patterns;
//! IP addresses when asked. Dates, times, timestamps, order numbers, amounts, git hashes and
//! lists of numbers are left alone (the rules: `detect.rs`).
//!
//! [`Redactor::find`] says where each value is (the vault tokenizes those spans);
//! [`Redactor::redact`] replaces each with `[REDACTED:kind]`. The detection rules are in
//! `detect.rs`; the test corpus (positives and negatives) in `corpus.rs`.

use regex::Regex;

use super::NamedPattern;
use super::detect::{self, Check};

pub use super::detect::{iban_valid, luhn};

#[derive(Clone)]
struct Rule {
    kind: String,
    re: Regex,
    check: Check,
    /// The capture group holding the value (0: the whole match), for rules that match a
    /// label with the value (`password=…`).
    group: usize,
}

/// Where a value was found, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

static TOKENS: std::sync::LazyLock<Option<Regex>> =
    std::sync::LazyLock::new(|| Regex::new(detect::TOKEN_PATTERN).ok());

/// Compiled detection rules.
#[derive(Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
}

impl Redactor {
    /// The built-in rules plus `extra` (name, regex). An invalid extra pattern is an error.
    pub fn new(extra: &[NamedPattern]) -> Result<Self, String> {
        Self::with_options(extra, false)
    }

    /// As [`Redactor::new`], also finding IPv4 and IPv6 addresses when `ip_addresses`.
    pub fn with_options(extra: &[NamedPattern], ip_addresses: bool) -> Result<Self, String> {
        let mut rules = Vec::new();
        for r in detect::builtin(ip_addresses) {
            rules.push(Rule {
                kind: r.kind.to_string(),
                re: Regex::new(r.pattern).map_err(|e| format!("built-in {}: {e}", r.kind))?,
                check: r.check,
                group: r.group,
            });
        }
        for p in extra {
            rules.push(Rule {
                kind: p.name.clone(),
                re: Regex::new(&p.regex)
                    .map_err(|e| format!("redaction pattern {}: {e}", p.name))?,
                check: detect::always,
                group: 0,
            });
        }
        Ok(Redactor { rules })
    }

    /// The built-in rules only (they are constants, tested to compile).
    pub fn builtin() -> Self {
        Redactor::new(&[]).unwrap_or(Redactor { rules: Vec::new() })
    }

    /// Every value found, in text order, none overlapping (earlier rules win: secrets and
    /// structured numbers before the looser phone rule).
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        // A vault token stands for a value already taken care of: nothing inside one is found
        // again (a labelled rule would otherwise take `password=[pii:secret:…]`'s token).
        let tokens: Vec<(usize, usize)> = match (text.contains("[pii:"), TOKENS.as_ref()) {
            (true, Some(re)) => re.find_iter(text).map(|m| (m.start(), m.end())).collect(),
            _ => Vec::new(),
        };
        for rule in &self.rules {
            if !rule.re.is_match(text) {
                continue;
            }
            for caps in rule.re.captures_iter(text) {
                let m = match (rule.group, caps.get(rule.group)) {
                    (0, m) => m,
                    // A labelled rule: the first value group that matched.
                    (_, Some(m)) => Some(m),
                    (g, None) => (g..caps.len()).find_map(|i| caps.get(i)),
                };
                let Some(m) = m else { continue };
                if m.as_str().is_empty() {
                    continue;
                }
                let Some((start, end)) = (rule.check)(text, m.start(), m.end()) else {
                    continue;
                };
                if found.iter().any(|f| f.start < end && start < f.end)
                    || tokens.iter().any(|(s, e)| *s < end && start < *e)
                {
                    continue;
                }
                found.push(Found {
                    kind: rule.kind.clone(),
                    start,
                    end,
                });
            }
        }
        found.sort_by_key(|f| f.start);
        found
    }

    /// `text` with each value found replaced by `replace(kind, value)`, and the kinds found.
    pub fn replace_with(
        &self,
        text: &str,
        mut replace: impl FnMut(&str, &str) -> String,
    ) -> (String, Vec<String>) {
        let found = self.find(text);
        if found.is_empty() {
            return (text.to_string(), Vec::new());
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut kinds = Vec::with_capacity(found.len());
        for f in found {
            out.push_str(text.get(last..f.start).unwrap_or_default());
            out.push_str(&replace(
                &f.kind,
                text.get(f.start..f.end).unwrap_or_default(),
            ));
            last = f.end;
            kinds.push(f.kind);
        }
        out.push_str(text.get(last..).unwrap_or_default());
        (out, kinds)
    }

    /// The text with every value replaced by `[REDACTED:kind]`, and the kinds found (one entry
    /// per redaction).
    pub fn redact(&self, text: &str) -> (String, Vec<String>) {
        self.replace_with(text, |kind, _| format!("[REDACTED:{kind}]"))
    }

    /// Redacts every string inside a JSON value (keys are kept).
    pub fn redact_json(&self, value: &mut serde_json::Value) -> Vec<String> {
        let mut found = Vec::new();
        match value {
            serde_json::Value::String(s) => {
                let (r, f) = self.redact(s);
                if !f.is_empty() {
                    *s = r;
                    found = f;
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    found.extend(self.redact_json(v));
                }
            }
            serde_json::Value::Object(map) => {
                for (_, v) in map.iter_mut() {
                    found.extend(self.redact_json(v));
                }
            }
            _ => {}
        }
        found
    }

    /// Redacts a JSON document given as text; text that is not JSON is redacted as text.
    pub fn redact_json_text(&self, text: &str) -> (String, Vec<String>) {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(mut v) => {
                let found = self.redact_json(&mut v);
                if found.is_empty() {
                    (text.to_string(), found)
                } else {
                    (v.to_string(), found)
                }
            }
            Err(_) => self.redact(text),
        }
    }
}

pub use super::corpus::CORPUS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_corpus_item_is_redacted_with_its_kind() {
        let r = Redactor::new(&[]).expect("built-ins compile");
        for (kind, secret) in CORPUS {
            let text = format!("my details: {secret} thanks");
            let (out, found) = r.redact(&text);
            assert!(!out.contains(secret), "{kind} {secret} survived: {out}");
            assert!(
                found.iter().any(|k| k == kind),
                "{secret}: found {found:?}, want {kind}"
            );
        }
    }

    #[test]
    fn configured_patterns_and_json_values() {
        let r = Redactor::new(&[NamedPattern {
            name: "employee_id".into(),
            regex: r"\bEMP-\d{6}\b".into(),
        }])
        .expect("compiles");
        let (out, found) =
            r.redact_json_text(r#"{"note":"call EMP-123456 at jane@example.com","n":4}"#);
        assert_eq!(found.len(), 2, "{out}");
        assert!(out.contains("[REDACTED:employee_id]") && out.contains("[REDACTED:email]"));
        assert!(
            Redactor::new(&[NamedPattern {
                name: "bad".into(),
                regex: "(".into()
            }])
            .is_err()
        );
    }

    #[test]
    fn labelled_secrets_keep_their_label() {
        let r = Redactor::builtin();
        let (out, found) = r.redact("login with password=hunter2 and api_key: 'abc123xyz'");
        assert_eq!(found, ["secret", "secret"], "{out}");
        assert!(out.contains("password=[REDACTED:secret]"), "{out}");
        assert!(out.contains("api_key: '[REDACTED:secret]'"), "{out}");
    }
}
