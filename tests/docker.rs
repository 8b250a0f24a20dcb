//! The images and the compose deployment, checked without Docker (it does not run where the tests
//! run):
//!
//! - every file the build reads — the manifest, `src/`, each `include_str!`/`include_bytes!`
//!   target, a build script — is copied into the Dockerfile's build stage at the same path, so
//!   `docker build` cannot fail on a missing file;
//! - `docker/docker-compose.yml` is valid under the Compose Specification's JSON schema
//!   (vendored in `docker/schema/`), runs the services the docs promise, and mounts only files
//!   that exist;
//! - the compose deployment's catalog and policies are the quickstart's (with the orders
//!   service's host), and its `ballast.toml` passes `check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every file `include_str!`/`include_bytes!` in `src/` names, relative to the repository root.
/// An include whose argument is not a plain string literal fails the test: it could name
/// anything, and the check would pass without looking at it.
fn included_files() -> Vec<String> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for mac in ["include_str!", "include_bytes!"] {
            for (at, _) in text.match_indices(mac) {
                let rest = text[at + mac.len()..].trim_start();
                let rest = rest.strip_prefix('(').map(str::trim_start);
                let literal = rest
                    .and_then(|r| r.strip_prefix('"'))
                    .and_then(|r| r.split_once('"'))
                    .map(|(lit, _)| lit);
                let Some(literal) = literal else {
                    panic!(
                        "{}: {mac} without a plain string literal: this test cannot tell which file it reads",
                        file.display()
                    );
                };
                let dir = file.parent().expect("a source file has a directory");
                let target = normal(&dir.join(literal));
                let rel = target
                    .strip_prefix(&root)
                    .unwrap_or_else(|_| {
                        panic!("{}: {literal} is outside the repository", file.display())
                    })
                    .to_string_lossy()
                    .into_owned();
                assert!(
                    target.is_file(),
                    "{}: {literal} does not exist",
                    file.display()
                );
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// (sources, destination) of each COPY of the Dockerfile's first (build) stage; `--from` copies
/// come from another stage, not the build context, and are left out.
fn build_stage_copies(dockerfile: &str) -> Vec<(Vec<String>, String)> {
    let mut copies = Vec::new();
    let mut stages = 0;
    for line in dockerfile.lines().map(str::trim) {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("FROM ") {
            stages += 1;
            continue;
        }
        if stages != 1 || !upper.starts_with("COPY ") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let words: Vec<String> = words
            .into_iter()
            .filter(|w| !w.starts_with("--"))
            .map(str::to_owned)
            .collect();
        if let Some((dest, sources)) = words.split_last() {
            copies.push((sources.to_vec(), dest.clone()));
        }
    }
    copies
}

fn trim_dir(p: &str) -> String {
    let p = p.trim_end_matches('/');
    let p = p.strip_prefix("./").unwrap_or(p);
    if p == "." {
        String::new()
    } else {
        p.to_owned()
    }
}

/// Where the build stage's COPYs put the context's file `path`, relative to WORKDIR (if they do).
fn lands_at(copies: &[(Vec<String>, String)], path: &str) -> Vec<String> {
    let root = root();
    let mut out = Vec::new();
    for (sources, dest) in copies {
        let dest_dir = dest.ends_with('/') || dest == "." || sources.len() > 1;
        let dest = trim_dir(dest);
        for source in sources {
            let s = trim_dir(source);
            let join = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_owned()
                } else {
                    format!("{a}/{b}")
                }
            };
            if root.join(&s).is_dir() {
                // A directory's contents go into the destination.
                if let Some(inside) = path.strip_prefix(&format!("{s}/")) {
                    out.push(join(&dest, inside));
                }
            } else if s == path {
                let name = Path::new(&s).file_name().expect("name").to_string_lossy();
                out.push(if dest_dir {
                    join(&dest, &name)
                } else {
                    dest.clone()
                });
            }
        }
    }
    out
}

#[test]
fn the_image_build_copies_every_file_the_build_reads() {
    let root = root();
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("WORKDIR /src"),
        "the checks below assume the build stage works in /src"
    );
    let copies = build_stage_copies(&dockerfile);
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        "src/lib.rs".to_string(),
        "src/main.rs".to_string(),
    ];
    if root.join("build.rs").exists() {
        needed.push("build.rs".into());
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    let manifest: toml::Value = toml::from_str(&manifest).expect("manifest parses");
    if let Some(build) = manifest
        .get("package")
        .and_then(|p| p.get("build"))
        .and_then(|b| b.as_str())
    {
        needed.push(build.to_string());
    }
    let included = included_files();
    assert!(
        included.iter().any(|f| f.starts_with("schemas/")),
        "the include scan found none of the Avro schemas: it is not reading src/ ({included:?})"
    );
    needed.extend(included);
    let missing: Vec<&String> = needed
        .iter()
        .filter(|f| !lands_at(&copies, f).iter().any(|at| at == *f))
        .collect();
    assert!(
        missing.is_empty(),
        "docker/Dockerfile's build stage does not copy these files the build reads \
         (to the same path under WORKDIR): {missing:?}"
    );
}

#[test]
fn the_dockerfile_check_sees_a_missing_copy() {
    // The check above on a Dockerfile without `COPY examples/demo …`: it must find it missing.
    let dockerfile = "FROM rust AS build\nWORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\nCOPY src src\n\
                      COPY schemas schemas\nRUN cargo build\nFROM debian\nCOPY --from=build /x /y\n";
    let copies = build_stage_copies(dockerfile);
    assert_eq!(lands_at(&copies, "Cargo.lock"), ["Cargo.lock"]);
    assert_eq!(lands_at(&copies, "src/api/mod.rs"), ["src/api/mod.rs"]);
    assert!(lands_at(&copies, "examples/demo/catalog.json").is_empty());
    // A directory copied under another name does not land at its own path.
    let copies = build_stage_copies("FROM a\nCOPY schemas avro\n");
    assert_eq!(
        lands_at(&copies, "schemas/turn_event.avsc"),
        ["avro/turn_event.avsc"]
    );
}

fn python() -> String {
    std::env::var("BALLAST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `script` with the repository root as its working directory; returns stdout.
fn run_python(script: &str) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .current_dir(root())
        .output()
        .expect("python runs (scripts/test.sh sets BALLAST_PYTHON to a venv with jsonschema and PyYAML)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const VALIDATE: &str = r#"
import json, sys, yaml, jsonschema
schema = json.load(open("docker/schema/compose-spec.json"))
compose = yaml.safe_load(open(sys.argv[1] if len(sys.argv) > 1 else "docker/docker-compose.yml"))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
for e in errors:
    print("/".join(str(p) for p in e.path) + ": " + e.message)
print(json.dumps(compose))
sys.exit(1 if errors else 0)
"#;

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let out = run_python(VALIDATE);
    let compose: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("the file as JSON")).expect("json");
    let services = compose["services"].as_object().expect("services");
    for name in [
        "kafka",
        "init",
        "worker-1",
        "serve",
        "otel-collector",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "compose has no {name} service");
    }
    let cmd = |name: &str| services[name]["command"].to_string();
    assert!(cmd("serve").contains("\"serve\"") && cmd("serve").contains("--config"));
    assert!(
        cmd("worker-1").contains("worker --config"),
        "{}",
        cmd("worker-1")
    );
    // Every file or directory mounted from the repository exists.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let Some(spec) = volume.as_str() else {
                continue;
            };
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                let path = root().join("docker").join(host);
                assert!(path.exists(), "{name} mounts {host}, which does not exist");
            }
        }
    }
}

#[test]
fn the_compose_check_rejects_an_invalid_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("compose.yml");
    std::fs::write(
        &bad,
        "services:\n  serve:\n    image: ballast\n    ports: 8420\n    restart: sometimes\n",
    )
    .expect("write");
    let out = Command::new(python())
        .arg("-c")
        .arg(VALIDATE)
        .arg(&bad)
        .current_dir(root())
        .output()
        .expect("python runs");
    assert!(!out.status.success(), "an invalid compose file passed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("services/serve/ports"), "{text}");
}

#[test]
fn the_compose_catalog_is_the_quickstarts() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).expect(p);
    assert_eq!(
        read("docker/catalog.json"),
        read("examples/quickstart/catalog.json")
            .replace("http://127.0.0.1:8422", "http://orders:8422"),
        "regenerate: sed 's#http://127.0.0.1:8422#http://orders:8422#g' examples/quickstart/catalog.json > docker/catalog.json"
    );
    assert_eq!(
        read("docker/policies/support.cedar"),
        read("examples/quickstart/policies/support.cedar"),
        "cp examples/quickstart/policies/support.cedar docker/policies/"
    );
    // The compose deployment's file is a valid configuration for its backend.
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["check-config", "docker/ballast.toml"])
        .current_dir(root())
        .output()
        .expect("ballast runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
