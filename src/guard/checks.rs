//! The small guards: scopes, loops, retries, result anomalies, stale and contradictory context,
//! citations, policy lint. Each is a pure function with its own tests.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{GuardVerdict, RetrievedDocument};
use crate::exec::catalog::{ResultChecks, ToolSpec};

use super::Trip;

/// Pre-tool: the caller must hold every scope the tool requires.
pub fn scopes(spec: &ToolSpec, held: &[String]) -> Option<Trip> {
    let missing: Vec<&String> = spec
        .auth_scopes
        .iter()
        .filter(|s| !held.contains(s))
        .collect();
    (!missing.is_empty()).then(|| {
        Trip::new(
            "auth",
            "auth.scopes",
            GuardVerdict::Deny,
            format!(
                "{} needs scopes {:?}; the caller lacks {:?}",
                spec.name, spec.auth_scopes, missing
            ),
        )
    })
}

/// Mid-plan: the same tool with the same arguments `limit` times in one turn is a loop.
pub fn repeated<'a>(
    earlier: impl Iterator<Item = (&'a str, &'a str)>,
    tool: &str,
    args_json: &str,
    limit: usize,
) -> Option<Trip> {
    let same = earlier
        .filter(|(t, a)| *t == tool && *a == args_json)
        .count()
        + 1;
    (same >= limit.max(2)).then(|| {
        Trip::new(
            "loop",
            "loop.repeated_call",
            GuardVerdict::Escalate,
            format!("{tool} with the same arguments {same} times in one turn"),
        )
    })
}

/// Mid-plan: attempts of one tool within a turn, all its calls together.
pub fn retries(tool: &str, attempts: i32, limit: i32) -> Option<Trip> {
    (attempts > limit).then(|| {
        Trip::new(
            "retries",
            "retries.per_tool",
            GuardVerdict::Deny,
            format!("{tool} attempted {attempts} times in this turn, limit {limit}"),
        )
    })
}

/// Post-tool: the catalog's anomaly checks on a result (size, required fields, numeric ranges).
pub fn anomalies(tool: &str, checks: &ResultChecks, result_json: &str) -> Option<Trip> {
    let trip = |rule: &str, detail: String| {
        Some(Trip::new(
            "anomaly",
            rule,
            GuardVerdict::Escalate,
            format!("{tool}: {detail}"),
        ))
    };
    if let Some(max) = checks.max_bytes
        && result_json.len() > max
    {
        return trip(
            "anomaly.size",
            format!("result of {} bytes exceeds {max}", result_json.len()),
        );
    }
    let Ok(v) = serde_json::from_str::<Value>(result_json) else {
        return trip("anomaly.not_json", "result is not JSON".into());
    };
    if let Some(f) = checks
        .required
        .iter()
        .find(|f| v.get(f.as_str()).is_none_or(Value::is_null))
    {
        return trip("anomaly.missing_field", format!("field {f} is missing"));
    }
    for r in &checks.ranges {
        if let Some(x) = v.get(&r.field).and_then(Value::as_f64)
            && (r.min.is_some_and(|m| x < m) || r.max.is_some_and(|m| x > m))
        {
            return trip(
                "anomaly.out_of_range",
                format!("{} = {x} is outside [{:?}, {:?}]", r.field, r.min, r.max),
            );
        }
    }
    None
}

/// Post-retrieval: documents older than `max_age_ms` (ids).
pub fn stale(docs: &[RetrievedDocument], now_ms: i64, max_age_ms: i64) -> Vec<String> {
    docs.iter()
        .filter(|d| now_ms - d.updated_at_ms > max_age_ms)
        .map(|d| d.id.clone())
        .collect()
}

/// Post-retrieval: two documents that state different values for the same fact.
pub fn contradictions(docs: &[RetrievedDocument]) -> Option<Trip> {
    let mut seen: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for d in docs {
        for (fact, value) in &d.facts {
            match seen.get(fact.as_str()) {
                Some((other, v)) if *v != value.as_str() => {
                    return Some(Trip::new(
                        "context",
                        "context.contradictory",
                        GuardVerdict::Escalate,
                        format!("{other} says {fact} = {v:?}, {} says {value:?}", d.id),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(fact, (&d.id, value));
                }
            }
        }
    }
    None
}

/// Pre-response: every citation names a document retrieved in this turn.
pub fn citations(cited: &[String], docs: &[RetrievedDocument]) -> Option<Trip> {
    let unknown: Vec<&String> = cited
        .iter()
        .filter(|c| !docs.iter().any(|d| &d.id == *c))
        .collect();
    (!unknown.is_empty()).then(|| {
        Trip::new(
            "citations",
            "citations.unretrieved",
            GuardVerdict::Escalate,
            format!("the reply cites {unknown:?}, which this turn did not retrieve"),
        )
    })
}

/// Pre-response: configured phrases (commitments the agent may not make) must not appear.
pub fn lint(text: &str, forbidden: &[String]) -> Option<Trip> {
    let lower = text.to_lowercase();
    forbidden
        .iter()
        .find(|p| !p.is_empty() && lower.contains(&p.to_lowercase()))
        .map(|p| {
            Trip::new(
                "lint",
                "lint.forbidden_phrase",
                GuardVerdict::Escalate,
                format!("the reply contains the forbidden phrase {p:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::catalog::NumericRange;

    fn doc(id: &str, age_days: i64, facts: &[(&str, &str)]) -> RetrievedDocument {
        RetrievedDocument {
            id: id.into(),
            title: id.into(),
            score: 1.0,
            version: 1,
            updated_at_ms: 1_000 * 86_400_000 - age_days * 86_400_000,
            snippet: String::new(),
            facts: facts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn scopes_and_loops_and_retries() {
        let spec = ToolSpec {
            name: "issue_refund".into(),
            auth_scopes: vec!["support:refund".into()],
            ..ToolSpec::default()
        };
        assert!(scopes(&spec, &["support:refund".into()]).is_none());
        assert_eq!(
            scopes(&spec, &[]).map(|t| t.verdict),
            Some(GuardVerdict::Deny)
        );
        let earlier = [
            ("lookup", "{\"id\":1}"),
            ("lookup", "{\"id\":1}"),
            ("lookup", "{\"id\":2}"),
        ];
        assert!(repeated(earlier.iter().copied().take(1), "lookup", "{\"id\":1}", 3).is_none());
        let t = repeated(earlier.iter().copied(), "lookup", "{\"id\":1}", 3).expect("loop");
        assert_eq!(t.rule, "loop.repeated_call");
        assert!(retries("lookup", 6, 6).is_none() && retries("lookup", 7, 6).is_some());
    }

    #[test]
    fn result_anomalies() {
        let checks = ResultChecks {
            max_bytes: Some(64),
            required: vec!["status".into()],
            ranges: vec![NumericRange {
                field: "amount_cents".into(),
                min: Some(0.0),
                max: Some(100_000.0),
            }],
        };
        assert!(anomalies("t", &checks, r#"{"status":"ok","amount_cents":5}"#).is_none());
        let rule = |r: &str| anomalies("t", &checks, r).map(|t| t.rule);
        assert_eq!(
            rule(r#"{"amount_cents":5}"#).as_deref(),
            Some("anomaly.missing_field")
        );
        assert_eq!(
            rule(r#"{"status":"ok","amount_cents":-1}"#).as_deref(),
            Some("anomaly.out_of_range")
        );
        assert_eq!(
            rule(&format!(r#"{{"status":"{}"}}"#, "x".repeat(80))).as_deref(),
            Some("anomaly.size")
        );
    }

    #[test]
    fn stale_and_contradictory_context() {
        let now = 1_000 * 86_400_000;
        let docs = vec![
            doc("kb-new", 10, &[("refund_days", "5")]),
            doc("kb-old", 900, &[("refund_days", "5")]),
            doc("kb-other", 20, &[("refund_days", "10")]),
        ];
        assert_eq!(
            stale(&docs, now, 365 * 86_400_000),
            vec!["kb-old".to_string()]
        );
        let t = contradictions(&docs).expect("5 vs 10 days");
        assert!(
            t.detail.contains("kb-new") && t.detail.contains("kb-other"),
            "{}",
            t.detail
        );
        assert!(contradictions(&docs[..2]).is_none());
    }

    #[test]
    fn citations_and_lint() {
        let docs = vec![doc("kb-1", 1, &[])];
        assert!(citations(&["kb-1".into()], &docs).is_none());
        assert!(citations(&["kb-9".into()], &docs).is_some());
        let phrases = vec!["we guarantee".to_string()];
        assert!(lint("We GUARANTEE a refund tomorrow", &phrases).is_some());
        assert!(lint("Refunds take 5 days", &phrases).is_none());
    }
}
