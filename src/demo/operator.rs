//! The demo's operator: watches the turn log for approval requests and answers them as each
//! scenario says (approve, deny, or leave to expire), through the same command path as
//! `ballast approve|deny`. Also the demo's control-plane tally.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control::{CedarControlPlane, ControlConfig, ControlError};
use crate::event::codec::Codecs;
use crate::event::{
    ApprovalDecision, CommandAction, HandoffAcceptance, HandoffResolution, Payload, TurnCommand,
};
use crate::exec::catalog::Catalog;
use crate::exec::scripted::WorkloadTurn;
use crate::ids::{Offset, Partition, TurnId};
use crate::log::{EventLog, LogError, Scan};

const POLICIES: [(&str, &str); 3] = [
    (
        "baseline.cedar",
        include_str!("../../examples/demo/policies/baseline.cedar"),
    ),
    (
        "confidence.cedar",
        include_str!("../../examples/demo/policies/confidence.cedar"),
    ),
    (
        "refunds.cedar",
        include_str!("../../examples/demo/policies/refunds.cedar"),
    ),
];
const CONTROL_TOML: &str = include_str!("../../examples/demo/policies/control.toml");

/// The control plane of `examples/demo/policies/`, built into the binary.
pub fn demo_control(catalog: Catalog) -> Result<CedarControlPlane, ControlError> {
    demo_control_with(catalog, |_| {})
}

/// The demo's control plane with its configuration adjusted (a drill's shorter deadlines).
pub fn demo_control_with(
    catalog: Catalog,
    adjust: impl FnOnce(&mut ControlConfig),
) -> Result<CedarControlPlane, ControlError> {
    let mut config = ControlConfig::parse(CONTROL_TOML, "examples/demo/policies/control.toml")?;
    adjust(&mut config);
    let sources: Vec<(String, String)> = POLICIES
        .iter()
        .map(|(f, t)| (format!("examples/demo/policies/{f}"), t.to_string()))
        .collect();
    let policies = crate::control::cedar::Policies::from_sources(&sources, &catalog)?;
    Ok(CedarControlPlane::new(config, catalog, policies, None))
}

/// Answers `workload` turns until `stop`: approves `large_refund_approved`, denies
/// `large_refund_denied`, leaves other approvals to expire; accepts and resolves every human
/// handoff except those of `large_refund_unanswered` (which end as escalation_failed).
pub fn spawn(
    events: Arc<dyn EventLog>,
    requests: Arc<dyn EventLog>,
    codecs: Codecs,
    workload: &[WorkloadTurn],
    stop: watch::Receiver<bool>,
) -> JoinSet<Result<u64, LogError>> {
    let users: Arc<HashMap<TurnId, (String, String)>> = Arc::new(
        workload
            .iter()
            .map(|t| (t.turn_id, (t.user_id.clone(), t.scenario.clone())))
            .collect(),
    );
    let mut tasks = JoinSet::new();
    for p in (0..events.partitions()).map(Partition) {
        let (events, requests, codecs, users) = (
            Arc::clone(&events),
            Arc::clone(&requests),
            codecs.clone(),
            Arc::clone(&users),
        );
        let mut stop = stop.clone();
        tasks.spawn(async move {
            // What the log already holds is read first and only the asks still open at its
            // end are answered: a rerun does not send again every answer of the runs before
            // it (each would be a command for a turn that has moved on).
            let caught_up = events.end(p).await?;
            let mut open: HashMap<TurnId, Vec<TurnCommand>> = HashMap::new();
            let mut scan = Scan::new(events.as_ref(), p, Offset::ZERO);
            while scan.position() < caught_up {
                let Some(batch) = scan.next_chunk(4096).await? else {
                    break;
                };
                for stored in batch {
                    if let Ok(event) = codecs.events.decode(&stored.value)
                        && let Some((_, scenario)) = users.get(&event.turn_id)
                    {
                        let asked = answers(&event, scenario);
                        track(&mut open, &event, asked);
                    }
                }
            }
            let mut answered = 0;
            let mut send: Vec<TurnCommand> = open.into_values().flatten().collect();
            let mut tail = events.subscribe(p, scan.position()).await?;
            loop {
                for command in send.drain(..) {
                    let Some((user, _)) = users.get(&command.turn_id) else {
                        continue;
                    };
                    crate::operator::send(requests.as_ref(), &codecs, user, &command)
                        .await
                        .map_err(|e| LogError::storage(e, false))?;
                    answered += 1;
                }
                let batch = tokio::select! {
                    b = tail.next_batch(1024) => b?,
                    _ = stop.changed() => return Ok(answered),
                };
                for stored in batch {
                    if let Ok(event) = codecs.events.decode(&stored.value)
                        && let Some((_, scenario)) = users.get(&event.turn_id)
                    {
                        send.extend(answers(&event, scenario));
                    }
                }
            }
        });
    }
    tasks
}

/// The commands the demo operator sends for `event` of a turn of `scenario`: an approval's
/// answer (approved or denied scenarios; every other approval is left to expire), or a
/// handoff's acceptance and resolution (except `large_refund_unanswered`).
fn answers(event: &crate::event::Event, scenario: &str) -> Vec<TurnCommand> {
    let command = |id: String, action| TurnCommand {
        turn_offset: None,
        command_id: id,
        turn_id: event.turn_id,
        tenant: event.tenant.clone(),
        operator: "demo-operator".into(),
        issued_at_ms: event.at_ms,
        action,
    };
    match &event.payload {
        Payload::ApprovalRequested(a) => {
            let granted = match scenario {
                "large_refund_approved" => true,
                "large_refund_denied" => false,
                // Everything else (a user asked to confirm, who never answers).
                _ => return Vec::new(),
            };
            vec![command(
                format!("demo-{}", a.approval_id),
                CommandAction::ApprovalDecision(ApprovalDecision {
                    approval_id: a.approval_id.clone(),
                    granted,
                    reason: Some(format!("demo scenario {scenario}")),
                }),
            )]
        }
        Payload::EscalationRaised(e)
            if e.rung == crate::event::EscalationRung::HumanHandoff
                && scenario != "large_refund_unanswered" =>
        {
            vec![
                command(
                    format!("demo-accept-{}", event.turn_id),
                    CommandAction::HandoffAccept(HandoffAcceptance { note: None }),
                ),
                command(
                    format!("demo-resolve-{}", event.turn_id),
                    CommandAction::HandoffResolve(HandoffResolution {
                        resolution: format!("handled by hand ({scenario})"),
                    }),
                ),
            ]
        }
        _ => Vec::new(),
    }
}

/// Keeps `open` to the answers still wanted after `event`: an ask adds its answers; what the
/// turn records once an answer arrived (or its deadline passed) removes them.
fn track(
    open: &mut HashMap<TurnId, Vec<TurnCommand>>,
    event: &crate::event::Event,
    asked: Vec<TurnCommand>,
) {
    let turn = event.turn_id;
    let keep = |open: &mut HashMap<TurnId, Vec<TurnCommand>>, f: fn(&CommandAction) -> bool| {
        if let Some(c) = open.get_mut(&turn) {
            c.retain(|c| f(&c.action));
        }
    };
    match &event.payload {
        Payload::ApprovalRequested(_) | Payload::EscalationRaised(_) if !asked.is_empty() => {
            open.entry(turn).or_default().extend(asked);
        }
        Payload::ApprovalGranted(_) | Payload::ApprovalDenied(_) | Payload::ApprovalExpired(_) => {
            keep(open, |a| !matches!(a, CommandAction::ApprovalDecision(_)));
        }
        Payload::HandoffAccepted(_) => {
            keep(open, |a| !matches!(a, CommandAction::HandoffAccept(_)))
        }
        Payload::HandoffResolved(_) | Payload::TurnCompleted(_) => {
            open.remove(&turn);
        }
        _ => {}
    }
}

/// What the control plane decided over a log: decisions by checkpoint and kind, the rules that
/// decided the non-allows, approvals, budget refusals and routes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlTally {
    /// (checkpoint, decision) → count.
    pub decisions: BTreeMap<(String, String), usize>,
    /// Rule id → non-allow decisions it determined.
    pub rules: BTreeMap<String, usize>,
    pub approvals: BTreeMap<String, usize>,
    pub routes: BTreeMap<String, usize>,
    pub reserved: usize,
    pub committed_cost_micros: i64,
    /// (checkpoint, guard/rule, verdict) → count.
    pub trips: BTreeMap<(String, String, String), usize>,
    pub hallucinations_blocked: usize,
    /// Ladder rung → escalations to it.
    pub rungs: BTreeMap<String, usize>,
    /// Handoffs: raised, accepted, resolved, expired.
    pub handoffs: BTreeMap<String, usize>,
    /// Loop steps each turn took (the highest model step answered, plus one), by turn.
    pub steps: std::collections::HashMap<crate::ids::TurnId, usize>,
    /// Turns that continued a session, and the earlier turns they were shown in all.
    pub sessions: (usize, usize),
}

pub async fn tally(log: &dyn EventLog, codecs: &Codecs) -> Result<ControlTally, LogError> {
    let mut t = ControlTally::default();
    for p in (0..log.partitions()).map(Partition) {
        let mut scan = Scan::new(log, p, Offset::ZERO);
        while let Some(batch) = scan.next_chunk(4096).await? {
            for s in batch {
                let Ok(e) = codecs.events.decode(&s.value) else {
                    continue;
                };
                match &e.payload {
                    Payload::PlanProposed(pp) => {
                        let n = t.steps.entry(e.turn_id).or_default();
                        *n = (*n).max(pp.step.max(0) as usize + 1);
                    }
                    Payload::SessionLoaded(sl) if !sl.turns.is_empty() => {
                        t.sessions.0 += 1;
                        t.sessions.1 += sl.turns.len();
                    }
                    Payload::PolicyEvaluated(pe) => {
                        let key = (
                            pe.checkpoint.as_str().to_string(),
                            pe.decision.as_str().to_string(),
                        );
                        *t.decisions.entry(key).or_default() += 1;
                        if pe.decision != crate::event::PolicyDecision::Allow {
                            for id in &pe.policy_ids {
                                *t.rules.entry(id.clone()).or_default() += 1;
                            }
                        }
                    }
                    Payload::ApprovalRequested(_) => {
                        *t.approvals.entry("requested".into()).or_default() += 1
                    }
                    Payload::ApprovalGranted(_) => {
                        *t.approvals.entry("granted".into()).or_default() += 1
                    }
                    Payload::ApprovalDenied(_) => {
                        *t.approvals.entry("denied".into()).or_default() += 1
                    }
                    Payload::ApprovalExpired(_) => {
                        *t.approvals.entry("expired".into()).or_default() += 1
                    }
                    Payload::RouteSelected(r) => {
                        *t.routes.entry(r.profile.clone()).or_default() += 1
                    }
                    Payload::BudgetReserved(_) => t.reserved += 1,
                    Payload::GuardrailTripped(g) => {
                        let key = (
                            g.checkpoint.as_str().to_string(),
                            format!("{}/{}", g.guard, g.rule),
                            g.verdict.as_str().to_string(),
                        );
                        *t.trips.entry(key).or_default() += 1;
                        t.hallucinations_blocked += usize::from(g.hallucination);
                    }
                    Payload::EscalationRaised(e) => {
                        let rung = serde_json::to_value(e.rung)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        if e.rung == crate::event::EscalationRung::HumanHandoff {
                            *t.handoffs.entry("raised".into()).or_default() += 1;
                        }
                        *t.rungs.entry(rung).or_default() += 1;
                    }
                    Payload::HandoffAccepted(_) => {
                        *t.handoffs.entry("accepted".into()).or_default() += 1
                    }
                    Payload::HandoffResolved(_) => {
                        *t.handoffs.entry("resolved".into()).or_default() += 1
                    }
                    Payload::TurnCompleted(c)
                        if c.outcome == crate::event::Outcome::EscalationFailed =>
                    {
                        *t.handoffs.entry("expired".into()).or_default() += 1;
                    }
                    Payload::BudgetCommitted(c) => t.committed_cost_micros += c.cost_micros,
                    _ => {}
                }
            }
        }
    }
    Ok(t)
}

impl ControlTally {
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.steps.is_empty() {
            let mut by: BTreeMap<usize, usize> = BTreeMap::new();
            for n in self.steps.values() {
                *by.entry(*n).or_default() += 1;
            }
            let total: usize = self.steps.values().sum();
            let dist: Vec<String> = by.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            s.push_str(&format!(
                "model steps  {:.2} per turn (turns by steps taken: {})\n",
                total as f64 / self.steps.len() as f64,
                dist.join(", ")
            ));
        }
        if self.sessions.0 > 0 {
            s.push_str(&format!(
                "sessions     {} follow-up turns saw {} earlier turns of their session\n",
                self.sessions.0, self.sessions.1
            ));
        }
        s.push_str("decisions    by checkpoint and kind\n");
        for ((checkpoint, decision), n) in &self.decisions {
            s.push_str(&format!("  {checkpoint:<12} {decision:<21} {n}\n"));
        }
        if !self.rules.is_empty() {
            s.push_str("  non-allow decisions by rule:");
            for (rule, n) in &self.rules {
                s.push_str(&format!(" {rule} {n},"));
            }
            s.pop();
            s.push('\n');
        }
        let join = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!("approvals    {}\n", join(&self.approvals)));
        s.push_str(&format!("routes       {}\n", join(&self.routes)));
        s.push_str(&format!(
            "budgets      {} reservations, {} µ¤ committed\n",
            self.reserved, self.committed_cost_micros
        ));
        if !self.trips.is_empty() {
            s.push_str("guardrails   trips by checkpoint, guard/rule and verdict\n");
            for ((checkpoint, rule, verdict), n) in &self.trips {
                s.push_str(&format!("  {checkpoint:<12} {rule:<45} {verdict:<8} {n}\n"));
            }
            s.push_str(&format!(
                "  hallucinations with action blocked: {}\n",
                self.hallucinations_blocked
            ));
        }
        if !self.rungs.is_empty() {
            s.push_str(&format!("ladder       {}\n", join(&self.rungs)));
            s.push_str(&format!("handoffs     {}\n", join(&self.handoffs)));
        }
        s
    }
}
