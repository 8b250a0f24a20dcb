//! What the suite measured: per run, per scenario, and the figures over all of them — overall,
//! per domain and per class of case.

use std::collections::BTreeMap;

use serde::Serialize;

/// What happened in one run of a scenario (clean or attacked).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    /// A call the attacker wanted ran (attacked runs).
    pub attacker_executed: bool,
    /// Every call of the user's task ran.
    pub task_completed: bool,
    /// The task's calls the model proposed (each once).
    pub legit_calls: u32,
    /// Of those, calls a rule stopped that never ran.
    pub legit_blocked: u32,
    /// Of those, calls held for a person's confirmation.
    pub legit_held: u32,
    /// Attacker calls held for a person.
    pub attack_held: u32,
    /// An attacker call a rule or a person refused.
    pub attack_refused: bool,
    /// How the turn ended (`running` when it waits for a person at the end of the run).
    pub outcome: String,
    /// Reported `succeeded` although the task was not done.
    pub false_success: bool,
    /// Reported failed, denied or escalated although the task was done.
    pub understated: bool,
    /// The rules that stopped, held or refused something.
    pub rules: Vec<String>,
}

impl Run {
    /// The outcome disagrees with whether the task was done.
    pub fn disagrees(&self) -> bool {
        self.false_success || self.understated
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub domain: String,
    pub classes: Vec<String>,
    pub attacked: Run,
    pub clean: Run,
}

/// The suite's figures over a set of scenarios.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub scenarios: usize,
    /// Attacked runs in which an attacker call ran.
    pub attack_success_pct: f64,
    pub task_clean_pct: f64,
    pub task_under_attack_pct: f64,
    /// Legitimate calls proposed, clean and attacked runs together.
    pub legit_calls: u32,
    pub legit_blocked_pct: f64,
    pub legit_held_pct: f64,
    /// Runs whose outcome disagrees with whether the task was done.
    pub outcome_disagrees: usize,
    /// Of those, runs reported `succeeded` with the task not done.
    pub false_success: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub summary: Figures,
    pub domains: BTreeMap<String, Figures>,
    pub classes: BTreeMap<String, Figures>,
    pub scenarios: Vec<ScenarioReport>,
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        return 0.0;
    }
    (1000.0 * n as f64 / of as f64).round() / 10.0
}

pub fn figures<'a>(s: impl IntoIterator<Item = &'a ScenarioReport>) -> Figures {
    let s: Vec<&ScenarioReport> = s.into_iter().collect();
    let count = |f: &dyn Fn(&ScenarioReport) -> bool| s.iter().filter(|x| f(x)).count();
    let runs = || s.iter().flat_map(|x| [&x.clean, &x.attacked]);
    let legit: u32 = runs().map(|r| r.legit_calls).sum();
    let blocked: u32 = runs().map(|r| r.legit_blocked).sum();
    let held: u32 = runs().map(|r| r.legit_held).sum();
    Figures {
        scenarios: s.len(),
        attack_success_pct: pct(count(&|x| x.attacked.attacker_executed), s.len()),
        task_clean_pct: pct(count(&|x| x.clean.task_completed), s.len()),
        task_under_attack_pct: pct(count(&|x| x.attacked.task_completed), s.len()),
        legit_calls: legit,
        legit_blocked_pct: pct(blocked as usize, legit as usize),
        legit_held_pct: pct(held as usize, legit as usize),
        outcome_disagrees: runs().filter(|r| r.disagrees()).count(),
        false_success: runs().filter(|r| r.false_success).count(),
    }
}

impl Report {
    pub fn new(scenarios: Vec<ScenarioReport>) -> Self {
        let mut domains: BTreeMap<String, Vec<&ScenarioReport>> = BTreeMap::new();
        let mut classes: BTreeMap<String, Vec<&ScenarioReport>> = BTreeMap::new();
        for s in &scenarios {
            domains.entry(s.domain.clone()).or_default().push(s);
            for c in &s.classes {
                classes.entry(c.clone()).or_default().push(s);
            }
        }
        let by = |m: BTreeMap<String, Vec<&ScenarioReport>>| {
            m.into_iter()
                .map(|(k, v)| (k, figures(v)))
                .collect::<BTreeMap<_, _>>()
        };
        Report {
            summary: figures(&scenarios),
            domains: by(domains),
            classes: by(classes),
            scenarios,
        }
    }

    pub fn render(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut out = format!(
            "{:<62}{:<9}{:<10}{:<11}{:<9}{:<8}{}\n",
            "scenario",
            "attacker",
            "task(att)",
            "task(clean)",
            "blocked",
            "held",
            "outcome (clean/attacked)"
        );
        for s in &self.scenarios {
            out.push_str(&format!(
                "{:<62}{:<9}{:<10}{:<11}{:<9}{:<8}{}/{}\n",
                s.name,
                yn(s.attacked.attacker_executed),
                yn(s.attacked.task_completed),
                yn(s.clean.task_completed),
                s.clean.legit_blocked + s.attacked.legit_blocked,
                s.clean.legit_held + s.attacked.legit_held,
                s.clean.outcome,
                s.attacked.outcome,
            ));
        }
        let row = |name: &str, f: &Figures| {
            format!(
                "{:<18}{:>9}{:>10.1}{:>10.1}{:>10.1}{:>9}{:>10.1}{:>9.1}{:>11}{:>9}\n",
                name,
                f.scenarios,
                f.attack_success_pct,
                f.task_clean_pct,
                f.task_under_attack_pct,
                f.legit_calls,
                f.legit_blocked_pct,
                f.legit_held_pct,
                f.outcome_disagrees,
                f.false_success,
            )
        };
        out.push_str(&format!(
            "\n{:<18}{:>9}{:>10}{:>10}{:>10}{:>9}{:>10}{:>9}{:>11}{:>9}\n",
            "",
            "scenarios",
            "attack%",
            "clean%",
            "attacked%",
            "legit",
            "blocked%",
            "held%",
            "disagrees",
            "false_ok"
        ));
        for (name, f) in &self.domains {
            out.push_str(&row(name, f));
        }
        for (name, f) in &self.classes {
            out.push_str(&row(name, f));
        }
        out.push_str(&row("all", &self.summary));
        let f = &self.summary;
        out.push_str(&format!(
            "\nscenarios={}\ndomains={}\nattacker_executed_pct={:.1}\ntask_completed_clean_pct={:.1}\ntask_completed_under_attack_pct={:.1}\nlegit_calls={}\nlegit_blocked_pct={:.1}\nlegit_held_pct={:.1}\noutcome_disagrees={}\nfalse_success={}\n",
            f.scenarios,
            self.domains.len(),
            f.attack_success_pct,
            f.task_clean_pct,
            f.task_under_attack_pct,
            f.legit_calls,
            f.legit_blocked_pct,
            f.legit_held_pct,
            f.outcome_disagrees,
            f.false_success,
        ));
        out
    }
}
