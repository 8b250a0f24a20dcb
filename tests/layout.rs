//! The codebase's shape, checked: no import cycle between top-level modules of `src/`.
//!
//! A top-level module is `src/NAME.rs` or `src/NAME/`. An edge A → B is any `crate::B` (or
//! `super::B` reaching the crate root) in A's non-test code; unit-test modules (`#[cfg(test)]`
//! and files named `tests.rs` or `*_tests.rs`) may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Identifiers following `prefix` in `line`.
fn names_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    line.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` inside a longer path (`foo_crate::`) is not the crate root.
            !line[..*i]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &line[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut top: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("component");
        let name = first.as_os_str().to_string_lossy();
        top.insert(name.trim_end_matches(".rs").to_string());
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let file_name = rel.file_name().expect("name").to_string_lossy().to_string();
        if file_name == "tests.rs" || file_name.ends_with("_tests.rs") {
            continue;
        }
        let depth = rel.components().count();
        let from = rel
            .components()
            .next()
            .expect("component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        // How a path in this file reaches the crate root through `super`.
        let to_root = match (depth, file_name.as_str()) {
            (1, _) | (2, "mod.rs") => "super::".to_string(),
            (d, "mod.rs") => "super::".repeat(d - 1),
            (d, _) => "super::".repeat(d),
        };
        let text = std::fs::read_to_string(f).expect("read");
        let mut after_cfg_test = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            // The unit-test module (by convention at the end of the file).
            if after_cfg_test && trimmed.starts_with("mod ") {
                break;
            }
            after_cfg_test = trimmed.starts_with("#[cfg(test)]");
            if trimmed.starts_with("//") {
                continue;
            }
            let mut targets = names_after(line, "crate::");
            for t in names_after(line, &to_root) {
                if line.contains(&format!("{to_root}super::")) {
                    continue;
                }
                targets.push(t);
            }
            for t in targets {
                if t != from && top.contains(t) {
                    edges.entry(from.clone()).or_default().insert(t.to_string());
                }
            }
        }
    }
    edges
}

/// A cycle through the graph, if any (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges.len() > 10, "the scan found the modules: {edges:?}");
    assert!(
        edges.get("runtime").is_some_and(|e| e.contains("turn")),
        "the scan sees edges (runtime uses turn): {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "import cycle between top-level modules: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert!(find_cycle(&edges).is_some_and(|c| c.len() == 4));
}
