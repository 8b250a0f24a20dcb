//! Budgets inside `decide`: reserve before a model or tool call, commit or release after.
//!
//! A reservation must fit the turn's own limits and what the user's and the tenant's window
//! accounts have left (the partition's [`Ledger`]). A refusal is a control-plane decision:
//! PolicyEvaluated `deny` naming the exhausted budget, then the turn ends as denied.
//!
//! [`Ledger`]: crate::control::budget::Ledger

use crate::control::BudgetLeft;
use crate::control::budget::{Amount, tenant_account, user_account};
use crate::event::{
    BudgetCommitted, BudgetPurpose, BudgetReleased, BudgetReserved, Checkpoint, Outcome, Payload,
    PolicyDecision, PolicyEvaluated,
};

use super::decide::Builder;
use super::state::CallState;

/// The policy version recorded with budget decisions (limits come from configuration).
pub const BUDGET_POLICY_VERSION: &str = "budgets";

struct Ask {
    purpose: BudgetPurpose,
    call_id: Option<String>,
    tokens: i64,
    cost_micros: i64,
    tool_calls: i32,
    retries: i32,
}

impl Builder<'_, '_> {
    fn window_left(&self) -> (Amount, Amount) {
        let b = self.ctx.budgets;
        let now = self.ctx.now_ms;
        let user = self.ctx.ledger.left(
            &user_account(&self.state.tenant, &self.state.user_id),
            &b.user,
            now,
        );
        let tenant = self
            .ctx
            .ledger
            .left(&tenant_account(&self.state.tenant), &b.tenant, now);
        (user, tenant)
    }

    /// The tightest of turn, user and tenant budgets, as policies see it.
    pub(super) fn budget_left(&self) -> BudgetLeft {
        let t = &self.ctx.budgets.turn;
        let used = &self.state.budget;
        let (user, tenant) = self.window_left();
        BudgetLeft {
            cost_micros: (t.cost_micros - used.cost_micros)
                .min(user.cost_micros)
                .min(tenant.cost_micros),
            tokens: (t.tokens - used.tokens).min(user.tokens).min(tenant.tokens),
            tool_calls: i64::from(t.tool_calls - used.tool_calls),
        }
    }

    /// Which budget `ask` would exceed, if any: (rule id, reason).
    fn exceeded(&self, ask: &Ask) -> Option<(&'static str, String)> {
        let t = &self.ctx.budgets.turn;
        let used = &self.state.budget;
        let elapsed = self.ctx.now_ms - self.state.requested_at_ms;
        if elapsed > t.wall_ms {
            return Some((
                "budget.turn.wall_ms",
                format!("turn has run {elapsed} ms, limit {} ms", t.wall_ms),
            ));
        }
        if used.tool_calls + ask.tool_calls > t.tool_calls {
            return Some((
                "budget.turn.tool_calls",
                format!(
                    "turn has made {} tool calls, limit {}",
                    used.tool_calls, t.tool_calls
                ),
            ));
        }
        if used.retries + ask.retries > t.retries {
            return Some((
                "budget.turn.retries",
                format!(
                    "turn has retried {} times, limit {}",
                    used.retries, t.retries
                ),
            ));
        }
        if used.tokens + ask.tokens > t.tokens {
            return Some((
                "budget.turn.tokens",
                format!(
                    "turn has used {} tokens, needs {} more, limit {}",
                    used.tokens, ask.tokens, t.tokens
                ),
            ));
        }
        if used.cost_micros + ask.cost_micros > t.cost_micros {
            return Some((
                "budget.turn.cost",
                format!(
                    "turn has used {} µ¤, needs {} more, limit {}",
                    used.cost_micros, ask.cost_micros, t.cost_micros
                ),
            ));
        }
        let (user, tenant) = self.window_left();
        let window = [("user", user), ("tenant", tenant)];
        for (who, left) in window {
            if ask.tokens > left.tokens {
                return Some((
                    if who == "user" {
                        "budget.user.tokens"
                    } else {
                        "budget.tenant.tokens"
                    },
                    format!(
                        "{who} window has {} tokens left, this call needs {}",
                        left.tokens.max(0),
                        ask.tokens
                    ),
                ));
            }
            if ask.cost_micros > left.cost_micros {
                return Some((
                    if who == "user" {
                        "budget.user.cost"
                    } else {
                        "budget.tenant.cost"
                    },
                    format!(
                        "{who} window has {} µ¤ left, this call needs {}",
                        left.cost_micros.max(0),
                        ask.cost_micros
                    ),
                ));
            }
        }
        None
    }

    /// Reserves `ask`, or records the refusal and ends the turn. Returns whether it may go on.
    fn reserve(
        &mut self,
        ask: Ask,
        checkpoint: Checkpoint,
        step: Option<i32>,
        tool: Option<String>,
    ) -> bool {
        // A reservation that a cut-short decision left open is the one to use.
        if self
            .state
            .open_reservation(ask.call_id.as_deref())
            .is_some()
        {
            return true;
        }
        if let Some((rule, reason)) = self.exceeded(&ask) {
            self.emit(Payload::PolicyEvaluated(PolicyEvaluated {
                checkpoint,
                step,
                tool,
                decision: PolicyDecision::Deny,
                policy_ids: vec![rule.to_string()],
                reason: reason.clone(),
                risk_score: 0.0,
                policy_version: BUDGET_POLICY_VERSION.into(),
                ..PolicyEvaluated::default()
            }));
            self.complete(Outcome::Denied, format!("over budget: {reason}"));
            return false;
        }
        let (user, tenant) = self.window_left();
        let reservation_id = format!("{}/b{}", self.state.turn_id, self.state.budget.reservations);
        self.emit(Payload::BudgetReserved(BudgetReserved {
            reservation_id,
            purpose: ask.purpose,
            user_id: self.state.user_id.clone(),
            call_id: ask.call_id,
            tokens: ask.tokens,
            cost_micros: ask.cost_micros,
            tool_calls: ask.tool_calls,
            retries: ask.retries,
            user_cost_left_micros: user.cost_micros - ask.cost_micros,
            tenant_cost_left_micros: tenant.cost_micros - ask.cost_micros,
        }));
        true
    }

    fn model_cost(&self, tokens: i64) -> i64 {
        let price = self
            .state
            .route
            .as_ref()
            .map_or(0, |r| r.micros_per_1k_tokens);
        tokens.saturating_mul(price) / 1000
    }

    pub(super) fn reserve_model(&mut self) -> bool {
        let tokens = self.state.route.as_ref().map_or(0, |r| r.reserve_tokens);
        let ask = Ask {
            purpose: BudgetPurpose::Model,
            call_id: None,
            tokens,
            cost_micros: self.model_cost(tokens),
            tool_calls: 0,
            retries: 0,
        };
        self.reserve(ask, Checkpoint::PreModel, None, None)
    }

    /// What the turn's model calls have cost so far (all steps, at the profile's price).
    pub(super) fn model_spend(&self) -> i64 {
        let (input, output) = self.state.tokens;
        self.model_cost(input + output)
    }

    /// Commits the model reservation with the tokens the recorded plan used.
    pub(super) fn commit_model(&mut self) {
        let Some(open) = self.state.open_reservation(None) else {
            return;
        };
        let id = open.reservation_id.clone();
        let tokens = self
            .state
            .plan
            .as_ref()
            .map_or(0, |p| p.input_tokens + p.output_tokens);
        let cost_micros = self.model_cost(tokens);
        self.emit(Payload::BudgetCommitted(BudgetCommitted {
            reservation_id: id,
            tokens,
            cost_micros,
        }));
    }

    pub(super) fn release_model(&mut self, reason: &str) {
        if let Some(open) = self.state.open_reservation(None) {
            let id = open.reservation_id.clone();
            self.emit(Payload::BudgetReleased(BudgetReleased {
                reservation_id: id,
                reason: reason.into(),
            }));
        }
    }

    pub(super) fn reserve_call(&mut self, call: &CallState, attempt: i32) -> bool {
        let cost = self
            .ctx
            .catalog
            .get(&call.tool)
            .map_or(0, |s| s.cost_micros);
        let retry = attempt > 1;
        let ask = Ask {
            purpose: BudgetPurpose::Tool,
            call_id: Some(call.call_id.clone()),
            tokens: 0,
            cost_micros: cost,
            tool_calls: i32::from(!retry),
            retries: i32::from(retry),
        };
        self.reserve(
            ask,
            Checkpoint::PreTool,
            Some(call.step),
            Some(call.tool.clone()),
        )
    }

    pub(super) fn commit_call(&mut self, call_id: &str) {
        if let Some(open) = self.state.open_reservation(Some(call_id)) {
            let (id, tokens, cost_micros) =
                (open.reservation_id.clone(), open.tokens, open.cost_micros);
            self.emit(Payload::BudgetCommitted(BudgetCommitted {
                reservation_id: id,
                tokens,
                cost_micros,
            }));
        }
    }

    pub(super) fn release_call(&mut self, call_id: &str, reason: &str) {
        if let Some(open) = self.state.open_reservation(Some(call_id)) {
            let id = open.reservation_id.clone();
            self.emit(Payload::BudgetReleased(BudgetReleased {
                reservation_id: id,
                reason: reason.into(),
            }));
        }
    }

    /// Returns every open reservation: nothing stays held by a finished turn.
    pub(super) fn release_all(&mut self, reason: &str) {
        let ids: Vec<String> = self
            .state
            .budget
            .open
            .iter()
            .map(|r| r.reservation_id.clone())
            .collect();
        for reservation_id in ids {
            self.emit(Payload::BudgetReleased(BudgetReleased {
                reservation_id,
                reason: reason.into(),
            }));
        }
    }
}
