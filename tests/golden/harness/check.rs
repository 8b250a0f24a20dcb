//! What a release makes of a history, and the comparison with what the recording release made
//! of it: every record decoded, the projections folded from the turn log (their digests), the
//! outcome records, each turn's events.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use ballast::clock::ManualClock;
use ballast::embedded::Embedded;
use ballast::event::codec::{Codecs, fingerprint_hex, split_header};
use ballast::event::{Event, Payload, TurnOutcome};
use ballast::ids::{Offset, Partition, TurnId};
use ballast::log::{EventLog, Record as LogRecord};
use ballast::projection::Projections;
use ballast::projection::outcomes::OutcomeView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::file::{History, Log, Record, Row};
use super::script::Driver;

/// When the observation was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// The recorded logs, folded by the projections (no worker).
    Replay,
    /// The recorded logs resumed by a worker and the `then` steps played.
    Resume,
}

/// One turn's events: their kinds, and a digest of what they say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnEvents {
    pub turn_id: TurnId,
    pub kinds: Vec<String>,
    /// sha256 of the events as JSON (see [`normalized`]).
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub after: After,
    /// Each projection's digest (`Projections::digests`).
    pub digests: BTreeMap<String, String>,
    /// The outcome projection's records, in completion order.
    pub outcomes: Vec<TurnOutcome>,
    pub turns: Vec<TurnEvents>,
    /// What the worker published, sorted: `handoff TURN RUNGS` (the escalations log),
    /// `outcome TURN OUTCOME` (the outcomes log).
    #[serde(default)]
    pub published: Vec<String>,
}

/// The logs of `emb` as records, in log order.
pub async fn dump(emb: &Embedded) -> anyhow::Result<Vec<Record>> {
    let logs: [(Log, &dyn EventLog); 4] = [
        (Log::Requests, emb.requests.as_ref()),
        (Log::Events, emb.events.as_ref()),
        (Log::Escalations, emb.escalations.as_ref()),
        (Log::Outcomes, emb.outcomes.as_ref()),
    ];
    let mut out = Vec::new();
    for (log, l) in logs {
        for p in (0..l.partitions()).map(Partition) {
            for s in l.read(p, Offset::ZERO, usize::MAX).await? {
                out.push(Record {
                    log,
                    partition: p.0,
                    offset: s.offset.0,
                    key: String::from_utf8(s.key).context("a record key that is not text")?,
                    value: s.value,
                });
            }
        }
    }
    Ok(out)
}

/// Writes the records into the (fresh) data dir's logs, each at its recorded offset.
pub async fn load(emb: &Embedded, records: &[Record]) -> anyhow::Result<()> {
    for r in records {
        let log: &dyn EventLog = match r.log {
            Log::Requests => emb.requests.as_ref(),
            Log::Events => emb.events.as_ref(),
            Log::Escalations => emb.escalations.as_ref(),
            Log::Outcomes => emb.outcomes.as_ref(),
        };
        let at = log
            .append(
                Partition(r.partition),
                vec![LogRecord {
                    key: r.key.clone().into_bytes(),
                    value: r.value.clone(),
                }],
            )
            .await?;
        if at.0 != r.offset {
            bail!(
                "the {:?} record of partition {} went to offset {} instead of {}: records out of order",
                r.log,
                r.partition,
                at.0,
                r.offset
            );
        }
    }
    Ok(())
}

/// The name of each schema this build writes, by fingerprint (hex).
pub fn schema_names(codecs: &Codecs) -> BTreeMap<String, String> {
    [
        (codecs.events.fingerprint(), "turn_event"),
        (codecs.requests.fingerprint(), "turn_request"),
        (codecs.commands.fingerprint(), "turn_command"),
        (codecs.outcomes.fingerprint(), "turn_outcome"),
        (codecs.handoffs.fingerprint(), "handoff"),
    ]
    .into_iter()
    .map(|(fp, name)| (fingerprint_hex(&fp), name.to_string()))
    .collect()
}

/// (a) Every record decodes with this build's codecs. The error names the record and the
/// schema it was written with.
pub fn decode_all(h: &History, codecs: &Codecs) -> anyhow::Result<usize> {
    for r in &h.records {
        let result = match r.log {
            Log::Events => codecs.events.decode(&r.value).map(drop),
            Log::Requests => codecs.decode_inbound(&r.value).map(drop),
            Log::Escalations => codecs.handoffs.decode(&r.value).map(drop),
            Log::Outcomes => codecs.outcomes.decode(&r.value).map(drop),
        };
        if let Err(e) = result {
            let schema = split_header(&r.value)
                .map(|(fp, _)| {
                    let hex = fingerprint_hex(&fp);
                    match h.header.schemas.get(&hex) {
                        Some(name) => format!("{name} {hex}"),
                        None => format!("{hex}, none the history was written with"),
                    }
                })
                .unwrap_or_else(|e| e.to_string());
            bail!(
                "the {:?} record at partition {} offset {} (written with schema {schema}) does \
                 not decode with this build: {e}",
                r.log,
                r.partition,
                r.offset
            );
        }
    }
    Ok(h.records.len())
}

/// (b) The recorded logs in a fresh data dir, folded by the projections; also the rows they
/// hold then.
pub async fn replay(h: &History, dir: &Path) -> anyhow::Result<(Expected, Vec<Row>)> {
    let emb = Embedded::open(dir, h.header.partitions)?;
    load(&emb, &h.records).await?;
    let (expected, _) = observe(&emb, After::Replay).await?;
    let mut rows = Vec::new();
    for item in Projections::standard(&emb.store)?.items() {
        for kv in item.tree().iter() {
            let (key, value) = kv?;
            rows.push(Row {
                projection: item.name().to_string(),
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
    }
    Ok((expected, rows))
}

/// The projections' rows as the recording release left them, as an upgraded data dir keeps
/// them (rows of a projection this build no longer has stay behind unread, as they would).
fn load_rows(emb: &Embedded, rows: &[Row]) -> anyhow::Result<()> {
    let set = Projections::standard(&emb.store)?;
    for row in rows {
        if let Some(item) = set.items().iter().find(|i| i.name() == row.projection) {
            item.tree().insert(&row.key, row.value.as_slice())?;
        }
    }
    Ok(())
}

/// What a resumption made of a history.
pub struct Resumed {
    pub expected: Expected,
    /// Turns the worker held parked once the resumed turns came to rest.
    pub parked: u64,
    /// Every event of the turn log at the end, by partition and offset.
    pub events: Vec<Event>,
}

/// (c) The recorded logs in a fresh data dir, resumed by a worker, the `then` steps played.
pub async fn resume(h: &History, dir: &Path) -> anyhow::Result<Resumed> {
    let emb = Embedded::open(dir, h.header.partitions)?;
    load(&emb, &h.records).await?;
    load_rows(&emb, &h.rows)?;
    let clock = Arc::new(ManualClock::new(h.header.clock_ms));
    let mut driver = Driver::new(&emb, clock, h.workload.clone());
    driver.start().await?;
    driver
        .settle()
        .await
        .context("the turns in flight after the restart")?;
    let parked = driver.parked_soon().await;
    for (i, step) in h.then.iter().enumerate() {
        driver
            .play(step)
            .await
            .with_context(|| format!("then step {} ({step:?})", i + 1))?;
    }
    driver.settle().await?;
    driver.stop(false).await?;
    let (expected, events) = observe(&emb, After::Resume).await?;
    Ok(Resumed {
        expected,
        parked,
        events,
    })
}

async fn observe(emb: &Embedded, after: After) -> anyhow::Result<(Expected, Vec<Event>)> {
    // The projections go on from the rows they hold (after a resumption: those the recording
    // release left), then are rebuilt from offset 0: both must hold the same rows.
    let set = Projections::standard(&emb.store)?;
    let mut digests = BTreeMap::new();
    for pass in ["continued", "rebuilt"] {
        if pass == "rebuilt" {
            set.reset()?;
        }
        let done = set
            .catch_up(emb.events.as_ref(), &emb.codecs.events, &|_| {})
            .await
            .with_context(|| format!("projections {pass}"))?;
        if done.undecodable > 0 {
            bail!("{} events do not decode", done.undecodable);
        }
        let now: BTreeMap<String, String> = set
            .digests()?
            .into_iter()
            .map(|(n, d)| (n.to_string(), d))
            .collect();
        if pass == "rebuilt" && now != digests {
            bail!(
                "projections carried on from the rows the recording release left differ from \
                 a rebuild from offset 0: {digests:?} against {now:?}"
            );
        }
        digests = now;
    }
    let outcomes = OutcomeView::open(&emb.store)?.all()?;
    let mut all = Vec::new();
    for p in (0..emb.partitions()).map(Partition) {
        for s in emb.events.read(p, Offset::ZERO, usize::MAX).await? {
            all.push(emb.codecs.events.decode(&s.value)?);
        }
    }
    let by_turn = by_turn(&all);
    let turns = by_turn
        .iter()
        .map(|(t, events)| TurnEvents {
            turn_id: *t,
            kinds: events.iter().map(|e| e.kind().to_string()).collect(),
            sha256: sha256(&normalized(events)),
        })
        .collect();
    let expected = Expected {
        after,
        digests,
        outcomes,
        turns,
        published: published(emb).await?,
    };
    Ok((expected, all))
}

async fn published(emb: &Embedded) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in emb
        .escalations
        .read(Partition(0), Offset::ZERO, usize::MAX)
        .await?
    {
        let h = emb.codecs.handoffs.decode(&s.value)?;
        out.push(format!("handoff {} {}", h.turn_id, h.rungs.join(",")));
    }
    for s in emb
        .outcomes
        .read(Partition(0), Offset::ZERO, usize::MAX)
        .await?
    {
        let o = emb.codecs.outcomes.decode(&s.value)?;
        out.push(format!("outcome {} {}", o.turn_id, o.outcome.as_str()));
    }
    out.sort();
    Ok(out)
}

/// Events grouped by turn (turns in id order, each turn's events in log order).
pub fn by_turn(events: &[Event]) -> Vec<(TurnId, Vec<Event>)> {
    let mut out: BTreeMap<TurnId, Vec<Event>> = BTreeMap::new();
    for e in events {
        out.entry(e.turn_id).or_default().push(e.clone());
    }
    out.into_iter().collect()
}

/// The events as JSON, as a later release must still read them: what a wall clock measured
/// (the latency of a call) is left out, and so is what an added field with a default reads as
/// (null, an empty list or map), so a compatible schema change compares equal.
pub fn normalized(events: &[Event]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                if !matches!(e.payload, Payload::TurnCompleted(_)) {
                    drop_key(&mut v, "latency_ms");
                }
                prune(&mut v);
                v
            })
            .collect(),
    )
}

fn drop_key(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|v| drop_key(v, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| drop_key(v, key)),
        _ => {}
    }
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(prune);
            m.retain(|_, v| !is_empty(v));
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn sha256(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Every difference between what was recorded and what this build made of it, one per line.
pub fn differences(want: &Expected, got: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    for (name, digest) in &want.digests {
        match got.digests.get(name) {
            None => out.push(format!("projection {name} is gone (renamed or removed)")),
            Some(d) if d != digest => out.push(format!(
                "projection {name}: digest {d}, recorded {digest} (its rows differ)"
            )),
            Some(_) => {}
        }
    }
    if want.outcomes != got.outcomes {
        for (w, g) in want.outcomes.iter().zip(&got.outcomes) {
            if w != g {
                out.push(format!(
                    "outcome record of {}: {}\n   recorded {}",
                    w.turn_id,
                    json(g),
                    json(w)
                ));
            }
        }
        if want.outcomes.len() != got.outcomes.len() {
            out.push(format!(
                "{} outcome records, recorded {}",
                got.outcomes.len(),
                want.outcomes.len()
            ));
        }
    }
    for w in &want.turns {
        match got.turns.iter().find(|g| g.turn_id == w.turn_id) {
            None => out.push(format!("turn {} has no events", w.turn_id)),
            Some(g) if g.kinds != w.kinds => out.push(format!(
                "turn {}: events {:?}\n   recorded {:?}",
                w.turn_id, g.kinds, w.kinds
            )),
            Some(g) if g.sha256 != w.sha256 => out.push(format!(
                "turn {}: the same kinds of events, saying something else (sha256 {} recorded {})",
                w.turn_id, g.sha256, w.sha256
            )),
            Some(_) => {}
        }
    }
    if got.published != want.published {
        out.push(format!(
            "published records {:?}\n   recorded {:?}",
            got.published, want.published
        ));
    }
    if got.turns.len() != want.turns.len() {
        out.push(format!(
            "{} turns, recorded {}",
            got.turns.len(),
            want.turns.len()
        ));
    }
    out
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
