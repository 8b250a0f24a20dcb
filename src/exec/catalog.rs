//! The tool catalog: what each tool is, as data the control plane and state machine can read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How much damage a wrong call can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Reads only.
    None,
    Low,
    Medium,
    High,
}

impl Impact {
    /// The risk contribution of the impact level alone, in [0, 1].
    pub fn base_risk(self) -> f64 {
        match self {
            Impact::None => 0.0,
            Impact::Low => 0.2,
            Impact::Medium => 0.5,
            Impact::High => 0.8,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub args_schema: serde_json::Value,
    /// JSON Schema of the result object.
    pub result_schema: serde_json::Value,
    /// Scopes the calling user must hold.
    pub auth_scopes: Vec<String>,
    pub impact: Impact,
    /// Safe to run again with the same idempotency key when an earlier attempt's outcome is unknown.
    pub idempotent: bool,
    /// The tool that undoes this one, if any.
    pub compensation: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    tools: BTreeMap<String, ToolSpec>,
}

impl Catalog {
    pub fn new(specs: impl IntoIterator<Item = ToolSpec>) -> Self {
        Catalog {
            tools: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}
