//! Hallucination with action: a call whose key arguments (an amount, an order id, a customer)
//! appear neither in the request, nor in the retrieved context, nor in earlier tool results is
//! blocked before it runs. The catalog names each tool's key arguments.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::event::GuardVerdict;
use crate::exec::catalog::ToolSpec;

use super::Trip;

/// What a turn has seen so far: the request, retrieved snippets, earlier results (JSON text).
pub struct Sources<'a> {
    pub texts: Vec<&'a str>,
    pub results: Vec<&'a str>,
}

/// `needle` occurs in `hay` without a letter or digit glued to either side.
pub(crate) fn contains_token(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let hay_l = hay.to_lowercase();
    let needle_l = needle.to_lowercase();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut from = 0;
    while let Some(i) = hay_l[from..].find(&needle_l) {
        let start = from + i;
        let end = start + needle_l.len();
        if !glued(hay_l[..start].chars().next_back()) && !glued(hay_l[end..].chars().next()) {
            return true;
        }
        from = start + needle_l.len().max(1);
        if from >= hay_l.len() {
            break;
        }
    }
    false
}

/// The ways a number may be written: as is, and for `*_cents` arguments as currency units.
pub(crate) fn spellings(arg: &str, n: i64) -> Vec<String> {
    let mut out = vec![n.to_string()];
    if arg.ends_with("_cents") {
        let (units, cents) = (n / 100, (n % 100).abs());
        out.push(format!("{units}.{cents:02}"));
        out.push(format!("{units},{cents:02}"));
        if cents == 0 {
            out.push(units.to_string());
        }
    }
    out
}

pub(crate) fn json_has_number(v: &Value, n: i64) -> bool {
    match v {
        Value::Number(x) => x.as_i64() == Some(n),
        Value::Array(a) => a.iter().any(|v| json_has_number(v, n)),
        Value::Object(o) => o.values().any(|v| json_has_number(v, n)),
        _ => false,
    }
}

static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d[\d,.]*\d|\d").ok());

/// A number as people write it: `98.70`, `98,70`, `1,250.00`, `1.250,00`, `20000`.
fn parse_number(token: &str) -> Option<f64> {
    let (commas, dots) = (token.matches(',').count(), token.matches('.').count());
    let last_comma_digits = token.rsplit(',').next().map_or(0, str::len);
    let plain = match (commas, dots) {
        (0, 0) | (0, 1) => token.to_string(),
        (0, _) => token.replace('.', ""),
        (1, 0) if last_comma_digits != 3 => token.replace(',', "."),
        (_, 0) => token.replace(',', ""),
        _ if token.rfind(',') > token.rfind('.') => token.replace('.', "").replace(',', "."),
        _ => token.replace(',', ""),
    };
    plain.parse().ok()
}

/// Whether `hay` writes the number `x` somewhere (as a number of its own: not glued to letters,
/// as in an id or a key).
pub(crate) fn text_has_value(hay: &str, x: f64) -> bool {
    let Some(re) = NUMBER.as_ref() else {
        return false;
    };
    let glued = |c: Option<char>| c.is_some_and(char::is_alphabetic);
    re.find_iter(hay).any(|m| {
        let token = m.as_str().trim_end_matches(['.', ',']);
        !glued(hay[..m.start()].chars().next_back())
            && !glued(hay[m.end()..].chars().next())
            && parse_number(token).is_some_and(|v| (v - x).abs() < 1e-9 * x.abs().max(1.0))
    })
}

/// Whether a JSON value holds the number `x` (as a number, or written in a string).
pub(crate) fn json_has_value(v: &Value, x: f64) -> bool {
    match v {
        Value::Number(n) => n
            .as_f64()
            .is_some_and(|v| (v - x).abs() < 1e-9 * x.abs().max(1.0)),
        Value::String(s) => text_has_value(s, x),
        Value::Array(a) => a.iter().any(|v| json_has_value(v, x)),
        Value::Object(o) => o.values().any(|v| json_has_value(v, x)),
        _ => false,
    }
}

fn grounded(arg: &str, value: &Value, sources: &Sources<'_>) -> bool {
    let in_text = |forms: &[String]| {
        sources
            .texts
            .iter()
            .chain(sources.results.iter())
            .any(|t| forms.iter().any(|f| contains_token(t, f)))
    };
    match value {
        Value::String(s) => in_text(std::slice::from_ref(s)),
        Value::Number(n) => {
            let by_value = |x: f64| {
                sources.texts.iter().any(|t| text_has_value(t, x))
                    || sources.results.iter().any(|r| {
                        serde_json::from_str::<Value>(r).is_ok_and(|v| json_has_value(&v, x))
                    })
            };
            match n.as_i64() {
                Some(i) => {
                    in_text(&spellings(arg, i))
                        || sources.results.iter().any(|r| {
                            serde_json::from_str::<Value>(r).is_ok_and(|v| json_has_number(&v, i))
                        })
                        || by_value(i as f64)
                }
                // 98.7 is the 98.70 of the bill.
                None => in_text(&[n.to_string()]) || n.as_f64().is_some_and(by_value),
            }
        }
        // Booleans and structures are not facts a model could make up on its own.
        _ => true,
    }
}

/// The first key argument nothing in the turn supports, as a trip.
pub fn check(spec: &ToolSpec, args_json: &str, sources: &Sources<'_>) -> Option<Trip> {
    let args: Value = serde_json::from_str(args_json).ok()?;
    for arg in &spec.key_args {
        let Some(value) = args.get(arg) else {
            continue;
        };
        if !grounded(arg, value, sources) {
            let mut t = Trip::new(
                "grounding",
                format!("hallucination.{arg}"),
                GuardVerdict::Escalate,
                format!(
                    "{} {arg} = {value} appears nowhere in the request, the retrieved context or earlier results",
                    spec.name
                ),
            );
            t.hallucination = true;
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund() -> ToolSpec {
        ToolSpec {
            name: "issue_refund".into(),
            key_args: vec!["order_id".into(), "amount_cents".into()],
            ..ToolSpec::default()
        }
    }

    #[test]
    fn amounts_and_ids_must_come_from_somewhere() {
        let sources = Sources {
            texts: vec!["Order A1001 arrived broken; please refund 42.50 EUR"],
            results: vec![r#"{"order_id":"A1001","amount_cents":9900}"#],
        };
        let ok = |args: &str| check(&refund(), args, &sources).is_none();
        assert!(
            ok(r#"{"order_id":"A1001","amount_cents":4250}"#),
            "amount from the request text"
        );
        assert!(
            ok(r#"{"order_id":"a1001","amount_cents":9900}"#),
            "amount from a tool result"
        );
        let t = check(
            &refund(),
            r#"{"order_id":"A1001","amount_cents":425000}"#,
            &sources,
        )
        .expect("made-up amount");
        assert!(
            t.hallucination && t.rule == "hallucination.amount_cents",
            "{t:?}"
        );
        let t = check(
            &refund(),
            r#"{"order_id":"A100","amount_cents":4250}"#,
            &sources,
        )
        .expect("a prefix of an id is not the id");
        assert_eq!(t.rule, "hallucination.order_id");
    }

    #[test]
    fn amounts_are_compared_as_numbers_however_they_are_written() {
        let pay = ToolSpec {
            name: "send_money".into(),
            key_args: vec!["amount".into()],
            ..ToolSpec::default()
        };
        let sources = Sources {
            texts: vec![
                "Amount due: 98.70 EUR, then 1,250.00 and 12,50 and 2.500,00. Key sk-51Hq.",
            ],
            results: vec![r#"{"total": 20000.0}"#],
        };
        let ok = |args: &str| check(&pay, args, &sources).is_none();
        for args in [
            r#"{"amount":98.7}"#,
            r#"{"amount":1250.0}"#,
            r#"{"amount":1250}"#,
            r#"{"amount":12.5}"#,
            r#"{"amount":2500}"#,
            r#"{"amount":20000}"#,
        ] {
            assert!(ok(args), "{args} is in the sources");
        }
        for args in [
            r#"{"amount":98.71}"#,
            r#"{"amount":51}"#,
            r#"{"amount":9.87}"#,
        ] {
            assert!(!ok(args), "{args} is not");
        }
    }
}
