//! The golden file format, version 1: one JSON object per line.
//!
//! ```text
//! {"golden":"ballast-history","version":1,"name":…,"about":…,"covers":[…],"recorded_by":…,
//!  "partitions":2,"clock_ms":…,"schemas":{"<fingerprint hex>":"turn_event",…}}   the header
//! {"workload":{…}}          a turn the scripted model plays (exec::scripted::WorkloadTurn)
//! {"recorded":{…}}          a step that made the history (script::Step), for the reader
//! {"record":{"log":"events","partition":0,"offset":0,"key":"…","value":"<base64>"}}
//!                           a record of the data dir's logs as the worker wrote it: the
//!                           Avro single-object encoding, schema fingerprint and all
//! {"row":{"projection":"outcomes","key":"<base64>","value":"<base64>"}}
//!                           a row of a projection as the recording release folded the
//!                           recorded log (a data dir upgraded in place keeps these)
//! {"then":{…}}              a step played after the restart (script::Step)
//! {"expect":{"after":"replay"|"resume",…}}   what this release made of it (check::Expected)
//! ```
//!
//! The record bytes are the point: a later release reads them with its own codec (which must
//! still know every schema they were written with) and resumes them with its own worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ballast::exec::scripted::WorkloadTurn;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::check::Expected;
use super::script::Step;

pub const FORMAT: &str = "ballast-history";
pub const VERSION: u32 = 1;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/histories")
}

/// Every history file, by name.
pub fn all() -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub golden: String,
    pub version: u32,
    pub name: String,
    pub about: String,
    pub covers: Vec<String>,
    pub recorded_by: String,
    pub partitions: u32,
    /// The manual clock when the history was cut: the restart starts there.
    pub clock_ms: i64,
    /// The writer schemas of the records, by fingerprint (hex): a reader must know each.
    pub schemas: BTreeMap<String, String>,
}

/// Which log of the data dir a record is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Log {
    Requests,
    Events,
    Escalations,
    Outcomes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub log: Log,
    pub partition: u32,
    pub offset: u64,
    /// The record's key (a turn id, a routing key: text).
    pub key: String,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

/// A row of a projection's tree (rows and checkpoints alike).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub projection: String,
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

mod b64 {
    use super::{Engine, STANDARD};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Workload(WorkloadTurn),
    Recorded(Step),
    Record(Record),
    Row(Row),
    Then(Step),
    Expect(Box<Expected>),
}

/// A history as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub header: Header,
    pub workload: Vec<WorkloadTurn>,
    pub recorded: Vec<Step>,
    pub records: Vec<Record>,
    /// The projections' rows after the recorded log, as the recording release folded it.
    pub rows: Vec<Row>,
    pub then: Vec<Step>,
    pub expected: Vec<Expected>,
}

impl History {
    pub fn read(path: &Path) -> anyhow::Result<History> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().context("an empty history file")?;
        let header: Header = serde_json::from_str(first)
            .with_context(|| format!("{}: line 1 is not a history header", path.display()))?;
        if header.golden != FORMAT || header.version != VERSION {
            bail!(
                "{}: a {:?} file of version {}; this build reads {FORMAT:?} version {VERSION}. \
                 A new format keeps reading the old one: add a reader, do not rewrite the file",
                path.display(),
                header.golden,
                header.version
            );
        }
        let mut h = History {
            header,
            workload: Vec::new(),
            recorded: Vec::new(),
            records: Vec::new(),
            rows: Vec::new(),
            then: Vec::new(),
            expected: Vec::new(),
        };
        for (i, line) in lines {
            let line: Line = serde_json::from_str(line)
                .with_context(|| format!("{}: line {} does not parse", path.display(), i + 1))?;
            match line {
                Line::Workload(w) => h.workload.push(w),
                Line::Recorded(s) => h.recorded.push(s),
                Line::Record(r) => h.records.push(r),
                Line::Row(r) => h.rows.push(r),
                Line::Then(s) => h.then.push(s),
                Line::Expect(e) => h.expected.push(*e),
            }
        }
        Ok(h)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = serde_json::to_string(&self.header)?;
        out.push('\n');
        let lines = self
            .workload
            .iter()
            .cloned()
            .map(Line::Workload)
            .chain(self.recorded.iter().cloned().map(Line::Recorded))
            .chain(self.records.iter().cloned().map(Line::Record))
            .chain(self.rows.iter().cloned().map(Line::Row))
            .chain(self.then.iter().cloned().map(Line::Then))
            .chain(
                self.expected
                    .iter()
                    .cloned()
                    .map(|e| Line::Expect(Box::new(e))),
            );
        for line in lines {
            out.push_str(&serde_json::to_string(&line)?);
            out.push('\n');
        }
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
