//! One example of every event and request, for tests and backends' conformance checks.

use std::collections::BTreeMap;

use super::*;

/// One event of every payload kind, with seq 0.. in catalogue order.
pub fn every_event(turn: TurnId) -> Vec<Event> {
    let payloads = vec![
        Payload::TurnRequested(TurnRequested {
            user_id: "u-42".into(),
            text: "Where is my order A1001? I'd like a refund — it's late.".into(),
            channel: "chat".into(),
            attributes: BTreeMap::from([("locale".to_string(), "en-GB".to_string())]),
            submitted_at_ms: 1_700_000_000_000,
            source_offset: Some(17),
            session_id: Some("s-7".into()),
        }),
        Payload::ContextRetrieved(ContextRetrieved {
            query: "order late refund".into(),
            documents: vec![RetrievedDocument {
                id: "kb-refund-policy".into(),
                title: "Refund policy".into(),
                score: 0.87,
                version: 3,
                updated_at_ms: 1_690_000_000_000,
                snippet: "Late orders can be refunded in full.".into(),
                facts: BTreeMap::from([("refund_days".to_string(), "5".to_string())]),
            }],
            latency_ms: 4,
            error: None,
        }),
        Payload::PlanProposed(PlanProposed {
            plan_rev: 0,
            model: "scripted".into(),
            model_version: "1".into(),
            prompt_template_hash: "9f2c".into(),
            steps: vec![PlanStep {
                tool: "issue_refund".into(),
                args_json: r#"{"order_id":"A1001","amount_cents":2599}"#.into(),
            }],
            confidence: 0.93,
            input_tokens: 812,
            output_tokens: 64,
            latency_ms: 12,
            step: 1,
            content: Some("Let me refund that.".into()),
            finish_reason: Some("tool_calls".into()),
            system_fingerprint: Some("fp_44709d6fcb".into()),
            messages_digest: Some("sha256:ab12".into()),
        }),
        Payload::PolicyEvaluated(PolicyEvaluated {
            checkpoint: Checkpoint::PreTool,
            step: Some(0),
            tool: Some("issue_refund".into()),
            decision: PolicyDecision::Allow,
            policy_ids: vec!["default.tool_exists".into()],
            reason: "tool is in the catalog".into(),
            risk_score: 0.4,
            policy_version: "default-1".into(),
            confidence: Some(0.9),
            failures: Some(1),
            anomalies: vec!["no_context".into()],
            budget_cost_micros: Some(5_000),
            budget_tokens: Some(2_000),
            budget_tool_calls: Some(4),
            provenance_json: Some(
                r#"{"args":{"order_id":[{"value":"A1001","origins":[{"from":"user"}]}]}}"#.into(),
            ),
            feedback: true,
        }),
        Payload::ToolCallStarted(ToolCallStarted {
            call_id: "c-1".into(),
            step: 0,
            tool: "issue_refund".into(),
            args_json: "{}".into(),
            idempotency_key: "c-1".into(),
            attempt: 1,
            idempotent: true,
        }),
        Payload::ToolCallFailed(ToolCallFailed {
            call_id: "c-1".into(),
            attempt: 1,
            kind: ToolFailureKind::Timeout,
            error: "no answer in 2000 ms".into(),
            retryable: true,
            latency_ms: 2000,
        }),
        Payload::ToolCallCompleted(ToolCallCompleted {
            call_id: "c-1".into(),
            attempt: 2,
            result_json: r#"{"refund_id":"rf-1"}"#.into(),
            latency_ms: 30,
        }),
        Payload::EscalationRaised(EscalationRaised {
            rung: EscalationRung::HumanHandoff,
            reason: "confidence 0.31 below 0.5".into(),
            call_id: None,
            deadline_ms: Some(1_700_001_800_000),
        }),
        Payload::ResponseSynthesized(ResponseSynthesized {
            text: "Your refund is on its way.".into(),
            citations: vec!["kb-refund-policy".into()],
            redactions: 0,
            latency_ms: 3,
        }),
        Payload::TurnCompleted(TurnCompleted {
            outcome: Outcome::Succeeded,
            reason: "answered".into(),
            latency_ms: 2100,
        }),
        Payload::RouteSelected(RouteSelected {
            profile: "specialist".into(),
            rule: "billing-to-specialist".into(),
            model: "scripted-specialist".into(),
            reserve_tokens: 2000,
            micros_per_1k_tokens: 600,
        }),
        Payload::BudgetReserved(BudgetReserved {
            reservation_id: "b-1".into(),
            purpose: BudgetPurpose::Tool,
            user_id: "u-42".into(),
            call_id: Some("c-1".into()),
            tokens: 0,
            cost_micros: 2_000,
            tool_calls: 1,
            retries: 0,
            user_cost_left_micros: 98_000,
            tenant_cost_left_micros: 4_998_000,
        }),
        Payload::BudgetCommitted(BudgetCommitted {
            reservation_id: "b-1".into(),
            tokens: 0,
            cost_micros: 2_000,
        }),
        Payload::BudgetReleased(BudgetReleased {
            reservation_id: "b-2".into(),
            reason: "call failed".into(),
        }),
        Payload::ApprovalRequested(ApprovalRequested {
            approval_id: "c-1".into(),
            call_id: "c-1".into(),
            step: 1,
            tool: "issue_refund".into(),
            args_json: r#"{"order_id":"A1001","amount_cents":25990}"#.into(),
            reason: "refund over 100.00 needs confirmation".into(),
            risk_score: 0.72,
            deadline_ms: 1_700_000_900_000,
        }),
        Payload::ApprovalGranted(ApprovalResolved {
            approval_id: "c-1".into(),
            operator: "ops-anna".into(),
            reason: Some("customer verified by phone".into()),
            command_id: "cmd-1".into(),
        }),
        Payload::ApprovalDenied(ApprovalResolved {
            approval_id: "c-2".into(),
            operator: "ops-anna".into(),
            reason: None,
            command_id: "cmd-2".into(),
        }),
        Payload::ApprovalExpired(ApprovalExpired {
            approval_id: "c-3".into(),
            deadline_ms: 1_700_000_900_000,
        }),
        Payload::GuardrailTripped(GuardrailTripped {
            checkpoint: GuardCheckpoint::PreTool,
            guard: "grounding".into(),
            rule: "hallucination.amount_cents".into(),
            verdict: GuardVerdict::Escalate,
            step: Some(1),
            tool: Some("issue_refund".into()),
            call_id: Some("c-1".into()),
            detail: "amount_cents = 990000 appears nowhere in the turn".into(),
            hallucination: true,
        }),
        Payload::HandoffAccepted(HandoffAccepted {
            operator: "ops-anna".into(),
            command_id: "cmd-3".into(),
        }),
        Payload::HandoffResolved(HandoffResolved {
            operator: "ops-anna".into(),
            resolution: "refunded by hand after a call with the customer".into(),
            command_id: "cmd-4".into(),
        }),
        Payload::ReversalRequested(ReversalRequested {
            operator: "ops-anna".into(),
            reason: Some("refund issued to the wrong order".into()),
            command_id: "cmd-5".into(),
            turn_first_offset: 12,
            compensable: vec!["c1".into()],
            not_reversible: vec!["c2".into()],
        }),
        Payload::CompensationStarted(CompensationStarted {
            call_id: "c1".into(),
            tool: "reverse_refund".into(),
            args_json: r#"{"refund_id":"rf-1"}"#.into(),
            idempotency_key: "c1/undo".into(),
            attempt: 1,
        }),
        Payload::CompensationFailed(CompensationFailed {
            call_id: "c1".into(),
            attempt: 1,
            error: "payments service unavailable".into(),
            retryable: true,
            latency_ms: 30,
        }),
        Payload::CompensationCompleted(CompensationCompleted {
            call_id: "c1".into(),
            attempt: 2,
            result_json: r#"{"refund_id":"rf-1","reversed":true}"#.into(),
            latency_ms: 12,
        }),
        Payload::TurnReversed(TurnReversed {
            compensated: vec!["c1".into()],
            failed: vec![],
            not_reversible: vec!["c2".into()],
        }),
        Payload::OutcomeLabeled(OutcomeLabeled {
            label: "hallucination_with_action".into(),
            note: Some("refund amount was not in the request".into()),
            operator: "reviewer-li".into(),
            command_id: "cmd-6".into(),
        }),
        Payload::SessionLoaded(SessionLoaded {
            session_id: "s-7".into(),
            turns: vec![SessionTurn {
                turn_id: "019a0000-0000-7000-8000-000000000001".into(),
                request: "Where is my order A1001?".into(),
                reply: Some("It shipped yesterday.".into()),
                calls: vec![SessionCall {
                    tool: "lookup_order".into(),
                    args_json: r#"{"order_id":"A1001"}"#.into(),
                    result_json: r#"{"status":"shipped"}"#.into(),
                }],
            }],
            dropped: vec!["019a0000-0000-7000-8000-000000000000".into()],
            tokens: 42,
        }),
        Payload::ModelCallFailed(ModelCallFailed {
            step: 2,
            plan_rev: 3,
            error: "HTTP 503: overloaded".into(),
            retryable: true,
            latency_ms: 30_000,
        }),
        Payload::CallRefused(CallRefused {
            call_id: "c-9".into(),
            step: 1,
            tool: "send_money".into(),
            rules: vec!["provenance.untrusted_sink".into()],
            reason: "recipient: comes only from read_inbox output (untrusted)".into(),
        }),
        Payload::InputRejected(InputRejected {
            input: "ToolDone".into(),
            phase: "Planning".into(),
            reason: "late tool result".into(),
        }),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Event {
            event_id: turn.event_id(i as u64),
            turn_id: turn,
            tenant: "acme".into(),
            seq: i as i64,
            at_ms: 1_700_000_000_000 + i as i64,
            payload,
        })
        .collect()
}

pub fn request(turn: TurnId) -> TurnRequest {
    TurnRequest {
        turn_id: turn,
        tenant: "acme".into(),
        user_id: "u-42".into(),
        text: "Where is my order A1001?".into(),
        channel: "api".into(),
        attributes: BTreeMap::new(),
        submitted_at_ms: 1_700_000_000_000,
        session_id: None,
    }
}

pub fn command(turn: TurnId, granted: bool) -> TurnCommand {
    TurnCommand {
        turn_offset: None,
        command_id: "cmd-1".into(),
        turn_id: turn,
        tenant: "acme".into(),
        operator: "ops-anna".into(),
        issued_at_ms: 1_700_000_000_500,
        action: CommandAction::ApprovalDecision(ApprovalDecision {
            approval_id: "c-1".into(),
            granted,
            reason: Some("checked".into()),
        }),
    }
}

pub fn handoff_commands(turn: TurnId) -> Vec<TurnCommand> {
    let base = |id: &str, action| TurnCommand {
        turn_offset: None,
        command_id: id.into(),
        turn_id: turn,
        tenant: "acme".into(),
        operator: "ops-anna".into(),
        issued_at_ms: 1_700_000_000_600,
        action,
    };
    vec![
        base(
            "cmd-3",
            CommandAction::HandoffAccept(HandoffAcceptance { note: None }),
        ),
        base(
            "cmd-4",
            CommandAction::HandoffResolve(HandoffResolution {
                resolution: "refunded by hand".into(),
            }),
        ),
    ]
}
