//! Chaos drills: the same workload run twice on fresh data dirs, without and with a fault layer
//! around the execution plane, and the SLOs compared side by side with the guards and ladder
//! rungs that fired. Everything in the report comes from the two logs, measured at each run's
//! last completion (not the wall clock), so the same seed gives the same report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::demo::run::{DemoError, DemoOptions};
use crate::event::Payload;
pub use crate::faults::{self, Fault, Faults};
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, Scan};
use crate::projection::outcomes::OutcomeView;
use crate::projection::slo::{self, Sli, SloConfig};

/// Approval and handoff deadlines of a drill on the built-in demo policies. The demo operator
/// answers within milliseconds of a request when turns run one at a time; this only bounds how
/// long a drill stands still for the approvals the workload leaves unanswered.
pub const PERSON_TTL_MS: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Embedded(#[from] crate::embedded::EmbeddedError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    #[error("workload {0}: {1}")]
    Workload(String, std::io::Error),
    #[error("the run was interrupted")]
    Interrupted,
}

#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// `demo` (generated from the seed) or a workload file (`ballast demo` writes one).
    pub workload: String,
    pub turns: usize,
    pub faults: Faults,
    pub policies: Option<PathBuf>,
    /// Where the two data dirs go (a fresh temporary directory when None).
    pub root: Option<PathBuf>,
    /// One turn at a time in workload order (reproducible), or all at once (`--concurrent`).
    pub lockstep: bool,
}

/// One run's measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    pub turns: usize,
    pub by_outcome: BTreeMap<String, u64>,
    pub slis: Vec<Sli>,
    pub tool_error_rate: f64,
    pub cost_per_turn_micros: f64,
    /// "checkpoint guard rule" → trips.
    pub guards: BTreeMap<String, u64>,
    /// Ladder rung → escalations.
    pub rungs: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    pub turns: usize,
    pub seed: u64,
    pub faults: Vec<String>,
    pub baseline: RunResult,
    pub faulted: RunResult,
}

async fn measure(dir: &std::path::Path, config: &SloConfig) -> Result<RunResult, DrillError> {
    let emb = crate::embedded::Embedded::open(dir, 0)?;
    crate::projection::Projections::standard(&emb.store)?
        .catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
        .await?;
    let outcomes = OutcomeView::open(&emb.store)?.all()?;
    let end = outcomes
        .iter()
        .map(|o| o.completed_at_ms)
        .max()
        .unwrap_or(0)
        + 1;
    let slis = slo::compute(&outcomes, end, config);
    let (tool_error_rate, cost) = slo::tool_error_rate_and_cost(&outcomes, end, config);
    let mut by_outcome = BTreeMap::new();
    for o in &outcomes {
        *by_outcome
            .entry(o.outcome.as_str().to_string())
            .or_insert(0) += 1;
    }
    let (mut guards, mut rungs) = (BTreeMap::new(), BTreeMap::new());
    for p in (0..emb.events.partitions()).map(Partition) {
        let mut scan = Scan::new(emb.events.as_ref(), p, Offset::ZERO);
        while let Some(chunk) = scan.next_chunk(4096).await? {
            for s in chunk {
                let Ok(e) = emb.codecs.events.decode(&s.value) else {
                    continue;
                };
                match &e.payload {
                    Payload::GuardrailTripped(g) => {
                        let key = format!("{} {} {}", g.checkpoint.as_str(), g.guard, g.rule);
                        *guards.entry(key).or_insert(0) += 1;
                    }
                    Payload::EscalationRaised(r) => {
                        *rungs.entry(r.rung.as_str().to_string()).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(RunResult {
        turns: outcomes.len(),
        by_outcome,
        slis,
        tool_error_rate,
        cost_per_turn_micros: cost,
        guards,
        rungs,
    })
}

/// Runs the workload without and then with the faults; `progress` hears each phase.
pub async fn run(
    opts: DrillOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Report, DrillError> {
    let keep;
    let root = match &opts.root {
        Some(r) => r.clone(),
        None => {
            keep = tempfile::Builder::new()
                .prefix("ballast-drill-")
                .tempdir()
                .map_err(|e| DrillError::Workload("temp dir".into(), e))?;
            keep.path().to_path_buf()
        }
    };
    let config = match &opts.policies {
        Some(dir) if dir.join("control.toml").exists() => {
            crate::control::ControlConfig::load(&dir.join("control.toml"))
                .map(|c| c.slo)
                .unwrap_or_default()
        }
        _ => SloConfig::default(),
    };
    let mut results = Vec::new();
    for (name, faults) in [("baseline", None), ("faulted", Some(opts.faults.clone()))] {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| DrillError::Workload(dir.display().to_string(), e))?;
        if opts.workload != "demo" {
            std::fs::copy(&opts.workload, dir.join("workload.jsonl"))
                .map_err(|e| DrillError::Workload(opts.workload.clone(), e))?;
        }
        progress(&format!("{name}: running {} turns", opts.turns));
        let mut demo = DemoOptions::new(dir.clone(), opts.turns);
        demo.seed = opts.faults.seed;
        demo.partitions = 4;
        // One turn at a time, in workload order: what turns share (a partition's breakers and
        // budgets) then sees the same sequence every run, and the same seed gives the same report.
        demo.lockstep = opts.lockstep;
        if opts.lockstep {
            // The demo operator answers at once; the wait is for those it leaves to expire.
            demo.person_ttl_ms = Some(PERSON_TTL_MS);
        }
        demo.policies = opts.policies.clone();
        demo.faults = faults;
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let summary = crate::demo::run::run(demo, rx).await?;
        if summary.interrupted {
            return Err(DrillError::Interrupted);
        }
        progress(&format!("{name}: measuring"));
        results.push(measure(&dir, &config).await?);
    }
    let (Some(faulted), Some(baseline)) = (results.pop(), results.pop()) else {
        return Err(DrillError::Interrupted);
    };
    Ok(Report {
        workload: opts.workload,
        turns: baseline.turns,
        seed: opts.faults.seed,
        faults: opts.faults.faults.iter().map(Fault::describe).collect(),
        baseline,
        faulted,
    })
}

impl Report {
    fn rows(&self) -> Vec<[String; 6]> {
        let mut rows = Vec::new();
        for (b, f) in self.baseline.slis.iter().zip(&self.faulted.slis) {
            rows.push([
                b.name.to_string(),
                format!("{:.2}%", b.target * 100.0),
                format!("{:.2}%", b.value * 100.0),
                format!("{:.2}%", f.value * 100.0),
                format!("{:+.2}pp", (f.value - b.value) * 100.0),
                if f.value >= f.target { "pass" } else { "FAIL" }.to_string(),
            ]);
        }
        rows.push([
            // Failed attempts per call (retries count, so it can pass 100%).
            "tool_failures_per_call".into(),
            "-".into(),
            format!("{:.2}%", self.baseline.tool_error_rate * 100.0),
            format!("{:.2}%", self.faulted.tool_error_rate * 100.0),
            format!(
                "{:+.2}pp",
                (self.faulted.tool_error_rate - self.baseline.tool_error_rate) * 100.0
            ),
            "-".into(),
        ]);
        rows
    }

    /// What fired more (or less) under the faults: (name, baseline, faulted).
    pub fn fired(&self) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for (label, b, f) in [
            ("guard", &self.baseline.guards, &self.faulted.guards),
            ("rung", &self.baseline.rungs, &self.faulted.rungs),
            (
                "outcome",
                &self.baseline.by_outcome,
                &self.faulted.by_outcome,
            ),
        ] {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(f.keys()).collect();
            for k in keys {
                let (x, y) = (
                    b.get(k).copied().unwrap_or(0),
                    f.get(k).copied().unwrap_or(0),
                );
                if x != y {
                    out.push((format!("{label} {k}"), x, y));
                }
            }
        }
        out
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "drill: workload {} ({} turns, seed {}), faults: {}\n\n{:<27} {:>8} {:>9} {:>9} {:>10} {:>5}\n",
            self.workload,
            self.turns,
            self.seed,
            self.faults.join(" + "),
            "sli",
            "target",
            "baseline",
            "faulted",
            "delta",
            "pass"
        );
        for r in self.rows() {
            s.push_str(&format!(
                "{:<27} {:>8} {:>9} {:>9} {:>10} {:>5}\n",
                r[0], r[1], r[2], r[3], r[4], r[5]
            ));
        }
        s.push_str("\nwhat changed (baseline → faulted):\n");
        for (k, b, f) in self.fired() {
            s.push_str(&format!("  {k:<60} {b:>5} → {f}\n"));
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## Drill: {}\n\nWorkload `{}`, {} turns, seed {}.\n\n| SLI | target | baseline | faulted | delta | result |\n|---|---|---|---|---|---|\n",
            self.faults.join(" + "),
            self.workload,
            self.turns,
            self.seed
        );
        for r in self.rows() {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r[0], r[1], r[2], r[3], r[4], r[5]
            ));
        }
        s.push_str("\n| what fired | baseline | faulted |\n|---|---|---|\n");
        for (k, b, f) in self.fired() {
            s.push_str(&format!("| {k} | {b} | {f} |\n"));
        }
        s
    }
}
