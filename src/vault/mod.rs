//! The PII vault: personal values never rest in clear. At the edges of the engine — a request
//! at intake, a tool result, a model's answer, retrieved documents — each value the detectors
//! find is replaced by a token (`token.rs`) and its cleartext sealed here with AES-256-GCM under
//! a per-user data key, itself wrapped by a per-tenant key, wrapped by the master key. Tokens
//! are stable per tenant, so the engine compares them as it compared values. The execution plane
//! gets the cleartext back (detokenized on the way out); views show `[REDACTED:kind]`, or
//! `[FORGOTTEN:kind]` once [`Vault::forget`] destroyed the keys.
//!
//! Layout of the store (`store.rs`):
//! - `k\0TENANT` → the tenant key, wrapped by the master key;
//! - `u\0TENANT\0USER` → a user's key, wrapped by the tenant key (USER is the user's token code);
//! - `v\0TENANT\0USER\0TOKEN` → a value, sealed by the user key (nonce derived from the token:
//!   sealing is deterministic, so re-sealing a value writes the same bytes).

pub mod crypto;
pub mod store;
pub mod token;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crypto::Key;
pub use store::{MemoryVaultStore, SledVaultStore, StoreError, VaultRecord, VaultStore};

use crate::guard::Redactor;

/// The environment variable naming the master key file (else `[vault] master_key_file`).
pub const MASTER_KEY_ENV: &str = "BALLAST_MASTER_KEY_FILE";
/// Where `demo`, `drill` and `--dev-key` keep a generated development key, in the data dir.
pub const DEV_KEY_FILE: &str = "dev-master.key";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("master key {path}: {message}")]
    MasterKey { path: String, message: String },
    #[error("the vault's key for {0} does not open with this master key")]
    WrongKey(String),
    #[error("sealing failed")]
    Seal,
}

impl VaultError {
    /// A store outage may pass; a wrong master key or a failed seal will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, VaultError::Store(_))
    }
}

/// Tokens and the records that hold their values.
#[derive(Debug, Default)]
pub struct Tokenized {
    /// The kinds of the values replaced, one per value.
    pub kinds: Vec<String>,
    /// What to persist with the events that use the tokens.
    pub records: Vec<VaultRecord>,
}

impl Tokenized {
    pub fn absorb(&mut self, other: Tokenized) {
        self.kinds.extend(other.kinds);
        self.records.extend(other.records);
    }
}

pub struct Vault {
    master: Key,
    store: Arc<dyn VaultStore>,
    detector: Redactor,
    /// Records made but not yet durable (they travel with their round), so reads see them.
    pending: Mutex<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Unwrapped keys, by their store key.
    keys: Mutex<HashMap<Vec<u8>, Key>>,
}

fn tenant_key_id(tenant: &str) -> Vec<u8> {
    [b"k\0".as_slice(), tenant.as_bytes()].concat()
}

fn user_key_id(tenant: &str, user: &str) -> Vec<u8> {
    [b"u\0", tenant.as_bytes(), b"\0", user.as_bytes()].concat()
}

fn value_id(tenant: &str, user: &str, token: &str) -> Vec<u8> {
    [
        b"v\0",
        tenant.as_bytes(),
        b"\0",
        user.as_bytes(),
        b"\0",
        token.as_bytes(),
    ]
    .concat()
}

/// The form of a value two spellings of share: what its token is computed from.
fn normalize(kind: &str, value: &str) -> String {
    match kind {
        "email" => value.trim().to_lowercase(),
        "phone" => {
            let plus = value.trim_start().starts_with('+') || value.trim_start().starts_with("00");
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            let digits = digits
                .strip_prefix("00")
                .map(str::to_owned)
                .unwrap_or(digits);
            if plus { format!("+{digits}") } else { digits }
        }
        "card_number" => value
            .chars()
            .filter_map(|c| c.to_digit(10))
            .map(|d| char::from(b'0' + d as u8))
            .collect(),
        "iban" => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        _ => value.to_string(),
    }
}

impl Vault {
    pub fn new(master: Key, store: Arc<dyn VaultStore>, detector: Redactor) -> Self {
        Vault {
            master,
            store,
            detector,
            pending: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// A vault in memory with a random master key (tests, benches).
    pub fn ephemeral() -> Self {
        Vault::new(
            crypto::random_key(),
            Arc::new(MemoryVaultStore::default()),
            Redactor::builtin(),
        )
    }

    /// The master key from `path` (32 bytes, hex).
    pub fn read_master(path: &Path) -> Result<Key, VaultError> {
        let err = |message: String| VaultError::MasterKey {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        crypto::parse_master(&text).map_err(err)
    }

    /// The development key of a data dir, generated (mode 0600) on first use.
    pub fn dev_master(dir: &Path) -> Result<Key, VaultError> {
        let path = dir.join(DEV_KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| VaultError::MasterKey {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let key = crypto::random_key();
            write_private(&path, &format!("{}\n", hex::encode(key))).map_err(|e| {
                VaultError::MasterKey {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        }
        Self::read_master(&path)
    }

    pub fn store(&self) -> &Arc<dyn VaultStore> {
        &self.store
    }

    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        if let Some(v) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(v.clone());
        }
        Ok(self.store.get(id)?)
    }

    fn remember(&self, records: &[VaultRecord]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in records {
            pending.insert(k.clone(), v.clone());
        }
    }

    /// The records are durable in the store now: reads need not keep them in memory.
    pub fn settled(&self, records: &[VaultRecord]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in records {
            if pending.get(k) == Some(v) {
                pending.remove(k);
            }
        }
    }

    /// Writes records straight to the store (when no round carries them: the API's intake).
    pub fn persist(&self, records: &[VaultRecord]) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.apply(records)?;
        self.settled(records);
        Ok(())
    }

    /// The unwrapped key stored at `id` under `wrapping`, created (and its record added to
    /// `out`) when `create` and missing.
    fn key(
        &self,
        id: Vec<u8>,
        wrapping: &Key,
        create: bool,
        out: &mut Vec<VaultRecord>,
    ) -> Result<Option<Key>, VaultError> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(Some(*k));
        }
        let key = match self.get(&id)? {
            Some(sealed) => crypto::unwrap(wrapping, &sealed, &id).ok_or_else(|| {
                VaultError::WrongKey(String::from_utf8_lossy(&id).replace('\0', "/"))
            })?,
            None if create => {
                let key = crypto::random_key();
                let sealed = crypto::wrap(wrapping, &key, &id).ok_or(VaultError::Seal)?;
                let record = (id.clone(), Some(sealed));
                self.remember(std::slice::from_ref(&record));
                out.push(record);
                key
            }
            None => return Ok(None),
        };
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, key);
        Ok(Some(key))
    }

    fn tenant_key(
        &self,
        tenant: &str,
        create: bool,
        out: &mut Vec<VaultRecord>,
    ) -> Result<Option<Key>, VaultError> {
        let master = self.master;
        self.key(tenant_key_id(tenant), &master, create, out)
    }

    /// The token of a user id: the same for the same user of a tenant.
    pub fn user_token(
        &self,
        tenant: &str,
        user_id: &str,
        out: &mut Vec<VaultRecord>,
    ) -> Result<String, VaultError> {
        if token::is_token(user_id) {
            return Ok(user_id.to_string());
        }
        let Some(tk) = self.tenant_key(tenant, true, out)? else {
            return Err(VaultError::Seal);
        };
        Ok(token::format(
            "user",
            &crypto::hmac(&tk, &[b"token", b"user", user_id.as_bytes()]),
        ))
    }

    fn user_code(user_token: &str) -> String {
        token::find(user_token)
            .first()
            .map_or_else(|| user_token.to_string(), |t| t.code.clone())
    }

    /// Tokenizes the user id itself (its value sealed under its own user key).
    pub fn tokenize_user(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let mut out = Tokenized::default();
        if token::is_token(user_id) {
            return Ok((user_id.to_string(), out));
        }
        let user_token = self.user_token(tenant, user_id, &mut out.records)?;
        self.store_value(tenant, &user_token, &user_token, user_id, &mut out.records)?;
        out.kinds.push("user".into());
        Ok((user_token, out))
    }

    fn store_value(
        &self,
        tenant: &str,
        user_token: &str,
        tok: &str,
        value: &str,
        out: &mut Vec<VaultRecord>,
    ) -> Result<(), VaultError> {
        let Some(tk) = self.tenant_key(tenant, true, out)? else {
            return Err(VaultError::Seal);
        };
        let user = Self::user_code(user_token);
        let Some(uk) = self.key(user_key_id(tenant, &user), &tk, true, out)? else {
            return Err(VaultError::Seal);
        };
        let id = value_id(tenant, &user, tok);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&crypto::hmac(&uk, &[b"nonce", tok.as_bytes()])[..12]);
        let sealed =
            crypto::seal(&uk, nonce, value.as_bytes(), tok.as_bytes()).ok_or(VaultError::Seal)?;
        if self.get(&id)?.as_deref() == Some(&sealed[..]) {
            return Ok(());
        }
        let record = (id, Some(sealed));
        self.remember(std::slice::from_ref(&record));
        out.push(record);
        Ok(())
    }

    /// `text` with each personal value replaced by its token, the value sealed for `user_token`.
    pub fn tokenize_text(
        &self,
        tenant: &str,
        user_token: &str,
        text: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let mut out = Tokenized::default();
        let found = self.detector.find(text);
        if found.is_empty() {
            return Ok((text.to_string(), out));
        }
        let mut tk = None;
        let mut result = String::with_capacity(text.len());
        let mut last = 0;
        for f in found {
            let value = text.get(f.start..f.end).unwrap_or_default();
            let key = match tk {
                Some(k) => k,
                None => {
                    let k = self
                        .tenant_key(tenant, true, &mut out.records)?
                        .ok_or(VaultError::Seal)?;
                    tk = Some(k);
                    k
                }
            };
            let tok = token::format(
                &f.kind,
                &crypto::hmac(
                    &key,
                    &[
                        b"token",
                        f.kind.as_bytes(),
                        normalize(&f.kind, value).as_bytes(),
                    ],
                ),
            );
            self.store_value(tenant, user_token, &tok, value, &mut out.records)?;
            result.push_str(text.get(last..f.start).unwrap_or_default());
            result.push_str(&tok);
            last = f.end;
            out.kinds.push(f.kind);
        }
        result.push_str(text.get(last..).unwrap_or_default());
        Ok((result, out))
    }

    /// Tokenizes every string of a JSON document given as text (text that is not JSON is
    /// tokenized as text).
    pub fn tokenize_json_text(
        &self,
        tenant: &str,
        user_token: &str,
        text: &str,
    ) -> Result<(String, Tokenized), VaultError> {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return self.tokenize_text(tenant, user_token, text);
        };
        let mut out = Tokenized::default();
        self.tokenize_value(tenant, user_token, &mut value, &mut out)?;
        if out.kinds.is_empty() {
            return Ok((text.to_string(), out));
        }
        Ok((value.to_string(), out))
    }

    fn tokenize_value(
        &self,
        tenant: &str,
        user_token: &str,
        value: &mut serde_json::Value,
        out: &mut Tokenized,
    ) -> Result<(), VaultError> {
        match value {
            serde_json::Value::String(s) => {
                let (t, found) = self.tokenize_text(tenant, user_token, s)?;
                if !found.kinds.is_empty() {
                    *s = t;
                    out.absorb(found);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.tokenize_value(tenant, user_token, v, out)?;
                }
            }
            serde_json::Value::Object(map) => {
                for (_, v) in map.iter_mut() {
                    self.tokenize_value(tenant, user_token, v, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The cleartext of one token of `user_token`'s, if its keys still exist.
    pub fn reveal_token(
        &self,
        tenant: &str,
        user_token: &str,
        tok: &str,
    ) -> Result<Option<String>, VaultError> {
        let mut none = Vec::new();
        let Some(tk) = self.tenant_key(tenant, false, &mut none)? else {
            return Ok(None);
        };
        let user = Self::user_code(user_token);
        let Some(uk) = self.key(user_key_id(tenant, &user), &tk, false, &mut none)? else {
            return Ok(None);
        };
        let Some(sealed) = self.get(&value_id(tenant, &user, tok))? else {
            return Ok(None);
        };
        Ok(crypto::open(&uk, &sealed, tok.as_bytes()).and_then(|v| String::from_utf8(v).ok()))
    }

    /// `text` with its tokens back to their values: what the execution plane is given.
    /// A value that can no longer be recovered reads `[FORGOTTEN:kind]`.
    pub fn detokenize_text(&self, tenant: &str, user_token: &str, text: &str) -> String {
        token::replace(text, |t| {
            let tok = format!("[pii:{}:{}]", t.kind, t.code);
            match self.reveal_token(tenant, user_token, &tok) {
                Ok(Some(v)) => v,
                _ => format!("[FORGOTTEN:{}]", t.kind),
            }
        })
    }

    /// Detokenizes every string of a JSON value.
    pub fn detokenize_json(&self, tenant: &str, user_token: &str, value: &mut serde_json::Value) {
        token::map_json(value, &mut |s| self.detokenize_text(tenant, user_token, s));
    }

    /// Whether `user_token`'s values can still be recovered.
    pub fn remembers(&self, tenant: &str, user_token: &str) -> bool {
        let mut none = Vec::new();
        let Ok(Some(tk)) = self.tenant_key(tenant, false, &mut none) else {
            return false;
        };
        let user = Self::user_code(user_token);
        matches!(
            self.key(user_key_id(tenant, &user), &tk, false, &mut none),
            Ok(Some(_))
        )
    }

    /// A view of `text` for `user_token`'s turn: each token `[REDACTED:kind]`, or
    /// `[FORGOTTEN:kind]` once the user (or the tenant) was forgotten.
    pub fn mask_text(&self, tenant: &str, user_token: &str, text: &str) -> String {
        if !text.contains("[pii:") {
            return text.to_string();
        }
        let word = if self.remembers(tenant, user_token) {
            "REDACTED"
        } else {
            "FORGOTTEN"
        };
        token::replace(text, |t| format!("[{word}:{}]", t.kind))
    }

    /// Masks every string of a JSON value.
    pub fn mask_json(&self, tenant: &str, user_token: &str, value: &mut serde_json::Value) {
        let word = if self.remembers(tenant, user_token) {
            "REDACTED"
        } else {
            "FORGOTTEN"
        };
        token::map_json(value, &mut |s| {
            token::replace(s, |t| format!("[{word}:{}]", t.kind))
        });
    }

    /// Destroys the keys of a tenant, or of one of its users: their values can never be read
    /// again. Returns the records removed (keys and values), to apply to the store — or, on
    /// Kafka, to publish as tombstones.
    pub fn forget(
        &self,
        tenant: &str,
        user_id: Option<&str>,
    ) -> Result<Vec<VaultRecord>, VaultError> {
        let prefixes: Vec<Vec<u8>> = match user_id {
            Some(u) => {
                let mut none = Vec::new();
                let Some(tk) = self.tenant_key(tenant, false, &mut none)? else {
                    return Ok(Vec::new());
                };
                let user_token = if token::is_token(u) {
                    u.to_string()
                } else {
                    token::format(
                        "user",
                        &crypto::hmac(&tk, &[b"token", b"user", u.as_bytes()]),
                    )
                };
                let user = Self::user_code(&user_token);
                vec![
                    user_key_id(tenant, &user),
                    [b"v\0", tenant.as_bytes(), b"\0", user.as_bytes(), b"\0"].concat(),
                ]
            }
            None => vec![
                tenant_key_id(tenant),
                [b"u\0", tenant.as_bytes(), b"\0"].concat(),
                [b"v\0", tenant.as_bytes(), b"\0"].concat(),
            ],
        };
        let mut records: Vec<VaultRecord> = Vec::new();
        for p in &prefixes {
            for k in self.store.keys(p)? {
                // A tenant's key id is a prefix of another tenant's ("acme" of "acme-eu").
                if user_id.is_none() && p.starts_with(b"k\0") && k != *p {
                    continue;
                }
                records.push((k, None));
            }
        }
        self.store.apply(&records)?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|id, _| !prefixes.iter().any(|p| id.starts_with(p)));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|id, _| !prefixes.iter().any(|p| id.starts_with(p)));
        Ok(records)
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_stable_tokens_come_back_and_are_forgotten() {
        let v = Vault::ephemeral();
        let (user, mut t) = v.tokenize_user("acme", "jane@example.com").expect("user");
        assert!(token::is_token(&user));
        let (text, found) = v
            .tokenize_text(
                "acme",
                &user,
                "mail JANE@example.com or call +44 20 7946 0958",
            )
            .expect("text");
        t.absorb(found);
        assert!(
            !text.contains("example.com") && !text.contains("7946"),
            "{text}"
        );
        assert_eq!(t.kinds, ["user", "email", "phone"]);
        // Equal values (up to spelling), equal tokens; the same value again writes nothing new.
        let (again, _) = v
            .tokenize_text("acme", &user, "jane@example.com")
            .expect("again");
        assert!(text.contains(&again), "{again} in {text}");
        let (_, more) = v
            .tokenize_text("acme", &user, "jane@example.com")
            .expect("again");
        assert!(more.records.is_empty());
        let (_, t2) = v
            .tokenize_text("acme", &user, "JANE@example.com")
            .expect("back");
        t.absorb(t2);
        // Another tenant: other tokens.
        let (other_user, _) = v.tokenize_user("globex", "jane@example.com").expect("user");
        assert_ne!(user, other_user);
        v.persist(&t.records).expect("persist");
        assert_eq!(
            v.detokenize_text("acme", &user, &text),
            "mail JANE@example.com or call +44 20 7946 0958"
        );
        assert_eq!(
            v.mask_text("acme", &user, &text),
            "mail [REDACTED:email] or call [REDACTED:phone]"
        );
        // Forget the user: nothing comes back, views say so, other users are untouched.
        let (bob, b) = v.tokenize_user("acme", "bob").expect("bob");
        let (bob_text, bt) = v
            .tokenize_text("acme", &bob, "bob@example.com")
            .expect("bob");
        v.persist(&b.records)
            .and_then(|_| v.persist(&bt.records))
            .expect("persist");
        let removed = v.forget("acme", Some("jane@example.com")).expect("forget");
        assert!(removed.len() >= 3);
        assert_eq!(
            v.detokenize_text("acme", &user, &text),
            "mail [FORGOTTEN:email] or call [FORGOTTEN:phone]"
        );
        assert_eq!(
            v.mask_text("acme", &user, &text),
            "mail [FORGOTTEN:email] or call [FORGOTTEN:phone]"
        );
        assert_eq!(
            v.detokenize_text("acme", &bob, &bob_text),
            "bob@example.com"
        );
        // Forget the tenant.
        v.forget("acme", None).expect("forget");
        assert_eq!(
            v.detokenize_text("acme", &bob, &bob_text),
            "[FORGOTTEN:email]"
        );
        assert!(
            v.store()
                .keys(b"")
                .expect("keys")
                .iter()
                .all(|k| !k.windows(4).any(|w| w == b"acme"))
        );
    }

    #[test]
    fn json_strings_are_tokenized_and_numbers_kept() {
        let v = Vault::ephemeral();
        let (user, _) = v.tokenize_user("acme", "u1").expect("user");
        let (json, found) = v
            .tokenize_json_text(
                "acme",
                &user,
                r#"{"to":"a@b.io","iban":"DE89370400440532013000","amount_cents":4200}"#,
            )
            .expect("json");
        assert_eq!(found.kinds, ["email", "iban"]);
        assert!(json.contains("4200") && !json.contains("a@b.io"), "{json}");
        let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
        v.detokenize_json("acme", &user, &mut value);
        assert_eq!(value["to"], "a@b.io");
        assert_eq!(value["iban"], "DE89370400440532013000");
    }
}
