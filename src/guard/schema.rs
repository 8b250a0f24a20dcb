//! Arguments and results against the catalog's JSON schemas; the error names the failing path.

use std::collections::HashMap;

use crate::event::GuardVerdict;
use crate::exec::catalog::Catalog;

use super::Trip;

pub struct Schemas {
    args: HashMap<String, jsonschema::Validator>,
    results: HashMap<String, jsonschema::Validator>,
    /// Tools whose schema does not compile: their calls are refused (fail closed).
    broken: HashMap<String, String>,
}

fn first_error(v: &jsonschema::Validator, instance: &serde_json::Value) -> Option<String> {
    v.iter_errors(instance).next().map(|e| {
        let path = e.instance_path().to_string();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        format!("at {path}: {e}")
    })
}

impl Schemas {
    /// Compiles every tool's schemas. A schema that does not compile is reported by
    /// [`Schemas::errors`] and its tool's calls are refused.
    pub fn compile(catalog: &Catalog) -> Self {
        let mut args = HashMap::new();
        let mut results = HashMap::new();
        let mut broken = HashMap::new();
        for t in catalog.iter() {
            match (
                jsonschema::validator_for(&t.args_schema),
                jsonschema::validator_for(&t.result_schema),
            ) {
                (Ok(a), Ok(r)) => {
                    args.insert(t.name.clone(), a);
                    results.insert(t.name.clone(), r);
                }
                (Err(e), _) => {
                    broken.insert(t.name.clone(), format!("args_schema: {e}"));
                }
                (_, Err(e)) => {
                    broken.insert(t.name.clone(), format!("result_schema: {e}"));
                }
            }
        }
        Schemas {
            args,
            results,
            broken,
        }
    }

    /// Tools whose schemas do not compile, with the reason.
    pub fn errors(&self) -> Vec<String> {
        let mut e: Vec<String> = self
            .broken
            .iter()
            .map(|(t, why)| format!("tool {t}: {why}"))
            .collect();
        e.sort();
        e
    }

    pub fn check_args(&self, tool: &str, args_json: &str) -> Option<Trip> {
        if let Some(why) = self.broken.get(tool) {
            return Some(Trip::new(
                "schema",
                "schema.unusable",
                GuardVerdict::Deny,
                format!("{tool}: {why}"),
            ));
        }
        let v = self.args.get(tool)?;
        let instance: serde_json::Value = match serde_json::from_str(args_json) {
            // A value the vault tokenized is checked as a value of its kind would be: the tool
            // will get the real one.
            Ok(mut i) => {
                crate::guard::token::map_json(&mut i, &mut |s| {
                    if crate::guard::token::is_token(s) {
                        crate::guard::token::find(s).first().map_or_else(
                            || s.to_string(),
                            |t| crate::guard::token::sample(&t.kind).to_string(),
                        )
                    } else {
                        s.to_string()
                    }
                });
                i
            }
            Err(e) => {
                return Some(Trip::new(
                    "schema",
                    "args.json",
                    GuardVerdict::Deny,
                    format!("{tool} arguments are not JSON: {e}"),
                ));
            }
        };
        first_error(v, &instance).map(|e| {
            Trip::new(
                "schema",
                "args.schema",
                GuardVerdict::Deny,
                format!("{tool} arguments {e}"),
            )
        })
    }

    /// A result that violates its schema cannot be trusted: escalate.
    pub fn check_result(&self, tool: &str, result: &serde_json::Value) -> Option<Trip> {
        let v = self.results.get(tool)?;
        first_error(v, result).map(|e| {
            Trip::new(
                "schema",
                "result.schema",
                GuardVerdict::Escalate,
                format!("{tool} result {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::catalog::ToolSpec;
    use serde_json::json;

    #[test]
    fn errors_name_the_failing_path() {
        let catalog = Catalog::new([ToolSpec {
            name: "refund".into(),
            args_schema: json!({"type": "object", "properties": {"amount_cents": {"type": "integer", "minimum": 1}}, "required": ["amount_cents"]}),
            result_schema: json!({"type": "object", "properties": {"refund_id": {"type": "string"}}, "required": ["refund_id"]}),
            ..ToolSpec::default()
        }]);
        let s = Schemas::compile(&catalog);
        assert!(s.errors().is_empty());
        assert!(s.check_args("refund", r#"{"amount_cents": 5}"#).is_none());
        let t = s
            .check_args("refund", r#"{"amount_cents": -5}"#)
            .expect("trips");
        assert!(t.detail.contains("/amount_cents"), "{}", t.detail);
        assert_eq!(
            (t.rule.as_str(), t.verdict),
            ("args.schema", GuardVerdict::Deny)
        );
        let t = s
            .check_result("refund", &json!({"refundId": "x"}))
            .expect("renamed field trips");
        assert_eq!(t.verdict, GuardVerdict::Escalate);
        assert!(t.detail.contains("refund_id"), "{}", t.detail);
    }
}
