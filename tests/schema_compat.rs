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
        let as_read = Schema::parse_str(&without_unknown_symbols(
            &std::fs::read_to_string(&path).expect("read"),
            &std::fs::read_to_string(&released).expect("read"),
        ))
        .expect("parse");
        if let Err(e) = SchemaCompatibility::can_read(&as_read, &old) {
            panic!("{name:?}: existing readers cannot read what it writes: {e}");
        }
    }
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
