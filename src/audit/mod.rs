//! What auditors ask of the record: why each action of a turn happened (`chain`), and what
//! another policy set would have decided on every recorded turn (`backtest`). Both read recorded
//! facts only; neither calls a model or a tool.

pub mod backtest;
pub mod chain;

pub use chain::{Audit, audit};

use crate::clock::rfc3339 as time;

impl Audit {
    /// The chains as text, one block per side effect.
    pub fn render(&self) -> String {
        let mut s = format!(
            "turn {} ({}/{}) {}\nrequest  {:?} at {}\n",
            self.turn_id,
            self.tenant,
            self.user_id,
            match (&self.outcome, &self.reason) {
                (Some(o), Some(r)) => format!("ended {o}: {r}"),
                (Some(o), None) => format!("ended {o}"),
                _ => "still running".into(),
            },
            self.request,
            time(self.requested_at_ms)
        );
        for (k, v) in &self.attributes {
            if ["roles", "scopes", "class"].contains(&k.as_str()) {
                s.push_str(&format!("         {k} = {v}\n"));
            }
        }
        if self.actions.is_empty() {
            s.push_str("no side effects: no tool call started\n");
        }
        for (i, a) in self.actions.iter().enumerate() {
            s.push_str(&format!(
                "\naction {}: {} {} (call {})\n",
                i + 1,
                a.tool,
                a.args_json,
                a.call_id
            ));
            let docs: Vec<String> = a
                .documents
                .iter()
                .map(|d| format!("{} ({:.2}, v{})", d.id, d.score, d.version))
                .collect();
            s.push_str(&format!(
                "  ← documents  {}\n",
                if docs.is_empty() {
                    "none".to_string()
                } else {
                    docs.join(", ")
                }
            ));
            s.push_str(&format!(
                "  ← plan       rev {} step {} by {}/{} (template {}, confidence {:.2}) at {}\n",
                a.plan.plan_rev,
                a.step,
                a.plan.model,
                a.plan.model_version,
                a.plan.prompt_template_hash,
                a.plan.confidence,
                time(a.plan.at_ms)
            ));
            for d in &a.decisions {
                s.push_str(&format!(
                    "  ← policy     {} {} by [{}] risk {:.2}: {} [{}]\n",
                    d.checkpoint,
                    d.decision,
                    d.policy_ids.join(", "),
                    d.risk_score,
                    d.reason,
                    d.policy_version
                ));
            }
            if let Some(ap) = &a.approval {
                s.push_str(&format!(
                    "  ← approval   {} by {} at {}{}\n",
                    ap.status,
                    ap.operator.as_deref().unwrap_or("nobody"),
                    ap.answered_at_ms.map_or("-".into(), time),
                    ap.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
            for t in &a.attempts {
                s.push_str(&format!(
                    "  → call       attempt {} {} at {}{}: {} (key {})\n",
                    t.attempt,
                    t.result.as_deref().unwrap_or("running"),
                    time(t.started_at_ms),
                    t.latency_ms
                        .map(|l| format!(" in {l} ms"))
                        .unwrap_or_default(),
                    t.detail.as_deref().unwrap_or(""),
                    t.idempotency_key
                ));
            }
            for g in &a.guards {
                s.push_str(&format!(
                    "  → guard      {} {} {} by {}: {}\n",
                    g.checkpoint, g.guard, g.verdict, g.rule, g.detail
                ));
            }
            if let Some(c) = &a.compensation {
                s.push_str(&format!(
                    "  ↩ undone     by {} ({} attempt(s)) for {}: {}\n",
                    c.tool,
                    c.attempts,
                    c.requested_by,
                    if c.completed {
                        c.result.clone().unwrap_or_default()
                    } else {
                        format!("FAILED {}", c.result.clone().unwrap_or_default())
                    }
                ));
            }
        }
        for l in &self.labels {
            s.push_str(&format!(
                "\nlabel {} by {} at {}{}\n",
                l.label,
                l.operator,
                time(l.at_ms),
                l.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }
}

pub use crate::clock::parse_time;

#[cfg(test)]
mod time_tests {
    use super::parse_time;

    #[test]
    fn times_parse_and_garbage_is_an_error_never_a_panic() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T01:00:01.5+01:00"), Ok(1500));
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000));
        for bad in [
            "",
            "é",
            "2026-13-01T00:00:00Z",
            "2026-12-01T10:00:00",
            "ü2026-01-01Z",
            "T",
            "--",
            "2026-02-30",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }
}
