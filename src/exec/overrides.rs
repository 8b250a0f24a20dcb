//! `[tools.NAME]` in `ballast.toml`: what a deployment says about a tool that its source cannot
//! (an MCP server's annotations have no word for scopes, sinks or cost) or says wrongly (an
//! annotation is the server's claim; the override is the reviewer's). Applied over catalog
//! entries from any source; a field left out keeps the source's value.

use serde::{Deserialize, Serialize};

use super::catalog::{ArgThreshold, Catalog, Impact, ResultChecks, ToolSpec, Trust};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolOverride {
    pub description: Option<String>,
    /// Scopes the calling user must hold (the catalog's `auth_scopes`).
    pub scopes: Option<Vec<String>>,
    pub key_args: Option<Vec<String>>,
    pub sinks: Option<Vec<String>>,
    /// The tool that undoes this one.
    pub compensation: Option<String>,
    pub cost_micros: Option<i64>,
    pub impact: Option<Impact>,
    pub idempotent: Option<bool>,
    pub deterministic: Option<bool>,
    pub trust: Option<Trust>,
    pub sensitive_output: Option<bool>,
    /// JSON pointers (`*` for any index or key) of result fields whoever could write there wrote.
    pub untrusted_fields: Option<Vec<String>>,
    pub timeout_ms: Option<u64>,
    pub tags: Option<Vec<String>>,
    pub risk_thresholds: Option<Vec<ArgThreshold>>,
    pub result_checks: Option<ResultChecks>,
}

impl ToolOverride {
    pub fn apply(&self, spec: &mut ToolSpec) {
        let set = |dst: &mut Vec<String>, src: &Option<Vec<String>>| {
            if let Some(v) = src {
                dst.clone_from(v);
            }
        };
        if let Some(d) = &self.description {
            spec.description.clone_from(d);
        }
        set(&mut spec.auth_scopes, &self.scopes);
        set(&mut spec.key_args, &self.key_args);
        set(&mut spec.sinks, &self.sinks);
        set(&mut spec.tags, &self.tags);
        set(&mut spec.untrusted_fields, &self.untrusted_fields);
        if self.compensation.is_some() {
            spec.compensation.clone_from(&self.compensation);
        }
        if let Some(v) = self.cost_micros {
            spec.cost_micros = v;
        }
        if let Some(v) = self.impact {
            spec.impact = v;
        }
        if let Some(v) = self.idempotent {
            spec.idempotent = v;
        }
        if let Some(v) = self.deterministic {
            spec.deterministic = v;
        }
        if self.trust.is_some() {
            spec.trust = self.trust;
        }
        if let Some(v) = self.sensitive_output {
            spec.sensitive_output = v;
        }
        if let Some(v) = self.timeout_ms {
            spec.timeout_ms = v;
        }
        if let Some(v) = &self.risk_thresholds {
            spec.risk_thresholds.clone_from(v);
        }
        if let Some(v) = &self.result_checks {
            spec.result_checks = v.clone();
        }
    }
}

/// What is wrong with a resolved catalog entry, whatever its source: arguments named that the
/// tool does not take, a compensation that is not a tool, values out of range.
pub fn spec_problems(spec: &ToolSpec, catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    let props = spec
        .args_schema
        .get("properties")
        .and_then(|p| p.as_object());
    let takes = |arg: &str| props.is_some_and(|p| p.contains_key(arg));
    for (what, args) in [("sink", &spec.sinks), ("key argument", &spec.key_args)] {
        for arg in args.iter().filter(|a| !takes(a)) {
            out.push(format!(
                "tool {}: {what} {arg:?} is not one of its arguments",
                spec.name
            ));
        }
    }
    for t in spec.risk_thresholds.iter().filter(|t| !takes(&t.arg)) {
        out.push(format!(
            "tool {}: risk threshold on {:?}, not one of its arguments",
            spec.name, t.arg
        ));
    }
    if let Some(comp) = &spec.compensation
        && catalog.get(comp).is_none()
    {
        out.push(format!(
            "tool {}: compensation {comp} is not in the catalog",
            spec.name
        ));
    }
    for f in spec
        .untrusted_fields
        .iter()
        .filter(|f| !super::catalog::valid_field_pattern(f))
    {
        out.push(format!(
            "tool {}: untrusted field {f:?} is not a JSON pointer (\"/messages/*/body\")",
            spec.name
        ));
    }
    if spec.cost_micros < 0 {
        out.push(format!("tool {}: cost_micros is negative", spec.name));
    }
    if !(1..=600_000).contains(&spec.timeout_ms) {
        out.push(format!(
            "tool {}: timeout_ms must be between 1 and 600000",
            spec.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_override_wins_field_by_field() {
        let mut spec = ToolSpec {
            name: "bank_pay".into(),
            args_schema: json!({"type": "object", "properties": {"iban": {}, "amount": {}}}),
            timeout_ms: 1000,
            impact: Impact::Low,
            ..Default::default()
        };
        let o: ToolOverride = toml::from_str(
            "scopes = [\"payments:write\"]\nsinks = [\"iban\"]\nimpact = \"high\"\n\
             cost_micros = 500\ntrust = \"untrusted\"\n",
        )
        .expect("override");
        o.apply(&mut spec);
        assert_eq!(spec.auth_scopes, vec!["payments:write"]);
        assert_eq!(spec.sinks, vec!["iban"]);
        assert_eq!(spec.impact, Impact::High);
        assert_eq!(spec.cost_micros, 500);
        assert_eq!(spec.timeout_ms, 1000, "left out: kept");
        let catalog = Catalog::new([spec.clone()]);
        assert!(spec_problems(&spec, &catalog).is_empty());
        spec.sinks.push("email".into());
        spec.compensation = Some("bank_refund".into());
        assert_eq!(spec_problems(&spec, &catalog).len(), 2);
        assert!(toml::from_str::<ToolOverride>("sink = [\"x\"]").is_err());
    }
}
