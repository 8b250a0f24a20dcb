//! Forgetting that forgets (issue #29): after `forget`, a forensic read of every byte of every
//! file under the data dir — sled's segments, blobs, snapshots and config, the key files, any
//! leftover — with the master key and every key it opens, recovers none of the forgotten values.
//!
//! A real `ballast serve` with a master key file serves two users of tenant `acme` and two of
//! `globex`. Then one user of `globex` is forgotten over the API and the whole of `acme` with
//! the CLI, the process stopped, and the data dir read (`forensic/reader.rs`):
//! - before forgetting, the reader recovers every value submitted (it is not blind);
//! - after, none of the forgotten ones, and still every value of the user kept (the same
//!   reader, the same run: the positive control);
//! - the same after thousands more turns, which make sled rewrite its segments (the issue
//!   found 15 of 23 forgotten values still readable 3,000 turns later).

mod common;
#[path = "forensic/reader.rs"]
mod reader;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Served, ballast, http};
use serde_json::{Value, json};

/// (tenant, user id, request text, the personal values in it).
type Person = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const ANN: Person = (
    "acme",
    "ann.user@acme-mail.example",
    "Call me on +44 20 7946 0101 or write to ann.home@example.org please",
    &["+44 20 7946 0101", "ann.home@example.org"],
);
const BOB: Person = (
    "acme",
    "bob.user@acme-mail.example",
    "Refund to IBAN GB82 WEST 1234 5698 7654 32 or card 4111 1111 1111 1111",
    &["GB82 WEST 1234 5698 7654 32", "4111 1111 1111 1111"],
);
const CAT: Person = (
    "globex",
    "cat.user@globex-mail.example",
    "Reach me at cat.home@example.org or +49 30 901820",
    &["cat.home@example.org", "+49 30 901820"],
);
const DAN: Person = (
    "globex",
    "dan.user@globex-mail.example",
    "Pay DE89 3704 0044 0532 0130 00 and mail dan.home@example.org",
    &["DE89 3704 0044 0532 0130 00", "dan.home@example.org"],
);

/// Every value a person's request seals: their id and the values in the text.
fn sealed(p: &Person) -> Vec<String> {
    std::iter::once(p.1)
        .chain(p.3.iter().copied())
        .map(str::to_string)
        .collect()
}

fn token(dir: &str, name: &str, tenant: &str, roles: &str) -> String {
    let out = ballast(&[
        "token",
        "--data-dir",
        dir,
        "--name",
        name,
        "--tenant",
        tenant,
        "--roles",
        roles,
    ]);
    format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
}

fn call(s: &Served, bearer: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http(
        &s.addr,
        method,
        path,
        &[
            ("Authorization", bearer),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Submits one turn; its id.
fn submit(s: &Served, bearer: &str, user: &str, text: &str) -> String {
    let body = json!({"user_id": user, "text": text}).to_string();
    let (status, v) = call(s, bearer, "POST", "/v1/turns", &body);
    assert_eq!(status, 202, "{v}");
    serde_json::from_str::<Value>(&v).expect("json")["turn_id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Waits until no turn of the token's tenant is running.
fn settle(s: &Served, bearer: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, v) = call(s, bearer, "GET", "/v1/turns?status=running&limit=1", "");
        assert_eq!(status, 200, "{v}");
        if v.trim() == "[]" {
            return;
        }
        assert!(Instant::now() < deadline, "turns still running: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Deployment {
    _root: tempfile::TempDir,
    data: std::path::PathBuf,
    key_file: std::path::PathBuf,
    master: ballast::vault::crypto::Key,
    acme: String,
    globex: String,
    globex_admin: String,
}

impl Deployment {
    fn new() -> Deployment {
        let root = tempfile::tempdir().expect("tmp");
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let master = ballast::vault::crypto::random_key();
        let key_file = root.path().join("master.key");
        std::fs::write(&key_file, hex::encode(master)).expect("key");
        // The limiter is not under test: thousands of turns go in at once.
        std::fs::write(
            data.join("auth.toml"),
            "[rate]\nrequests_per_second = 1000000.0\nburst = 1000000.0\n",
        )
        .expect("auth");
        let d = data.to_str().expect("utf8").to_string();
        Deployment {
            acme: token(&d, "acme-app", "acme", "submitter,operator"),
            globex: token(&d, "globex-app", "globex", "submitter,operator"),
            globex_admin: token(&d, "globex-admin", "globex", "admin"),
            _root: root,
            data,
            key_file,
            master,
        }
    }

    fn dir(&self) -> &str {
        self.data.to_str().expect("utf8")
    }

    fn serve(&self) -> Served {
        Served::start_with(
            &["--data-dir", self.dir()],
            std::process::Stdio::inherit(),
            &[(
                ballast::vault::MASTER_KEY_ENV,
                self.key_file.to_str().expect("utf8"),
            )],
        )
    }

    fn bearer(&self, tenant: &str) -> &str {
        if tenant == "acme" {
            &self.acme
        } else {
            &self.globex
        }
    }

    fn read(&self, when: &str) -> reader::Found {
        let started = Instant::now();
        let found = reader::read(&self.data, &self.master, &["acme", "globex"]);
        eprintln!(
            "forensic read {when}: {} files, {} bytes, {} wrapped-key candidates, {} key-file \
             frames; tenant keys {:?}, {} user keys, {} values decrypted ({:?})",
            found.files,
            found.bytes,
            found.candidates,
            found.frames,
            found.tenant_keys,
            found.user_keys,
            found.values.len(),
            started.elapsed()
        );
        found
    }
}

/// Sizes of the files under `dir`, for the record.
fn sizes(dir: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(format!(
                    "{}={len}",
                    p.strip_prefix(dir).unwrap_or(&p).display()
                ));
            }
        }
    }
    out.sort();
    out.join(" ")
}

fn assert_none_of(found: &reader::Found, forgotten: &[String], when: &str) {
    let back: Vec<&String> = forgotten
        .iter()
        .filter(|v| found.values.contains(*v))
        .collect();
    assert!(
        back.is_empty(),
        "{when}: {} of {} forgotten values decrypt with the master key: {back:?}",
        back.len(),
        forgotten.len()
    );
}

fn assert_all_of(found: &reader::Found, kept: &[String], when: &str) {
    let missing: Vec<&String> = kept.iter().filter(|v| !found.values.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "{when}: the reader must still recover every kept value (else it proves nothing); \
         missing {missing:?}"
    );
}

#[test]
fn forgotten_values_do_not_decrypt_from_any_byte_of_the_data_dir() {
    let d = Deployment::new();
    let people = [ANN, BOB, CAT, DAN];
    let forgotten: Vec<String> = [ANN, BOB, DAN].iter().flat_map(sealed).collect();
    let kept: Vec<String> = sealed(&CAT);

    // Serve the four people; a second turn each (their keys are reused, not re-made).
    let s = d.serve();
    for p in &people {
        for _ in 0..2 {
            submit(&s, d.bearer(p.0), p.1, p.2);
        }
    }
    settle(&s, &d.acme);
    settle(&s, &d.globex);
    assert!(s.stop().success());

    let before = d.read("before forget");
    assert_all_of(&before, &forgotten, "before forget");
    assert_all_of(&before, &kept, "before forget");
    eprintln!("data dir before forget: {}", sizes(&d.data));

    // One user of globex over the API, while serving.
    let s = d.serve();
    let (status, v) = call(
        &s,
        &d.globex_admin,
        "POST",
        "/v1/admin/forget",
        &json!({"user_id": DAN.1}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let forgot: Value = serde_json::from_str(&v).expect("json");
    assert!(forgot["keys"].as_u64() >= Some(1), "{forgot}");
    assert!(s.stop().success());
    // The whole of acme with the CLI.
    let started = Instant::now();
    let out = ballast(&["forget", "--tenant", "acme", "--data-dir", d.dir()]);
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("forgot tenant acme"), "{said}");
    eprintln!("forget --tenant acme took {took:?}: {}", said.trim());

    let after = d.read("after forget");
    assert_none_of(&after, &forgotten, "after forget");
    assert_all_of(&after, &kept, "after forget");
    assert_eq!(
        after.tenant_keys.get("acme"),
        Some(&0),
        "acme's key is gone"
    );
    eprintln!("data dir after forget: {}", sizes(&d.data));

    // Thousands of turns later: sled has rewritten its segments many times over. New people of
    // both tenants (acme gets a new key), with values of their own.
    let turns: usize = std::env::var("BALLAST_FORENSIC_TURNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let s = d.serve();
    let started = Instant::now();
    let mut later = BTreeSet::new();
    for i in 0..turns {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        // A few people a tenant, a value each (the reader tries every user code it finds with
        // every tenant key on every candidate: it pays for each one).
        let user = format!("later{}.user@{tenant}-mail.example", i % 3);
        let mail = format!("later{}.{tenant}@example.net", i % 3);
        submit(
            &s,
            d.bearer(tenant),
            &user,
            &format!("Please update my contact to {mail} today"),
        );
        later.insert(mail);
    }
    settle(&s, &d.acme);
    settle(&s, &d.globex);
    assert!(s.stop().success());
    eprintln!("{turns} turns after forget in {:?}", started.elapsed());

    let much_later = d.read(&format!("{turns} turns after forget"));
    assert_none_of(&much_later, &forgotten, "thousands of turns later");
    assert_all_of(&much_later, &kept, "thousands of turns later");
    let later: Vec<String> = later.into_iter().collect();
    assert_all_of(&much_later, &later, "thousands of turns later (new values)");
    eprintln!("data dir {turns} turns after forget: {}", sizes(&d.data));
}

/// A data dir an earlier version wrote (keys and values in sled's `vault` tree) moves its keys
/// to the key file when opened, but the old copies stay in sled's segment files: `forget`
/// alone leaves the forgotten keys there; `forget --compact` rewrites the database, after
/// which none of them opens (and the data dir still works).
#[test]
fn a_data_dir_from_before_the_key_file_is_scrubbed_by_forget_compact() {
    use ballast::vault::{MemoryVaultStore, Vault};
    let root = tempfile::tempdir().expect("tmp");
    let data = root.path().join("data");
    let d = data.to_str().expect("utf8");
    let master = ballast::vault::crypto::random_key();
    let key_file = root.path().join("master.key");
    std::fs::write(&key_file, hex::encode(master)).expect("key");
    // What the earlier version wrote: every vault record into the tree, the tokens into the
    // log (here a tree of its own standing for it).
    let mut tokenized: Vec<(&str, String, String)> = Vec::new();
    {
        let store = ballast::log::SledStore::open(&data).expect("sled");
        let tree = store.tree("vault").expect("vault");
        let log = store.tree("log").expect("log");
        let vault = Vault::new(
            master,
            std::sync::Arc::new(MemoryVaultStore::default()),
            ballast::guard::Redactor::builtin(),
        );
        for (i, p) in [ANN, BOB, CAT, DAN].iter().enumerate() {
            let (user, mut t) = vault.tokenize_user(p.0, p.1).expect("user");
            let (text, more) = vault.tokenize_text(p.0, &user, p.2).expect("text");
            t.absorb(more);
            for (k, v) in t.records {
                tree.insert(k, v.expect("a put")).expect("insert");
            }
            log.insert([i as u8], format!("{user} {text}").as_bytes())
                .expect("log");
            tokenized.push((p.0, user, text));
        }
        store.db().flush().expect("flush");
    }
    let read = |when: &str| {
        let found = reader::read(&data, &master, &["acme", "globex"]);
        eprintln!(
            "{when}: {} files, {} bytes; tenant keys {:?}, {} user keys, {} values",
            found.files,
            found.bytes,
            found.tenant_keys,
            found.user_keys,
            found.values.len()
        );
        found
    };
    let acme: Vec<String> = [ANN, BOB].iter().flat_map(sealed).collect();
    let globex: Vec<String> = [CAT, DAN].iter().flat_map(sealed).collect();
    let before = read("written by the earlier version");
    assert_all_of(&before, &acme, "before");
    assert_all_of(&before, &globex, "before");

    let out = ballast(&["forget", "--tenant", "acme", "--data-dir", d]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("forgot tenant acme"));
    let migrated = read("migrated, then forget");
    let left = acme.iter().filter(|v| migrated.values.contains(*v)).count();
    eprintln!(
        "without --compact, {left} of {} forgotten values still decrypt from sled's old segments",
        acme.len()
    );

    // Compaction alone (no --tenant): the database rewritten, nothing else forgotten.
    let out = ballast(&["forget", "--compact", "--data-dir", d]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("compacted the database"), "{said}");
    eprintln!("{}", said.trim());
    let compacted = read("after forget --compact");
    assert_none_of(&compacted, &acme, "after forget --compact");
    assert_all_of(&compacted, &globex, "after forget --compact");

    // The rewritten data dir still works: globex's values read back through the vault.
    let emb = ballast::embedded::Embedded::open(&data, 0).expect("open");
    let vault = emb.vault(master, ballast::guard::Redactor::builtin());
    for (tenant, user, text) in &tokenized {
        let back = vault.detokenize_text(tenant, user, text);
        if *tenant == "globex" {
            assert!(!back.contains("[FORGOTTEN:"), "{back}");
        } else {
            assert!(back.contains("[FORGOTTEN:"), "{back}");
        }
    }
}
