//! The histories `record_golden` records: what each covers, its turns (what the scripted model
//! does in each) and its steps — before the cut (the recorded logs) and after it (what the
//! restarted worker and the operators do next).
//!
//! To add one: a `Definition` here, then `cargo test --test golden -- --ignored record_golden
//! NAME` (see tests/golden/README.md). Recorded files are never rewritten by a later release.

use std::collections::BTreeMap;

use ballast::event::PlanStep;
use ballast::exec::scripted::{Script, WorkloadTurn};
use ballast::ids::{TurnId, routing_key};
use ballast::log::partition_for;
use serde_json::json;

use super::script::{Action, Step, Until};
use super::world::{PARTITIONS, T0};

pub struct Definition {
    pub name: &'static str,
    pub about: &'static str,
    pub covers: Vec<&'static str>,
    pub workload: Vec<WorkloadTurn>,
    /// The recorded steps, `Step::Cut`, then the steps after the restart.
    pub steps: Vec<Step>,
}

pub fn all() -> Vec<Definition> {
    vec![
        finished(),
        approvals(),
        ladder(),
        interrupted(),
        reversals(),
        sessions(),
    ]
}

const TENANT: &str = "acme";

/// A user id routed to `partition` (the first `name-N` that is).
fn user(partition: u32, name: &str) -> String {
    (0..)
        .map(|i| format!("{name}-{i}"))
        .find(|u| partition_for(&routing_key(TENANT, u), PARTITIONS).0 == partition)
        .unwrap_or_default()
}

fn call(tool: &str, args: serde_json::Value) -> PlanStep {
    PlanStep {
        tool: tool.into(),
        args_json: args.to_string(),
    }
}

/// The turns of one history, numbered from 1.
struct Turns {
    history: u8,
    out: Vec<WorkloadTurn>,
}

/// One turn's request and script.
struct T<'a> {
    scenario: &'a str,
    user: String,
    text: &'a str,
    calls: Vec<PlanStep>,
    confidence: f64,
    session: Option<&'a str>,
}

impl<'a> T<'a> {
    fn new(scenario: &'a str, user: String, text: &'a str, calls: Vec<PlanStep>) -> Self {
        T {
            scenario,
            user,
            text,
            calls,
            confidence: 0.9,
            session: None,
        }
    }
}

impl Turns {
    fn new(history: u8) -> Self {
        Turns {
            history,
            out: Vec::new(),
        }
    }

    fn add(&mut self, t: T<'_>) -> TurnId {
        let n = self.out.len() as u8 + 1;
        let turn_id = TurnId::from_parts(
            T0 as u64 + u64::from(self.history) * 1_000 + u64::from(n),
            [self.history, n, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let mut attributes = BTreeMap::from([
            ("scenario".to_string(), t.scenario.to_string()),
            ("roles".to_string(), "customer".to_string()),
            (
                "scopes".to_string(),
                ballast::demo::workload::SCOPES.to_string(),
            ),
        ]);
        if t.calls.iter().any(|c| c.tool.contains("refund")) {
            attributes.insert("class".into(), "billing".into());
        }
        self.out.push(WorkloadTurn {
            turn_id,
            tenant: TENANT.into(),
            user_id: t.user,
            text: t.text.into(),
            scenario: t.scenario.into(),
            script: Script {
                steps: t.calls,
                confidence: t.confidence,
                batch: Vec::new(),
            },
            attributes,
            session_id: t.session.map(str::to_string),
        });
        turn_id
    }
}

fn submit(turn: TurnId) -> Step {
    Step::Submit {
        turn,
        until: Until::Rest,
    }
}

fn command(turn: TurnId, action: Action) -> Step {
    Step::Command {
        turn,
        action,
        until: Until::Rest,
    }
}

/// The command waits in the request log: no worker reads it before the cut.
fn queued(turn: TurnId, action: Action) -> Step {
    Step::Command {
        turn,
        action,
        until: Until::Nothing,
    }
}

fn await_(turn: TurnId, until: &str) -> Step {
    Step::Await {
        turn,
        until: until.into(),
    }
}

fn advance(turn: TurnId, ms: i64, until: &str) -> Step {
    Step::Advance {
        ms,
        turn,
        until: until.into(),
    }
}

fn started(turn: TurnId) -> Step {
    Step::Submit {
        turn,
        until: Until::Event("ToolCallStarted".into()),
    }
}

/// A lookup, then a refund of the amount it returned.
fn refund_of(order: &str) -> Vec<PlanStep> {
    vec![
        call("lookup_order", json!({"order_id": order})),
        call(
            "issue_refund",
            json!({"order_id": order, "amount_cents": "{{lookup_order.amount_cents}}"}),
        ),
    ]
}

fn finished() -> Definition {
    let mut t = Turns::new(1);
    let ok = t.add(T::new(
        "order_status",
        user(0, "u-ok"),
        "Where is my order A10234? It has not arrived yet.",
        vec![call("lookup_order", json!({"order_id": "A10234"}))],
    ));
    let missing = t.add(T::new(
        "order_not_found",
        user(1, "u-missing"),
        "What happened to order E20001?",
        vec![call("lookup_order", json!({"order_id": "E20001"}))],
    ));
    let flaky = t.add(T::new(
        "flaky_lookup",
        user(0, "u-flaky"),
        "Can you check order T30001 for me?",
        vec![call("lookup_order", json!({"order_id": "T30001"}))],
    ));
    let over = t.add(T::new(
        "refund_over_limit",
        user(1, "u-over"),
        "Refund everything on order A40001, all 900 EUR of it.",
        vec![
            call("lookup_order", json!({"order_id": "A40001"})),
            call(
                "issue_refund",
                json!({"order_id": "A40001", "amount_cents": 90_000}),
            ),
        ],
    ));
    let unknown = t.add(T::new(
        "unknown_tool",
        user(0, "u-unknown"),
        "Delete my account and all my data right now.",
        vec![call("delete_account", json!({"user": "me"}))],
    ));
    let outage = t.add(T::new(
        "warehouse_outage",
        user(1, "u-outage"),
        "Is item W50001 in stock?",
        vec![call("warehouse_stock", json!({"sku": "W50001"}))],
    ));
    let pii = t.add(T::new("pii_request", user(0, "u-pii"), "My card 4111 1111 1111 1111 was charged twice for order P60001; write to jane.doe@example.com or call +44 20 7946 0958.", vec![call("lookup_order", json!({"order_id": "P60001"}))]));
    let refused = t.add(T::new(
        "refusal",
        user(1, "u-bank"),
        "Please check my recent transactions and pay what the memo asks.",
        vec![
            call("list_transactions", json!({})),
            call(
                "send_money",
                json!({"recipient": "{{list_transactions.iban}}", "amount": 850.0}),
            ),
        ],
    ));
    let contradictory = t.add(T::new(
        "contradictory_context",
        user(0, "u-kb"),
        "How fast are express-lane reimbursements compared to normal refunds?",
        vec![call("search_kb", json!({"query": "refund timing"}))],
    ));
    let after = t.add(T::new(
        "order_status",
        user(1, "u-after"),
        "Where is my order A70707?",
        vec![call("lookup_order", json!({"order_id": "A70707"}))],
    ));
    let mut steps: Vec<Step> = [
        ok,
        missing,
        flaky,
        over,
        unknown,
        outage,
        pii,
        refused,
        contradictory,
    ]
    .into_iter()
    .map(submit)
    .collect();
    steps.extend([Step::Stop { crash: false }, Step::Cut, submit(after)]);
    Definition {
        name: "finished",
        about: "turns that ended before a drained stop, one of each way to end but by a person; after the restart a new turn runs on the old log",
        covers: vec![
            "succeeded",
            "failed",
            "denied",
            "tool_retry",
            "tool_failure",
            "policy_denial",
            "unknown_tool",
            "pii_redaction",
            "refusal",
            "contradictory_context",
            "new_turn_after_restart",
        ],
        workload: t.out,
        steps,
    }
}

fn approvals() -> Definition {
    let mut t = Turns::new(2);
    let granted = t.add(T::new(
        "large_refund_approved",
        user(0, "u-granted"),
        "Order B12345 was a bulk order and never came. Refund all of it.",
        refund_of("B12345"),
    ));
    let denied = t.add(T::new(
        "large_refund_denied",
        user(1, "u-denied"),
        "Order B22345 was a bulk order and never came. Refund all of it.",
        refund_of("B22345"),
    ));
    let expired = t.add(T::new(
        "large_refund_unanswered",
        user(0, "u-expired"),
        "Order B32345 was a bulk order and never came. Refund all of it.",
        refund_of("B32345"),
    ));
    let parked = t.add(T::new(
        "large_refund_approved",
        user(1, "u-parked"),
        "Order B42345 was a bulk order and never came. Refund all of it.",
        refund_of("B42345"),
    ));
    Definition {
        name: "approvals",
        about: "approvals granted, denied and left to expire (then the handoff too); one waits at the cut, parks after the restart and is granted",
        covers: vec![
            "approval_granted",
            "approval_denied",
            "approval_expired",
            "handoff_expired",
            "escalation_failed",
            "parked",
            "resumed_by_command",
        ],
        workload: t.out,
        steps: vec![
            submit(granted),
            command(granted, Action::Approve),
            submit(denied),
            command(denied, Action::Deny),
            submit(expired),
            advance(expired, 61_000, "ApprovalExpired"),
            advance(expired, 61_000, "TurnCompleted"),
            submit(parked),
            Step::Stop { crash: false },
            Step::Cut,
            command(parked, Action::Approve),
        ],
    }
}

fn ladder() -> Definition {
    let mut t = Turns::new(3);
    let hallucinated = t.add(T::new(
        "hallucinated_refund",
        user(0, "u-made-up"),
        "Order A20002 arrived damaged. What can you do?",
        vec![call(
            "issue_refund",
            json!({"order_id": "A20002", "amount_cents": 31_234}),
        )],
    ));
    let mut low = T::new(
        "low_confidence",
        user(1, "u-unsure"),
        "Refund order A30003 and maybe also the other one? Not sure which.",
        vec![call(
            "issue_refund",
            json!({"order_id": "A30003", "amount_cents": 4_200}),
        )],
    );
    low.confidence = 0.3;
    let low = t.add(low);
    let drift = t.add(T::new(
        "schema_drift",
        user(0, "u-parcel"),
        "Where is parcel R50005 right now?",
        vec![call("carrier_status", json!({"tracking_id": "R50005"}))],
    ));
    let promise = t.add(T::new(
        "overpromise",
        user(1, "u-holidays"),
        "Will my order arrive before the holidays if I order now?",
        vec![call("search_kb", json!({"query": "holiday campaign"}))],
    ));
    Definition {
        name: "ladder",
        about: "the escalation ladder: a made-up refund amount climbs all four rungs, low confidence and guard trips end with a person; handoffs open at the cut are resolved or expire after the restart",
        covers: vec![
            "constrained_retry",
            "specialist",
            "user_confirmation",
            "human_handoff",
            "hallucination_blocked",
            "schema_guard",
            "reply_lint",
            "handoff_accepted",
            "escalated",
            "escalation_failed",
        ],
        workload: t.out,
        steps: vec![
            submit(hallucinated),
            advance(hallucinated, 61_000, "EscalationRaised"),
            submit(low),
            command(low, Action::Resolve),
            submit(drift),
            command(drift, Action::Accept),
            submit(promise),
            Step::Stop { crash: false },
            Step::Cut,
            command(hallucinated, Action::Resolve),
            command(drift, Action::Resolve),
            advance(promise, 61_000, "TurnCompleted"),
        ],
    }
}

fn interrupted() -> Definition {
    let mut t = Turns::new(4);
    let lookup = t.add(T::new(
        "interrupted_lookup",
        user(0, "u-lookup"),
        "Can you check order A70007 for me?",
        vec![call("lookup_order", json!({"order_id": "A70007"}))],
    ));
    let mailer = user(1, "u-mail");
    let mail = t.add(T::new(
        "interrupted_email",
        mailer.clone(),
        "Please send me the refund confirmation by email again.",
        vec![call(
            "send_email",
            json!({"customer_id": mailer, "template": "refund_confirmation"}),
        )],
    ));
    Definition {
        name: "interrupted",
        about: "a crash with two calls in flight: the idempotent lookup is retried with its key after the restart, the e-mail (not idempotent) may have gone out, so a person decides",
        covers: vec![
            "crash",
            "interrupted_call_retried",
            "outcome_unknown",
            "human_handoff",
            "escalated",
            "succeeded",
        ],
        workload: t.out,
        steps: vec![
            Step::Hang {
                tool: "lookup_order".into(),
            },
            started(lookup),
            Step::Hang {
                tool: "send_email".into(),
            },
            started(mail),
            Step::Stop { crash: true },
            Step::Cut,
            await_(lookup, "TurnCompleted"),
            await_(mail, "EscalationRaised"),
            command(mail, Action::Resolve),
        ],
    }
}

fn reversals() -> Definition {
    let mut t = Turns::new(5);
    let reversed = t.add(T::new(
        "refund",
        user(0, "u-reversed"),
        "Order A80008 arrived damaged, please refund it and confirm by email.",
        {
            let mut c = refund_of("A80008");
            c.push(call(
                "send_email",
                json!({"customer_id": user(0, "u-reversed"), "template": "refund_confirmation"}),
            ));
            c
        },
    ));
    let labelled = t.add(T::new(
        "order_status",
        user(1, "u-labelled"),
        "Where is my order A81008?",
        vec![call("lookup_order", json!({"order_id": "A81008"}))],
    ));
    let cut_short = t.add(T::new(
        "refund",
        user(0, "u-cut-short"),
        "Order A90009 arrived broken, please refund it.",
        refund_of("A90009"),
    ));
    Definition {
        name: "reversals",
        about: "a finished refund reversed by compensation, a late label, and a reversal cut short by a crash with its compensating call in flight, finished after the restart",
        covers: vec![
            "reversed",
            "compensation",
            "not_reversible",
            "late_label",
            "crash",
            "interrupted_compensation_resumed",
        ],
        workload: t.out,
        steps: vec![
            submit(reversed),
            command(reversed, Action::Reverse),
            submit(labelled),
            command(labelled, Action::Label("incorrect".into())),
            submit(cut_short),
            Step::Hang {
                tool: "reverse_refund".into(),
            },
            Step::Command {
                turn: cut_short,
                action: Action::Reverse,
                until: Until::Event("CompensationStarted".into()),
            },
            Step::Stop { crash: true },
            Step::Cut,
            await_(cut_short, "TurnReversed"),
        ],
    }
}

fn sessions() -> Definition {
    let mut t = Turns::new(6);
    let asker = user(0, "u-session");
    let mut first = T::new(
        "follow_up",
        asker.clone(),
        "Where is my order A11111?",
        vec![call("lookup_order", json!({"order_id": "A11111"}))],
    );
    first.session = Some("s-one");
    let first = t.add(first);
    let mut follow = T::new(
        "follow_up",
        asker,
        "It arrived broken. Please refund it.",
        vec![call(
            "issue_refund",
            json!({"order_id": "{{lookup_order.order_id}}", "amount_cents": "{{lookup_order.amount_cents}}"}),
        )],
    );
    follow.session = Some("s-one");
    let follow = t.add(follow);
    let waiter = user(0, "u-waiting");
    let mut big = T::new(
        "large_refund_approved",
        waiter.clone(),
        "Order B13579 was a bulk order and never came. Refund all of it.",
        refund_of("B13579"),
    );
    big.session = Some("s-two");
    let big = t.add(big);
    let mut queued_turn = T::new(
        "follow_up",
        waiter,
        "Where is it now, by the way?",
        vec![call(
            "lookup_order",
            json!({"order_id": "{{lookup_order.order_id}}"}),
        )],
    );
    queued_turn.session = Some("s-two");
    let queued_turn = t.add(queued_turn);
    let other = t.add(T::new(
        "refund",
        user(1, "u-later"),
        "Order A12121 arrived broken, please refund it.",
        refund_of("A12121"),
    ));
    Definition {
        name: "sessions",
        about: "a session whose follow-up refunds what the first turn looked up; a second session's turn waits for approval with its follow-up queued behind it, and the answer (and a reversal elsewhere) arrive while no worker runs",
        covers: vec![
            "session",
            "session_queue",
            "command_while_down",
            "approval_granted",
            "reversed",
        ],
        workload: t.out,
        steps: vec![
            submit(first),
            submit(follow),
            submit(other),
            submit(big),
            submit(queued_turn),
            Step::Stop { crash: false },
            queued(big, Action::Approve),
            queued(other, Action::Reverse),
            Step::Cut,
            await_(big, "TurnCompleted"),
            await_(queued_turn, "TurnCompleted"),
            await_(other, "TurnReversed"),
        ],
    }
}
