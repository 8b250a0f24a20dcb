//! The Cedar schema policies are validated against: fixed entity and action types, and the
//! `Args` and `Provenance` records generated from the tool catalog's JSON schemas.

use std::collections::BTreeMap;

use crate::exec::catalog::Catalog;

/// The schema policies are validated against; `{ARGS}` is generated from the catalog.
const SCHEMA_TEMPLATE: &str = r#"namespace Ballast {
  entity Tenant;
  entity Role;
  entity User in [Tenant, Role] = {
    "tenant": String,
    "roles": Set<String>,
    "scopes": Set<String>,
    "channel": String,
  };
  entity Tool = {
    "name": String,
    "impact": String,
    "impact_level": Long,
    "scopes": Set<String>,
    "tags": Set<String>,
    "idempotent": Bool,
    "reversible": Bool,
    "cost_micros": Long,
  };
  entity Response;
  type Budget = {
    "cost_left_micros": Long,
    "tokens_left": Long,
    "tool_calls_left": Long,
  };
  type Args = {ARGS};
  type Provenance = {PROVENANCE};
  action "call_tool" appliesTo {
    principal: [User],
    resource: [Tool],
    context: {
      "checkpoint": String,
      "step": Long,
      "args": Args,
      "features": Set<String>,
      "risk": Long,
      "confidence": Long,
      "failures": Long,
      "anomalies": Set<String>,
      "budget": Budget,
      "model_step": Long,
      "prior_tools": Set<String>,
      "provenance": Provenance,
      "unvouched_args": Set<String>,
    }
  };
  action "send_response" appliesTo {
    principal: [User],
    resource: [Response],
    context: {
      "risk": Long,
      "confidence": Long,
      "citations": Long,
      "tool_calls": Long,
      "anomalies": Set<String>,
      "budget": Budget,
    }
  };
}
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArgType {
    Long,
    String,
    Bool,
    /// A list of strings (recipients, participants): a set.
    StringSet,
    /// A non-integer number (an amount): Cedar's `decimal`, four places.
    Decimal,
}

/// The Cedar type of each tool argument policies may read, from the catalog's JSON schemas.
/// Every attribute is optional (tools differ); an argument two tools type differently, or whose
/// type Cedar cannot compare (non-integer numbers, objects), is left out.
pub(super) fn arg_types(catalog: &Catalog) -> BTreeMap<String, ArgType> {
    let mut out: BTreeMap<String, Option<ArgType>> = BTreeMap::new();
    for tool in catalog.iter() {
        let Some(props) = tool
            .args_schema
            .get("properties")
            .and_then(|p| p.as_object())
        else {
            continue;
        };
        for (name, schema) in props {
            let ty = match schema.get("type").and_then(|t| t.as_str()) {
                Some("integer") => Some(ArgType::Long),
                Some("string") => Some(ArgType::String),
                Some("boolean") => Some(ArgType::Bool),
                Some("number") => Some(ArgType::Decimal),
                Some("array")
                    if schema.pointer("/items/type").and_then(|t| t.as_str()) == Some("string") =>
                {
                    Some(ArgType::StringSet)
                }
                _ => None,
            };
            out.entry(name.clone())
                .and_modify(|t| {
                    if *t != ty {
                        *t = None
                    }
                })
                .or_insert(ty);
        }
    }
    out.into_iter()
        .filter_map(|(k, v)| v.map(|t| (k, t)))
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

/// Every argument name of the catalog Cedar can name (provenance covers all of them, whatever
/// their type).
pub(super) fn arg_names(catalog: &Catalog) -> std::collections::BTreeSet<String> {
    catalog
        .iter()
        .filter_map(|t| t.args_schema.get("properties").and_then(|p| p.as_object()))
        .flat_map(|p| p.keys().cloned())
        .filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

pub fn schema_text(catalog: &Catalog) -> String {
    let fields: Vec<String> = arg_types(catalog)
        .iter()
        .map(|(name, ty)| {
            let ty = match ty {
                ArgType::Long => "Long",
                ArgType::String => "String",
                ArgType::Bool => "Bool",
                ArgType::StringSet => "Set<String>",
                ArgType::Decimal => "decimal",
            };
            format!("\"{name}\"?: {ty}")
        })
        .collect();
    let provenance: Vec<String> = arg_names(catalog)
        .iter()
        .map(|name| format!("\"{name}\"?: Set<String>"))
        .collect();
    SCHEMA_TEMPLATE
        .replace("{ARGS}", &format!("{{{}}}", fields.join(", ")))
        .replace("{PROVENANCE}", &format!("{{{}}}", provenance.join(", ")))
}
