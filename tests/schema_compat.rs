//! The wire contract holds: every schema in `schemas/` can read what its released version wrote
//! and what every version in `schemas/history/` wrote, and existing readers (the released
//! version) can read what it writes. A change that fails here breaks a consumer in the field:
//! add fields with defaults, never remove or retype one without a default.
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
        if let Err(e) = SchemaCompatibility::can_read(&new, &old) {
            panic!("{name:?}: existing readers cannot read what it writes: {e}");
        }
    }
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
