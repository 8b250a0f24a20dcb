//! `ballast index build` over a hostile folder: a FIFO named like a document, a link to
//! /dev/zero, a link loop, a link out of the folder, and an `--out` directory holding files
//! the command did not write. Each build runs under a watchdog (a time limit and a resident
//! memory limit), so a hang or a runaway read fails the test instead of blocking it or taking
//! the machine's memory.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How an `index build` ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The current resident set of a process, in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `ballast index build DOCS --out OUT --json`, killed (and the test failed) if it runs for a
/// minute or its resident memory passes 1 GiB.
fn build(docs: &Path, out: &Path) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let (stdout_path, stderr_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(common::bin())
        .args(["index", "build"])
        .arg(docs)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("ballast runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        let rss = rss_kib(child.id());
        let runaway = rss > 1024 * 1024;
        if runaway || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "index build {} (resident {rss} KiB); stderr: {}",
                if runaway { "read without end" } else { "hung" },
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        ok: status.success(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// The build's JSON report: documents indexed, files skipped with why.
fn report(run: &Run) -> (u64, Vec<(String, String)>) {
    assert!(run.ok, "build failed: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let skipped = v["skipped"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (v["documents"].as_u64().expect("documents"), skipped)
}

/// A docs folder with two ordinary documents: `a.md` and `sub/b.md`.
fn docs(root: &Path) -> std::path::PathBuf {
    let docs = root.join("docs");
    std::fs::create_dir_all(docs.join("sub")).expect("mkdir");
    std::fs::write(docs.join("a.md"), "# Refunds\nRefunds take five days.\n").expect("a");
    std::fs::write(docs.join("sub/b.md"), "# Shipping\nParcels ship daily.\n").expect("b");
    docs
}

fn search(index: &Path, query: &str) -> Vec<String> {
    let out = common::ballast(&[
        "index",
        "search",
        index.to_str().expect("utf8"),
        query,
        "--json",
    ]);
    let hits: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json hits");
    hits.iter()
        .filter_map(|h| h["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_fifo_named_like_a_document_is_skipped_not_waited_for() {
    let root = tempfile::tempdir().expect("tmp");
    let docs = docs(root.path());
    let made = Command::new("mkfifo")
        .arg(docs.join("pipe.md"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (documents, skipped) = report(&build(&docs, &root.path().join("index")));
    assert_eq!(documents, 2);
    assert!(
        skipped
            .iter()
            .any(|(f, why)| f == "pipe.md" && why.contains("not a regular file")),
        "{skipped:?}"
    );
}

#[test]
fn a_link_to_dev_zero_is_skipped_not_read() {
    let root = tempfile::tempdir().expect("tmp");
    let docs = docs(root.path());
    symlink("/dev/zero", docs.join("zero.md")).expect("link");
    let (documents, skipped) = report(&build(&docs, &root.path().join("index")));
    assert_eq!(documents, 2);
    assert!(skipped.iter().any(|(f, _)| f == "zero.md"), "{skipped:?}");
}

#[test]
fn a_link_loop_indexes_each_file_once() {
    let root = tempfile::tempdir().expect("tmp");
    let docs = docs(root.path());
    // sub/loop → docs: following it finds a.md again, and sub/loop/sub/loop/…
    symlink("..", docs.join("sub/loop")).expect("link");
    // A link to a document inside the folder is the same document.
    symlink("a.md", docs.join("alias.md")).expect("link");
    let index = root.path().join("index");
    let (documents, _) = report(&build(&docs, &index));
    assert_eq!(documents, 2, "each file once");
    assert_eq!(search(&index, "refunds"), ["a"]);
}

#[test]
fn a_link_out_of_the_folder_is_skipped() {
    let root = tempfile::tempdir().expect("tmp");
    let docs = docs(root.path());
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(
        outside.join("secret.md"),
        "# Salaries\nThe payroll passphrase.\n",
    )
    .expect("w");
    symlink(outside.join("secret.md"), docs.join("secret.md")).expect("link");
    symlink(&outside, docs.join("elsewhere")).expect("link");
    let index = root.path().join("index");
    let (documents, skipped) = report(&build(&docs, &index));
    assert_eq!(documents, 2);
    assert!(
        skipped
            .iter()
            .any(|(f, why)| f == "secret.md" && why.contains("out of")),
        "{skipped:?}"
    );
    assert!(search(&index, "payroll").is_empty());
}

#[test]
fn an_out_dir_the_command_did_not_write_is_refused_and_kept() {
    let root = tempfile::tempdir().expect("tmp");
    let docs = docs(root.path());
    // Someone's project: a meta.json of its own beside their files.
    let out = root.path().join("project");
    std::fs::create_dir_all(out.join("src")).expect("mkdir");
    std::fs::write(out.join("meta.json"), "{\"name\": \"mine\"}").expect("w");
    std::fs::write(out.join("notes.txt"), "keep me").expect("w");
    std::fs::write(out.join("src/main.rs"), "fn main() {}").expect("w");
    let run = build(&docs, &out);
    assert!(!run.ok, "refused");
    assert!(run.stderr.contains("did not write"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("kept"),
        "keep me"
    );
    assert!(out.join("meta.json").exists() && out.join("src/main.rs").exists());

    // An index the command built is replaced; a file someone put in it later stops that.
    let index = root.path().join("index");
    assert_eq!(report(&build(&docs, &index)).0, 2);
    std::fs::write(docs.join("c.md"), "# Returns\nReturns within 30 days.\n").expect("c");
    assert_eq!(report(&build(&docs, &index)).0, 3, "rebuilt");
    std::fs::write(index.join("mine.txt"), "mine").expect("w");
    let run = build(&docs, &index);
    assert!(!run.ok && run.stderr.contains("mine.txt"), "{}", run.stderr);
    assert!(index.join("mine.txt").exists());
    assert_eq!(search(&index, "returns"), ["c"], "the index is still there");
}
