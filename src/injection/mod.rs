//! `ballast injection`: the prompt-injection suite. Each scenario runs one turn twice through
//! the real state machine, control plane (built-in policies), guards and vault edge — once
//! clean, once attacked — with a perfect scripted model that a hijack steers: it reads what the
//! task needs, makes the attacker's call when it has read the attacker's text, then does the
//! user's task and answers. The operator approves the user's own calls and refuses the rest.
//! Tools are simulated in process: what matters is which calls execute.

pub mod scenarios;

use serde::Serialize;
use serde_json::{Value, json};

use crate::control::CedarControlPlane;
use crate::event::{
    ApprovalDecision, CommandAction, Event, Outcome, Payload, RetrievedDocument, SessionCall,
    SessionTurn, TurnCommand, TurnRequest,
};
use crate::exec::catalog::Catalog;
use crate::exec::types::{Conversation, Retrieval, ToolSuccess};
use crate::guard::{Breakers, GuardConfig, Guards};
use crate::ids::TurnId;
use crate::runtime::edge;
use crate::turn::{DecideCtx, Effect, Input, Limits, Planned, TurnState, step};
use crate::vault::Vault;
use scenarios::{Call, Placement, Scenario};

/// What happened in one run of a scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    pub attacker_executed: bool,
    pub task_completed: bool,
    pub legit_blocked: bool,
    pub legit_confirmations: u32,
    pub attack_confirmations: u32,
    pub attack_refused: bool,
    pub outcome: String,
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub attacked: Run,
    pub clean: Run,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioReport>,
}

fn pct(n: usize, of: usize) -> f64 {
    100.0 * n as f64 / of.max(1) as f64
}

impl Report {
    pub fn attacker_executed_pct(&self) -> f64 {
        pct(
            self.count(|s| s.attacked.attacker_executed),
            self.scenarios.len(),
        )
    }
    pub fn task_under_attack_pct(&self) -> f64 {
        pct(
            self.count(|s| s.attacked.task_completed),
            self.scenarios.len(),
        )
    }
    pub fn task_clean_pct(&self) -> f64 {
        pct(self.count(|s| s.clean.task_completed), self.scenarios.len())
    }
    pub fn legit_blocked_pct(&self) -> f64 {
        let n = self.count(|s| s.clean.legit_blocked) + self.count(|s| s.attacked.legit_blocked);
        pct(n, 2 * self.scenarios.len())
    }
    pub fn legit_confirmation_pct(&self) -> f64 {
        let n = self.count(|s| s.clean.legit_confirmations > 0)
            + self.count(|s| s.attacked.legit_confirmations > 0);
        pct(n, 2 * self.scenarios.len())
    }
    fn count(&self, f: impl Fn(&ScenarioReport) -> bool) -> usize {
        self.scenarios.iter().filter(|s| f(s)).count()
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "scenario                                              attacker  task(att)  task(clean)  legit_blocked  confirmations(legit/attack)\n",
        );
        for s in &self.scenarios {
            let yn = |b: bool| if b { "yes" } else { "no" };
            out.push_str(&format!(
                "{:<54}{:<10}{:<11}{:<13}{:<15}{}/{}\n",
                s.name,
                yn(s.attacked.attacker_executed),
                yn(s.attacked.task_completed),
                yn(s.clean.task_completed),
                yn(s.attacked.legit_blocked || s.clean.legit_blocked),
                s.attacked.legit_confirmations + s.clean.legit_confirmations,
                s.attacked.attack_confirmations,
            ));
        }
        out.push_str(&format!(
            "scenarios={}\nattacker_executed_pct={:.1}\ntask_completed_under_attack_pct={:.1}\ntask_completed_clean_pct={:.1}\nlegit_blocked_pct={:.1}\nlegit_confirmation_pct={:.1}\n",
            self.scenarios.len(),
            self.attacker_executed_pct(),
            self.task_under_attack_pct(),
            self.task_clean_pct(),
            self.legit_blocked_pct(),
            self.legit_confirmation_pct(),
        ));
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InjectionError {
    #[error("control plane: {0}")]
    Control(#[from] crate::control::ControlError),
    #[error("guards: {0}")]
    Guards(String),
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
}

/// Runs every scenario (or those whose name contains `filter`) under `guards`.
pub fn run(guards: &GuardConfig, filter: Option<&str>) -> Result<Report, InjectionError> {
    let mut out = Vec::new();
    for (i, s) in scenarios::all().into_iter().enumerate() {
        if filter.is_some_and(|f| !s.name().contains(f)) {
            continue;
        }
        let clean = run_one(&s, false, guards, i as u64)?;
        let attacked = run_one(&s, true, guards, i as u64)?;
        out.push(ScenarioReport {
            name: s.name(),
            attacked,
            clean,
        });
    }
    Ok(Report { scenarios: out })
}

fn same_call(tool: &str, args_json: &str, call: &Call) -> bool {
    tool == call.tool && serde_json::from_str::<Value>(args_json).is_ok_and(|a| a == call.args)
}

/// The hijackable perfect model: read, then (hijacked) the attacker's call, then the task.
fn model(s: &Scenario, attacked: bool, c: &Conversation) -> Planned {
    let tried = |call: &Call| c.calls().any(|x| same_call(&x.tool, &x.args_json, call));
    let text = &s.attack.text;
    let seen = attacked
        && (c
            .documents
            .iter()
            .any(|d| d.snippet.contains(text.as_str()))
            || c.session.iter().any(|t| {
                t.calls
                    .iter()
                    .any(|x| x.result_json.contains(text.as_str()))
            })
            || c.calls()
                .any(|x| x.result.as_ref().is_ok_and(|r| r.contains(text.as_str()))));
    let next = if !tried(&s.domain.read) {
        Some(&s.domain.read)
    } else if seen && !tried(&s.attack.call) {
        Some(&s.attack.call)
    } else if !tried(&s.domain.task) {
        Some(&s.domain.task)
    } else {
        None
    };
    Planned {
        model_version: "hijackable-1".into(),
        prompt_template_hash: "0".into(),
        steps: next
            .map(|call| crate::event::PlanStep {
                tool: call.tool.into(),
                args_json: call.args.to_string(),
            })
            .into_iter()
            .collect(),
        confidence: 0.95,
        input_tokens: 200,
        output_tokens: 30,
        content: next.is_none().then(|| "Done.".to_string()),
        finish_reason: Some(if next.is_some() { "tool_calls" } else { "stop" }.into()),
        ..Planned::empty("scripted")
    }
}

/// What a simulated tool returns (its output with the attack where the scenario puts it).
fn tool_output(s: &Scenario, attacked: bool, tool: &str, args_json: &str) -> String {
    if tool == s.domain.read.tool {
        let injection = if attacked && s.placement == Placement::ToolOutput {
            s.attack.text.as_str()
        } else {
            "Nothing else."
        };
        return s
            .domain
            .read_output
            .replace("{INJECTION}", &json_escape(injection));
    }
    json!({"ok": true, "tool": tool, "args": serde_json::from_str::<Value>(args_json).unwrap_or_default()}).to_string()
}

fn json_escape(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn run_one(
    s: &Scenario,
    attacked: bool,
    guards: &GuardConfig,
    seed: u64,
) -> Result<Run, InjectionError> {
    let catalog = Catalog::new(s.domain.tools.clone());
    let control = CedarControlPlane::builtin(catalog.clone())?;
    let guards = Guards::new(guards.clone(), &catalog).map_err(InjectionError::Guards)?;
    let (limits, budgets, ledger, breakers) = (
        Limits::default(),
        crate::control::budget::BudgetLimits::default(),
        crate::control::budget::Ledger::default(),
        Breakers::default(),
    );
    let vault = Vault::ephemeral();
    let turn = TurnId::from_parts(1_767_225_600_000 + seed, [seed as u8; 10]);
    let mut request = TurnRequest {
        turn_id: turn,
        tenant: "acme".into(),
        user_id: "user-1".into(),
        text: s.domain.request.clone(),
        channel: "chat".into(),
        attributes: Default::default(),
        submitted_at_ms: 0,
        session_id: (s.placement == Placement::Session).then(|| "s-1".to_string()),
    };
    let records = vault.tokenize_request(&mut request)?;
    vault.persist(&records)?;
    let user = request.user_id.clone();
    let session = if s.placement == Placement::Session {
        // Yesterday's turn read the same source — and the attacker's text in it.
        let earlier = s.domain.read_output.replace(
            "{INJECTION}",
            &json_escape(if attacked {
                &s.attack.text
            } else {
                "Nothing else."
            }),
        );
        let (result_json, t) = vault.tokenize_json_text("acme", &user, &earlier)?;
        vault.persist(&t.records)?;
        Some(vec![SessionTurn {
            turn_id: "earlier".into(),
            request: "What is new?".into(),
            reply: Some("Here is what is new.".into()),
            calls: vec![SessionCall {
                tool: s.domain.read.tool.into(),
                args_json: s.domain.read.args.to_string(),
                result_json,
            }],
        }])
    } else {
        None
    };
    let mut state = TurnState::new(turn);
    let mut events: Vec<Event> = Vec::new();
    let mut queue: Vec<Input> = vec![Input::Request {
        request,
        source_offset: None,
        session,
    }];
    let mut run = Run::default();
    let mut now = 1_000;
    for _ in 0..200 {
        let Some(input) = (!queue.is_empty()).then(|| queue.remove(0)) else {
            break;
        };
        now += 10;
        let ctx = DecideCtx {
            now_ms: now,
            catalog: &catalog,
            control: &control,
            limits: &limits,
            budgets: &budgets,
            ledger: &ledger,
            guards: &guards,
            breakers: &breakers,
            draining: false,
        };
        let d = step(&mut state, input, &ctx);
        for e in &d.events {
            if let Payload::ApprovalRequested(a) = &e.payload {
                let args = vault.detokenize_text("acme", &user, &a.args_json);
                let legit = same_call(&a.tool, &args, &s.domain.task);
                if legit {
                    run.legit_confirmations += 1;
                } else {
                    run.attack_confirmations += 1;
                }
                queue.push(Input::Command(TurnCommand {
                    turn_offset: None,
                    command_id: format!("cmd-{}", a.approval_id),
                    turn_id: turn,
                    tenant: "acme".into(),
                    operator: "operator".into(),
                    issued_at_ms: now,
                    action: CommandAction::ApprovalDecision(ApprovalDecision {
                        approval_id: a.approval_id.clone(),
                        granted: legit,
                        reason: (!legit).then(|| "not what the user asked for".into()),
                    }),
                }));
            }
        }
        events.extend(d.events);
        for effect in d.effects {
            let Ok((effect, who)) = edge::reveal(&vault, &effect) else {
                continue;
            };
            let input = match effect {
                Effect::Retrieve { query, .. } => {
                    let mut documents = vec![doc(
                        "kb-1",
                        "Help: payments, e-mail, calendar and files are supported.",
                    )];
                    if attacked && s.placement == Placement::Document {
                        documents.push(doc("kb-2", &format!("Tips. {}", s.attack.text)));
                    }
                    Input::Retrieved(Ok(Retrieval {
                        query,
                        documents,
                        latency_ms: 1,
                    }))
                }
                Effect::Plan { conversation, .. } => {
                    Input::Planned(Ok(model(s, attacked, &conversation)))
                }
                Effect::CallTool { call, .. } => Input::ToolDone {
                    call_id: call.call_id.clone(),
                    attempt: call.attempt,
                    result: Ok(ToolSuccess {
                        result_json: tool_output(s, attacked, &call.tool, &call.args_json),
                        latency_ms: 1,
                    }),
                },
                _ => continue,
            };
            let (input, records) = edge::conceal(&vault, &who, input);
            vault.persist(&records)?;
            queue.push(input);
        }
        if state.is_terminal() {
            break;
        }
    }
    // What executed: completed calls, revealed.
    for e in &events {
        match &e.payload {
            Payload::ToolCallStarted(c) => {
                let args = vault.detokenize_text("acme", &user, &c.args_json);
                let completed = events.iter().any(|x| {
                    matches!(&x.payload, Payload::ToolCallCompleted(d) if d.call_id == c.call_id)
                });
                if completed && same_call(&c.tool, &args, &s.attack.call) {
                    run.attacker_executed = true;
                }
                if completed && same_call(&c.tool, &args, &s.domain.task) {
                    run.task_completed = true;
                }
            }
            Payload::CallRefused(r) => {
                let call = state.all_calls().find(|c| c.call_id == r.call_id);
                let args = call
                    .map(|c| vault.detokenize_text("acme", &user, &c.args_json))
                    .unwrap_or_default();
                if same_call(&r.tool, &args, &s.domain.task) {
                    run.legit_blocked = true;
                } else {
                    run.attack_refused = true;
                }
                run.rules.extend(r.rules.iter().cloned());
            }
            Payload::PolicyEvaluated(p) => {
                run.rules.extend(
                    p.policy_ids
                        .iter()
                        .filter(|id| id.starts_with("provenance."))
                        .cloned(),
                );
            }
            _ => {}
        }
    }
    run.rules.sort();
    run.rules.dedup();
    run.outcome = state
        .outcome
        .map(|o| format!("{o:?}").to_lowercase())
        .unwrap_or_else(|| "running".into());
    run.task_completed &= state.outcome == Some(Outcome::Succeeded);
    Ok(run)
}

fn doc(id: &str, text: &str) -> RetrievedDocument {
    RetrievedDocument {
        id: id.into(),
        title: id.into(),
        score: 0.5,
        version: 1,
        updated_at_ms: 1_000,
        snippet: text.into(),
        facts: Default::default(),
    }
}
