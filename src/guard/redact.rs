//! Redaction of PII and secrets: emails, phone numbers, card numbers (Luhn-checked), IBANs
//! (mod-97-checked), API keys, bearer tokens, and configured patterns. Each match becomes
//! `[REDACTED:kind]`, so a reader still sees what was there.

use regex::Regex;

use super::NamedPattern;

/// A validity check on a match (a checksum, a digit count).
type Check = fn(&str) -> bool;

struct Rule {
    kind: String,
    re: Regex,
    check: Check,
}

/// Compiled redaction rules.
pub struct Redactor {
    rules: Vec<Rule>,
}

fn always(_: &str) -> bool {
    true
}

/// 7 to 15 digits (E.164), and not an ISO date.
fn phone_like(candidate: &str) -> bool {
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    let date = candidate.len() == 10
        && candidate.as_bytes().get(4) == Some(&b'-')
        && candidate.as_bytes().get(7) == Some(&b'-');
    (7..=15).contains(&digits) && !date
}

/// The Luhn checksum: catches most digit strings that merely look like card numbers.
pub fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// ISO 13616 check: the country code and check digits moved to the end, letters as numbers,
/// the whole mod 97 equals 1.
pub fn iban_valid(candidate: &str) -> bool {
    let s: String = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() < 15 || s.len() > 34 {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        for d in if v >= 10 {
            vec![v / 10, v % 10]
        } else {
            vec![v]
        } {
            rem = (rem * 10 + d) % 97;
        }
    }
    rem == 1
}

impl Redactor {
    /// The built-in rules plus `extra` (name, regex). An invalid extra pattern is an error.
    pub fn new(extra: &[NamedPattern]) -> Result<Self, String> {
        // Order matters: secrets and structured numbers before the looser phone pattern.
        let builtin: [(&str, &str, Check); 7] = [
            (
                "bearer_token",
                r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*",
                always,
            ),
            (
                "api_key",
                r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b|\bsk-[A-Za-z0-9_\-]{20,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
                always,
            ),
            (
                "email",
                r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
                always,
            ),
            (
                "iban",
                r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b",
                iban_valid,
            ),
            ("card_number", r"\b(?:\d[ -]?){12,18}\d\b", luhn),
            (
                "phone",
                r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){1,3}\b",
                phone_like,
            ),
            ("phone", r"\+\d{8,15}\b", always),
        ];
        let mut rules = Vec::new();
        for (kind, pattern, check) in builtin {
            rules.push(Rule {
                kind: kind.to_string(),
                re: Regex::new(pattern).map_err(|e| format!("built-in {kind}: {e}"))?,
                check,
            });
        }
        for p in extra {
            rules.push(Rule {
                kind: p.name.clone(),
                re: Regex::new(&p.regex)
                    .map_err(|e| format!("redaction pattern {}: {e}", p.name))?,
                check: always,
            });
        }
        Ok(Redactor { rules })
    }

    /// The built-in rules only (they are constants, tested to compile).
    pub fn builtin() -> Self {
        Redactor::new(&[]).unwrap_or(Redactor { rules: Vec::new() })
    }

    /// The text with every match replaced, and the kinds found (one entry per redaction).
    pub fn redact(&self, text: &str) -> (String, Vec<String>) {
        let mut out = text.to_string();
        let mut found = Vec::new();
        for rule in &self.rules {
            if !rule.re.is_match(&out) {
                continue;
            }
            let mut next = String::with_capacity(out.len());
            let mut last = 0;
            for m in rule.re.find_iter(&out) {
                if !(rule.check)(m.as_str()) {
                    continue;
                }
                // Digits inside an identifier (a UUID, a call id, a path) are not a number.
                let numeric = matches!(rule.kind.as_str(), "phone" | "card_number");
                let glued = |c: Option<char>| {
                    c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
                };
                if numeric
                    && (glued(out[..m.start()].chars().next_back())
                        || glued(out[m.end()..].chars().next()))
                {
                    continue;
                }
                next.push_str(&out[last..m.start()]);
                next.push_str(&format!("[REDACTED:{}]", rule.kind));
                last = m.end();
                found.push(rule.kind.clone());
            }
            next.push_str(&out[last..]);
            out = next;
        }
        (out, found)
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

/// A corpus of every PII kind Ballast redacts, each with the text that must not survive.
pub const CORPUS: &[(&str, &str)] = &[
    ("email", "jane.doe+orders@example.co.uk"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(555) 123-4567"),
    ("card_number", "4111 1111 1111 1111"),
    ("card_number", "5500-0000-0000-0004"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("api_key", "AKIAIOSFODNN7EXAMPLE"),
    (
        "bearer_token",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    ),
];

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
    fn checksums_keep_ordinary_numbers() {
        let r = Redactor::new(&[]).expect("compiles");
        // Not Luhn-valid, not an IBAN: an order number and an amount stay readable.
        let (out, found) = r.redact(
            "order A12345 of 2026-11-25, refund 4200 cents (42.00 EUR), ref 4111 1111 1111 1112, \
             call 018bcfe5-6800-7212-9212-121212121212/r0/s0",
        );
        assert!(found.is_empty(), "{found:?} in {out}");
        assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
        assert!(iban_valid("GB82WEST12345698765432") && !iban_valid("GB82WEST12345698765433"));
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
}
