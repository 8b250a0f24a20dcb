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

/// Spend is kept in this many buckets per window.
const BUCKETS_PER_WINDOW: i64 = 64;

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

/// Spend committed within one bucket of time: checks stay O(buckets), not O(commits).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Bucket {
    start_ms: i64,
    /// The latest commit in the bucket: the bucket leaves the window only when it does, so
    /// bucketing can refuse a little early but never lets spend expire before its time.
    latest_ms: i64,
    amount: Amount,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    reserved: Amount,
    /// Committed spend by time, oldest first; buckets that left the window are dropped.
    spent: VecDeque<Bucket>,
    /// The sum of `spent`.
    spent_total: Amount,
}

impl Amount {
    fn add(&mut self, other: Amount) {
        self.tokens += other.tokens;
        self.cost_micros += other.cost_micros;
    }

    fn sub(&mut self, other: Amount) {
        self.tokens -= other.tokens;
        self.cost_micros -= other.cost_micros;
    }
}

impl Account {
    /// Spend still in the window that starts after `from_ms`: the total minus the (few) oldest
    /// buckets that have aged out since the last event pruned them.
    fn spent_since(&self, from_ms: i64) -> Amount {
        let mut total = self.spent_total;
        for b in self.spent.iter().take_while(|b| b.latest_ms <= from_ms) {
            total.sub(b.amount);
        }
        total
    }

    fn record(&mut self, at_ms: i64, used: Amount, bucket_ms: i64) {
        match self.spent.back_mut() {
            Some(b) if at_ms >= b.start_ms && at_ms - b.start_ms < bucket_ms => {
                b.latest_ms = b.latest_ms.max(at_ms);
                b.amount.add(used);
            }
            _ => self.spent.push_back(Bucket {
                start_ms: at_ms,
                latest_ms: at_ms,
                amount: used,
            }),
        }
        self.spent_total.add(used);
    }

    fn prune(&mut self, horizon_ms: i64) {
        while let Some(b) = self.spent.front() {
            if b.latest_ms > horizon_ms {
                break;
            }
            self.spent_total.sub(b.amount);
            self.spent.pop_front();
        }
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
                    self.accounts
                        .entry(key.clone())
                        .or_default()
                        .reserved
                        .add(amount);
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
        let bucket_ms = (self.window_ms / BUCKETS_PER_WINDOW).max(1);
        for key in &open.accounts {
            let Some(a) = self.accounts.get_mut(key) else {
                continue;
            };
            a.reserved.sub(open.amount);
            if let Some(used) = used {
                a.record(at_ms, used, bucket_ms);
            }
            a.prune(horizon);
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
        assert_eq!(l.left(&user, &limit, 1_099).cost_micros, 75);
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

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn many_commits_share_buckets_and_never_expire_early() {
        let mut a = Account::default();
        let one = Amount {
            tokens: 1,
            cost_micros: 10,
        };
        for t in 0..10_000 {
            a.record(t, one, 100);
        }
        assert_eq!(a.spent.len(), 100, "one bucket per 100 ms");
        assert_eq!(a.spent_since(-1).cost_micros, 100_000);
        // Bucket [0, 100) holds commits up to t = 99: it counts until 99 leaves the window.
        assert_eq!(a.spent_since(98).cost_micros, 100_000);
        assert_eq!(a.spent_since(99).cost_micros, 99_000);
        a.prune(99);
        assert_eq!((a.spent.len(), a.spent_total.cost_micros), (99, 99_000));
    }
}
