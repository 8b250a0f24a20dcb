//! Per-tool circuit breakers across turns. A tool opens after `failures` failed attempts within
//! `window_ms`; while open, calls are refused without running. After `open_ms` one call goes
//! through as a probe (half-open): its success closes the breaker, its failure opens it again.
//! The state is the partition's tool-call events applied in log order, so a restart rebuilds it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event::{Event, GuardVerdict, Payload, ToolFailureKind};

use super::Trip;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    pub failures: usize,
    pub window_ms: i64,
    pub open_ms: i64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            window_ms: 60_000,
            open_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Breaker {
    failures: VecDeque<i64>,
    opened_at: Option<i64>,
    /// The call probing a half-open breaker.
    probe: Option<String>,
}

/// What a breaker says about a new call at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until_ms: i64,
    },
    /// Cooled down: the next call is the probe.
    HalfOpen,
    /// A probe is running; others wait for its answer.
    Probing,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakers {
    config: BreakerConfig,
    tools: BTreeMap<String, Breaker>,
    /// Attempts in flight: call id → tool (results name only the call).
    running: HashMap<String, String>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Breakers {
            config,
            ..Breakers::default()
        }
    }

    /// Keeps the state, adopting the configured thresholds (a snapshot may carry older ones).
    pub fn with_config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    pub fn state(&self, tool: &str, now_ms: i64) -> BreakerState {
        let Some(b) = self.tools.get(tool) else {
            return BreakerState::Closed;
        };
        match (b.opened_at, &b.probe) {
            (None, _) => BreakerState::Closed,
            (Some(_), Some(_)) => BreakerState::Probing,
            (Some(at), None) if now_ms < at + self.config.open_ms => BreakerState::Open {
                until_ms: at + self.config.open_ms,
            },
            (Some(_), None) => BreakerState::HalfOpen,
        }
    }

    /// Pre-tool: refuses a call while the tool's breaker is open or its probe is running.
    pub fn check(&self, tool: &str, now_ms: i64) -> Option<Trip> {
        match self.state(tool, now_ms) {
            BreakerState::Closed | BreakerState::HalfOpen => None,
            BreakerState::Open { until_ms } => Some(Trip::new(
                "breaker",
                "breaker.open",
                GuardVerdict::Deny,
                format!("{tool} failed repeatedly; its circuit is open until {until_ms}"),
            )),
            BreakerState::Probing => Some(Trip::new(
                "breaker",
                "breaker.half_open",
                GuardVerdict::Deny,
                format!("{tool} is being probed after failures; not sending more calls yet"),
            )),
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match &event.payload {
            Payload::ToolCallStarted(s) => {
                self.running.insert(s.call_id.clone(), s.tool.clone());
                let half_open = self.state(&s.tool, event.at_ms) == BreakerState::HalfOpen;
                if half_open && let Some(b) = self.tools.get_mut(&s.tool) {
                    b.probe = Some(s.call_id.clone());
                }
            }
            Payload::ToolCallCompleted(c) => {
                if let Some(tool) = self.running.remove(&c.call_id) {
                    // Success closes the breaker and forgets the failures.
                    self.tools.remove(&tool);
                }
            }
            Payload::ToolCallFailed(f) => {
                let Some(tool) = self.running.remove(&f.call_id) else {
                    return;
                };
                // Only failures that say the tool is unhealthy count: timeouts and retryable
                // errors. A terminal error (not found, bad input) is an answer, and a worker
                // crash is not the tool's fault.
                let unhealthy = f.kind == ToolFailureKind::Timeout
                    || (f.kind == ToolFailureKind::Error && f.retryable);
                if !unhealthy {
                    return;
                }
                let (window, threshold) = (self.config.window_ms, self.config.failures.max(1));
                let b = self.tools.entry(tool).or_default();
                b.failures.push_back(event.at_ms);
                while b
                    .failures
                    .front()
                    .is_some_and(|t| *t <= event.at_ms - window)
                {
                    b.failures.pop_front();
                }
                if b.probe.as_deref() == Some(f.call_id.as_str()) {
                    b.probe = None;
                    b.opened_at = Some(event.at_ms);
                } else if b.opened_at.is_none() && b.failures.len() >= threshold {
                    b.opened_at = Some(event.at_ms);
                }
            }
            _ => {}
        }
    }

    /// Tools whose breaker is not closed.
    pub fn open_tools(&self) -> Vec<String> {
        self.tools
            .iter()
            .filter(|(_, b)| b.opened_at.is_some())
            .map(|(t, _)| t.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ToolCallCompleted, ToolCallFailed, ToolCallStarted};
    use crate::ids::TurnId;

    fn ev(at_ms: i64, payload: Payload) -> Event {
        let t = TurnId::from_parts(1, [1; 10]);
        Event {
            event_id: t.event_id(0),
            turn_id: t,
            tenant: "a".into(),
            seq: 0,
            at_ms,
            payload,
        }
    }
    fn started(id: &str) -> Payload {
        Payload::ToolCallStarted(ToolCallStarted {
            call_id: id.into(),
            step: 0,
            tool: "carrier".into(),
            args_json: "{}".into(),
            idempotency_key: id.into(),
            attempt: 1,
            idempotent: true,
        })
    }
    fn failed(id: &str) -> Payload {
        Payload::ToolCallFailed(ToolCallFailed {
            call_id: id.into(),
            attempt: 1,
            kind: ToolFailureKind::Error,
            error: "503".into(),
            retryable: true,
            latency_ms: 1,
        })
    }
    fn ok(id: &str) -> Payload {
        Payload::ToolCallCompleted(ToolCallCompleted {
            call_id: id.into(),
            attempt: 1,
            result_json: "{}".into(),
            latency_ms: 1,
        })
    }

    #[test]
    fn opens_after_failures_probes_when_cooled_and_closes_on_success() {
        let mut b = Breakers::new(BreakerConfig {
            failures: 3,
            window_ms: 1_000,
            open_ms: 500,
        });
        for (i, t) in [10, 20, 30].iter().enumerate() {
            let id = format!("c{i}");
            b.apply(&ev(*t, started(&id)));
            b.apply(&ev(*t, failed(&id)));
        }
        assert_eq!(
            b.state("carrier", 100),
            BreakerState::Open { until_ms: 530 }
        );
        assert!(
            b.check("carrier", 100)
                .is_some_and(|t| t.rule == "breaker.open")
        );
        assert_eq!(b.state("carrier", 600), BreakerState::HalfOpen);
        assert!(b.check("carrier", 600).is_none(), "the probe may go");
        // The probe fails: open again, from now.
        b.apply(&ev(600, started("p1")));
        assert_eq!(b.state("carrier", 601), BreakerState::Probing);
        b.apply(&ev(610, failed("p1")));
        assert_eq!(
            b.state("carrier", 700),
            BreakerState::Open { until_ms: 1_110 }
        );
        // The next probe succeeds: closed.
        b.apply(&ev(1_200, started("p2")));
        b.apply(&ev(1_210, ok("p2")));
        assert_eq!(b.state("carrier", 1_211), BreakerState::Closed);
        assert!(b.open_tools().is_empty());
    }

    #[test]
    fn answers_that_are_errors_do_not_count() {
        let mut b = Breakers::new(BreakerConfig {
            failures: 1,
            window_ms: 100,
            open_ms: 500,
        });
        b.apply(&ev(0, started("a")));
        let mut not_found = failed("a");
        if let Payload::ToolCallFailed(f) = &mut not_found {
            f.retryable = false;
        }
        b.apply(&ev(0, not_found));
        assert_eq!(b.state("carrier", 1), BreakerState::Closed);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let mut b = Breakers::new(BreakerConfig {
            failures: 2,
            window_ms: 100,
            open_ms: 500,
        });
        b.apply(&ev(0, started("a")));
        b.apply(&ev(0, failed("a")));
        b.apply(&ev(500, started("b")));
        b.apply(&ev(500, failed("b")));
        assert_eq!(b.state("carrier", 501), BreakerState::Closed);
    }
}
