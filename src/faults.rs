//! The fault layer: wrappers around the execution plane's retriever, planner and tools that
//! inject the faults of a drill. Whether a fault hits a given call is a pure function of the
//! seed, the fault, the turn and the call (a hash, not a shared random stream), so a drill hits
//! the same calls whatever order the runtime runs them in.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::exec::catalog::ToolSpec;
use crate::exec::{ExecutionPlane, PlanRequest, Planner, Retriever, Tool, ToolError, Toolbox};
use crate::ids::TurnId;
use crate::turn::{ExecFailure, Planned, Retrieval, ToolInvocation};

/// One kind of fault and how often it hits.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Retrieval fails (errors, or with `timeout` no answer in time).
    RetrievalOutage { rate: f64, timeout: bool },
    /// Retrieved documents are older than any max age.
    StaleContext { rate: f64 },
    /// A second document states a different value for a fact the first states.
    ContradictoryContext { rate: f64 },
    /// Tool results rename their first field (a changed upstream schema).
    ToolSchemaMismatch { rate: f64, tool: Option<String> },
    /// The planner reports no confidence (NaN).
    DroppedConfidence { rate: f64 },
    /// Tools answer `delay_ms` later (default 1.5 s: under the demo tools' 2 s timeout, so
    /// turns get slow rather than fail).
    SlowTools { rate: f64, delay_ms: u64 },
    /// Tools fail (retryably unless `terminal`).
    FailingTools { rate: f64, terminal: bool },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RetrievalOutage { .. } => "retrieval_outage",
            Fault::StaleContext { .. } => "stale_context",
            Fault::ContradictoryContext { .. } => "contradictory_context",
            Fault::ToolSchemaMismatch { .. } => "tool_schema_mismatch",
            Fault::DroppedConfidence { .. } => "dropped_confidence",
            Fault::SlowTools { .. } => "slow_tools",
            Fault::FailingTools { .. } => "failing_tools",
        }
    }

    fn rate(&self) -> f64 {
        match self {
            Fault::RetrievalOutage { rate, .. }
            | Fault::StaleContext { rate }
            | Fault::ContradictoryContext { rate }
            | Fault::ToolSchemaMismatch { rate, .. }
            | Fault::DroppedConfidence { rate }
            | Fault::SlowTools { rate, .. }
            | Fault::FailingTools { rate, .. } => *rate,
        }
    }

    /// `name` or `name:key=value,key=value` (rate, timeout, tool, delay_ms, terminal).
    pub fn describe(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .map(|o| {
                let args: Vec<String> = o
                    .iter()
                    .filter(|(k, v)| *k != "kind" && !v.is_null())
                    .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                    .collect();
                format!("{}({})", self.name(), args.join(", "))
            })
            .unwrap_or_else(|| self.name().to_string())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s.split_once(':').unwrap_or((s, ""));
        let mut kv = std::collections::BTreeMap::new();
        for pair in rest.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected key=value"))?;
            kv.insert(k.trim().to_string(), v.trim().to_string());
        }
        let num = |k: &str, default: f64| -> Result<f64, String> {
            kv.get(k)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| format!("{k}={v} is not a number"))
                })
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        let flag = |k: &str| kv.get(k).is_some_and(|v| v == "true" || v == "1");
        let rate = num("rate", 1.0)?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("rate={rate} must be within 0..1"));
        }
        let fault = match name.trim() {
            "retrieval_outage" => Fault::RetrievalOutage {
                rate,
                timeout: flag("timeout"),
            },
            "stale_context" => Fault::StaleContext { rate },
            "contradictory_context" => Fault::ContradictoryContext { rate },
            "tool_schema_mismatch" => Fault::ToolSchemaMismatch {
                rate,
                tool: kv.get("tool").cloned(),
            },
            "dropped_confidence" => Fault::DroppedConfidence { rate },
            "slow_tools" => Fault::SlowTools {
                rate,
                delay_ms: num("delay_ms", 1_500.0)? as u64,
            },
            "failing_tools" => Fault::FailingTools {
                rate,
                terminal: flag("terminal"),
            },
            other => {
                return Err(format!(
                    "unknown fault {other:?}; one of retrieval_outage, stale_context, contradictory_context, \
                     tool_schema_mismatch, dropped_confidence, slow_tools, failing_tools"
                ));
            }
        };
        Ok(fault)
    }
}

/// The faults of one drill, with their seed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faults {
    pub seed: u64,
    pub faults: Vec<Fault>,
}

/// FNV-1a over the parts: a stable hash (std's is randomized per process).
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Faults {
    /// Whether `fault` hits the call identified by `key` of `turn`.
    fn hits(&self, fault: &Fault, turn: TurnId, key: &str) -> bool {
        let h = hash(&[
            &self.seed.to_le_bytes(),
            fault.name().as_bytes(),
            turn.0.as_bytes(),
            key.as_bytes(),
        ]);
        ((h >> 11) as f64 / ((1u64 << 53) as f64)) < fault.rate()
    }

    fn first_hit(&self, turn: TurnId, key: &str, pick: impl Fn(&Fault) -> bool) -> Option<&Fault> {
        self.faults
            .iter()
            .find(|f| pick(f) && self.hits(f, turn, key))
    }

    /// The execution plane with these faults injected.
    pub fn wrap(&self, plane: ExecutionPlane) -> ExecutionPlane {
        let me = Arc::new(self.clone());
        let tools: Vec<Arc<dyn Tool>> = plane
            .tools
            .catalog()
            .iter()
            .filter_map(|spec| plane.tools.get(&spec.name).cloned())
            .map(|inner| {
                Arc::new(FaultyTool {
                    inner,
                    faults: Arc::clone(&me),
                }) as Arc<dyn Tool>
            })
            .collect();
        ExecutionPlane {
            retriever: Arc::new(FaultyRetriever {
                inner: plane.retriever,
                faults: Arc::clone(&me),
            }),
            planner: Arc::new(FaultyPlanner {
                inner: plane.planner,
                faults: me,
            }),
            tools: Toolbox::new(tools),
        }
    }
}

struct FaultyRetriever {
    inner: Arc<dyn Retriever>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Retriever for FaultyRetriever {
    async fn retrieve(
        &self,
        turn: TurnId,
        tenant: &str,
        query: &str,
    ) -> Result<Retrieval, ExecFailure> {
        if let Some(Fault::RetrievalOutage { timeout, .. }) =
            self.faults.first_hit(turn, "retrieve", |f| {
                matches!(f, Fault::RetrievalOutage { .. })
            })
        {
            return Err(ExecFailure {
                message: if *timeout {
                    "drill: retrieval timed out".into()
                } else {
                    "drill: retrieval service unavailable (503)".into()
                },
                retryable: false,
                latency_ms: 0,
            });
        }
        let mut r = self.inner.retrieve(turn, tenant, query).await?;
        if self
            .faults
            .first_hit(turn, "stale", |f| matches!(f, Fault::StaleContext { .. }))
            .is_some()
        {
            for d in &mut r.documents {
                // Older than any sensible max age: ten years.
                d.updated_at_ms -= 10 * 365 * 86_400_000;
            }
        }
        if self
            .faults
            .first_hit(turn, "contradict", |f| {
                matches!(f, Fault::ContradictoryContext { .. })
            })
            .is_some()
        {
            if let Some(first) = r.documents.first().cloned() {
                let mut other = first.clone();
                other.id = format!("{}-conflicting", first.id);
                other.score = (first.score * 0.9).max(0.01);
                other.facts = if first.facts.is_empty() {
                    std::collections::BTreeMap::from([("policy".to_string(), "b".to_string())])
                } else {
                    first
                        .facts
                        .iter()
                        .map(|(k, v)| (k.clone(), format!("not {v}")))
                        .collect()
                };
                if first.facts.is_empty() {
                    if let Some(d) = r.documents.first_mut() {
                        d.facts.insert("policy".into(), "a".into());
                    }
                }
                r.documents.insert(1, other);
            }
        }
        Ok(r)
    }
}

struct FaultyPlanner {
    inner: Arc<dyn Planner>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Planner for FaultyPlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, ExecFailure> {
        let mut p = self.inner.plan(request).await?;
        let key = format!("plan/{}", request.attempt);
        if self
            .faults
            .first_hit(request.turn_id, &key, |f| {
                matches!(f, Fault::DroppedConfidence { .. })
            })
            .is_some()
        {
            p.confidence = f64::NAN;
        }
        Ok(p)
    }
}

struct FaultyTool {
    inner: Arc<dyn Tool>,
    faults: Arc<Faults>,
}

fn turn_of(call: &ToolInvocation) -> TurnId {
    // Call ids start with the turn id (`TURN/rREV/sSTEP`).
    call.call_id
        .split('/')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(TurnId(uuid::Uuid::nil()))
}

#[async_trait]
impl Tool for FaultyTool {
    fn spec(&self) -> &ToolSpec {
        self.inner.spec()
    }

    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        let turn = turn_of(call);
        let key = format!("{}#{}", call.call_id, call.attempt);
        let name = &self.spec().name;
        if let Some(Fault::SlowTools { delay_ms, .. }) = self
            .faults
            .first_hit(turn, &key, |f| matches!(f, Fault::SlowTools { .. }))
        {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
        }
        if let Some(Fault::FailingTools { terminal, .. }) = self
            .faults
            .first_hit(turn, &key, |f| matches!(f, Fault::FailingTools { .. }))
        {
            let message = format!("drill: {name} failed (injected)");
            return Err(if *terminal {
                ToolError::terminal(message)
            } else {
                ToolError::retryable(message)
            });
        }
        let mut value = self.inner.call(call).await?;
        let mismatch = self.faults.first_hit(turn, &key, |f| {
            matches!(f, Fault::ToolSchemaMismatch { tool, .. } if tool.as_deref().is_none_or(|t| t == name))
        });
        if mismatch.is_some() {
            if let Some(obj) = value.as_object_mut() {
                // The first field the schema requires (else the first field), renamed.
                let required = self.spec().result_schema["required"]
                    .as_array()
                    .and_then(|r| r.first())
                    .and_then(|f| f.as_str())
                    .map(str::to_owned);
                let field = required.or_else(|| obj.keys().next().cloned());
                if let Some(field) = field {
                    if let Some(v) = obj.remove(&field) {
                        obj.insert(format!("{field}_v2"), v);
                    }
                }
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_hit_reproducibly() {
        let f: Fault = "failing_tools:rate=0.25,terminal=true"
            .parse()
            .expect("parses");
        assert_eq!(
            f,
            Fault::FailingTools {
                rate: 0.25,
                terminal: true
            }
        );
        assert!("nope".parse::<Fault>().is_err());
        assert!("slow_tools:rate=2".parse::<Fault>().is_err());
        let faults = Faults {
            seed: 7,
            faults: vec![f.clone()],
        };
        let turns: Vec<TurnId> = (0..2000)
            .map(|i| TurnId::from_parts(1_700_000_000_000 + i, [1; 10]))
            .collect();
        let hits = turns.iter().filter(|t| faults.hits(&f, **t, "x")).count();
        assert!((400..600).contains(&hits), "about a quarter: {hits}");
        let again = turns.iter().filter(|t| faults.hits(&f, **t, "x")).count();
        assert_eq!(hits, again);
        let other_seed = Faults {
            seed: 8,
            faults: vec![f.clone()],
        };
        let differ = turns
            .iter()
            .filter(|t| faults.hits(&f, **t, "x") != other_seed.hits(&f, **t, "x"))
            .count();
        assert!(differ > 0);
    }
}
