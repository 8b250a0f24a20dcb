//! The demo domain's tools: customer support over orders, refunds and email.
//!
//! Behaviour follows the arguments so workloads are reproducible: order ids starting with `A`
//! exist, `T` ids time out on the first attempt, `E` ids are unknown. Every real execution of a
//! side effect is appended to the [`EffectsJournal`] (`effects.jsonl`) so anyone can check from
//! outside that nothing ran twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::kb::KbRetriever;
use crate::exec::catalog::{Catalog, ToolSpec};
use crate::exec::{Tool, ToolError};
use crate::turn::ToolInvocation;

/// Append-only record of side effects that really ran: one JSON line per execution.
pub struct EffectsJournal {
    file: Option<Mutex<File>>,
}

impl EffectsJournal {
    pub fn open(path: &Path) -> std::io::Result<Arc<Self>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Arc::new(EffectsJournal {
            file: Some(Mutex::new(file)),
        }))
    }

    /// A journal that records nothing (benchmarks).
    pub fn disabled() -> Arc<Self> {
        Arc::new(EffectsJournal { file: None })
    }

    fn record(&self, call: &ToolInvocation) -> Result<(), ToolError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut line = json!({
            "call_id": call.call_id,
            "tool": call.tool,
            "idempotency_key": call.idempotency_key,
        })
        .to_string();
        line.push('\n');
        let mut f = file
            .lock()
            .map_err(|_| ToolError::terminal("effects journal lock poisoned"))?;
        // One write(2) of one line with O_APPEND: a kill never leaves half a line behind.
        f.write_all(line.as_bytes())
            .map_err(|e| ToolError::terminal(format!("effects journal: {e}")))
    }
}

/// The demo's tool catalog, `examples/demo/catalog.json`, built into the binary.
pub const CATALOG_JSON: &str = include_str!("../../examples/demo/catalog.json");

/// The demo catalog. The file is checked by the tests; were it broken, the demo would run with
/// no tools (every plan denied as naming unknown tools) and log why, rather than panic.
pub fn demo_catalog() -> Catalog {
    Catalog::from_json(CATALOG_JSON).unwrap_or_else(|e| {
        tracing::error!(error = %e, "examples/demo/catalog.json does not parse");
        Catalog::default()
    })
}

fn args(call: &ToolInvocation) -> Result<Value, ToolError> {
    serde_json::from_str(&call.args_json)
        .map_err(|e| ToolError::terminal(format!("arguments are not JSON: {e}")))
}

fn str_arg<'a>(v: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::terminal(format!("missing string argument {name}")))
}

/// Simulated service latency, derived from the call id so runs repeat.
async fn service_delay(call: &ToolInvocation, max_ms: u64) {
    if max_ms == 0 {
        return;
    }
    let h = call
        .call_id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    tokio::time::sleep(Duration::from_millis(1 + h % max_ms)).await;
}

struct DemoTool {
    spec: ToolSpec,
    journal: Arc<EffectsJournal>,
    latency_ms: u64,
    /// Refunds already issued, by idempotency key: the downstream's own dedup.
    issued: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl Tool for DemoTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, call: &ToolInvocation) -> Result<Value, ToolError> {
        service_delay(call, self.latency_ms).await;
        let a = args(call)?;
        match self.spec.name.as_str() {
            "search_kb" => {
                let query = str_arg(&a, "query")?;
                let docs = KbRetriever::search(
                    query,
                    3,
                    crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                );
                Ok(json!({
                    "documents": docs.iter().map(|d| json!({"id": d.id, "title": d.title})).collect::<Vec<_>>(),
                    "summary": docs.first().map_or("Nothing relevant in the knowledge base".to_string(), |d| d.snippet.clone()),
                }))
            }
            "lookup_order" => {
                let id = str_arg(&a, "order_id")?;
                match id.chars().next() {
                    Some('T') if call.attempt < 2 => Err(ToolError::retryable(
                        "order service timed out (no answer in 2000 ms)",
                    )),
                    Some('E') => Err(ToolError::terminal(format!("order {id} not found"))),
                    // `P` orders come back with the customer's contact details in the notes:
                    // PII a tool result carries, which must not reach the log.
                    Some('P') => Ok(json!({
                        "order_id": id,
                        "status": "shipped",
                        "summary": format!("Order {id} shipped to Jane Doe, jane.doe@example.com, +44 20 7946 0958, paid with 4111 1111 1111 1111 (IBAN GB82 WEST 1234 5698 7654 32)"),
                    })),
                    first => {
                        let delayed = id.bytes().map(u32::from).sum::<u32>() % 3 == 0;
                        let status = if delayed { "delayed" } else { "shipped" };
                        // What the order cost follows from its number: `B` (bulk) orders are
                        // large, the rest between 5 and 90 EUR.
                        let n: i64 = id
                            .chars()
                            .filter_map(|c| c.to_digit(10))
                            .fold(0, |n, d| n * 10 + i64::from(d));
                        let amount_cents = match first {
                            Some('B') => 12_000 + n % 13_000,
                            _ => 500 + n % 8_500,
                        };
                        Ok(json!({
                            "order_id": id,
                            "status": status,
                            "amount_cents": amount_cents,
                            "summary": format!("Order {id} is {status}, {:.2} EUR", amount_cents as f64 / 100.0),
                        }))
                    }
                }
            }
            "issue_refund" => {
                let id = str_arg(&a, "order_id")?;
                let amount = a.get("amount_cents").and_then(Value::as_i64).unwrap_or(0);
                if amount <= 0 || amount > 50_000 {
                    return Err(ToolError::terminal(format!(
                        "refund of {amount} cents is outside 1..=50000"
                    )));
                }
                self.journal.record(call)?;
                let mut issued = self
                    .issued
                    .lock()
                    .map_err(|_| ToolError::terminal("refund ledger lock poisoned"))?;
                let n = issued.len();
                let refund_id = issued
                    .entry(call.idempotency_key.clone())
                    .or_insert_with(|| format!("rf-{n:06}"))
                    .clone();
                Ok(json!({
                    "refund_id": refund_id,
                    "order_id": id,
                    "amount_cents": amount,
                    "summary": format!("Refund {refund_id} of {:.2} EUR issued for order {id}", amount as f64 / 100.0),
                }))
            }
            "reverse_refund" => {
                let refund_id = str_arg(&a, "refund_id")?;
                self.journal.record(call)?;
                Ok(
                    json!({"refund_id": refund_id, "reversed": true, "summary": format!("Refund {refund_id} reversed")}),
                )
            }
            "send_email" => {
                let customer = str_arg(&a, "customer_id")?;
                let template = str_arg(&a, "template")?;
                self.journal.record(call)?;
                Ok(
                    json!({"message_id": format!("msg-{}", call.idempotency_key), "summary": format!("Email '{template}' sent to customer {customer}")}),
                )
            }
            // `W` skus: the warehouse service is down (its breaker opens after a few failures).
            "warehouse_stock" => {
                let sku = str_arg(&a, "sku")?;
                if sku.starts_with('W') {
                    return Err(ToolError::retryable("warehouse service unavailable (503)"));
                }
                Ok(
                    json!({"sku": sku, "in_stock": 3 + sku.len() as i64, "summary": format!("{sku}: in stock")}),
                )
            }
            // `R` tracking ids: the carrier renamed a field (schema drift the post-tool guard catches).
            "carrier_status" => {
                let id = str_arg(&a, "tracking_id")?;
                if id.starts_with('R') {
                    return Ok(
                        json!({"tracking_id": id, "state": "in_transit", "summary": format!("Parcel {id} is in transit")}),
                    );
                }
                Ok(
                    json!({"tracking_id": id, "status": "in_transit", "summary": format!("Parcel {id} is in transit")}),
                )
            }
            other => Err(ToolError::terminal(format!("demo has no tool {other}"))),
        }
    }
}

/// The demo's tools. `latency_ms` is the most a simulated service call takes (0 = instant).
pub fn demo_tools(journal: Arc<EffectsJournal>, latency_ms: u64) -> Vec<Arc<dyn Tool>> {
    demo_catalog()
        .iter()
        .map(|spec| {
            Arc::new(DemoTool {
                spec: spec.clone(),
                journal: Arc::clone(&journal),
                latency_ms,
                issued: Mutex::new(HashMap::new()),
            }) as Arc<dyn Tool>
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::catalog::Impact;

    #[test]
    fn the_example_catalog_parses() {
        let c = Catalog::from_json(CATALOG_JSON).expect("examples/demo/catalog.json parses");
        assert_eq!(c.len(), 7);
        let refund = c.get("issue_refund").expect("issue_refund");
        assert_eq!(refund.impact, Impact::High);
        assert_eq!(refund.compensation.as_deref(), Some("reverse_refund"));
        assert!(!refund.risk_thresholds.is_empty());
    }
}
