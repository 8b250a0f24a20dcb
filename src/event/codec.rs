//! Avro codec with single-object framing.
//!
//! Every encoded record is `C3 01` + the 8-byte CRC-64-AVRO (Rabin) fingerprint of the writer's
//! schema + the Avro binary body. A reader looks the fingerprint up in a [`SchemaRegistry`]:
//! when it is the reader's own schema the body decodes directly; when it is another known version
//! the body decodes with the writer's schema and is resolved against the reader's (fields added
//! with defaults are filled in or skipped). An unknown fingerprint is a terminal error: guessing a
//! schema would turn a bad record into wrong facts.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use apache_avro::rabin::Rabin;
use apache_avro::{GenericSingleObjectReader, Schema, from_value, write_avro_datum_ref};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Digest;

use super::{Event, Handoff, TurnCommand, TurnOutcome, TurnRequest};

/// The wire contract for turn events.
pub const TURN_EVENT_SCHEMA: &str = include_str!("../../schemas/turn_event.avsc");
/// The wire contract for turn requests submitted by producers.
pub const TURN_REQUEST_SCHEMA: &str = include_str!("../../schemas/turn_request.avsc");
/// The wire contract for finished-turn records (the outcome topic).
pub const TURN_OUTCOME_SCHEMA: &str = include_str!("../../schemas/turn_outcome.avsc");
/// The wire contract for operators' commands to running turns (approvals, ...).
pub const TURN_COMMAND_SCHEMA: &str = include_str!("../../schemas/turn_command.avsc");
/// The wire contract for human handoffs (the escalations topic).
pub const HANDOFF_SCHEMA: &str = include_str!("../../schemas/handoff.avsc");

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A schema fingerprint as it appears on the wire.
pub type Fingerprint = [u8; 8];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than the single-object header")]
    Truncated(usize),
    #[error("record does not start with the Avro single-object marker C3 01")]
    BadMarker,
    #[error("writer schema {0} is not registered")]
    UnknownSchema(String),
    #[error("schema does not parse: {0}")]
    BadSchema(String),
    #[error("avro encoding failed: {0}")]
    Encode(String),
    #[error("avro body does not decode: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the avro body")]
    TrailingBytes(usize),
}

impl CodecError {
    /// Codec errors describe the bytes, not the moment: retrying cannot help.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

pub fn fingerprint_hex(fp: &Fingerprint) -> String {
    hex::encode(fp)
}

/// Writer schemas known to this process, by fingerprint. Backends persist it next to the data
/// (sled tree `schemas`) so that a reader built from older code can still find a newer writer's schema.
#[derive(Default)]
pub struct SchemaRegistry {
    schemas: RwLock<HashMap<Fingerprint, (Arc<Schema>, String)>>,
}

impl SchemaRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Parses and registers a schema; returns its fingerprint. Registering twice is harmless.
    pub fn register(&self, schema_json: &str) -> Result<Fingerprint, CodecError> {
        let schema =
            Schema::parse_str(schema_json).map_err(|e| CodecError::BadSchema(e.to_string()))?;
        let fp = fingerprint(&schema);
        let canonical = schema.canonical_form();
        if let Ok(mut map) = self.schemas.write() {
            map.entry(fp).or_insert((Arc::new(schema), canonical));
        }
        Ok(fp)
    }

    pub fn get(&self, fp: &Fingerprint) -> Option<Arc<Schema>> {
        self.schemas
            .read()
            .ok()
            .and_then(|m| m.get(fp).map(|(s, _)| Arc::clone(s)))
    }

    /// Every registered schema in canonical form, for persisting.
    pub fn canonical_forms(&self) -> Vec<(Fingerprint, String)> {
        self.schemas
            .read()
            .map(|m| m.iter().map(|(fp, (_, c))| (*fp, c.clone())).collect())
            .unwrap_or_default()
    }
}

fn fingerprint(schema: &Schema) -> Fingerprint {
    // What `schema.fingerprint::<Rabin>()` computes, as the digest's typed 8 bytes.
    Rabin::digest(schema.canonical_form()).into()
}

/// A writer schema other than the codec's own, prepared once: its reader and its names.
struct Foreign {
    reader: GenericSingleObjectReader,
    named: resolve::Named,
}

/// Encodes `T` with one schema and decodes any registered version of it into `T`.
pub struct AvroCodec<T> {
    schema: Arc<Schema>,
    /// The codec's schema with its names, for resolving records other versions wrote.
    named: Arc<resolve::Named>,
    foreign: Arc<RwLock<HashMap<Fingerprint, Arc<Foreign>>>>,
    /// The codec's own schema with its names resolved once: `from_avro_datum` resolves the
    /// writer schema on every call (apache/avro-rs#310), which was most of the cost of replay,
    /// recovery and projection catch-up.
    reader: Arc<GenericSingleObjectReader>,
    fp: Fingerprint,
    registry: Arc<SchemaRegistry>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for AvroCodec<T> {
    fn clone(&self) -> Self {
        AvroCodec {
            schema: Arc::clone(&self.schema),
            named: Arc::clone(&self.named),
            foreign: Arc::clone(&self.foreign),
            reader: Arc::clone(&self.reader),
            fp: self.fp,
            registry: Arc::clone(&self.registry),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> AvroCodec<T> {
    /// A codec whose writer and reader schema is `schema_json`, registered in `registry`.
    pub fn new(schema_json: &str, registry: Arc<SchemaRegistry>) -> Result<Self, CodecError> {
        let fp = registry.register(schema_json)?;
        let schema = registry
            .get(&fp)
            .ok_or_else(|| CodecError::UnknownSchema(fingerprint_hex(&fp)))?;
        let reader = GenericSingleObjectReader::new((*schema).clone())
            .map_err(|e| CodecError::BadSchema(e.to_string()))?;
        let named = resolve::Named::new((*schema).clone()).map_err(CodecError::BadSchema)?;
        Ok(AvroCodec {
            schema,
            named: Arc::new(named),
            foreign: Arc::default(),
            reader: Arc::new(reader),
            fp,
            registry,
            _t: PhantomData,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fp
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&self.fp);
        write_avro_datum_ref(&self.schema, value, &mut buf)
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(buf)
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (fp, _) = split_header(bytes)?;
        if fp == self.fp {
            // The reader checks the same header again; the watch starts at the header.
            let mut whole = EofWatch {
                rest: bytes,
                hit_eof: false,
            };
            let value = self
                .reader
                .read_value(&mut whole)
                .map_err(|e| CodecError::Decode(e.to_string()))?;
            return self.finish(value, whole);
        }
        // An older (or newer) writer: read as it wrote it, then resolved to this schema with
        // union branches matched by name (`resolve.rs`).
        let foreign = self.foreign(&fp)?;
        let mut whole = EofWatch {
            rest: bytes,
            hit_eof: false,
        };
        let written = foreign
            .reader
            .read_value(&mut whole)
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        let value =
            resolve::resolve(written, &foreign.named, &self.named).map_err(CodecError::Decode)?;
        self.finish(value, whole)
    }

    /// The prepared reader of a writer schema from the registry (prepared once).
    fn foreign(&self, fp: &Fingerprint) -> Result<Arc<Foreign>, CodecError> {
        if let Some(f) = self.foreign.read().ok().and_then(|m| m.get(fp).cloned()) {
            return Ok(f);
        }
        let writer = self
            .registry
            .get(fp)
            .ok_or_else(|| CodecError::UnknownSchema(fingerprint_hex(fp)))?;
        let f = Arc::new(Foreign {
            reader: GenericSingleObjectReader::new((*writer).clone())
                .map_err(|e| CodecError::BadSchema(e.to_string()))?,
            named: resolve::Named::new((*writer).clone()).map_err(CodecError::BadSchema)?,
        });
        if let Ok(mut m) = self.foreign.write() {
            m.insert(*fp, Arc::clone(&f));
        }
        Ok(f)
    }

    /// Checks a decoded record used its bytes exactly, then turns it into `T`.
    fn finish(
        &self,
        value: apache_avro::types::Value,
        body: EofWatch<'_>,
    ) -> Result<T, CodecError> {
        // The Avro reader takes a record cut short inside a string or a nullable union as null
        // and goes on: a read that ran out of bytes means the record is truncated.
        if body.hit_eof {
            return Err(CodecError::Decode("record cut short".into()));
        }
        if !body.rest.is_empty() {
            return Err(CodecError::TrailingBytes(body.rest.len()));
        }
        from_value::<T>(&value).map_err(|e| CodecError::Decode(e.to_string()))
    }
}

/// A reader over a record's body that remembers whether any read wanted bytes it did not have.
struct EofWatch<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl std::io::Read for EofWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && self.rest.is_empty() {
            self.hit_eof = true;
        }
        let n = self.rest.read(buf)?;
        if n < buf.len() && self.rest.is_empty() && n == 0 {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

/// Splits a framed record into the writer's fingerprint and the Avro body.
pub fn split_header(bytes: &[u8]) -> Result<(Fingerprint, &[u8]), CodecError> {
    let Some((&[m0, m1, fp @ ..], body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(CodecError::Truncated(bytes.len()));
    };
    if [m0, m1] != MAGIC {
        return Err(CodecError::BadMarker);
    }
    Ok((fp, body))
}

/// The codecs a process needs, sharing one registry.
#[derive(Clone)]
pub struct Codecs {
    pub events: AvroCodec<Event>,
    pub requests: AvroCodec<TurnRequest>,
    pub outcomes: AvroCodec<TurnOutcome>,
    pub commands: AvroCodec<TurnCommand>,
    pub handoffs: AvroCodec<Handoff>,
}

/// A record of the request log: a new turn, or a command to a running one.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    Request(TurnRequest),
    Command(TurnCommand),
}

/// Earlier versions of the schemas (`schemas/history/`): registered as writer schemas, so
/// records written before a schema changed are read (resolved to the current one) by every
/// process, also one whose data dir never saw them.
pub const HISTORY: [&str; 7] = [
    include_str!("../../schemas/history/turn_event.v1.avsc"),
    include_str!("../../schemas/history/handoff.v1.avsc"),
    include_str!("../../schemas/history/turn_request.v1.avsc"),
    include_str!("../../schemas/history/turn_outcome.v1.avsc"),
    include_str!("../../schemas/history/turn_event.v2.avsc"),
    include_str!("../../schemas/history/turn_outcome.v2.avsc"),
    include_str!("../../schemas/history/turn_event.v3.avsc"),
];

/// The largest length the Avro reader accepts for one string, byte array or array (items). A
/// record claiming more is refused before anything is allocated for it. The Avro crate's
/// default, 512 Mi, let a 20-byte hostile record on the request topic claim an array of 512 Mi
/// items: the reader reserves `items × size_of::<Value>()` — 24 GiB — and the process aborts,
/// then again after every restart (found by `scripts/fuzz.sh`). Tool-result bodies are capped
/// at 1 MiB (at most 4 MiB by configuration), requests at 256 KiB: 4 Mi is above anything
/// Ballast writes, and bounds a hostile claim to a few hundred MiB of reservation, never
/// touched.
pub const MAX_AVRO_ALLOCATION: usize = 4 * 1024 * 1024;

impl Codecs {
    pub fn new(registry: Arc<SchemaRegistry>) -> Result<Self, CodecError> {
        // Set once per process, before the first record is read.
        apache_avro::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        for old in HISTORY {
            registry.register(old)?;
        }
        Ok(Codecs {
            events: AvroCodec::new(TURN_EVENT_SCHEMA, Arc::clone(&registry))?,
            requests: AvroCodec::new(TURN_REQUEST_SCHEMA, Arc::clone(&registry))?,
            outcomes: AvroCodec::new(TURN_OUTCOME_SCHEMA, Arc::clone(&registry))?,
            commands: AvroCodec::new(TURN_COMMAND_SCHEMA, Arc::clone(&registry))?,
            handoffs: AvroCodec::new(HANDOFF_SCHEMA, registry)?,
        })
    }

    /// Decodes a request-log record, telling requests from commands by the writer's schema.
    pub fn decode_inbound(&self, bytes: &[u8]) -> Result<Inbound, CodecError> {
        let (fp, _) = split_header(bytes)?;
        if fp == self.commands.fingerprint() {
            self.commands.decode(bytes).map(Inbound::Command)
        } else {
            self.requests.decode(bytes).map(Inbound::Request)
        }
    }
}

mod resolve;
#[cfg(test)]
mod tests;
