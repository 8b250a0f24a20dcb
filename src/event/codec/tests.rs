use std::collections::HashSet;

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum};
use proptest::prelude::*;

use super::*;
use crate::event::fixtures;
use crate::event::{Payload, TurnRequested};
use crate::ids::TurnId;

fn codecs() -> Codecs {
    Codecs::new(SchemaRegistry::new()).expect("schemas parse")
}

fn turn() -> TurnId {
    TurnId::from_parts(1_700_000_000_000, [3; 10])
}

#[test]
fn every_schema_file_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("schemas dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("avsc") {
            let text = std::fs::read_to_string(&path).expect("readable");
            Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the event and request schemas, found {n}");
}

#[test]
fn every_event_kind_round_trips() {
    let c = codecs();
    let events = fixtures::every_event(turn());
    let kinds: HashSet<_> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.len(), 31, "fixtures cover every payload kind");
    for event in events {
        let bytes = c.events.encode(&event).expect("encodes");
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &c.events.fingerprint());
        let back = c.events.decode(&bytes).expect("decodes");
        assert_eq!(back, event, "{} round-trips", event.kind());
    }
}

#[test]
fn requests_round_trip() {
    let c = codecs();
    let req = fixtures::request(turn());
    let bytes = c.requests.encode(&req).expect("encodes");
    assert_eq!(c.requests.decode(&bytes).expect("decodes"), req);
    // A request is not an event: the fingerprint tells them apart.
    assert!(matches!(
        c.events.decode(&bytes),
        Err(CodecError::Decode(_))
    ));
    assert_ne!(c.requests.fingerprint(), c.events.fingerprint());
}

/// The newer schema: TurnRequested gains `priority` with a default.
fn newer_event_schema() -> String {
    let mut json: serde_json::Value = serde_json::from_str(TURN_EVENT_SCHEMA).expect("json");
    let payload = json["fields"]
        .as_array_mut()
        .and_then(|f| f.iter_mut().find(|f| f["name"] == "payload"))
        .expect("payload field");
    let requested = payload["type"]
        .as_array_mut()
        .and_then(|u| u.iter_mut().find(|r| r["name"] == "TurnRequested"))
        .expect("TurnRequested");
    requested["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "priority", "type": "string", "default": "normal"}));
    json.to_string()
}

#[test]
fn an_older_reader_reads_events_from_a_newer_writer() {
    // The "newer" process: encodes a TurnRequested with the extra field set.
    let newer_json = newer_event_schema();
    let newer = Schema::parse_str(&newer_json).expect("newer parses");
    let current = codecs();
    let event = fixtures::every_event(turn()).remove(0);
    let bytes = current.events.encode(&event).expect("encodes");
    let mut value =
        from_avro_datum(current.events.schema(), &mut &bytes[10..], None).expect("generic");
    if let Value::Record(fields) = &mut value
        && let Some((_, Value::Union(_, inner))) = fields.iter_mut().find(|(n, _)| n == "payload")
        && let Value::Record(req) = inner.as_mut()
    {
        req.push(("priority".into(), Value::String("urgent".into())));
    } else {
        panic!("unexpected generic shape: {value:?}");
    }
    let body = to_avro_datum(&newer, value).expect("newer writer encodes");
    let mut framed = vec![0xC3, 0x01];
    framed.extend_from_slice(&super::fingerprint(&newer));
    framed.extend_from_slice(&body);

    // The "older" reader (today's code) does not know the newer schema yet: a clear error.
    let reader = codecs();
    match reader.events.decode(&framed) {
        Err(CodecError::UnknownSchema(fp)) => assert_eq!(fp.len(), 16),
        other => panic!("expected UnknownSchema, got {other:?}"),
    }
    // Once the writer's schema is in the registry (it is persisted next to the data), it reads.
    reader
        .events
        .registry()
        .register(&newer_json)
        .expect("registers");
    let back = reader
        .events
        .decode(&framed)
        .expect("older reader decodes newer event");
    assert_eq!(
        back, event,
        "the unknown field is skipped, everything else intact"
    );
}

#[test]
fn a_newer_reader_fills_defaults_for_events_from_an_older_writer() {
    let current = codecs();
    let event = fixtures::every_event(turn()).remove(0);
    let bytes = current.events.encode(&event).expect("encodes");
    let newer = Schema::parse_str(&newer_event_schema()).expect("parses");
    let value = from_avro_datum(current.events.schema(), &mut &bytes[10..], Some(&newer))
        .expect("resolves");
    let Value::Record(fields) = value else {
        panic!("record")
    };
    let Some((_, Value::Union(_, inner))) = fields.into_iter().find(|(n, _)| n == "payload") else {
        panic!("payload")
    };
    let Value::Record(req) = *inner else {
        panic!("TurnRequested record")
    };
    assert!(req.contains(&("priority".into(), Value::String("normal".into()))));
}

#[test]
fn damaged_records_are_errors_not_panics() {
    let c = codecs();
    let event = fixtures::every_event(turn()).remove(2);
    let bytes = c.events.encode(&event).expect("encodes");
    assert!(matches!(
        c.events.decode(&bytes[..5]),
        Err(CodecError::Truncated(5))
    ));
    let mut marker = bytes.clone();
    marker[0] = 0;
    assert!(matches!(
        c.events.decode(&marker),
        Err(CodecError::BadMarker)
    ));
    let mut fp = bytes.clone();
    fp[4] ^= 0xff;
    assert!(matches!(
        c.events.decode(&fp),
        Err(CodecError::UnknownSchema(_))
    ));
    assert!(c.events.decode(&bytes[..bytes.len() - 3]).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        c.events.decode(&trailing),
        Err(CodecError::TrailingBytes(1))
    ));
    assert!(!CodecError::BadMarker.is_retryable());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), keep_header in any::<bool>()) {
        let c = codecs();
        let mut bytes = Vec::new();
        if keep_header {
            bytes.extend_from_slice(&[0xC3, 0x01]);
            bytes.extend_from_slice(&c.events.fingerprint());
        }
        bytes.extend_from_slice(&body);
        let _ = c.events.decode(&bytes);
    }

    #[test]
    fn requested_text_round_trips(text in ".{0,200}", user in "[a-z0-9-]{1,20}", offset in proptest::option::of(0i64..i64::MAX)) {
        let c = codecs();
        let mut event = fixtures::every_event(turn()).remove(0);
        if let Payload::TurnRequested(TurnRequested { text: t, user_id, source_offset, .. }) = &mut event.payload {
            *t = text;
            *user_id = user;
            *source_offset = offset;
        }
        let bytes = c.events.encode(&event).expect("encodes");
        prop_assert_eq!(c.events.decode(&bytes).expect("decodes"), event);
    }
}

#[test]
fn commands_round_trip_and_are_told_from_requests() {
    let c = codecs();
    for granted in [true, false] {
        let cmd = fixtures::command(turn(), granted);
        let bytes = c.commands.encode(&cmd).expect("encodes");
        assert_eq!(
            c.decode_inbound(&bytes).expect("decodes"),
            Inbound::Command(cmd)
        );
    }
    for cmd in fixtures::handoff_commands(turn()) {
        let bytes = c.commands.encode(&cmd).expect("encodes");
        assert_eq!(
            c.decode_inbound(&bytes).expect("decodes"),
            Inbound::Command(cmd)
        );
    }
    let req = fixtures::request(turn());
    let bytes = c.requests.encode(&req).expect("encodes");
    assert_eq!(
        c.decode_inbound(&bytes).expect("decodes"),
        Inbound::Request(req)
    );
}

#[test]
fn a_record_cut_anywhere_is_an_error() {
    let c = codecs();
    for event in fixtures::every_event(turn()) {
        let bytes = c.events.encode(&event).expect("encodes");
        for cut in 1..bytes.len() - HEADER_LEN {
            assert!(
                c.events.decode(&bytes[..bytes.len() - cut]).is_err(),
                "{} cut by {cut} bytes decoded",
                event.kind()
            );
        }
    }
}

#[test]
fn a_record_claiming_a_huge_string_is_refused_without_allocating_it() {
    let c = codecs();
    let mut bytes = c
        .requests
        .encode(&fixtures::request(turn()))
        .expect("encodes");
    // The turn id's length prefix (zigzag varint) claims 1 GiB.
    bytes.truncate(HEADER_LEN);
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
    bytes.extend_from_slice(b"0123456789");
    assert!(c.requests.decode(&bytes).is_err());
    assert!(c.events.decode(&bytes).is_err());
}

#[test]
fn a_record_claiming_a_huge_array_is_an_error_not_an_abort() {
    let c = codecs();
    let mut bytes = c
        .events
        .encode(&fixtures::every_event(turn()).remove(2))
        .expect("encodes");
    bytes.truncate(HEADER_LEN);
    // event_id, turn_id, tenant: empty strings; seq 0; at_ms 0; payload PlanProposed (index 2);
    // plan_rev 0; model, model_version, template hash: empty; then `steps` claims 500 Mi items.
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    let mut n: u64 = 500 * 1024 * 1024 * 2; // zigzag of 500 Mi
    while n >= 0x80 {
        bytes.push((n as u8) | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
    assert!(c.events.decode(&bytes).is_err());
}

/// Removes, in a generic record, every field the `schema` record does not have (recursively
/// through unions and records): the record as a build with that schema would have written it.
fn as_written_by(value: Value, schema: &Schema) -> Value {
    match (value, schema) {
        (Value::Record(fields), Schema::Record(r)) => Value::Record(
            fields
                .into_iter()
                .filter_map(|(name, v)| {
                    let f = r.fields.iter().find(|f| f.name == name)?;
                    Some((name, as_written_by(v, &f.schema)))
                })
                .collect(),
        ),
        (Value::Union(i, inner), Schema::Union(u)) => {
            let branch = &u.variants()[i as usize];
            Value::Union(i, Box::new(as_written_by(*inner, branch)))
        }
        (v, _) => v,
    }
}

#[test]
fn events_written_by_the_build_before_decode_and_get_the_new_defaults() {
    // turn_event.v2 is what builds before honest outcomes wrote: every event it can express
    // still decodes, by fingerprint, in a process that never saw that schema on disk.
    let older = Schema::parse_str(include_str!("../../../schemas/history/turn_event.v2.avsc"))
        .expect("parses");
    let c = codecs();
    for mut event in fixtures::every_event(turn()) {
        if matches!(event.payload, Payload::InputRejected(_)) {
            continue; // a kind the older schema cannot express
        }
        if let Payload::PolicyEvaluated(p) = &mut event.payload {
            p.feedback = false;
        }
        let bytes = c.events.encode(&event).expect("encodes");
        let generic = from_avro_datum(c.events.schema(), &mut &bytes[10..], None).expect("reads");
        let body = to_avro_datum(&older, as_written_by(generic, &older)).expect("older encodes");
        let mut framed = vec![0xC3, 0x01];
        framed.extend_from_slice(&super::fingerprint(&older));
        framed.extend_from_slice(&body);
        let back = c
            .events
            .decode(&framed)
            .expect("the older writer is registered");
        assert_eq!(back, event, "{}", event.kind());
    }
}
