//! The wire contract holds: every schema in `schemas/` can read what its released version wrote
//! and what every version in `schemas/history/` wrote, and existing readers (the released
//! version) can read what it writes. A change that fails here breaks a consumer in the field:
//! add fields with defaults, never remove or retype one without a default; add enum symbols only
//! to an enum whose readers have a default (Avro resolves a symbol a reader does not know to
//! the reader's default: a released reader reads `completed_with_refusals` as `failed`).
//!
//! `schemas/released/` is the contract as last released: copy a schema there when a compatible
//! change of it is released.

use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

fn schemas(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("schema dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    out.sort();
    out
}

fn parse(path: &Path) -> Schema {
    Schema::parse_str(&std::fs::read_to_string(path).expect("read schema"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn every_schema_reads_and_is_read_by_its_released_version() {
    let current = schemas(&root());
    assert!(current.len() >= 5, "{current:?}");
    for path in current {
        let name = path.file_name().expect("name");
        let released = root().join("released").join(name);
        assert!(
            released.exists(),
            "{} has no released version in schemas/released/",
            path.display()
        );
        let (new, old) = (parse(&path), parse(&released));
        if let Err(e) = SchemaCompatibility::can_read(&old, &new) {
            panic!("{name:?}: can no longer read what its released version wrote: {e}");
        }
        let (new_json, old_json) = (
            std::fs::read_to_string(&path).expect("read"),
            std::fs::read_to_string(&released).expect("read"),
        );
        let as_read = Schema::parse_str(&without_unknown_symbols(
            &without_appended_payloads(&new_json, &old_json),
            &old_json,
        ))
        .expect("parse");
        if let Err(e) = SchemaCompatibility::can_read(&as_read, &old) {
            panic!("{name:?}: existing readers cannot read what it writes: {e}");
        }
    }
}

/// The payload types `new` appends to the turn event's `payload` union after every type `old`
/// has, taken out. The schema's contract allows that one evolution ("appending payload types"):
/// a released reader cannot decode an event of a kind it does not know, so a kind is appended
/// only for facts older readers may miss (e.g. `InputRejected`). Anything else — a type
/// removed, reordered or inserted before a known one — stays and fails the check.
fn without_appended_payloads(new: &str, old: &str) -> String {
    fn payload(v: &mut serde_json::Value) -> Option<&mut Vec<serde_json::Value>> {
        v.get_mut("fields")?
            .as_array_mut()?
            .iter_mut()
            .find(|f| f.get("name").and_then(|n| n.as_str()) == Some("payload"))?
            .get_mut("type")?
            .as_array_mut()
    }
    let name = |t: &serde_json::Value| t.get("name").and_then(|n| n.as_str()).map(String::from);
    let mut v: serde_json::Value = serde_json::from_str(new).expect("json");
    let mut o: serde_json::Value = serde_json::from_str(old).expect("json");
    let known: Vec<Option<String>> = match payload(&mut o) {
        Some(types) => types.iter().map(name).collect(),
        None => return new.to_string(),
    };
    if let Some(types) = payload(&mut v) {
        let prefix: Vec<Option<String>> = types.iter().take(known.len()).map(name).collect();
        if prefix == known {
            types.truncate(known.len());
        }
    }
    v.to_string()
}

/// Every enum symbol `new` adds to an enum that has a default in `old` taken out: what an
/// `old` reader makes of a `new` record (the spec resolves unknown symbols to the reader's
/// default). Symbols added to an enum without a default stay, and fail the check.
fn without_unknown_symbols(new: &str, old: &str) -> String {
    fn enums(v: &serde_json::Value, out: &mut Vec<(String, Vec<String>, bool)>) {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("type").and_then(|t| t.as_str()) == Some("enum") {
                    let name = o["name"].as_str().unwrap_or_default().to_string();
                    let symbols = o["symbols"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push((name, symbols, o.contains_key("default")));
                }
                o.values().for_each(|v| enums(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| enums(v, out)),
            _ => {}
        }
    }
    fn strip(v: &mut serde_json::Value, old: &[(String, Vec<String>, bool)]) {
        match v {
            serde_json::Value::Object(o) => {
                let name = o.get("name").and_then(|n| n.as_str()).map(String::from);
                if o.get("type").and_then(|t| t.as_str()) == Some("enum")
                    && let Some((_, known, true)) =
                        old.iter().find(|(n, _, _)| Some(n) == name.as_ref())
                    && let Some(symbols) = o.get_mut("symbols").and_then(|s| s.as_array_mut())
                {
                    symbols.retain(|s| s.as_str().is_some_and(|s| known.iter().any(|k| k == s)));
                }
                o.values_mut().for_each(|v| strip(v, old));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| strip(v, old)),
            _ => {}
        }
    }
    let mut old_enums = Vec::new();
    enums(&serde_json::from_str(old).expect("json"), &mut old_enums);
    let mut v: serde_json::Value = serde_json::from_str(new).expect("json");
    strip(&mut v, &old_enums);
    v.to_string()
}

#[test]
fn a_released_reader_reads_a_new_outcome_symbol_as_its_default() {
    use apache_avro::types::Value;
    let new = parse(&root().join("turn_outcome.avsc"));
    let old = parse(&root().join("history").join("turn_outcome.v2.avsc"));
    let Schema::Record(r) = &new else {
        panic!("record")
    };
    let fields: Vec<(String, Value)> = r
        .fields
        .iter()
        .map(|f| {
            let v = match f.name.as_str() {
                "outcome" => Value::Enum(6, "completed_with_refusals".into()),
                _ => match &f.schema {
                    Schema::String => Value::String("x".into()),
                    Schema::Long => Value::Long(1),
                    Schema::Int => Value::Int(1),
                    Schema::Array(_) => Value::Array(vec![]),
                    Schema::Union(_) => Value::Union(0, Box::new(Value::Null)),
                    other => panic!("{}: {other:?}", f.name),
                },
            };
            (f.name.clone(), v)
        })
        .collect();
    let bytes = apache_avro::to_avro_datum(&new, Value::Record(fields)).expect("encodes");
    let read =
        apache_avro::from_avro_datum(&new, &mut bytes.as_slice(), Some(&old)).expect("reads");
    let Value::Record(fields) = read else {
        panic!("record")
    };
    let outcome = fields
        .iter()
        .find(|(n, _)| n == "outcome")
        .map(|(_, v)| v.clone());
    assert_eq!(outcome, Some(Value::Enum(1, "failed".into())));
    // And a symbol added to an enum without a default is still caught.
    let no_default = std::fs::read_to_string(root().join("history").join("turn_outcome.v2.avsc"))
        .expect("read")
        .replace(r#", "default": "failed"}"#, "}");
    let added = no_default.replace(
        r#""escalation_failed"]"#,
        r#""escalation_failed", "later"]"#,
    );
    let stripped = Schema::parse_str(&without_unknown_symbols(&added, &no_default)).expect("parse");
    assert!(
        SchemaCompatibility::can_read(&stripped, &Schema::parse_str(&no_default).expect("parse"))
            .is_err()
    );
}

#[test]
fn every_schema_reads_what_its_history_wrote() {
    for old in schemas(&root().join("history")) {
        let file = old.file_name().expect("name").to_string_lossy().to_string();
        let base = file.split('.').next().expect("base");
        let current = root().join(format!("{base}.avsc"));
        if let Err(e) = SchemaCompatibility::can_read(&parse(&old), &parse(&current)) {
            panic!("{base}.avsc cannot read records written with {file}: {e}");
        }
    }
}

#[test]
fn the_check_refuses_breaking_changes() {
    let handoff = std::fs::read_to_string(root().join("handoff.avsc")).expect("read");
    let old = Schema::parse_str(&handoff).expect("parse");
    // A new field without a default: old records cannot be read.
    let added = handoff.replacen(
        r#"{"name": "tenant", "type": "string"},"#,
        r#"{"name": "tenant", "type": "string"}, {"name": "site", "type": "string"},"#,
        1,
    );
    let added = Schema::parse_str(&added).expect("parse");
    assert!(SchemaCompatibility::can_read(&old, &added).is_err());
    // A field retyped: neither side reads the other.
    let retyped = handoff.replacen(
        r#"{"name": "raised_at_ms", "type": "long"}"#,
        r#"{"name": "raised_at_ms", "type": "string"}"#,
        1,
    );
    let retyped = Schema::parse_str(&retyped).expect("parse");
    assert!(SchemaCompatibility::can_read(&old, &retyped).is_err());
    assert!(SchemaCompatibility::can_read(&retyped, &old).is_err());
}

#[test]
fn only_payload_types_appended_at_the_end_are_taken_out() {
    let old =
        std::fs::read_to_string(root().join("released").join("turn_event.avsc")).expect("read");
    let extra =
        r#"{"type": "record", "name": "Later", "fields": [{"name": "x", "type": "string"}]}"#;
    let first = r#"{"type": "record", "name": "TurnRequested""#;
    // Appended after every known type: an old reader is checked against the rest.
    let appended = old.replacen(
        r#"    ]}
  ]
}"#,
        &format!("    , {extra}]}}\n  ]\n}}"),
        1,
    );
    assert_ne!(appended, old);
    let stripped = Schema::parse_str(&without_appended_payloads(&appended, &old)).expect("parse");
    assert!(
        SchemaCompatibility::can_read(
            &stripped,
            &parse(&root().join("released").join("turn_event.avsc"))
        )
        .is_ok()
    );
    // Inserted before a known type: kept, and the check fails.
    let inserted = old.replacen(first, &format!("{extra}, {first}"), 1);
    assert_ne!(inserted, old);
    let kept = Schema::parse_str(&without_appended_payloads(&inserted, &old)).expect("parse");
    assert!(
        SchemaCompatibility::can_read(
            &kept,
            &parse(&root().join("released").join("turn_event.avsc"))
        )
        .is_err()
    );
}
