//! Budgets: per turn (tokens, cost, tool calls, wall time, retries) and per user and per tenant
//! over a rolling window (tokens, cost).
//!
//! A call's budget is reserved (BudgetReserved) before the call runs and committed
//! (BudgetCommitted, with what it really used) or released (BudgetReleased) after. The [`Ledger`]
//! is the window accounts of one partition, rebuilt by applying those events in log order, so it
//! survives restarts with the log. Turns are routed to partitions by `tenant/user`, so all turns
//! of a user are decided one at a time by one partition actor and can never overspend that
//! user's budget together. A tenant's users span partitions; each partition enforces its share
//! (the tenant limit divided by the partition count): never overspent, at the price of refusing
//! early when one partition carries most of a tenant's load.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event::{Event, Payload};

/// Per-turn ceilings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnBudgetLimits {
    pub tokens: i64,
    pub cost_micros: i64,
    pub tool_calls: i32,
    pub wall_ms: i64,
    pub retries: i32,
}

impl Default for TurnBudgetLimits {
    fn default() -> Self {
        TurnBudgetLimits {
            tokens: 50_000,
            cost_micros: 2_000_000,
            tool_calls: 16,
            wall_ms: 300_000,
            retries: 8,
        }
    }
}

/// Ceilings over the rolling window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowLimits {
    pub tokens: i64,
    pub cost_micros: i64,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            tokens: i64::MAX / 4,
            cost_micros: i64::MAX / 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetLimits {
    pub turn: TurnBudgetLimits,
    pub window_ms: i64,
    pub user: WindowLimits,
    pub tenant: WindowLimits,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            turn: TurnBudgetLimits::default(),
            window_ms: 3_600_000,
            user: WindowLimits::default(),
            tenant: WindowLimits::default(),
        }
    }
}

impl BudgetLimits {
    /// The limits one of `partitions` partitions enforces: the tenant window is shared out.
    pub fn for_partitions(&self, partitions: u32) -> BudgetLimits {
        let n = i64::from(partitions.max(1));
        let mut out = self.clone();
        out.tenant.tokens /= n;
        out.tenant.cost_micros /= n;
        out
    }
}

pub fn user_account(tenant: &str, user: &str) -> String {
    format!("user:{tenant}/{user}")
}

pub fn tenant_account(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

/// Tokens and cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub tokens: i64,
    pub cost_micros: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    reserved: Amount,
    /// Committed spend by time, oldest first; entries older than the window are dropped.
    spent: VecDeque<(i64, Amount)>,
}

impl Account {
    fn spent_since(&self, from_ms: i64) -> Amount {
        self.spent
            .iter()
            .filter(|(at, _)| *at > from_ms)
            .fold(Amount::default(), |acc, (_, a)| Amount {
                tokens: acc.tokens + a.tokens,
                cost_micros: acc.cost_micros + a.cost_micros,
            })
    }

    fn is_idle(&self) -> bool {
        self.reserved == Amount::default() && self.spent.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Open {
    accounts: [String; 2],
    amount: Amount,
}

/// The window accounts of one partition, as of the events applied so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    window_ms: i64,
    accounts: BTreeMap<String, Account>,
    open: BTreeMap<String, Open>,
}

impl Ledger {
    pub fn new(window_ms: i64) -> Self {
        Ledger {
            window_ms,
            ..Ledger::default()
        }
    }

    /// Keeps the accounts, adopting the configured window (a snapshot may carry an older one).
    pub fn with_window(mut self, window_ms: i64) -> Self {
        self.window_ms = window_ms;
        self
    }

    /// What `account` has left under `limit` at `now_ms`: the limit minus the window's committed
    /// spend minus open reservations.
    pub fn left(&self, account: &str, limit: &WindowLimits, now_ms: i64) -> Amount {
        let (reserved, spent) = match self.accounts.get(account) {
            Some(a) => (a.reserved, a.spent_since(now_ms - self.window_ms)),
            None => (Amount::default(), Amount::default()),
        };
        Amount {
            tokens: limit.tokens - reserved.tokens - spent.tokens,
            cost_micros: limit.cost_micros - reserved.cost_micros - spent.cost_micros,
        }
    }

    /// Applies a budget event (others are ignored). Pure and idempotent per reservation id.
    pub fn apply(&mut self, event: &Event) {
        match &event.payload {
            Payload::BudgetReserved(r) => {
                if self.open.contains_key(&r.reservation_id) {
                    return;
                }
                let amount = Amount {
                    tokens: r.tokens,
                    cost_micros: r.cost_micros,
                };
                let accounts = [
                    user_account(&event.tenant, &r.user_id),
                    tenant_account(&event.tenant),
                ];
                for key in &accounts {
                    let a = self.accounts.entry(key.clone()).or_default();
                    a.reserved.tokens += amount.tokens;
                    a.reserved.cost_micros += amount.cost_micros;
                }
                self.open
                    .insert(r.reservation_id.clone(), Open { accounts, amount });
            }
            Payload::BudgetCommitted(c) => {
                let used = Amount {
                    tokens: c.tokens,
                    cost_micros: c.cost_micros,
                };
                self.close(&c.reservation_id, Some(used), event.at_ms);
            }
            Payload::BudgetReleased(r) => self.close(&r.reservation_id, None, event.at_ms),
            _ => {}
        }
    }

    fn close(&mut self, id: &str, used: Option<Amount>, at_ms: i64) {
        let Some(open) = self.open.remove(id) else {
            return;
        };
        let horizon = at_ms - self.window_ms;
        for key in &open.accounts {
            let Some(a) = self.accounts.get_mut(key) else {
                continue;
            };
            a.reserved.tokens -= open.amount.tokens;
            a.reserved.cost_micros -= open.amount.cost_micros;
            if let Some(used) = used {
                a.spent.push_back((at_ms, used));
            }
            while a.spent.front().is_some_and(|(t, _)| *t <= horizon) {
                a.spent.pop_front();
            }
            if a.is_idle() {
                self.accounts.remove(key);
            }
        }
    }

    pub fn open_reservations(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BudgetCommitted, BudgetPurpose, BudgetReleased, BudgetReserved};
    use crate::ids::TurnId;

    fn event(at_ms: i64, payload: Payload) -> Event {
        let turn = TurnId::from_parts(1, [1; 10]);
        Event {
            event_id: turn.event_id(0),
            turn_id: turn,
            tenant: "acme".into(),
            seq: 0,
            at_ms,
            payload,
        }
    }

    fn reserve(id: &str, cost: i64) -> Payload {
        Payload::BudgetReserved(BudgetReserved {
            reservation_id: id.into(),
            purpose: BudgetPurpose::Tool,
            user_id: "u1".into(),
            call_id: None,
            tokens: 0,
            cost_micros: cost,
            tool_calls: 1,
            retries: 0,
            user_cost_left_micros: 0,
            tenant_cost_left_micros: 0,
        })
    }

    #[test]
    fn reservations_hold_budget_until_committed_or_released_and_spend_ages_out() {
        let limit = WindowLimits {
            tokens: 1_000,
            cost_micros: 100,
        };
        let user = user_account("acme", "u1");
        let mut l = Ledger::new(1_000);
        l.apply(&event(0, reserve("a", 30)));
        l.apply(&event(0, reserve("a", 30))); // a duplicate changes nothing
        l.apply(&event(0, reserve("b", 50)));
        assert_eq!(l.left(&user, &limit, 10).cost_micros, 20);
        l.apply(&event(
            100,
            Payload::BudgetCommitted(BudgetCommitted {
                reservation_id: "a".into(),
                tokens: 0,
                cost_micros: 25,
            }),
        ));
        l.apply(&event(
            200,
            Payload::BudgetReleased(BudgetReleased {
                reservation_id: "b".into(),
                reason: "failed".into(),
            }),
        ));
        assert_eq!(l.left(&user, &limit, 200).cost_micros, 75);
        assert_eq!(l.left(&tenant_account("acme"), &limit, 200).cost_micros, 75);
        // The committed 25 leaves the window 1000 ms after it was spent.
        assert_eq!(l.left(&user, &limit, 1_101).cost_micros, 100);
        assert_eq!(l.open_reservations(), 0);
    }

    #[test]
    fn tenant_limits_are_shared_out_across_partitions() {
        let limits = BudgetLimits {
            tenant: WindowLimits {
                tokens: 1_000,
                cost_micros: 90,
            },
            ..BudgetLimits::default()
        };
        let per = limits.for_partitions(3);
        assert_eq!(per.tenant.cost_micros, 30);
        assert_eq!(per.user, limits.user);
    }
}
