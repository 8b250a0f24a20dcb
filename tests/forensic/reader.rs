//! A forensic reader of a data dir: every byte of every file under it, read with the master key
//! and every key that key opens, looking for the vault's sealed values.
//!
//! What it knows is what an attacker reading the code knows: the tenants (in clear in every
//! event), the formats — a wrapped key is `nonce(12) ‖ key(32) ‖ tag(16)` bound to its id
//! (`k\0TENANT`, `u\0TENANT\0USER`), a sealed value is `nonce ‖ value ‖ tag` bound to its token
//! with the nonce `HMAC(user key, "nonce", token)[..12]`, and the key file's framing
//! (`vault-keys/`: slots `BKSLOT01 ‖ generation ‖ secret`, key file `BKEYS001 ‖ generation ‖
//! …` then frames `len ‖ !len ‖ sealed`, sealed under a KEK derived from a slot's secret). Its
//! parsing of those is its own, not the engine's. It does not trust any file to be what its name says: every file is
//! searched for every structure.
//!
//! Where it looks for wrapped keys: at every offset of files up to 64 KiB, and in larger files
//! (sled's `db`) at every offset after a byte 60 — sled writes a value as its varint length
//! (one byte below 241) followed by its bytes. The positive controls of the tests (values the
//! store still holds must be found) keep this from passing by finding nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ballast::vault::crypto::{self, Key};

/// A wrapped key: nonce, 32-byte key, tag.
const WRAPPED: usize = 12 + 32 + 16;
/// Files up to this size are searched at every offset.
const EVERY_OFFSET: usize = 64 << 10;
const SLOT_MAGIC: &[u8] = b"BKSLOT01";
const KEYS_MAGIC: &[u8] = b"BKEYS001";
const KEYS_HEADER: usize = 56;

#[derive(Debug, Default)]
pub struct Found {
    pub files: usize,
    pub bytes: usize,
    /// 60-byte windows tried as wrapped keys.
    pub candidates: usize,
    /// Key file frames opened (every record in them is a candidate too).
    pub frames: usize,
    /// Distinct tenant keys recovered, by tenant.
    pub tenant_keys: BTreeMap<String, usize>,
    /// Distinct user keys recovered.
    pub user_keys: usize,
    /// Every cleartext recovered.
    pub values: BTreeSet<String>,
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn positions(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The records of every key file found, opened with every slot secret found.
fn key_file_records(files: &[Vec<u8>], found: &mut Found) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut secrets = Vec::new();
    for f in files {
        for at in positions(f, SLOT_MAGIC) {
            if let Some(s) = f.get(at + 16..at + 48) {
                secrets.push(<[u8; 32]>::try_from(s).expect("32"));
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        for at in positions(f, KEYS_MAGIC) {
            let Some(generation) = u64_at(f, at + 8) else {
                continue;
            };
            for secret in &secrets {
                let kek = crypto::hmac(secret, &[b"kek", &generation.to_le_bytes()]);
                let mut pos = at + KEYS_HEADER;
                let mut index = 0u64;
                while let Some(len) = f
                    .get(pos..pos + 4)
                    .map(|l| u32::from_le_bytes(l.try_into().expect("4")) as usize)
                {
                    // `len ‖ !len`, then the sealed frame.
                    let Some(sealed) = f.get(pos + 8..pos + 8 + len) else {
                        break;
                    };
                    let aad = [
                        b"ballast-keyfile".as_slice(),
                        &generation.to_le_bytes(),
                        &index.to_le_bytes(),
                    ]
                    .concat();
                    let Some(plain) = crypto::open(&kek, sealed, &aad) else {
                        break;
                    };
                    found.frames += 1;
                    let mut r = plain.as_slice();
                    while r.len() >= 6 {
                        let il = u16::from_le_bytes([r[0], r[1]]) as usize;
                        let Some(id) = r.get(2..2 + il) else { break };
                        let Some(vl) = r.get(2 + il..6 + il) else {
                            break;
                        };
                        let vl = u32::from_le_bytes(vl.try_into().expect("4")) as usize;
                        let Some(v) = r.get(6 + il..6 + il + vl) else {
                            break;
                        };
                        out.push((id.to_vec(), v.to_vec()));
                        r = &r[6 + il + vl..];
                    }
                    pos += 8 + len;
                    index += 1;
                }
            }
        }
    }
    out
}

/// Every 60-byte window worth trying as a wrapped key.
fn wrapped_candidates(files: &[Vec<u8>]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for f in files {
        if f.len() < WRAPPED {
            continue;
        }
        let every = f.len() <= EVERY_OFFSET;
        for at in 0..=f.len() - WRAPPED {
            if every || (at > 0 && f[at - 1] == WRAPPED as u8) {
                out.push(&f[at..at + WRAPPED]);
            }
        }
    }
    out
}

/// The keys among `blobs` that `wrapping` unwraps with one of `aads` (both cores at work: the
/// AES-GCM of a debug build is slow, and a data dir holds hundreds of thousands of candidates).
fn unwrap_all(blobs: &[&[u8]], wrapping: &Key, aads: &[Vec<u8>]) -> BTreeSet<Key> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let Ok(cipher) = aes_gcm::Aes256Gcm::new_from_slice(wrapping) else {
        return BTreeSet::new();
    };
    let half = blobs.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        let tasks: Vec<_> = blobs
            .chunks(half)
            .map(|chunk| {
                let cipher = &cipher;
                s.spawn(move || {
                    let mut out = BTreeSet::new();
                    for b in chunk {
                        let (nonce, ct) = b.split_at(12);
                        for aad in aads {
                            let payload = Payload { msg: ct, aad };
                            if let Ok(k) =
                                cipher.decrypt(aes_gcm::Nonce::from_slice(nonce), payload)
                                && let Ok(k) = Key::try_from(k.as_slice())
                            {
                                out.insert(k);
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        tasks
            .into_iter()
            .flat_map(|t| t.join().expect("reader thread"))
            .collect()
    })
}

/// Reads every file under `dir` with `master`; `tenants` are the tenants whose keys it tries.
pub fn read(dir: &Path, master: &Key, tenants: &[&str]) -> Found {
    let mut found = Found::default();
    let mut paths = Vec::new();
    files_under(dir, &mut paths);
    let files: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    found.files = files.len();
    found.bytes = files.iter().map(Vec::len).sum();

    // Tokens and user codes, in clear in the events.
    let token_re = regex::bytes::Regex::new(r"\[pii:[a-z_]{1,32}:[a-p]{16}\]").expect("re");
    let mut tokens = BTreeSet::new();
    for f in &files {
        for m in token_re.find_iter(f) {
            tokens.insert(String::from_utf8_lossy(m.as_bytes()).to_string());
        }
    }
    let codes: BTreeSet<String> = tokens
        .iter()
        .filter_map(|t| t.strip_prefix("[pii:user:"))
        .map(|c| c.trim_end_matches(']').to_string())
        .collect();

    // Wrapped keys: the key files' records (ids known), and every plausible window.
    let records = key_file_records(&files, &mut found);
    let mut blobs: Vec<&[u8]> = wrapped_candidates(&files);
    blobs.extend(
        records
            .iter()
            .map(|(_, v)| v.as_slice())
            .filter(|v| v.len() == WRAPPED),
    );
    found.candidates = blobs.len();

    let mut tenant_keys: Vec<(String, Key)> = Vec::new();
    for t in tenants {
        let aad = [b"k\0".as_slice(), t.as_bytes()].concat();
        let keys = unwrap_all(&blobs, master, &[aad]);
        found.tenant_keys.insert(t.to_string(), keys.len());
        tenant_keys.extend(keys.into_iter().map(|k| (t.to_string(), k)));
    }
    let mut user_keys: BTreeSet<Key> = BTreeSet::new();
    for (t, tk) in &tenant_keys {
        let aads: Vec<Vec<u8>> = codes
            .iter()
            .map(|code| [b"u\0", t.as_bytes(), b"\0", code.as_bytes()].concat())
            .collect();
        user_keys.extend(unwrap_all(&blobs, tk, &aads));
    }
    found.user_keys = user_keys.len();

    // Values: each user key and token give the nonce the value was sealed with; find it.
    let mut expected: HashMap<[u8; 12], Vec<(Key, String)>> = HashMap::new();
    for uk in &user_keys {
        for tok in &tokens {
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&crypto::hmac(uk, &[b"nonce", tok.as_bytes()])[..12]);
            expected.entry(nonce).or_default().push((*uk, tok.clone()));
        }
    }
    if expected.is_empty() {
        return found;
    }
    let pattern = expected
        .keys()
        .map(|n| n.iter().map(|b| format!("\\x{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("|");
    let nonce_re = regex::bytes::RegexBuilder::new(&format!("(?s-u:{pattern})"))
        .unicode(false)
        .size_limit(1 << 28)
        .build()
        .expect("nonce pattern");
    for f in &files {
        for m in nonce_re.find_iter(f) {
            let nonce: [u8; 12] = m.as_bytes().try_into().expect("12");
            for (uk, tok) in expected.get(&nonce).into_iter().flatten() {
                for len in 1..=512usize {
                    let Some(sealed) = f.get(m.start()..m.start() + 12 + len + 16) else {
                        break;
                    };
                    if let Some(plain) = crypto::open(uk, sealed, tok.as_bytes()) {
                        found
                            .values
                            .insert(String::from_utf8_lossy(&plain).to_string());
                        break;
                    }
                }
            }
        }
    }
    found
}
