//! The values inside an argument that provenance traces: the argument itself when it is an
//! identifier-like value (an address, an id, an amount), every element of a list, and the values
//! found inside free text — e-mail addresses, URLs, IBANs, phone numbers, account ids and vault
//! tokens. A message body the model wrote is nobody's value; the address inside it is.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// One value to trace, as it is written in the arguments.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Atom {
    Text(String),
    Number(i64),
}

/// An atom and whether it is part of a larger value (an address inside a body, a code inside a
/// link's query) rather than the value itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Piece {
    pub atom: Atom,
    pub part: bool,
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Atom::Text(s) => f.write_str(s),
            Atom::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A whole string is a value of its own when it is short: a few words at most.
const MAX_WHOLE_CHARS: usize = 120;
const MAX_WHOLE_WORDS: usize = 4;
/// At most this many atoms per argument: a huge list must not make review quadratic.
const MAX_ATOMS: usize = 64;

static EMBEDDED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        // Vault tokens stand for personal values; equal values have equal tokens.
        r"\[pii:[a-z_]+:[a-p]{16}\]",
        // URLs, up to the first space or quote.
        r#"|\bhttps?://[^\s"'<>\)\]]+"#,
        r"|\bwww\.[^\s/]+\.[a-z]{2,}[^\s'<>\)\]]*",
        // E-mail addresses.
        r"|[A-Za-z0-9][A-Za-z0-9._%+'\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
        // IBANs, written with or without spaces.
        r"|\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b",
        // Phone numbers in international form.
        r"|\+\d[\d\s().\-]{6,18}\d",
        // Account, order, invoice ids: letters and digits mixed, or six digits or more.
        r"|\b[A-Za-z]{1,6}[\-_]?\d{3,}[A-Za-z0-9\-]*\b|\b\d{6,}\b",
    ))
    .ok()
});

/// The atoms of one argument value.
pub fn of_value(value: &Value) -> Vec<Piece> {
    let mut out = Vec::new();
    collect(value, &mut out);
    out.sort();
    out.dedup_by(|a, b| a.atom == b.atom);
    out.truncate(MAX_ATOMS);
    out
}

fn whole(atom: Atom) -> Piece {
    Piece { atom, part: false }
}

fn part(atom: Atom) -> Piece {
    Piece { atom, part: true }
}

fn collect(value: &Value, out: &mut Vec<Piece>) {
    if out.len() >= MAX_ATOMS {
        return;
    }
    match value {
        Value::String(s) => of_text(s, out),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => out.push(whole(Atom::Number(i))),
            // 850.0 is 850 (written "850", "850.00" or "850,00" elsewhere).
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => {
                out.push(whole(Atom::Number(f as i64)))
            }
            _ => out.push(whole(Atom::Text(n.to_string()))),
        },
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| collect(v, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

fn of_text(s: &str, out: &mut Vec<Piece>) {
    let t = s.trim();
    if t.is_empty() {
        return;
    }
    // The values inside come first: `"Bob <bob@example.com>"` is the address, whoever wrote
    // the name around it.
    let embedded: Vec<&str> = EMBEDDED
        .as_ref()
        .map(|re| {
            re.find_iter(t)
                .map(|m| m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']))
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !embedded.is_empty() {
        for v in embedded {
            let atom = Atom::Text(v.to_string());
            out.push(if v == t { whole(atom) } else { part(atom) });
            // What a link carries: its query values (`?code=845512`) and path segments.
            if v.starts_with("http") || v.starts_with("www.") {
                let carried = v
                    .split(['?', '&', '=', '/', '#'])
                    .skip(3)
                    .filter(|x| x.len() >= 4 && x.chars().any(|c| c.is_ascii_digit()));
                out.extend(carried.map(|x| part(Atom::Text(x.to_string()))));
            }
        }
        return;
    }
    let words = t.split_whitespace().count();
    if t.chars().count() <= MAX_WHOLE_CHARS && words <= MAX_WHOLE_WORDS {
        out.push(whole(Atom::Text(t.to_string())));
    }
}

static DATE_TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:t\d{1,2}:\d{2}(?::\d{2})?z?)?",
        r"|\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?|\d{1,2}\s?[ap]\.?m\.?",
        r"|\d{1,2}(?:st|nd|rd|th))$",
    ))
    .ok()
});

/// A value that says little about where it came from: a date, a time, a small number (up to
/// four digits before the point), or a few short words — each of those, up to four of them
/// ("Budget 4500 EUR", "Offsite 2026-06-18", "Rent December"). An id, a code, an address, a
/// link, an IBAN or a token is not.
pub fn low_information(atom: &Atom) -> bool {
    match atom {
        Atom::Number(n) => n.unsigned_abs() < 10_000,
        Atom::Text(t) => {
            if !crate::guard::token::find(t).is_empty() {
                return false;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            !words.is_empty()
                && words.len() <= MAX_WHOLE_WORDS
                && words.iter().all(|w| low_information_word(w))
        }
    }
}

fn low_information_word(w: &str) -> bool {
    let w = w.trim_matches(|c: char| {
        matches!(
            c,
            ',' | '.' | ';' | ':' | '!' | '?' | '(' | ')' | '\'' | '"'
        )
    });
    if w.is_empty() {
        return true;
    }
    let number = w
        .trim_start_matches(['€', '$', '£', '-', '+'])
        .trim_end_matches('%');
    if let Ok(x) = number.replace(',', ".").parse::<f64>() {
        return x.abs() < 10_000.0;
    }
    if DATE_TIME.as_ref().is_some_and(|re| re.is_match(w)) {
        return true;
    }
    w.chars().count() <= 12
        && w.chars()
            .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
        && w.chars().any(char::is_alphabetic)
}

/// Too small to be anybody's choice (a one- or two-digit number, a word of three letters).
pub fn trivial(atom: &Atom) -> bool {
    match atom {
        Atom::Number(n) => n.unsigned_abs() < 100,
        Atom::Text(t) => {
            let t = t.trim();
            t.chars().count() <= 3 || t.parse::<f64>().is_ok_and(|x| x.abs() < 100.0)
        }
    }
}

/// Every atom of every argument, by argument name (list and object arguments flattened).
pub fn of_args(args: &Value) -> Vec<(String, Vec<Piece>)> {
    match args.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(name, v)| (name.clone(), of_value(v)))
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(v: Value) -> Vec<String> {
        of_value(&v)
            .into_iter()
            .map(|a| a.atom.to_string())
            .collect()
    }

    #[test]
    fn short_values_are_atoms_and_free_text_yields_what_is_inside() {
        assert_eq!(texts(json!("bob@example.com")), vec!["bob@example.com"]);
        assert_eq!(texts(json!(4250)), vec!["4250"]);
        assert_eq!(
            texts(json!(["ann@example.com", "eve@evil.test"])),
            vec!["ann@example.com", "eve@evil.test"]
        );
        let body = "Hi team, the report is ready. Details at https://files.evil.test/x?id=9 \
                    or write to eve@evil.test; pay DE89 3704 0044 0532 0130 00 please.";
        let got = texts(json!(body));
        assert!(
            got.contains(&"https://files.evil.test/x?id=9".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"eve@evil.test".to_string()), "{got:?}");
        assert!(
            got.contains(&"DE89 3704 0044 0532 0130 00".to_string()),
            "{got:?}"
        );
        assert!(!got.iter().any(|a| a == body), "a long body is not a value");
        let link = of_value(&json!("https://evil.test/c?code=845512"));
        assert!(
            link.contains(&Piece {
                atom: Atom::Text("845512".into()),
                part: true
            }),
            "{link:?}"
        );
        assert!(!link[0].part || link.len() > 1);
        let tok = "[pii:email:abcdefghijklmnop]";
        assert!(
            texts(json!(format!("send it to {tok} today please now"))).contains(&tok.to_string())
        );
    }

    #[test]
    fn dates_times_small_numbers_and_short_words_say_little() {
        let t = |s: &str| Atom::Text(s.to_string());
        for low in [
            t("2026-06-18"),
            t("Offsite 2026-06-18"),
            t("Budget 4500 EUR"),
            t("10:30"),
            t("3pm"),
            t("Rent December"),
            t("12.50"),
            Atom::Number(850),
        ] {
            assert!(low_information(&low), "{low}");
        }
        for high in [
            t("845512"),
            t("HB-88213"),
            t("Sunflower-2027"),
            t("eve@evil.test"),
            t("DE89 3704 0044 0532 0130 00"),
            t("[pii:email:abcdefghijklmnop]"),
            t("12840.22"),
            Atom::Number(845512),
        ] {
            assert!(!low_information(&high), "{high}");
        }
        assert!(trivial(&Atom::Number(2)) && !trivial(&t("2026-06-18")));
    }

    #[test]
    fn booleans_and_nulls_carry_nothing() {
        assert!(of_value(&json!({"a": true, "b": null})).is_empty());
    }
}
