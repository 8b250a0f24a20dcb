//! Recording and checking the golden histories (`tests/golden.rs`; the format is in `file.rs`,
//! the world they run in in `world.rs`, the steps in `script.rs`, what is compared in
//! `check.rs`, the histories themselves in `histories.rs`).

pub mod check;
pub mod file;
pub mod histories;
pub mod script;
pub mod world;

use std::sync::Arc;

use anyhow::{Context, bail};
use ballast::clock::{Clock, ManualClock};
use ballast::embedded::Embedded;

use file::{FORMAT, Header, History, VERSION};
use histories::Definition;
use script::{Driver, Step};

/// Records `def`: plays its steps up to the cut on a fresh data dir, keeps the logs, and notes
/// what this build makes of them — replayed, and resumed with the steps after the cut (twice:
/// a history whose resumption differs from one run to the next cannot be a golden one).
pub async fn record(def: &Definition) -> anyhow::Result<History> {
    let cut = def
        .steps
        .iter()
        .position(|s| *s == Step::Cut)
        .context("a history needs a cut")?;
    let (before, after) = def.steps.split_at(cut);
    let dir = tempfile::tempdir()?;
    let emb = Embedded::open(&dir.path().join("data"), world::PARTITIONS)?;
    let clock = Arc::new(ManualClock::new(world::T0));
    let mut driver = Driver::new(&emb, Arc::clone(&clock), def.workload.clone());
    driver.start().await?;
    let mut stopped = false;
    for (i, step) in before.iter().enumerate() {
        driver
            .play(step)
            .await
            .with_context(|| format!("{}: step {} ({step:?})", def.name, i + 1))?;
        stopped |= matches!(step, Step::Stop { .. });
    }
    if !stopped {
        bail!("{}: the worker must stop before the cut", def.name);
    }
    let records = check::dump(&emb).await?;
    let schemas = check::schema_names(&emb.codecs);
    for r in &records {
        let (fp, _) = ballast::event::codec::split_header(&r.value)?;
        if !schemas.contains_key(&hex::encode(fp)) {
            bail!(
                "{}: a record written with a schema this build does not write",
                def.name
            );
        }
    }
    drop(driver);
    drop(emb);
    let mut history = History {
        header: Header {
            golden: FORMAT.into(),
            version: VERSION,
            name: def.name.into(),
            about: def.about.into(),
            covers: def.covers.iter().map(|c| c.to_string()).collect(),
            recorded_by: format!("ballast {}", env!("CARGO_PKG_VERSION")),
            partitions: world::PARTITIONS,
            clock_ms: clock.now_ms(),
            schemas,
        },
        workload: def.workload.clone(),
        recorded: before.to_vec(),
        records,
        rows: Vec::new(),
        then: after.iter().skip(1).cloned().collect(),
        expected: Vec::new(),
    };
    let (replayed, rows) =
        check::replay(&history, &tempfile::tempdir()?.path().join("data")).await?;
    history.rows = rows;
    let resumed = check::resume(&history, &tempfile::tempdir()?.path().join("data")).await?;
    let again = check::resume(&history, &tempfile::tempdir()?.path().join("data")).await?;
    let unsteady = check::differences(&resumed.expected, &again.expected);
    if !unsteady.is_empty() {
        bail!(
            "{}: two resumptions differ, so this history cannot be golden:\n{}",
            def.name,
            unsteady.join("\n")
        );
    }
    history.expected = vec![replayed, resumed.expected];
    Ok(history)
}
